"""Load shapes: steady, ramp, spike, soak, as Locust ``LoadTestShape`` classes.

Each is parametrised by the peak user count and the duration (``sessionspec load``
passes them through the environment, see :mod:`.config`); ``tick`` returns None once the
duration is over, which ends the run. Only the selected shape is put in the locustfile's
namespace, because Locust uses the first shape class it finds there.
"""

from __future__ import annotations

from locust import LoadTestShape

from .config import LoadConfig

__all__ = ["SHAPES", "RampShape", "SoakShape", "SpikeShape", "SteadyShape"]


class _Shape(LoadTestShape):
    abstract = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        config = LoadConfig.from_env()
        self.users = config.users
        self.duration = config.duration

    def users_at(self, t: float) -> int:
        raise NotImplementedError

    def tick(self) -> tuple[int, float] | None:
        t: float = self.get_run_time()  # type: ignore[no-untyped-call]
        if t >= self.duration:
            return None
        return max(1, self.users_at(t)), float(max(1, self.users))


class SteadyShape(_Shape):
    """All users from the first second to the end."""

    def users_at(self, t: float) -> int:
        return self.users


class RampShape(_Shape):
    """From one user up to the peak over the first 80 % of the run, then held."""

    def users_at(self, t: float) -> int:
        return round(1 + (self.users - 1) * min(1.0, t / (0.8 * self.duration)))


class SpikeShape(_Shape):
    """A quarter of the users, the full count for the middle fifth of the run, then a quarter again."""

    def users_at(self, t: float) -> int:
        return self.users if 0.4 * self.duration <= t < 0.6 * self.duration else max(1, self.users // 4)


class SoakShape(_Shape):
    """Half the users, held for a long time (leaks, growth, sweeps falling behind)."""

    def users_at(self, t: float) -> int:
        return max(1, self.users // 2)


SHAPES: dict[str, type[_Shape]] = {"steady": SteadyShape, "ramp": RampShape, "spike": SpikeShape,
                                   "soak": SoakShape}
