"""What the commands share: parameter types, the TOML config loader, option groups,
error messages and loading a run directory."""

from __future__ import annotations

import os
import shlex
import tomllib
from collections.abc import Callable
from typing import Any

import click
import numpy as np

from qdkit import checkpoint, rundir

# ------------------------------------------------------------------ parameter types


class Shape(click.ParamType):
    """Grid shape written ``32x32`` or ``32,32`` (or a TOML list)."""

    name = "shape"

    def convert(self, value: Any, param, ctx) -> list[int]:
        if isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            parts = str(value).lower().replace(",", "x").split("x")
        try:
            shape = [int(p) for p in parts]
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a grid shape like 32x32", param, ctx)
        if not shape or any(s < 1 for s in shape):
            self.fail(f"{value!r}: every grid dimension must be a positive integer", param, ctx)
        return shape


def _parse_scalar(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


class Devices(click.ParamType):
    """``auto`` or a positive number of devices."""

    name = "devices"

    def convert(self, value: Any, param, ctx) -> int | str:
        if str(value).lower() == "auto":
            return "auto"
        try:
            count = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither 'auto' nor a number of devices", param, ctx)
        if count < 1:
            self.fail(f"{value!r}: the number of devices must be positive", param, ctx)
        return count


class KeyValue(click.ParamType):
    """``KEY=VALUE``; the value is read as a bool, int, float or string."""

    name = "key=value"

    def convert(self, value: Any, param, ctx) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return value
        key, sep, raw = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"{value!r} is not of the form KEY=VALUE", param, ctx)
        return key.strip().replace("-", "_"), _parse_scalar(raw.strip())


# ---------------------------------------------------------------- config file (TOML)


class Point(click.ParamType):
    """A descriptor written ``0.2,0.8``."""

    name = "point"

    def convert(self, value: Any, param, ctx) -> list[float]:
        if isinstance(value, (list, tuple)):
            return [float(v) for v in value]
        try:
            point = [float(v) for v in str(value).split(",")]
        except ValueError:
            self.fail(f"{value!r} is not a descriptor like 0.2,0.8", param, ctx)
        if not all(map(np.isfinite, point)):
            self.fail(f"{value!r}: the coordinates must be finite numbers", param, ctx)
        return point


class Widths(click.ParamType):
    """Hidden layer widths written ``64,64``."""

    name = "widths"

    def convert(self, value: Any, param, ctx) -> tuple[int, ...]:
        if isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            parts = str(value).split(",")
        try:
            widths = tuple(int(p) for p in parts)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a list of widths like 64,64", param, ctx)
        if not widths or any(w < 1 for w in widths):
            self.fail(f"{value!r}: every width must be a positive integer", param, ctx)
        return widths


# ---------------------------------------------------------------- config file (TOML)

_TABLES = ("task_options", "emitter_options")


