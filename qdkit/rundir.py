"""Run directories: configuration, checkpoint, metrics log and outputs on disk.

Layout of a run directory::

    config.json       the run's configuration (what ``qdkit run`` was asked)
    checkpoint.npz    the latest full run state (see qdkit.checkpoint)
    metrics.jsonl     one JSON object per iteration
    centroids.npy     CVT archives only: the centroids, so a resume skips k-means
    archive.npz       the final elites (qdkit.export.save_npz)
    judgments.npz     learned-descriptor runs only: the judgments so far and the refit count
                      (a readable copy: each checkpoint holds the same, committed with the
                      run state it belongs to)
    heatmap.png, metrics.png

Host-side helpers; none of this is jittable. In a run of several processes
(:mod:`qdkit.distributed`) every process calls the same functions and only process 0
(the writer) writes the directory; all must see the same directory (a shared
filesystem) to resume.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from qdkit import callbacks, checkpoint, distributed, export, map_elites, registry, rng, sharding, trackers

CONFIG = "config.json"
CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
CENTROIDS = "centroids.npy"
ARCHIVE = "archive.npz"
JUDGMENTS = "judgments.npz"
TRACKERS = "trackers.json"  # the experiment-tracker runs a resume continues


class RunDirError(Exception):
    """A directory that is not (or not yet) a usable qdkit run directory."""


@dataclass
class Run:
    """A run rebuilt from its directory."""

    directory: str
    config: dict[str, Any]
    task: Any
    emitter: Any
    state: map_elites.RunState
    devices: int | str | None = None  # a number, "auto", or None for the config's choice
    refitter: Any = None  # the QDHF refit schedule of a run with learned descriptors

    @property
    def seeds(self) -> int:
        """Seeds run together (``qdkit run --seeds``); 1 for a run of one."""
        return seeds_of(self.config)

    def mesh(self):
        """The device mesh for this run (``None`` for one device); validates the count."""
        if map_elites.is_host(self.task, self.emitter):
            return None
        return _mesh(self.config, self.emitter.batch_size, self.devices)


def _mesh(config: dict[str, Any], batch_size: int, devices: int | str | None = None):
    """The mesh for the run's recorded device choice, or for ``devices`` when given (a
    run of several processes uses all their devices unless told otherwise: the recorded
    choice may come from another layout). A run of several seeds splits its seeds over
    the devices rather than its batch."""
    if devices is None:
        devices = "auto" if jax.process_count() > 1 else config.get("devices", "auto")
    if seeds_of(config) > 1:
        return sharding.resolve_seeds(devices, seeds_of(config))
    return sharding.resolve(devices, batch_size)


def read_config(directory: str) -> dict[str, Any]:
    path = os.path.join(directory, CONFIG)
    if not os.path.isfile(path):
        raise RunDirError(f"{directory} is not a qdkit run directory (no {CONFIG})")
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise RunDirError(f"{path} is unreadable: {e}") from e
    if isinstance(config, dict) and config.get("emitter") in registry.GRADIENT_EMITTERS:
        config.setdefault("td3_defaults", dict(registry.TD3_BEFORE_RECORDING))  # written by qdkit 0.4.0 or earlier
    return config


def write_json(path: str, value: Any) -> None:
    """Write ``value`` as JSON atomically (the writer process only)."""
    if not distributed.is_writer():
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def seeds_of(config: dict[str, Any]) -> int:
    """The number of seeds of a run's config (1 when absent)."""
    return int(config.get("seeds") or 1)


def seed_directory(directory: str, k: int) -> str:
    """Seed ``k``'s run directory inside a run of several seeds."""
    return os.path.join(directory, f"seed-{k}")


def seed_config(config: dict[str, Any], k: int) -> dict[str, Any]:
    """The config of seed ``k`` of a run of several seeds: the run's, with its own
    seed, as a run of one (its directory can be plotted, exported or resumed alone)."""
    one = {k2: v for k2, v in config.items() if k2 not in ("seeds", "log")}
    one["seed"] = int(config.get("seed", 0)) + k
    return one


