"""QDHF on the robotic arm or the maze: learned descriptors against ground truth, AURORA
and random.

Every method runs MAP-Elites (Iso+LineDD) for ``--iterations`` iterations into a 32 x 32
grid; they differ only in the descriptors:

- ``ground truth``: the task's own descriptors (arm: the end-effector position; maze:
  the robot's final position), the upper reference;
- ``qdhf``: a linear projection of the task's features to 2-D (arm: the joint
  positions; maze: the path sampled at 10 steps), trained from ``--judgments``
  simulated similarity judgments (judge: the ground truth), refitted at 0, 10, 25, 50%
  of the run;
- ``aurora``: the same projection trained as the encoder of an autoencoder on the
  elites' features, on the same schedule;
- ``random``: the random initial projection (bounds refitted on the same schedule);
- ``rotated ground truth``: MAP-Elites on the ground truth rotated by 30 degrees about
  the centre of its bounds (same bounds). Judgments only compare distances, so a
  learned latent is at best the ground truth up to a rotation; this row shows what
  the scoring grid's orientation alone costs.

Each final archive is *scored with the ground truth*: its elites are inserted into a
32 x 32 ground-truth grid, and the table gives that archive's QD-score (normalised by
the number of cells and the fitness offset, so 1 is every cell at the best fitness) and
coverage, mean ± standard deviation over seeds. Then the QDHF score against the
judgment budget and against judge noise (flip probability). Nothing here is a test: it
prints what it measured.

    python benchmarks/qdhf.py                      # the arm (about 10 minutes on 2 cores)
    python benchmarks/qdhf.py --task maze          # the maze
    python benchmarks/qdhf.py --quick              # smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import emitters  # noqa: E402
import feedback  # noqa: E402
from qdkit import GridArchive, map_elites, tasks  # noqa: E402

SHAPE = (32, 32)


def ground_truth_score(task, archive) -> tuple[float, float]:
    occupied = np.asarray(archive.occupied)
    genotypes = jax.tree.map(lambda g: jnp.asarray(np.asarray(g)[occupied]), archive.genotypes)
    truth = GridArchive.create(shape=SHAPE, lower=task.lower, upper=task.upper, example_genotype=task.example_genotype)
    evaluation = task.score(jax.random.key(0), genotypes)
    truth, _ = truth.add(genotypes, evaluation.fitness, evaluation.descriptors)
    qd = float(truth.qd_score(task.qd_offset)) / (truth.num_cells * -task.qd_offset)
    return qd, float(truth.coverage())


#: Per task: how it is built, Iso+LineDD settings, batch and default iterations (features: ``task.features``).
SETTINGS = {
    "arm": {"options": {"dof": 8}, "sigmas": (0.01, 0.1), "batch": 256, "iterations": 1000},
    "maze": {"options": {"episode_length": 250}, "sigmas": (0.005, 0.05), "batch": 128, "iterations": 200},
}  # fmt: skip


ROTATION = 30.0


def rotated(task, degrees: float):
    """``task`` with its descriptors rotated by ``degrees`` about the centre of its bounds
    (same bounds): MAP-Elites on the ground truth in another frame. A learned metric
    can only be known up to such a rotation (judgments compare distances), so this is
    the reference for how much the *scoring* grid's orientation costs."""
    theta = np.deg2rad(degrees)
    r = jnp.asarray([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], jnp.float32)
    centre = jnp.asarray((np.asarray(task.lower) + np.asarray(task.upper)) / 2, jnp.float32)

    def score(key, genotypes):
        evaluation = task.score(key, genotypes)
        return evaluation._replace(descriptors=(evaluation.descriptors - centre) @ r.T + centre)

    return dataclasses.replace(task, score=score)


