"""The insertion's per-cell reductions: carried buffers against segment operations.

An insertion reduces the batch per cell: the best row of each cell (both archives), and
a threshold archive's batch rule. With ``jax.ops.segment_max`` and friends each
reduction fills a buffer of the archive's ``C`` cells, every iteration. qdkit's loop
carries the buffers from one iteration to the next instead and puts back only the
batch's cells (``qdkit.archive.CellBuffers``). This script traces qdkit's loop both ways
in one process (``qdkit.archive.CARRY_CELL_BUFFERS`` off while tracing the segment
operations; the buffers carried at every size, ``CARRY_FROM_CELLS`` set to 0), from the
same state, and times them in turn (medians of ``--repeats``,
the order alternating), on the core-throughput workload: rastrigin scored with
``jnp.cos``, 100 genes, Iso+LineDD, batch 1,024 (``--batch``), the state handed over (``donate=True``)
so that no copy of the archive is timed. Archives: grids of 10^3 to 10^6 cells, a CVT of
10^6 uniformly drawn centroids (as ``scaling.py`` makes them), and threshold (CMA-MAE)
grids of 10^4 to 10^6 cells (learning rate 0.1). It prints ns per evaluation, which way
qdkit's loop takes for that archive (the buffers from ``CARRY_FROM_CELLS`` cells), how
many segment operations each way's loop traced (none with the buffers), and checks that
both ways end with the same archive, bit for bit (off a CPU, a threshold archive's sums
may round differently either way: "to rounding"); it exits with status 1 when a check
fails.

    python benchmarks/cell_buffers.py
    python benchmarks/cell_buffers.py --quick        # smoke run
    python benchmarks/cell_buffers.py --batch 64 --iterations 1000 --archives threshold:16384,grid:30000

``--batch`` sets the offspring per iteration (the smaller the batch, the more a cost of
the cells weighs) and ``--archives KIND:CELLS,...`` (kinds ``grid``, ``cvt``,
``threshold``) replaces the list of archives.

Copied into a checkout from before the carried buffers, it runs there too: both columns
then time that code (the setting does not exist there).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import machine  # benchmarks/machine.py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import core_throughput  # noqa: E402  (benchmarks/core_throughput.py: the workload)
from scaling import centroids_for  # noqa: E402  (benchmarks/scaling.py: its uniformly drawn centroids)

import qdkit  # noqa: E402
from emitters import iso_line  # noqa: E402
from qdkit import archive as archive_module  # noqa: E402
from qdkit import map_elites  # noqa: E402

#: (label, archive kind, cells): the grids are square (the side rounded).
CONFIGS = (
    ("grid", "grid", 1_000),
    ("grid", "grid", 10_000),
    ("grid", "grid", 100_000),
    ("grid", "grid", 1_000_000),
    ("CVT", "cvt", 1_000_000),
    ("threshold grid (alpha 0.1)", "threshold", 10_000),
    ("threshold grid (alpha 0.1)", "threshold", 100_000),
    ("threshold grid (alpha 0.1)", "threshold", 1_000_000),
)
SEGMENT_OPS = ("segment_max", "segment_min", "segment_sum")
QUICK = (("grid", "grid", 1_000), ("CVT", "cvt", 2_000), ("threshold grid (alpha 0.1)", "threshold", 1_000))


def make_archive(task, kind: str, cells: int) -> qdkit.Archive:
    common = {"lower": task.lower, "upper": task.upper, "example_genotype": task.example_genotype}
    if kind == "cvt":
        return qdkit.CVTArchive.create(centroids=centroids_for(cells), **common)
    side = round(cells**0.5)
    options = {"learning_rate": 0.1, "threshold_min": -5000.0} if kind == "threshold" else {}
    return qdkit.GridArchive.create(shape=(side, side), **common, **options)


def runner(kind: str, cells: int, carried: bool, iterations: int, batch: int = core_throughput.BATCH):
    """qdkit's loop traced with the buffers carried or not (a new emitter: traced
    anew); ``timed()`` gives ns per evaluation, ``holder["state"]`` the state."""
    task = core_throughput.scored_task("jnp.cos")
    emitter = iso_line(batch, core_throughput.ISO, core_throughput.LINE, lower=0.0, upper=1.0)
    archive = make_archive(task, kind, cells)
    state = map_elites.init(jax.random.key(0), task, archive, emitter, donate=True)
    # (read while tracing; None: a checkout from before the buffers, without them);
    # the segment operations traced in the loop are counted (0 when the buffers are used)
    traced, originals = [], {name: getattr(jax.ops, name) for name in SEGMENT_OPS}
    for name, op in originals.items():
        setattr(jax.ops, name, lambda *a, _op=op, **k: traced.append(1) or _op(*a, **k))
    defaults = {name: getattr(archive_module, name, None) for name in ("CARRY_CELL_BUFFERS", "CARRY_FROM_CELLS")}
    archive_module.CARRY_CELL_BUFFERS, archive_module.CARRY_FROM_CELLS = carried, 0
    try:
        state, _ = map_elites.run(state, task, emitter, iterations, donate=True)  # compiles
        jax.block_until_ready(state)
    finally:
        for name, value in defaults.items():
            setattr(archive_module, name, value)
        for name, op in originals.items():
            setattr(jax.ops, name, op)
    holder = {"state": state, "cells": state.archive.num_cells, "segment_ops": len(traced)}

    def timed() -> float:
        start = time.perf_counter()
        holder["state"], _ = map_elites.run(holder["state"], task, emitter, iterations, donate=True)
        jax.block_until_ready(holder["state"])
        return (time.perf_counter() - start) / (iterations * emitter.batch_size) * 1e9

    return timed, holder


def same_archive(a, b) -> str:
    """``yes`` when bit for bit the same; off a CPU, ``to rounding`` when only the last
    bits differ (a threshold archive's sums are scatter-adds, whose order a GPU does not
    fix, either way); else ``NO``."""
    pairs = [(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
    if all(np.array_equal(x, y) for x, y in pairs):
        return "yes"
    close = all(np.allclose(x, y, rtol=1e-5, atol=0.0, equal_nan=True) for x, y in pairs)
    return "to rounding" if close and jax.default_backend() != "cpu" else "NO"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200, help="iterations per timed call")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of each way, alternating")
    parser.add_argument("--batch", type=int, default=core_throughput.BATCH, help="offspring per iteration")
    parser.add_argument("--archives", default=None,
                        help="KIND:CELLS,... (kinds: grid, cvt, threshold) instead of the default list")  # fmt: skip
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small archives (with --archives, those), few iterations")  # fmt: skip
    args = parser.parse_args()
    if args.iterations < 1 or args.repeats < 1 or args.batch < 1:
        parser.error("--iterations, --repeats and --batch must be at least 1")
    configs = QUICK if args.quick else CONFIGS
    if args.archives is not None:
        labels = {kind: label for label, kind, _ in CONFIGS}
        try:
            configs = tuple((labels[k], k, int(c)) for k, c in (a.split(":") for a in args.archives.split(",")))
        except (KeyError, ValueError):
            parser.error(f"--archives: KIND:CELLS,... with kinds {', '.join(labels)}; got {args.archives!r}")
        if any(c < 4 for _, _, c in configs):
            parser.error("--archives: at least 4 cells an archive")
    if args.quick:
        args.iterations, args.repeats = 5, 1
    print(f"# cell_buffers  jax {jax.__version__}  {machine.cpu()}  batch {args.batch}, "
          f"{core_throughput.DIMS} genes, {args.iterations} iterations a call, medians of {args.repeats}")  # fmt: skip
    print("| archive | cells | segment operations, ns/eval | carried buffers, ns/eval | speed-up | same archive "
          "| segment operations traced in the loop, each way | qdkit's loop takes |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---|---:|---|")
    start = getattr(archive_module, "CARRY_FROM_CELLS", None)
    failed = False
    for label, kind, cells in configs:
        ways = {carried: runner(kind, cells, carried, args.iterations, args.batch) for carried in (False, True)}
        times = {carried: [] for carried in ways}
        for r in range(args.repeats):
            for carried in (False, True) if r % 2 == 0 else (True, False):
                times[carried].append(ways[carried][0]())
        before, after = statistics.median(times[False]), statistics.median(times[True])
        same = same_archive(ways[False][1]["state"].archive, ways[True][1]["state"].archive)
        counts = ways[False][1]["segment_ops"], ways[True][1]["segment_ops"]
        # (in a checkout from before the buffers both ways trace them)
        failed |= same == "NO" or (start is not None and (counts[0] == 0 or counts[1] != 0))
        cells = ways[True][1]["cells"]
        takes = "segment operations" if start is None or cells < start else "carried buffers"
        print(f"| {label} | {cells:,} | {before:,.0f} | {after:,.0f} | {before / after:.2f}× | "
              f"{same} | {counts[0]} / {counts[1]} | {takes} |", flush=True)  # fmt: skip
        del ways
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