def seed_keys(config: dict[str, Any]) -> jax.Array:
    """The run's PRNG key, or one key per seed (``seed``, ``seed + 1``, ...)."""
    seed = int(config["seed"])
    if seeds_of(config) == 1:
        return rng.key(seed)
    return rng.key([seed + k for k in range(seeds_of(config))])


DOMAIN = "domain.toml"
REPORT = "elites.html"


def create(directory: str, config: dict[str, Any], runtime: dict[str, Any] | None = None) -> Run:
    """Start a run: write the config, build everything, evaluate the initial batch,
    and save the iteration-0 checkpoint.

    ``runtime`` holds settings used to build the run but not recorded in its config
    (the base URL of a local model server started for this process). A config that
    cannot work is refused (:func:`qdkit.registry.check`) before anything is written.
    With several processes, only the writer writes."""
    config = registry.record_defaults(config)
    registry.check({**config, **(runtime or {})})
    writer = distributed.is_writer()
    held_run = os.path.isfile(os.path.join(directory, CONFIG))  # --overwrite: its outputs go
    if writer:
        os.makedirs(directory, exist_ok=True)
    domain = config.get("task_options", {}).get("domain")
    if config.get("task") == "text" and domain and os.path.isfile(str(domain)):
        shutil.copyfile(domain, os.path.join(directory, DOMAIN))  # so the run resumes without the original
        config = {**config, "domain_copy": DOMAIN}
    usage = os.path.join(directory, registry.LLM_USAGE)
    if writer and os.path.exists(usage):  # a fresh run starts a fresh budget; the reply cache is kept
        os.remove(usage)
    task, archive, emitter = registry.build({**config, **(runtime or {})}, directory=directory)
    # the device count is checked before any file is written
    seeds = seeds_of(config)
    host = map_elites.is_host(task, emitter)
    mesh = None if host else _mesh(config, emitter.batch_size, config.get("devices", "auto"))
    centroids = registry.cvt_centroids(archive)
    if writer and centroids is not None:
        np.save(os.path.join(directory, CENTROIDS), centroids)
    write_json(os.path.join(directory, CONFIG), config)
    metrics_path = os.path.join(directory, METRICS)
    if writer and os.path.exists(metrics_path):
        os.remove(metrics_path)
    if writer and held_run:  # what an earlier run in this directory wrote and this one may not
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            if name.startswith("seed-") and os.path.isdir(path):
                shutil.rmtree(path)
            elif name in (ARCHIVE, "heatmap.png", "metrics.png", "comparison.png", REPORT) or (
                name == CENTROIDS and centroids is None
            ):
                os.remove(path)
    for k in range(seeds if seeds > 1 else 0):
        if writer:
            os.makedirs(seed_directory(directory, k), exist_ok=True)
            write_json(os.path.join(seed_directory(directory, k), CONFIG), seed_config(config, k))
            if centroids is not None:
                np.save(os.path.join(seed_directory(directory, k), CENTROIDS), centroids)
            seed_metrics = os.path.join(seed_directory(directory, k), METRICS)
            if os.path.exists(seed_metrics):
                os.remove(seed_metrics)
    state = map_elites.init(seed_keys(config), task, archive, emitter, mesh=mesh, donate=True)
    for name in (JUDGMENTS, registry.HUMAN_JUDGMENTS, TRACKERS):
        if writer and os.path.exists(os.path.join(directory, name)):
            os.remove(os.path.join(directory, name))
    refitter = registry.build_refitter({**config, **(runtime or {})}, directory)
    run = Run(directory, config, task, emitter, state, refitter=refitter)
    save_checkpoint(run)
    refit_if_due(run)  # the refit at iteration 0 (a person may stop it: resume asks again)
    return run


def host_state(run: Run):
    """What a checkpoint of ``run`` holds besides the run state: the refitter's
    judgments, refit count and random streams (``None`` without learned descriptors)."""
    return None if run.refitter is None else run.refitter.state_arrays