def run(method: str, seed: int, iterations: int, *, task_name: str, judgments: int = 1000, flip: float = 0.0,
        refits=feedback.qdhf.DEFAULT_REFITS):  # fmt: skip
    setting = SETTINGS[task_name]
    task = tasks.get(task_name, **setting["options"])
    emitter = emitters.iso_line(setting["batch"], *setting["sigmas"], lower=task.genotype_lower,
                                upper=task.genotype_upper)  # fmt: skip
    key = jax.random.key(seed)
    if method in ("ground truth", "rotated ground truth"):
        archive = GridArchive.create(
            shape=SHAPE, lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
        )
        searched = task if method == "ground truth" else rotated(task, ROTATION)
        state = map_elites.init(key, searched, archive, emitter)
        state, _ = map_elites.run(state, searched, emitter, iterations)
        return ground_truth_score(task, state.archive)
    projection = feedback.Projection(task.feature_dim, 2)  # the task's features, to 2-D
    archive = feedback.LearnedArchive.create(
        shape=SHAPE, projection=projection, params=projection.init(jax.random.fold_in(key, 1)),
        example_genotype=task.example_genotype,
    )  # fmt: skip
    judge = feedback.SimulatedJudge.from_task(task, flip=flip, seed=seed)
    refitter = feedback.Refitter(
        judge if method == "qdhf" else None, iterations=iterations, judgments=judgments, method=method, seed=seed,
        refits=refits,
    )  # fmt: skip
    chunk = max(1, iterations // 20)
    state = refitter.start(map_elites.init(key, task, archive, emitter))
    state, _ = map_elites.run(state, task, emitter, iterations, chunk_size=chunk, callbacks=[refitter])
    return ground_truth_score(task, state.archive)


def table(rows: dict[str, list[tuple[float, float]]], label: str) -> None:
    print(f"| {label} | QD-score (ground truth) | coverage (ground truth) |")
    print("|---|---:|---:|")
    for name, scores in rows.items():
        qd, cov = np.asarray(scores).T
        print(f"| {name} | {qd.mean():.3f} ± {qd.std():.3f} | {cov.mean():.1%} ± {cov.std():.1%} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(SETTINGS), default="arm")
    parser.add_argument("--iterations", type=int, default=None, help="default: 1000 (arm), 200 (maze)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--plot", default=None, help="write the budget and noise curves to this PNG")
    parser.add_argument("--no-sweeps", action="store_true", help="only the methods table (no budget or noise sweep)")
    parser.add_argument("--refits", default=None, help="refit fractions, e.g. 0,0.1,0.25,0.5 (the default)")
    parser.add_argument("--methods", default="ground truth,rotated ground truth,qdhf,aurora,random",
                        help="comma-separated methods of the first table")  # fmt: skip
    args = parser.parse_args()
    budgets, flips, sweep_seeds = [100, 300, 1000, 3000], [0.0, 0.1, 0.2, 0.3], min(args.seeds, 3)
    setting = SETTINGS[args.task]
    args.iterations = args.iterations or setting["iterations"]
    if args.quick:
        args.iterations, args.seeds, budgets, flips, sweep_seeds = 20, 1, [40], [0.2], 1
    start = time.perf_counter()
    print(f"# {args.task} {setting['options']}, features {'joint positions' if args.task == 'arm' else 'the path at 10 steps'}, {args.iterations} iterations x "
          f"{setting['batch']}, {SHAPE[0]}x{SHAPE[1]} grid, {args.seeds} seeds")  # fmt: skip
    methods = {}
    refits = feedback.qdhf.DEFAULT_REFITS if args.refits is None else [float(f) for f in args.refits.split(",")]
    print(f"# refits at {list(refits)} of the run")
    for method in [m.strip() for m in args.methods.split(",")]:
        methods[method] = [run(method, s, args.iterations, task_name=args.task, refits=refits)
                           for s in range(args.seeds)]  # fmt: skip
    table(methods, "method (1000 judgments)")
    if args.no_sweeps:
        print(f"# {time.perf_counter() - start:.0f} s in all")
        return
    budget_rows = {
        f"{b} judgments": [
            run("qdhf", s, args.iterations, task_name=args.task, judgments=b) for s in range(sweep_seeds)
        ]
        for b in budgets
    }
    table(budget_rows, "QDHF budget")
    noise_rows = {
        f"flip {f:.0%}": [run("qdhf", s, args.iterations, task_name=args.task, flip=f) for s in range(sweep_seeds)]
        for f in flips
    }
    table(noise_rows, "QDHF judge noise (1000 judgments)")
    print(f"# {time.perf_counter() - start:.0f} s in all")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
        for ax, rows, xs, xlabel in (
            (axes[0], budget_rows, budgets, "judgments"),
            (axes[1], noise_rows, flips, "judge flip probability"),
        ):
            qd = np.array([[s[0] for s in v] for v in rows.values()])
            ax.errorbar(xs, qd.mean(1), yerr=qd.std(1), marker="o", label="QDHF")
            for name, style in (("ground truth", "--"), ("aurora", ":"), ("random", "-.")):
                ax.axhline(np.mean([s[0] for s in methods[name]]), ls=style, color="gray", label=name)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("QD-score on ground truth")
        axes[0].set_xscale("log")
        axes[1].legend(fontsize=8)
        fig.savefig(args.plot, dpi=120)
        print(f"# wrote {args.plot}")


if __name__ == "__main__":
    main()
