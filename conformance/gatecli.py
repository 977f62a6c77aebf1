"""The `check` options a CI gate uses (--config, --require-level, --require, --capabilities,
--baseline, --report-dir), kept out of cli.py so the command there stays one readable page.

``--config`` is eager: it reads [tool.sessionspec] (or the file named) before any other
option is parsed and installs it as click's ``default_map``, so every setting in the file
is simply that option's default and a flag on the command line always wins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from .config import LEVELS, ConfigError, load_config
from .gate import GateOptions, Requirement

__all__ = ["claims_override", "gate_options", "gate_settings", "quiet_driver_warnings"]

CONFIG_NOTE = "_sessionspec_config"


def _caps(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    from .contract import CAPABILITIES

    caps = tuple(dict.fromkeys(p.strip() for item in value for p in item.split(",") if p.strip()))
    unknown = [c for c in caps if c not in CAPABILITIES]
    if unknown:
        raise click.BadParameter(f"unknown capabilities {unknown}; known: {', '.join(sorted(CAPABILITIES))}")
    return caps


def _apply_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    from .exitcodes import EXIT_USAGE

    try:
        config = load_config(value)
    except ConfigError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_USAGE) from None
    if config.values:
        ctx.default_map = {**(ctx.default_map or {}), **config.values}
        ctx.meta[CONFIG_NOTE] = config.describe()


def gate_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the gate options to a click command (they arrive in its **kwargs)."""
    decorators = [
        click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
                     is_eager=True, expose_value=False, callback=_apply_config,
                     help="Read [tool.sessionspec] from FILE (default: the nearest pyproject.toml upwards; "
                          "set SESSIONSPEC_NO_CONFIG=1 to read none). Flags override it."),
        click.option("--require-level", type=click.Choice(LEVELS), default=None,
                     help="Fail (exit 1) unless the store reaches this level with every clause of it checked "
                          "and passed; a clause not checked (n/a, skip) does not count."),
        click.option("--require", "require", multiple=True, metavar="CAP", callback=_caps,
                     help="Fail unless this capability is claimed, checked and passed (repeatable; comma-separated)."
                     ),
        click.option("--capabilities", "capabilities", multiple=True, metavar="CAP", callback=_caps,
                     help="Check these claims instead of the capabilities the store declares (comma-separated)."),
        click.option("--baseline", type=click.Path(dir_okay=False, path_type=Path), metavar="PREV.json",
                     help="A previous --report: the summary starts with the clauses newly failing or passing "
                          "and any level change."),
        click.option("--explore-claims", "explore", is_flag=True,
                     help="Also try the clauses of the capabilities the store does not claim (a second run) and "
                          "report 'you could claim X'; never a failure."),
        click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
                     help="When the run fails, write the failure report directory DIR (failing clauses, "
                          "histories, reproduction); re-run it with `sessionspec recheck DIR`."),
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def _source(ctx: click.Context, name: str) -> str:
    if ctx.get_parameter_source(name) == ParameterSource.DEFAULT_MAP:
        return str(ctx.meta.get(CONFIG_NOTE, "the config"))
    return "the command line"


def gate_settings(ctx: click.Context, gate: Mapping[str, Any]) -> GateOptions:
    """Validate and load what the gate options asked for (a bad baseline exits 2 before any run)."""
    from .baseline import BaselineError, load_baseline
    from .exitcodes import EXIT_USAGE

    level = gate.get("require_level")
    require = tuple(gate.get("require") or ())
    source = _source(ctx, "require_level" if level else "require")
    baseline = None
    path: Path | None = gate.get("baseline")
    if path is not None:
        try:
            baseline = load_baseline(path)
        except BaselineError as exc:
            click.echo(f"Error: {exc}", err=True)
            raise click.exceptions.Exit(EXIT_USAGE) from None
    claims = claims_override(gate)
    if claims is not None and "core" not in claims:
        raise click.BadParameter(f"the claims {sorted(claims)} lack 'core', which every store has",
                                 param_hint="'--capabilities' / [tool.sessionspec] capabilities")
    report_dir: Path | None = gate.get("report_dir")
    if report_dir is not None and report_dir.exists() and not report_dir.is_dir():
        click.echo(f"Error: --report-dir {str(report_dir)!r} exists and is not a folder", err=True)
        raise click.exceptions.Exit(EXIT_USAGE)
    return GateOptions(
        requirement=Requirement(level, require, source), baseline=baseline,
        baseline_source=str(path) if path else "", report_dir=report_dir,
        config=str(ctx.meta.get(CONFIG_NOTE, "")), explore=bool(gate.get("explore")),
    )


def claims_override(gate: Mapping[str, Any]) -> frozenset[str] | None:
    caps = tuple(gate.get("capabilities") or ())
    return frozenset(caps) if caps else None


def quiet_driver_warnings() -> None:
    """Hide redis-py 6+'s notice that a sync Retry was converted for the asyncio client.

    It names no problem of the store under test (a third-party store built for redis-py 5 passes
    the sync Retry; the reference store passes the asyncio one), yet printed on every run it
    reaches even `-q` output and CI logs.
    """
    import warnings

    warnings.filterwarnings("ignore", message=r"A synchronous redis\.retry\.Retry was passed", category=UserWarning)
