"""``qdkit plot``, ``qdkit export`` and ``qdkit render``: what a run found, as figures,
files and drawings."""

from __future__ import annotations

import os

import click
import numpy as np

from qdkit import rundir
from qdkit.cli.options import load_run, report_paths, run_directory


@click.command()
@click.argument("directories", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), default="comparison.png", show_default=True,
              help="Comparison figure (several runs).")  # fmt: skip
@click.option("--metric", "metrics", multiple=True, default=("qd_score", "coverage"), show_default=True,
              help="Metric to compare (repeatable).")  # fmt: skip
def plot(directories, out, metrics):
    """Plot one run (heatmap, curves) or compare several runs' metrics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qdkit import callbacks
    from qdkit import plot as qplot

    logged = {}
    for directory in directories:
        report_paths(rundir.write_outputs(load_run(directory, seeds_ok=True)))
        name = os.path.basename(os.path.normpath(directory))
        seeds = rundir.seeds_of(rundir.read_config(directory))
        if seeds > 1:  # one group: the mean of the seeds with a band
            paths = [os.path.join(rundir.seed_directory(directory, k), rundir.METRICS) for k in range(seeds)]
            group = [callbacks.read_metrics(p) for p in paths if os.path.exists(p)]
            if group:
                logged[name] = group
            continue
        metrics_path = os.path.join(directory, rundir.METRICS)
        if os.path.exists(metrics_path):
            logged[name] = callbacks.read_metrics(metrics_path)
    if len(directories) > 1:
        groups = [m for value in logged.values() for m in ([value] if isinstance(value, dict) else value)]
        known = set.intersection(*(set(m) for m in groups)) if groups else set()
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


@click.command("export")
@run_directory
@click.option("--format", "fmt", type=click.Choice(["csv", "npz"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file [default: DIRECTORY/archive.FORMAT].")  # fmt: skip
def export_cmd(directory, fmt, out):
    """Export a run's elites (a threshold archive's result archive) as CSV or NumPy .npz."""
    from qdkit import export

    loaded = load_run(directory)
    archive = loaded.state.archive.results()
    out = out or os.path.join(directory, f"archive.{fmt}")
    if fmt == "csv":
        names = None if archive.learned else list(loaded.task.descriptor_names)
        export.save_csv(archive, out, descriptor_names=names, decode=loaded.task.decode)
    else:
        export.save_npz(archive, out)
    click.echo(f"wrote {len(archive)} elites to {out}")


@click.command()
@run_directory
@click.option("--cell", type=click.IntRange(min=0), default=None, help="The elite of this cell [default: the best].")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="PNG [default: DIRECTORY/rollout-CELL.png].")
def render(directory, cell, out):
    """Draw the rollout of one elite of a policy-task run (e.g. the maze path)."""
    import jax

    loaded = load_run(directory)
    task, archive = loaded.task, loaded.state.archive.results()
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
