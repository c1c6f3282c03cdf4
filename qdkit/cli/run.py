"""``qdkit run`` and ``qdkit resume``: start a run in a directory, or continue one."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import click
import jax
import numpy as np

import feedback
from qdkit import checkpoint, distributed, map_elites, registry, rundir, sharding, tasks, trackers, xla
from qdkit.cli.model import model_endpoint
from qdkit.cli.options import (
    Devices,
    KeyValue,
    Shape,
    _group,
    budget_options,
    check_options,
    compile_cache_option,
    config_option,
    enable_compile_cache,
    message,
    progress_option,
    read_config,
    resume_hint,
    seed_option,
)
from qdkit.map_elites import Interrupted, Stopped, StopRun

# ------------------------------------------------------------------ option groups

search_options = _group(
    click.option("--task", type=click.Choice(tasks.names()), default="arm", show_default=True, help="Task to solve."),
    click.option("--task-option", "-t", "task_options", multiple=True, type=KeyValue(),
                 help="Task option KEY=VALUE (repeatable), e.g. -t dof=10."),
    click.option("--domain", default=None,
                 help="Text domain of --task text: opinions, stories, or a .toml domain file [default: opinions]."),
    click.option("--emitter", type=click.Choice(registry.emitter_names()), default=None,
                 help="Variation operator [default: iso-line; lmx for --task text]."),
    click.option("--emitter-option", "-e", "emitter_options", multiple=True, type=KeyValue(),
                 help="Emitter option KEY=VALUE (repeatable), e.g. -e iso_sigma=0.02 or -e critic_hidden=64,64."),
    click.option("--iterations", type=click.IntRange(min=1), default=1000, show_default=True),
    click.option("--batch-size", type=click.IntRange(min=1), default=None,
                 help="Candidates per iteration [default: the task's: 256; 8 for text, where each is a model call]."),
    seed_option,
    click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Runs of seeds SEED, SEED+1, ... as one compiled computation, in --out/seed-K directories, "
                      "with comparison.png of their curves (compiled tasks and emitters, one process; the seeds are "
                      "split over --devices; a CVT's centroids are SEED's, shared by every seed)."),
)  # fmt: skip

archive_options = _group(
    click.option("--archive", type=click.Choice(registry.ARCHIVES), default="grid", show_default=True),
    click.option("--shape", type=Shape(), default=None,
                 help="Grid cells per descriptor, e.g. 32x32 [default: 32 per descriptor]."),
    click.option("--cells", type=click.IntRange(min=1), default=1024, show_default=True, help="Number of CVT cells."),
    click.option("--learning-rate", type=click.FloatRange(0.0, 1.0), default=None,
                 help="CMA-MAE archive learning rate alpha [default: 0.01 for cma-mae and cma-maega, else 1: a plain "
                      "archive]."),
    click.option("--threshold-min", type=float, default=None,
                 help="Initial cell threshold of a CMA-MAE archive [default: the task's QD offset]."),
    click.option("--replacement", type=click.Choice(("threshold", "best")), default="threshold", show_default=True,
                 help="In a threshold archive: the best candidate above a cell's threshold replaces the occupant and a "
                      "result archive keeps the best ever (threshold: the CMA-MAE paper's), or the archive keeps the "
                      "best candidate ever accepted (best: qdkit's earlier rule)."),
)  # fmt: skip

descriptor_options = _group(
    click.option("--descriptors", type=click.Choice(list(registry.DESCRIPTORS)), default="task", show_default=True,
                 help="The task's own descriptors, or learned from its features: from judgments (QDHF), an "
                      "autoencoder (AURORA) or a random projection."),
    click.option("--judge", type=click.Choice(registry.JUDGES), default="simulated", show_default=True,
                 help="Who answers the similarity questions of --descriptors learned (embedding: cosine similarity "
                      "of the endpoint's embeddings)."),
    click.option("--judgments", type=click.IntRange(min=1), default=1000, show_default=True,
                 help="Judgment budget of --descriptors learned, spread over its refits."),
    click.option("--judge-noise", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
                 help="Probability that the simulated judge answers wrong."),
    click.option("--judge-images", is_flag=True, default=False,
                 help="--judge llm: show a vision model the items as images (tasks that draw them: arm, maze)."),
)  # fmt: skip

model_options = _group(
    click.option("--base-url", default=None,
                 help="OpenAI-compatible endpoint for --task text and --judge llm/embedding [default: "
                      "$OPENAI_BASE_URL, else the bundled local model when installed]."),
    click.option("--model", default=None,
                 help="Model at --base-url [default: $OPENAI_MODEL]. The key: $OPENAI_API_KEY."),
    click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True,
                 help="Model requests in flight at once."),
    budget_options,
)  # fmt: skip

output_options = _group(
    click.option("--out", type=click.Path(file_okay=False), default=None,
                 help="Run directory [default: runs/TASK-DATE-TIME]."),
    click.option("--checkpoint-every", type=click.IntRange(min=1), default=100, show_default=True,
                 help="Iterations between checkpoints."),
    click.option("--devices", type=Devices(), default="auto", show_default=True,
                 help="Devices to split each batch over: a number, or auto (as many devices as divide the batch; with "
                      "several processes, every process's devices). With --seeds, the seeds are split over the devices "
                      "instead (auto: as many as divide --seeds; on a CPU, one device per core)."),
    click.option("--overwrite", is_flag=True, help="Replace an existing run in --out."),
    click.option("--log", "log", multiple=True, type=click.Choice(trackers.NAMES),
                 help="Also log to an experiment tracker (repeatable): metrics rows, the config as parameters, the "
                      "heatmap at each checkpoint. Needs the extra of the same name."),
    progress_option,
    compile_cache_option,
)  # fmt: skip


process_options = _group(
    click.option("--coordinator", default=None, metavar="HOST:PORT",
                 help="Several processes (hosts) on one search: process 0's address, the same in every process "
                      "[default: $QDKIT_COORDINATOR]. Every process gets the same command line and --out (a directory "
                      "all of them see); process 0 writes it."),
    click.option("--num-processes", type=click.IntRange(min=1), default=None,
                 help="Processes in the run [default: $QDKIT_NUM_PROCESSES, else 1]."),
    click.option("--process-id", type=click.IntRange(min=0), default=None,
                 help="This process's rank, 0 .. N-1 [default: $QDKIT_PROCESS_ID]."),
)  # fmt: skip


def join_processes(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """``jax.distributed.initialize`` for the process options (or their environment
    variables), before anything touches a device; bad settings are a usage error."""
    try:
        several = distributed.initialize(coordinator, num_processes, process_id)
    except distributed.DistributedError as e:
        raise click.UsageError(str(e)) from e
    if several:  # a launcher's SIGTERM (SLURM, Kubernetes) ends this process; jax.distributed would ignore it
        signal.signal(signal.SIGTERM, lambda signum, frame: leave(143))


def same_in_every_process(config: dict[str, Any]) -> None:
    """Refuse, in every process, a run whose processes were given different settings."""
    if not distributed.same_everywhere(json.dumps(config, sort_keys=True, default=str)):
        raise click.UsageError(
            "the processes of this run were given different settings (seed, batch size, ...): give every process "
            "the same command line and options"
        )


def seed_devices(seeds: int, devices: int | str | None) -> None:
    """Before anything touches a device: for a run of several seeds on a CPU, one CPU
    device per core that shares the seeds evenly (``--devices auto``) or the number
    given, unless the process's CPU device count was already chosen (see
    :func:`qdkit.xla.use_cpu_devices`); each device runs its seeds on a core of its own."""
    if seeds < 2:  # (several processes refuse several seeds later, with the reason)
        return
    count = sharding.usable_devices(seeds, xla.cpus()) if devices in (None, "auto") else int(devices)
    xla.use_cpu_devices(count)


def check_seed_devices(seeds: int, devices: int | str | None) -> None:
    """:func:`seed_devices`, then refuse a device count that cannot split the seeds,
    before anything is written."""
    seed_devices(seeds, devices)
    if seeds > 1:
        try:
            sharding.resolve_seeds(devices, seeds)
        except ValueError as e:
            raise click.UsageError(str(e)) from e


def echo(text: str, **kwargs: Any) -> None:
    """``click.echo`` in the writer process only."""
    if distributed.is_writer():
        click.echo(text, **kwargs)


# ----------------------------------------------------------------------- running


def stopped_labelling(directory: str) -> None:
    click.echo(
        f"\nLabelling stopped; every answer is saved in {os.path.join(directory, registry.HUMAN_JUDGMENTS)}.\n"
        f"Continue with: {resume_hint(directory)}  (or `qdkit label {directory}` to only label)"
    )


def leave(status: int) -> None:
    """Exit with ``status``; in a run of several processes without jax.distributed's
    shutdown, which would wait minutes for peers still inside a collective."""
    if jax.process_count() == 1:
        sys.exit(status)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def lost_process(directory: str, error: Exception) -> None:
    """End this process of a multi-process run whose peer stopped (a collective failed):
    one clear message and exit status 1, without waiting for the peer at shutdown."""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    click.echo(
        f"Error: process {jax.process_index()} of {jax.process_count()}: another process of this run stopped "
        f"({detail}).\nThe last checkpoint is in {directory}; start every process again with `qdkit resume "
        f"{directory}` and the same --coordinator, --num-processes and --process-id.",
        err=True,
    )
    leave(1)  # without jax.distributed's shutdown, which would wait for the lost process, then abort


def execute(run: rundir.Run, iterations: int, progress: bool) -> None:
    """Run ``run`` to ``iterations`` in total, then write its outputs; Ctrl-C, a spent
    budget and a person who stops labelling end it cleanly with what to do next."""
    try:
        rundir.execute(run, iterations, progress=progress)
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    except jax.errors.JaxRuntimeError as e:
        if jax.process_count() == 1:
            raise
        lost_process(run.directory, e)
    except Stopped as stop:  # e.g. a model budget spent: a clean end, outputs written
        echo(
            f"\nStopped at iteration {int(np.max(stop.state.iteration))}: {stop.reason}. Checkpoint saved in "
            f"{run.directory}.\nContinue with a larger budget: {resume_hint(run.directory)} --max-requests N",
            err=True,
        )
        run.state = stop.state
        for path in rundir.write_outputs(run):
            echo(f"wrote {path}")
        return
    except Interrupted as stop:
        echo(
            f"\nInterrupted at iteration {int(np.max(stop.state.iteration))}; checkpoint saved in "
            f"{run.directory}.\nResume with: {resume_hint(run.directory)}",
            err=True,
        )
        leave(130)
    except feedback.JudgingStopped:
        stopped_labelling(run.directory)
        return
    paths = rundir.write_outputs(run)
    if run.seeds > 1:
        scores = []
        for k in range(run.seeds):
            found = map_elites.seed_state(run.state, k).archive.results()
            scores.append(float(found.qd_score(run.task.qd_offset)))
            echo(f"seed {int(run.config['seed']) + k}: {len(found)} elites (coverage {float(found.coverage()):.1%}, "
                 f"QD-score {scores[-1]:.6g})")  # fmt: skip
        spread = f" ± {np.std(scores, ddof=1):.4g} (sd)" if len(scores) > 1 else ""
        mesh = run.mesh()
        where = f" over {mesh.size} devices" if mesh is not None else ""
        echo(f"{int(np.max(run.state.iteration))} iterations, {run.seeds} seeds{where}: mean QD-score "
             f"{np.mean(scores):.6g}{spread}")  # fmt: skip
    else:
        found = run.state.archive.results()
        echo(
            f"{int(run.state.iteration)} iterations: {len(found)} elites "
            f"(coverage {float(found.coverage()):.1%}, QD-score {float(found.qd_score(run.task.qd_offset)):.6g})"
        )
    written = [rundir.CONFIG, rundir.CHECKPOINT] + ([rundir.METRICS] if run.seeds == 1 else [])
    echo("wrote " + ", ".join([os.path.join(run.directory, p) for p in written] + paths))
    logged = os.path.join(run.directory, rundir.TRACKERS)
    if run.config.get("log") and os.path.isfile(logged):
        with open(logged, encoding="utf-8") as f:
            ids = json.load(f)
        where = {"tensorboard": os.path.join(run.directory, "tensorboard"),
                 "mlflow": f"{ids.get('mlflow', {}).get('tracking_uri')}, run {ids.get('mlflow', {}).get('run_id')}",
                 "wandb": f"{os.path.join(run.directory, 'wandb')}, run {ids.get('wandb', {}).get('run_id')}"}  # fmt: skip
        echo("logged to " + "; ".join(f"{name}: {where[name]}" for name in run.config["log"]))


def run_config(options: dict[str, Any]) -> dict[str, Any]:
    """The run's config from the command's options (unknown task or emitter options
    refused with the valid ones)."""
    task = options["task"]
    task_opts = dict(options["task_options"])
    if options["domain"] is not None:
        if task != "text":
            raise click.UsageError("--domain is an option of --task text")
        task_opts["domain"] = options["domain"]
    if task == "text":
        try:
            feedback.domains.get(task_opts.get("domain", "opinions"))
        except (KeyError, feedback.DomainError) as e:
            raise click.UsageError(message(e)) from e
    emitter = options["emitter"] or ("lmx" if task == "text" else "iso-line")
    emitter_opts = dict(options["emitter_options"])
    check_options("task", task, task_opts, tasks.options(task))
    check_options("emitter", emitter, emitter_opts, registry.emitter_options(emitter))
    try:
        trackers.preflight(options["log"])
    except ImportError as e:
        raise click.UsageError(str(e)) from e
    except ConnectionError as e:
        raise click.ClickException(str(e)) from e
    skip = ("domain", "out", "overwrite", "progress", "log", "seeds", "compile_cache")
    config = {k: v for k, v in options.items() if k not in skip}
    if options["log"]:
        config["log"] = sorted(set(options["log"]))
    if options["seeds"] > 1:
        config["seeds"] = options["seeds"]
        if task == "text" or emitter == "lmx" or options.get("descriptors", "task") != "task":
            raise click.UsageError(
                "several --seeds run as one compiled computation: text tasks, the LMX emitter and --descriptors "
                f"{options.get('descriptors')} run host work between steps (run the seeds one after another)"
            )
    config.update(task_options=task_opts, emitter=emitter, emitter_options=emitter_opts,
                  refit_over=options["iterations"],
                  batch_size=options["batch_size"] or tasks.default_batch_size(task))  # fmt: skip
    return config


@click.command()
@config_option
@search_options
@archive_options
@descriptor_options
@model_options
@output_options
@process_options
def run(**options: Any) -> None:
    """Run MAP-Elites and write the archive, metrics and plots to a run directory."""
    enable_compile_cache(options["compile_cache"])
    join_processes(options.pop("coordinator"), options.pop("num_processes"), options.pop("process_id"))
    config = run_config(options)
    check_seed_devices(rundir.seeds_of(config), options["devices"])
    same_in_every_process({**config, "out": options["out"]})
    out = options["out"]
    if out is None:
        if jax.process_count() > 1:
            raise click.UsageError("--out is needed in a run of several processes (the same directory in each)")
        out = os.path.join("runs", f"{config['task']}-{time.strftime('%Y%m%d-%H%M%S')}")
    taken = distributed.agree(os.path.exists(os.path.join(out, rundir.CONFIG)))  # the writer's view
    if taken and not options["overwrite"]:
        raise click.UsageError(f"{out} already holds a run; continue it with `{resume_hint(out)}` or pass --overwrite")
    with model_endpoint(config) as runtime:
        try:
            started = rundir.create(out, config, runtime)
        except feedback.JudgingStopped:
            stopped_labelling(out)
            return
        except StopRun as e:
            raise click.ClickException(f"{e} before the initial batch was rated; nothing to resume") from e
        except (ValueError, TypeError, KeyError) as e:
            raise click.UsageError(message(e)) from e
        except KeyboardInterrupt:
            click.echo(
                "\nInterrupted while setting up the run, before its first checkpoint; nothing to resume.", err=True
            )
            leave(130)
        execute(started, config["iterations"], options["progress"])


@click.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="New total number of iterations [default: the run's].")  # fmt: skip
@click.option(
    "--devices",
    type=Devices(),
    default=None,
    help="Devices to split each batch (with several seeds: the seeds) over [default: the run's].",
)
@budget_options
@progress_option
@compile_cache_option
@process_options
def resume(directory, iterations, devices, max_requests, max_tokens, progress, compile_cache, coordinator,
           num_processes, process_id):  # fmt: skip
    """Continue a run from its last checkpoint."""
    enable_compile_cache(compile_cache)
    join_processes(coordinator, num_processes, process_id)
    config = read_config(directory)
    check_seed_devices(rundir.seeds_of(config), config.get("devices", "auto") if devices is None else devices)
    try:
        rundir.check_seeds_behind(directory)  # before anything is written
    except (rundir.RunDirError, checkpoint.CheckpointError) as e:
        raise click.ClickException(str(e)) from e
    changes = {k: v for k, v in [("iterations", iterations), ("max_requests", max_requests),
                                  ("max_tokens", max_tokens)] if v is not None}  # fmt: skip
    if changes:
        config.update(changes)
    same_in_every_process({**config, "devices_given": devices})
    if changes:
        rundir.write_json(os.path.join(directory, rundir.CONFIG), config)  # the writer's
    with model_endpoint(config) as runtime:
        try:
            loaded = rundir.load(directory, devices, runtime, config=config)
        except (rundir.RunDirError, checkpoint.CheckpointError, ValueError) as e:
            raise click.ClickException(str(e)) from e
        if loaded.seeds > 1:
            rundir.sync_seeds(loaded)
        total = int(loaded.config["iterations"])
        done = int(np.max(distributed.to_host(loaded.state.iteration)))
        if done >= total:
            if not rundir.outputs_current(directory):  # stopped after its last checkpoint, before its outputs
                paths = rundir.write_outputs(loaded)
                echo(f"{directory} had run all {total} iterations; wrote its outputs: {', '.join(paths)}")
                return
            echo(f"{directory} is complete ({done} of {total} iterations); pass --iterations to go further.")
            return
        try:
            trackers.preflight(config.get("log", []))
        except (ImportError, ConnectionError) as e:
            raise click.ClickException(f"{directory} logs to {', '.join(config['log'])}: {e}") from e
        echo(f"resuming {directory} at iteration {done} of {total}")
        execute(loaded, total, progress)
