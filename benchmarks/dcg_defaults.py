"""DCG-ME on the maze with ``qdkit run``'s TD3 defaults against those of qdkit 0.4.0.

:class:`emitters.TD3Config`'s defaults are now the official DCG-MAP-Elites code's
minibatch of 100 transitions and PG learning rate of 5e-3; qdkit 0.4.0 had 256 and
1e-3. Everything else is ``qdkit run --task maze --emitter dcg``'s default (3,000
critic steps per iteration, 150 PG steps per PG offspring, critic 256x256, 250-step
episodes) but the batch, ``--batch`` (128, as in startup.py), and the 32 x 32 grid
over the final position. Each setting runs
``--iterations`` iterations for each of ``--seeds`` seeds (one after the other). Prints
the seconds per iteration after the first (compiled) one, the final QD-score
(normalised by the cells and the fitness range: 1 would be every cell at the goal) and
the coverage.

    python benchmarks/dcg_defaults.py                      # 30 iterations, 2 seeds (about 12 minutes)
    python benchmarks/dcg_defaults.py --quick              # smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import machine  # benchmarks/machine.py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from qdkit import GridArchive, map_elites, registry, tasks  # noqa: E402

SETTINGS = {
    "now (official code)": {},
    "qdkit 0.4.0": {"train_batch_size": 256, "pg_lr": 1e-3},
}
SHAPE = (32, 32)


def run(task, batch: int, options: dict, seed: int, iterations: int) -> tuple[float, float, float]:
    """``(seconds per iteration after the first, normalised QD-score, coverage)``."""
    emitter = registry.build_emitter("dcg", task, batch, **options)
    archive = GridArchive.create(shape=SHAPE, lower=task.lower, upper=task.upper,
                                 example_genotype=task.example_genotype)  # fmt: skip
    state = map_elites.init(jax.random.key(seed), task, archive, emitter)
    state, _ = map_elites.run(state, task, emitter, 1)  # compiles
    jax.block_until_ready(state.archive.fitness)
    start = time.perf_counter()
    state, _ = map_elites.run(state, task, emitter, iterations - 1)
    jax.block_until_ready(state.archive.fitness)
    seconds = (time.perf_counter() - start) / max(iterations - 1, 1)
    scale = SHAPE[0] * SHAPE[1] * -task.qd_offset
    return seconds, float(state.archive.qd_score(task.qd_offset)) / scale, float(state.archive.coverage())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 iterations, small TD3")
    args = parser.parse_args()
    if args.iterations < 2:
        parser.error("--iterations must be at least 2 (the first one compiles)")
    extra = {}
    if args.quick:
        args.iterations, args.seeds, args.batch = 3, 1, 16
        extra = {"critic_steps": 4, "pg_steps": 2, "critic_hidden": (16,), "buffer_size": 10_000}
    task = tasks.get("maze")
    print(f"# dcg_defaults.py — {machine.cpu()}, jax {jax.__version__}; maze + DCG, batch {args.batch}, "
          f"{args.iterations} iterations, {args.seeds} seed(s)")  # fmt: skip
    print("| TD3 defaults | options | s per iteration | QD-score (normalised) | coverage |")
    print("|---|---|---:|---:|---:|")
    for name, options in SETTINGS.items():
        rows = [run(task, args.batch, {**options, **extra}, seed, args.iterations) for seed in range(args.seeds)]
        seconds, qd, coverage = (np.array(column) for column in zip(*rows))
        shown = " ".join(f"-e {k}={v}" for k, v in options.items()) or "(defaults)"
        print(f"| {name} | `{shown}` | {np.mean(seconds):.2f} | {np.mean(qd):.4f} "
              f"({', '.join(f'{x:.4f}' for x in qd)}) | {np.mean(coverage):.1%} "
              f"({', '.join(f'{x:.1%}' for x in coverage)}) |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