class RunCheckpointer(callbacks.Checkpointer):
    """The run's checkpoint (with the refitter's host state), and in a run of several
    seeds each seed's own, in its directory, after the one of all seeds."""

    def __init__(self, run: Run, every: int, *, background: bool = False):
        super().__init__(
            os.path.join(run.directory, CHECKPOINT), every, run.config, host=host_state(run), background=background
        )
        self.run = run

    def _write(self, state, host) -> None:
        seeds = self.run.seeds > 1
        if seeds:
            state = checkpoint.on_host(state)  # one transfer for the run's checkpoint and the seeds'
        super()._write(state, host)
        if seeds:
            directories = [seed_directory(self.run.directory, k) for k in range(self.run.seeds)]
            configs = [seed_config(self.run.config, k) for k in range(self.run.seeds)]
            for directory in directories:
                os.makedirs(directory, exist_ok=True)
            checkpoint.save_seeds([os.path.join(d, CHECKPOINT) for d in directories], state, configs)
            for directory, config in zip(directories, configs):
                write_json(os.path.join(directory, CONFIG), config)  # e.g. a new iteration total


def check_seeds_behind(directory: str) -> None:
    """Refuse to continue a run of several seeds when one of its seed directories was
    continued on its own past the run's checkpoint: continuing would drop that work.
    Reads the checkpoints' metadata only (nothing is loaded or written)."""
    config = read_config(directory)
    if seeds_of(config) == 1:
        return
    top = checkpoint.read_meta(os.path.join(directory, CHECKPOINT)).get("iteration")
    for k in range(seeds_of(config)):
        path = os.path.join(seed_directory(directory, k), CHECKPOINT)
        try:
            seen = checkpoint.read_meta(path).get("iteration")
        except checkpoint.CheckpointError:
            continue  # missing or unreadable: the run writes it again
        if top is not None and seen is not None and seen > top:
            raise RunDirError(
                f"{seed_directory(directory, k)} was continued on its own to iteration {seen}, past the run's "
                f"checkpoint ({top}): continuing {directory} would drop that. Continue that seed directory alone, "
                "or remove it to let the run write it again."
            )


def sync_seeds(run: Run) -> None:
    """Bring the seed checkpoints and configs of a run of several seeds that lag behind
    the run's (a kill between the run's checkpoint and the seeds', a new iteration
    total, a removed seed directory) up to it; after :func:`check_seeds_behind`."""
    top = int(np.max(distributed.to_host(run.state.iteration)))
    for k in range(run.seeds):
        directory = seed_directory(run.directory, k)
        try:
            seen = checkpoint.read_meta(os.path.join(directory, CHECKPOINT)).get("iteration")
            stale = read_config(directory) != seed_config(run.config, k)
        except (checkpoint.CheckpointError, RunDirError):
            seen, stale = None, True
        if seen != top or stale:
            RunCheckpointer(run, 1).save(run.state)
            return


def save_checkpoint(run: Run) -> None:
    """Checkpoint the run's state with the refitter's host state in the same file, then
    refresh the readable copy of the judgments."""
    if not distributed.is_writer():
        return
    RunCheckpointer(run, 1).save(run.state)
    if run.refitter is not None:
        run.refitter.save(os.path.join(run.directory, JUDGMENTS))


def refit_if_due(run: Run) -> bool:
    """Perform a refit that is due at the run's current iteration (the one at iteration
    0, or one a person stopped), then save the judgments and a checkpoint."""
    refitter = run.refitter
    if refitter is None:
        return False
    due = refitter.refit_iterations()
    if refitter.done >= len(due) or due[refitter.done] > int(run.state.iteration):
        return False
    run.state = refitter.start(run.state)  # a person who stops it is asked again on resume
    save_checkpoint(run)  # the refit and the state it made are committed together
    return True