def load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--config FILE``: the command's options from a TOML file, as defaults that
    command-line options override; unknown keys are refused with the valid ones."""
    if not value:
        return
    try:
        with open(value, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise click.BadParameter(f"cannot read {value}: {e}", ctx=ctx, param=param) from e
    valid = {p.name for p in ctx.command.params if p.name and p.name != "config"}
    defaults: dict[str, Any] = {}
    for raw_key, item in data.items():
        key = raw_key.replace("-", "_")
        if key not in valid:
            raise click.BadParameter(
                f"unknown key {raw_key!r} in {value}; valid keys: {', '.join(sorted(valid))}", ctx=ctx, param=param
            )
        if key in _TABLES:
            if not isinstance(item, dict):
                raise click.BadParameter(f"{raw_key} must be a table in {value}", ctx=ctx, param=param)
            item = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in item.items()]
        elif key == "shape" and isinstance(item, list):
            item = "x".join(str(v) for v in item)
        defaults[key] = item
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


def config_option(function: Callable) -> Callable:
    return click.option(
        "--config", type=click.Path(exists=True, dir_okay=False), callback=load_config, is_eager=True,
        expose_value=False, help="TOML file with any of these options (command-line options win).",
    )(function)  # fmt: skip


# ------------------------------------------------------------------ option groups


def _group(*options: Callable) -> Callable:
    def apply(function: Callable) -> Callable:
        for option in reversed(options):
            function = option(function)
        return function

    return apply


#: ``--max-requests`` and ``--max-tokens``: the model budgets of ``run`` and ``resume``.
budget_options = _group(
    click.option("--max-requests", type=click.IntRange(min=1), default=None,
                 help="Budget of model requests, counting those already made; the run stops cleanly when it is "
                      "spent [default: none, or the run's]."),
    click.option("--max-tokens", type=click.IntRange(min=1), default=None,
                 help="Budget of model tokens (prompt + completion), counting those already used [default: none, "
                      "or the run's]."),
)  # fmt: skip

#: ``--progress/--no-progress``.
progress_option = click.option("--progress/--no-progress", default=True, help="Show a progress bar.")

#: ``--compile-cache/--no-compile-cache``.
compile_cache_option = click.option(
    "--compile-cache/--no-compile-cache", default=None,
    help="Keep compiled programs in JAX's persistent cache ($QDKIT_CACHE_DIR, else ~/.cache/qdkit/jax), so the "
         "next start of the same configuration compiles less [default: on, unless QDKIT_COMPILE_CACHE=0].",
)  # fmt: skip


def cache_directory() -> str:
    """Where compiled programs are kept: ``$QDKIT_CACHE_DIR``, else ``qdkit/jax`` in the
    user's cache directory (``$XDG_CACHE_HOME``, else ``~/.cache``)."""
    if os.environ.get("QDKIT_CACHE_DIR"):
        return os.environ["QDKIT_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "qdkit", "jax")


def enable_compile_cache(enabled: bool | None) -> str | None:
    """Turn on JAX's persistent compilation cache for this process unless ``enabled`` is
    False (``None``: on unless ``QDKIT_COMPILE_CACHE`` is 0/off/false); returns its
    directory, or ``None``. Every program is kept, however quickly it compiled
    (``QDKIT_CACHE_MIN_COMPILE_SECS`` sets a floor): small ones add up (below a floor of
    0.5 s, the maze with DCG compiles 12 programs, 0.7 s, which were compiled again at
    every start: benchmarks/compiles.py). Past
    2 GiB the least recently used entries go.
    A directory that cannot be created leaves the cache off, with a warning."""
    if enabled is None:
        enabled = os.environ.get("QDKIT_COMPILE_CACHE", "1").strip().lower() not in ("0", "off", "false", "no")
    if not enabled:
        return None
    import jax

    directory = cache_directory()
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as e:
        click.echo(f"warning: no compilation cache ({e})", err=True)
        return None
    try:
        seconds = float(os.environ.get("QDKIT_CACHE_MIN_COMPILE_SECS", "0"))
    except ValueError as e:
        raise click.UsageError(f"QDKIT_CACHE_MIN_COMPILE_SECS must be a number of seconds ({e})") from e
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", seconds)
    jax.config.update("jax_compilation_cache_max_size", 2 * 1024**3)  # least recently used entries go past 2 GiB
    return directory


#: ``--seed``.
seed_option = click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)

#: A run directory argument.
run_directory = click.argument("directory", type=click.Path(exists=True, file_okay=False))


# --------------------------------------------------------------------- messages


def check_options(kind: str, name: str, given: dict[str, Any], valid: dict[str, Any]) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise click.UsageError(
            f"{kind} {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(valid) or 'none'}"
        )


def resume_hint(directory: str) -> str:
    """The command that continues the run in ``directory`` (in a run of several
    processes, with the process flags every process must be given again)."""
    import jax

    hint = f"qdkit resume {shlex.quote(directory)}"
    if jax.process_count() > 1:
        hint += " --coordinator HOST:PORT --num-processes N --process-id I (in every process, as before)"
    return hint


def message(e: Exception) -> str:
    """An exception's text; a KeyError's without the quotes its ``str`` adds."""
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def load_run(
    directory: str, devices: int | str | None = None, runtime: dict[str, Any] | None = None, *, seeds_ok: bool = False
) -> rundir.Run:
    """A run rebuilt from its directory; an unusable directory or checkpoint is one line.
    A run of several seeds is refused unless ``seeds_ok`` (a command on one archive
    takes one of its seed directories)."""
    try:
        seeds = rundir.seeds_of(rundir.read_config(directory))
        if not seeds_ok and seeds > 1:
            raise click.ClickException(
                f"{directory} holds a run of {seeds} seeds: give one of its seed directories "
                f"({rundir.seed_directory(directory, 0)} ... {rundir.seed_directory(directory, seeds - 1)})"
            )
        return rundir.load(directory, devices, runtime)
    except (rundir.RunDirError, checkpoint.CheckpointError) as e:
        raise click.ClickException(str(e)) from e


def read_config(directory: str) -> dict[str, Any]:
    try:
        return rundir.read_config(directory)
    except rundir.RunDirError as e:
        raise click.ClickException(str(e)) from e


def options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items()) or "no options"


def report_paths(paths: list[str]) -> None:
    for path in paths:
        click.echo(f"wrote {path}")
