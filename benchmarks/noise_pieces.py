"""Iso+LineDD's Gaussian noise made as one loop or in two pieces (``qdkit.rng.normal``).

``qdkit.rng.normal`` makes a draw of at least ``2 * PIECE_ELEMENTS`` elements on a CPU
backend as two pieces that an optimisation barrier keeps apart. This script runs qdkit's
own loop (``map_elites.run``) on rastrigin with Iso+LineDD both ways, from the same
state, for a few batch sizes and genotype sizes: "one loop" sets ``PIECE_ELEMENTS`` so
high that every draw is one concatenated loop (the code before the pieces), "pieces" is
the default. It prints the time per evaluation of each (medians of interleaved
repeats), and checks that both ways end with the same archive, bit for bit.

    python benchmarks/noise_pieces.py
    taskset -c 0 python benchmarks/noise_pieces.py    # the process on one CPU
    python benchmarks/noise_pieces.py --configs 256x8,36x10,16x4 --evaluations 100000 --piece-elements 16
    python benchmarks/noise_pieces.py --against 1024  # pieces from 1,024 elements (qdkit's) against from 2,048
    python benchmarks/noise_pieces.py --quick         # smoke run

``--against N`` compares qdkit's ``PIECE_ELEMENTS`` with ``N`` instead of with one loop:
the left column is then the draws made in pieces from ``2 N`` elements.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import machine  # benchmarks/machine.py

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import qdkit  # noqa: E402
from emitters import iso_line  # noqa: E402
from qdkit import rng  # noqa: E402

CONFIGS = ((1024, 100), (256, 100), (64, 100), (4096, 100), (1024, 1000))


def runner(batch: int, dims: int, one_loop: bool, iterations: int, piece_elements: int | None = None):
    """qdkit's loop on rastrigin (``dims`` genes, 100 x 100 grid), compiled with the
    noise made as one loop or in pieces; returns ``timed()`` and the state getter."""
    task = qdkit.tasks.get("rastrigin", dims=dims)
    archive = qdkit.GridArchive.create(
        shape=(100, 100), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    emitter = iso_line(batch, 0.005, 0.05, lower=0.0, upper=1.0)
    default = rng.PIECE_ELEMENTS
    rng.PIECE_ELEMENTS = 1 << 62 if one_loop else (piece_elements or default)  # read when the loop is traced
    try:
        state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter)
        state, _ = qdkit.map_elites.run(state, task, emitter, iterations)  # compiles
        jax.block_until_ready(state.archive.fitness)
    finally:
        rng.PIECE_ELEMENTS = default
    holder = {"state": state}

    def timed() -> float:
        start = time.perf_counter()
        holder["state"], _ = qdkit.map_elites.run(holder["state"], task, emitter, iterations)
        jax.block_until_ready(holder["state"].archive.fitness)
        return (time.perf_counter() - start) / (iterations * batch) * 1e9

    return timed, holder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--evaluations", type=int, default=300 * 1024, help="evaluations per timed run")
    parser.add_argument("--configs", help="batch x genes pairs, e.g. 256x8,36x10 (default: the table's five)")
    parser.add_argument(
        "--piece-elements", type=int, help="the pieces' threshold (default: qdkit's), to try small draws"
    )
    parser.add_argument("--against", type=int, help="a threshold to compare with (instead of one loop)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    configs = CONFIGS
    if args.configs:
        configs = tuple(tuple(int(v) for v in pair.split("x")) for pair in args.configs.split(","))
    if args.quick:
        args.repeats, args.evaluations, configs = 1, 4 * 1024, CONFIGS[:1]
    threshold = args.piece_elements or rng.PIECE_ELEMENTS
    print(f"# noise_pieces  jax {jax.__version__}  {machine.cpu()}  CPUs for this process: {qdkit.xla.cpus()}  "
          f"pieces from {2 * threshold:,} elements")  # fmt: skip
    left = "one loop" if args.against is None else f"pieces from {2 * args.against:,}"
    print(f"| batch x genes | {left} ns/eval | pieces ns/eval | difference | same archive |")
    print("|---|---:|---:|---:|---|")
    for batch, dims in configs:
        iterations = max(1, args.evaluations // batch)
        if args.against is None:
            runs = {
                name: runner(batch, dims, name == "one loop", iterations, args.piece_elements)
                for name in ("one loop", "pieces")
            }
        else:
            runs = {
                "against": runner(batch, dims, False, iterations, args.against),
                "pieces": runner(batch, dims, False, iterations, args.piece_elements),
            }
        times = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, (timed, _) in runs.items():
                times[name].append(timed())
        one, pieces = (statistics.median(times[name]) for name in runs)
        a, b = (runs[name][1]["state"].archive for name in runs)
        same = all(bool(jnp.array_equal(x, y, equal_nan=True)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
        print(f"| {batch} x {dims} | {one:,.0f} | {pieces:,.0f} | {pieces - one:+,.0f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
