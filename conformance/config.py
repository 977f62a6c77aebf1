"""``[tool.sessionspec]`` in the user's pyproject.toml: the gate's settings, kept next to the code.

The table gives defaults for ``sessionspec check``; a flag on the command line always wins.
It is found like other tools find theirs: the nearest pyproject.toml from the current
directory upwards (the first one found ends the search, with or without the table).
Relative paths in it are relative to that file. Unknown keys and wrong types are errors
(exit 2) naming the file and the key: a typo must never silently un-gate anything.

Example::

    [tool.sessionspec]
    target = "myapp.store:factory"
    spec-version = "1.0"              # pin: upgrading sessionspec never moves the gate
    require-level = "core+atomic"     # fail when the store reaches less, or a clause of it is not checked
    require = ["listing"]             # and these capabilities too
    capabilities = ["core", "atomic", "listing"]   # check these claims instead of the store's own
    divergences = "sessionspec-ledger.toml"
    timeout = 60                      # seconds per suite test
    report-dir = "sessionspec-failures"            # written when a run fails; see `sessionspec recheck`
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from . import clauses as registry

__all__ = [
    "KEYS",
    "LEVELS",
    "Config",
    "ConfigError",
    "SpecVersion",
    "find_pyproject",
    "load_config",
    "normalize_spec_version",
]

LEVELS = ("core", "core+atomic", "full")
"""The levels --require-level accepts, lowest first."""


class ConfigError(Exception):
    """[tool.sessionspec] is unreadable or holds an unknown key or a wrong value."""


def normalize_spec_version(text: str) -> str:
    """"1", "1.0", "v1.0" -> "1.0"; ValueError naming the known versions for anything else."""
    raw = text.strip().lower().removeprefix("v")
    version = f"{raw}.0" if re.fullmatch(r"\d+", raw) else raw
    known = registry.SPEC_VERSIONS
    if version not in known:
        raise ValueError(f"unknown spec version {text!r}; this sessionspec knows {', '.join(known)} "
                         f"(a major version alone, such as 1, means {known[0].split('.')[0]}.0)")
    return version


class SpecVersion(click.ParamType):  # type: ignore[type-arg]  # generic in click >= 8.2 only
    """--spec-version: a known spec version, also written as its major number (1 = 1.0)."""

    name = "spec version"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "[" + "|".join(registry.SPEC_VERSIONS) + "]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return normalize_spec_version(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} must be a non-empty string, not {value!r}")
    return value.strip()


def _path(base: Path) -> Callable[[str, Any], Path]:
    def convert(key: str, value: Any) -> Path:
        return (base / _string(key, value)).resolve()

    return convert


def _strings(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [part for part in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{key} must be a list of strings, not {value!r}")
    return tuple(dict.fromkeys(v.strip() for v in value))


def _capabilities(key: str, value: Any) -> tuple[str, ...]:
    from .contract import CAPABILITIES

    caps = _strings(key, value)
    unknown = [c for c in caps if c not in CAPABILITIES]
    if unknown:
        raise ConfigError(f"{key}: unknown capabilities {unknown}; known: {', '.join(sorted(CAPABILITIES))}")
    return caps


def _timeout(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{key} must be a number of seconds > 0, not {value!r}")
    return float(value)


def _level(key: str, value: Any) -> str:
    if value not in LEVELS:
        raise ConfigError(f"{key} must be one of {', '.join(LEVELS)}, not {value!r}")
    return str(value)


def _version(key: str, value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)  # spec-version = 1.0 written as a TOML number
    try:
        return normalize_spec_version(_string(key, value))
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _keys(base: Path) -> dict[str, tuple[str, Callable[[str, Any], Any]]]:
    """TOML key -> (the `check` parameter it sets, its converter)."""
    path = _path(base)
    return {
        "target": ("target", _string),
        "capabilities": ("capabilities", _capabilities),
        "divergences": ("divergences", path),
        "spec-version": ("spec_version", _version),
        "timeout": ("timeout", _timeout),
        "require-level": ("require_level", _level),
        "require": ("require", _capabilities),
        "report": ("report", path),
        "junit": ("junit", path),
        "markdown": ("markdown", path),
        "baseline": ("baseline", path),
        "report-dir": ("report_dir", path),
    }


KEYS: tuple[str, ...] = tuple(_keys(Path(".")))
"""Every key [tool.sessionspec] may hold."""


@dataclass(frozen=True, slots=True)
class Config:
    """The settings found, keyed by `check` parameter name, and where they came from."""

    path: Path | None = None
    values: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        return f"[tool.sessionspec] in {self.path}" if self.path else "no [tool.sessionspec]"


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest pyproject.toml from start (default: the current directory) upwards."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path | None = None, *, start: Path | None = None) -> Config:
    """Read [tool.sessionspec] from path, or from the nearest pyproject.toml; empty Config if none."""
    explicit = path is not None
    if path is None:
        if os.environ.get("SESSIONSPEC_NO_CONFIG"):
            return Config()
        path = find_pyproject(start)
        if path is None:
            return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{str(path)!r} is not valid TOML: {exc}") from exc
    tool = data.get("tool", {})
    table = tool.get("sessionspec") if isinstance(tool, dict) else None
    if table is None:
        if explicit:
            raise ConfigError(f"{str(path)!r} has no [tool.sessionspec] table")
        return Config()
    if not isinstance(table, dict):
        raise ConfigError(f"{str(path)!r}: tool.sessionspec must be a table")
    keys = _keys(path.parent.resolve())
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in keys:
            near = [k for k in keys if k.replace("-", "_") == key or k.replace("-", "") == key.replace("_", "")]
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise ConfigError(f"{str(path)!r}: unknown key {key!r} in [tool.sessionspec]{hint}; "
                              f"known keys: {', '.join(keys)}")
        param, convert = keys[key]
        try:
            values[param] = convert(key, value)
        except ConfigError as exc:
            raise ConfigError(f"{str(path)!r}: [tool.sessionspec] {exc}") from None
    return Config(path, values)