def load(
    directory: str,
    devices: int | str | None = None,
    runtime: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> Run:
    """Rebuild a run from its directory and its latest checkpoint.

    ``devices`` (a number or ``"auto"``) overrides the run's recorded choice;
    ``runtime`` as for :func:`create`; ``config`` replaces the directory's (e.g. with a
    new iteration total that the writer is writing at the same time)."""
    config = read_config(directory) if config is None else config
    built = {**config, **(runtime or {})}
    centroids = None
    if config.get("archive") == "cvt":
        path = os.path.join(directory, CENTROIDS)
        if not os.path.isfile(path):
            raise RunDirError(f"{directory}: CVT run without {CENTROIDS}")
        centroids = np.load(path)
    task, archive, emitter = registry.build(built, centroids, directory)
    registry.check_processes(task, emitter, config.get("descriptors") or "task")
    seeds = seeds_of(config)
    if seeds > 1 and jax.process_count() > 1:
        raise RunDirError(f"{directory} holds a run of {seeds} seeds, which runs in one process")
    template = map_elites.state_template(task, archive, emitter, seeds if seeds > 1 else None)
    # several seeds over devices: each device reads its seeds, no first copy on one
    mesh = _mesh(config, emitter.batch_size, devices) if seeds > 1 else None
    split = None if mesh is None else sharding.seed_sharding(mesh)
    state = checkpoint.load(os.path.join(directory, CHECKPOINT), template, split)
    refitter = registry.build_refitter(built, directory)
    if refitter is not None:
        host = checkpoint.load_host(os.path.join(directory, CHECKPOINT))
        path = os.path.join(directory, JUDGMENTS)
        if host:  # the refits this checkpoint's state reflects, saved with it
            try:
                refitter.restore(host)
            except (KeyError, ValueError, TypeError) as e:
                raise RunDirError(f"{directory}: the checkpoint's judgments are corrupt ({e})") from e
        elif not os.path.isfile(path):  # a checkpoint written before judgments were kept in it
            raise RunDirError(f"{directory}: run with learned descriptors but no {JUDGMENTS}")
        else:
            try:
                refitter.load(path)
            except ValueError as e:
                raise RunDirError(str(e)) from e
    return Run(directory, config, task, emitter, state, devices, refitter)


def execute(run: Run, iterations: int, *, progress: bool = True) -> map_elites.RunState:
    """Continue ``run`` until ``iterations`` in total, logging and checkpointing.

    Raises:
        qdkit.Interrupted: after Ctrl-C, once a final checkpoint has been written.
        ValueError: a device count this machine or batch cannot use.
    """
    mesh = run.mesh()
    refit_if_due(run)
    every = int(run.config.get("checkpoint_every", 100))
    ckpt = RunCheckpointer(run, every, background=True)  # (written while the next chunk computes)
    start = int(np.max(distributed.to_host(run.state.iteration)))
    writer = distributed.is_writer()
    if run.seeds > 1:  # each seed's rows in its own directory
        paths = [os.path.join(seed_directory(run.directory, k), METRICS) for k in range(run.seeds)]
    else:
        paths = [os.path.join(run.directory, METRICS)]
    if writer:
        for path in paths:
            callbacks.truncate_metrics(path, start)
    logs = [callbacks.MetricsLog(path) for path in paths]
    log = logs[0] if run.seeds == 1 else callbacks.PerSeed(logs)
    live = getattr(run.task, "stats", None) if map_elites.is_host(run.task, run.emitter) else None
    bar = callbacks.ProgressBar(
        iterations, initial=start, disable=not (progress and writer), desc=run.config["task"], live=live
    )
    logging = open_trackers(run, start, every) if writer else []
    hooks = [log, ckpt, bar, *logging] if writer else []  # the other processes compute only
    chunk = min(100, every)
    if run.refitter is not None:  # refit first, so the checkpoint after it holds the new archive
        hooks.insert(0, _saving(run, ckpt))
        chunk = math.gcd(chunk, *[i for i in run.refitter.refit_iterations() if i > 0])
    try:
        state, _ = map_elites.run(
            run.state,
            run.task,
            run.emitter,
            max(0, iterations - start),
            chunk_size=chunk,
            callbacks=hooks,
            mesh=mesh,
            donate=True,  # run.state is replaced by the result (or by the interrupted state)
        )
    except map_elites.Interrupted as interrupted:  # also Stopped (a spent budget)
        if writer:
            ckpt.save(interrupted.state)
        stopped = isinstance(interrupted, map_elites.Stopped)  # a spent budget ends the run cleanly
        close_trackers(logging, interrupted.state, "finished" if stopped else "killed")
        raise
    except BaseException as error:
        with contextlib.suppress(Exception):  # (the write in flight finishes; its error would hide this one)
            ckpt.wait()
        close_trackers(logging, None, "killed" if isinstance(error, KeyboardInterrupt) else "failed")
        raise
    finally:
        bar.close()
    if writer:
        ckpt.save(state)
    close_trackers(logging, state)
    run.state = state
    return state


def open_trackers(run: Run, start: int, every: int) -> list:
    """The experiment trackers of the run's ``log`` setting (:mod:`qdkit.trackers`),
    continuing the tracker runs recorded in ``trackers.json`` if there are any (a
    resume), and recording the new ones. A run of several seeds gives each seed its own
    tracker runs, recorded in its own directory (:class:`SeedTrackers`)."""
    names = run.config.get("log") or []
    if not names:
        return []
    archive = run.state.archive
    labels = ([f"learned {i}" for i in range(archive.descriptor_dim)] if archive.learned
              else list(run.task.descriptor_names))  # fmt: skip
    title = f"{run.config['task']} / {run.config['emitter']}"
    if run.seeds == 1:
        return _open_trackers(names, run.directory, run.config, start, every, labels, title)
    top = os.path.basename(os.path.abspath(run.directory))
    per_seed = [
        _open_trackers(names, seed_directory(run.directory, k), seed_config(run.config, k), start, every, labels,
                       f"{title} (seed {int(run.config.get('seed', 0)) + k})", run_name=f"{top}-seed-{k}")
        for k in range(run.seeds)
    ]  # fmt: skip
    return [SeedTrackers([opened[i] for opened in per_seed]) for i in range(len(names))]


def _open_trackers(names, directory, config, start, every, labels, title, run_name=None) -> list:
    path = os.path.join(directory, TRACKERS)
    previous = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
    opened = []
    for name in names:
        opened.append(trackers.build(
            name, directory, config, every=every, previous=previous.get(name),
            resume_from=start if name in previous else None, descriptor_names=labels, title=title, run_name=run_name,
        ))  # fmt: skip
        previous[name] = opened[-1].ids()
    write_json(path, previous)
    return opened


class SeedTrackers(callbacks.PerSeed):
    """One tracker of each seed of a run of several seeds: each gets its seed's metrics
    rows and state (:class:`qdkit.callbacks.PerSeed`), and closes with its seed's final
    heatmap."""

    def close(self, state=None, status: str = "finished") -> None:
        _close_each(
            [
                (tracker, None if state is None else map_elites.seed_state(state, k))
                for k, tracker in enumerate(self.callbacks)
            ],
            status,
        )


def close_trackers(opened: list, state, status: str = "finished") -> None:
    """Log the last heatmap (of ``state``, if given) and close each tracker as
    ``status``; one that fails to close does not keep the others open (the first error
    is raised after all were tried)."""
    _close_each([(tracker, state) for tracker in opened], status)


def _close_each(closings: list, status: str) -> None:
    """``tracker.close(state, status)`` for each ``(tracker, state)``, all of them
    tried; then the first error, if any."""
    errors = []
    for tracker, state in closings:
        try:
            tracker.close(state, status)
        except Exception as e:  # noqa: BLE001 - closing the others comes first
            errors.append(e)
    if errors:
        raise errors[0]


def _saving(run: Run, ckpt):
    """The refitter as a callback that checkpoints the refitted state at once, with the
    judgments in the same file (a kill can never resume into a state that disagrees
    with the refits done), and checkpoints before passing on a person's stop (the refit
    is asked again on resume)."""
    path = os.path.join(run.directory, JUDGMENTS)

    def hook(state, metrics):
        try:
            replaced = run.refitter(state, metrics)
        except registry.JudgingStopped:
            ckpt.save(state)
            raise
        if replaced is not None:
            ckpt.save(replaced)
            run.refitter.save(path)  # the readable copy
        return replaced

    return hook


@contextlib.contextmanager
def _replacing(path: str):
    """Yield a temporary path beside ``path`` (same extension); rename it over ``path``
    once written, so a kill leaves the old file or the new one, never half of one."""
    root, ext = os.path.splitext(path)
    tmp = f"{root}.partial{ext}"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def outputs_current(directory: str) -> bool:
    """Whether the outputs of the run's last checkpoint have been written: ``archive.npz``
    (written last, atomically; the last seed's in a run of several) exists and is newer
    than ``checkpoint.npz``."""
    seeds = seeds_of(read_config(directory))
    if seeds > 1:
        return all(outputs_current_at(seed_directory(directory, k), directory) for k in range(seeds))
    return outputs_current_at(directory, directory)


def outputs_current_at(where: str, directory: str) -> bool:
    """Whether ``where``'s ``archive.npz`` is newer than ``directory``'s checkpoint."""
    archive, ckpt = os.path.join(where, ARCHIVE), os.path.join(directory, CHECKPOINT)
    return os.path.isfile(archive) and os.path.getmtime(archive) >= os.path.getmtime(ckpt)


def write_outputs(run: Run) -> list[str]:
    """Final archive export and PNG plots (of the archive's results: a threshold
    archive's result archive); returns the paths written. Each file is written
    atomically and ``archive.npz`` last, so :func:`outputs_current` tells whether a
    killed run got them all. With several processes only the writer writes (the others
    return no paths)."""
    if not distributed.is_writer():
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qdkit import plot

    if run.seeds > 1:
        return _write_seed_outputs(run)
    archive = run.state.archive.results()
    paths = [os.path.join(run.directory, ARCHIVE)]
    names = list(run.task.descriptor_names)
    if archive.learned:  # latent axes
        names = [f"learned {i}" for i in range(archive.descriptor_dim)]

    figure = plot.archive_figure(
        archive, descriptor_names=names, title=f"{run.config['task']} / {run.config['emitter']}: {len(archive)} elites"
    )
    paths.append(os.path.join(run.directory, "heatmap.png"))
    with _replacing(paths[-1]) as tmp:
        figure.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close("all")

    if getattr(run.task, "decode", None) is not None:  # texts: a readable page of the elites
        from qdkit import report

        paths.append(os.path.join(run.directory, REPORT))
        with _replacing(paths[-1]) as tmp:
            report.elites_html(
                archive, run.task.decode, tmp, descriptor_names=names, qd_offset=run.task.qd_offset,
                title=f"{run.config['task']} ({run.config.get('task_options', {}).get('domain', '')}) / "
                f"{run.config['emitter']}",
            )  # fmt: skip

    metrics_path = os.path.join(run.directory, METRICS)
    if os.path.exists(metrics_path):
        logged = callbacks.read_metrics(metrics_path)
        if logged:
            axes = plot.metric_curves(logged)
            paths.append(os.path.join(run.directory, "metrics.png"))
            axes[0].figure.tight_layout()
            with _replacing(paths[-1]) as tmp:
                axes[0].figure.savefig(tmp, dpi=110)
            plt.close("all")
    with _replacing(paths[0]) as tmp:
        export.save_npz(archive, tmp)
    return paths


def _write_seed_outputs(run: Run) -> list[str]:
    """A run of several seeds: ``comparison.png`` (QD-score and coverage: the mean over
    seeds with a 95% band), then each seed's outputs in its directory (the last seed's
    ``archive.npz`` last: :func:`outputs_current` looks at it)."""
    import matplotlib.pyplot as plt

    from qdkit import plot

    paths: list[str] = []
    directories = [seed_directory(run.directory, k) for k in range(run.seeds)]
    logged = [callbacks.read_metrics(os.path.join(d, METRICS)) if os.path.exists(os.path.join(d, METRICS)) else {}
              for d in directories]  # fmt: skip
    if all(logged):
        figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
        label = f"{run.config['task']} / {run.config['emitter']}"
        for ax, key in zip(axes, ("qd_score", "coverage")):
            plot.compare_runs({label: logged}, key=key, ax=ax)
        figure.tight_layout()
        paths.append(os.path.join(run.directory, "comparison.png"))
        with _replacing(paths[-1]) as tmp:
            figure.savefig(tmp, dpi=110)
        plt.close("all")
    for k, directory in enumerate(directories):
        one = Run(directory, seed_config(run.config, k), run.task, run.emitter, map_elites.seed_state(run.state, k))
        paths += write_outputs(one)
    return paths
