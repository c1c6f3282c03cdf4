"""What the per-iteration metrics cost as the archive grows: running totals against a
pass over the cells, A/B in one process.

Archives keep running totals (``qdkit.archive.Totals``: the QD-score for the task's
offset, the fitness sum, the best fitness), updated by every insertion, and the metrics
read them. An archive that keeps no offset (``qd_offset=None``) has its QD-score summed
over every cell each iteration instead, as every metric was before the totals. This
script compiles ``qdkit.map_elites``' chunk (its compiled loop of ``--iterations``
iterations, called directly: ``map_elites.run`` would give the archive the task's
offset) for both kinds of state, on grids of 10^4 to 10^6 cells, and times them in turn,
``--repeats`` times; the table gives medians. Workload: the core-throughput rastrigin
(100-D, batch 1,024, Iso+LineDD, qdkit's vectorised cosine).

The "pass" column sums only the QD-score over the cells; before the totals, the best
and the mean fitness were reductions over the cells as well (fused with it by XLA).

    python benchmarks/metrics_cost.py
    python benchmarks/metrics_cost.py --quick      # smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import machine  # benchmarks/machine.py

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

import core_throughput  # noqa: E402

import qdkit  # noqa: E402
from emitters import iso_line  # noqa: E402
from qdkit import map_elites  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50, help="iterations per timed call")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sides", default="100,316,1000", help="grid sides (cells = side^2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: a 32x32 grid, few iterations")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.repeats, args.sides = 3, 1, "32"
    print(f"# metrics_cost.py  jax {jax.__version__}  {jax.devices()[0].device_kind}  {machine.cpu()}  "
          f"python {platform.python_version()}  {args.iterations} iterations x {args.repeats}")  # fmt: skip
    task = core_throughput.scored_task("fastmath")
    emitter = iso_line(core_throughput.BATCH, core_throughput.ISO, core_throughput.LINE, lower=0.0, upper=1.0)
    print("\n| cells | running totals µs/iteration | QD-score pass µs/iteration | pass − totals µs |")
    print("|---:|---:|---:|---:|")
    for side in (int(s) for s in args.sides.split(",")):
        archive = qdkit.GridArchive.create(
            shape=(side, side), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
        )
        kept = map_elites.init(jax.random.key(0), task, archive, emitter)
        states = {"totals": kept, "pass": kept.replace(archive=kept.archive.replace(qd_offset=None))}
        n = jnp.int32(args.iterations)
        runners = {}
        for name, state in states.items():
            state = jax.tree.map(jnp.copy, state)  # the chunk donates its input
            state, _ = map_elites._run_chunk(state, n, task, emitter, args.iterations, None)  # compile, warm up
            jax.block_until_ready(state)
            runners[name] = state
        times: dict[str, list[float]] = {name: [] for name in runners}
        for _ in range(args.repeats):
            for name in runners:
                start = time.perf_counter()
                runners[name], metrics = map_elites._run_chunk(runners[name], n, task, emitter, args.iterations, None)
                jax.block_until_ready((runners[name], metrics))
                times[name].append((time.perf_counter() - start) / args.iterations * 1e6)
        totals, summed = statistics.median(times["totals"]), statistics.median(times["pass"])
        print(f"| {side * side:,} | {totals:,.0f} | {summed:,.0f} | {summed - totals:+,.0f} |", flush=True)
        del runners, states, kept


if __name__ == "__main__":
    main()
