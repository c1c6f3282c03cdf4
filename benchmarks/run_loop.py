"""What ``qdkit.map_elites.run`` costs around its compiled chunks.

``run`` makes a private copy of the state it is given (unless donated), hands the
device a chunk of ``chunk_size`` iterations at a time and reads each chunk's metrics
back. This script times whole ``run`` calls, as a user makes them, on workloads where
that host work is a visible share: the arm default of ``qdkit run`` (one seed, whose
1,000 iterations take about 25 ms, and 16 seeds over the CPU devices) and the
core-throughput rastrigin (Iso+LineDD, batch 1,024, 100 genes, 100 x 100 grid), each at
the default chunk of 100 iterations and at chunks of 10 (ten times the host work per
iteration). Each row is the median of ``--repeats`` calls after a warm-up, with the
QD-score the run ends with: two versions of qdkit run on the same machine print the
same scores when they compute the same runs.

To compare two versions, copy this file into the other checkout's ``benchmarks/`` and run
it there and here, alternating.

    python benchmarks/run_loop.py
    python benchmarks/run_loop.py --quick        # smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from qdkit import xla  # noqa: E402

xla.use_cpu_devices(xla.cpus())  # before JAX starts: the seeds row splits the seeds over them

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import machine  # noqa: E402  (benchmarks/machine.py)
from own_kernels import arm, rastrigin  # noqa: E402  (benchmarks/own_kernels.py: the same workloads)

from qdkit import map_elites  # noqa: E402


def measure(make, iterations: int, chunk_size: int, repeats: int) -> tuple[float, float, float]:
    """Median ms per ``run`` call of ``iterations``, ns per evaluation, the last QD-score
    (the mean over seeds)."""
    task, archive, emitter, key, mesh = make()
    state = map_elites.init(key, task, archive, emitter, mesh=mesh)
    state, _ = map_elites.run(state, task, emitter, 2 * chunk_size, chunk_size=chunk_size, mesh=mesh)  # compiles
    jax.block_until_ready(state)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        state, metrics = map_elites.run(state, task, emitter, iterations, chunk_size=chunk_size, mesh=mesh)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    evaluations = iterations * emitter.batch_size * (map_elites.num_seeds(state) or 1)
    return seconds * 1e3, seconds / evaluations * 1e9, float(jnp.mean(jnp.asarray(metrics["qd_score"][-1])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args()
    devices = len(jax.devices())
    workloads = [
        ("arm default, one seed", lambda: arm(None), 1000),
        (f"arm default, 16 seeds over {devices} device(s)", lambda: arm(16), 1000),
        ("rastrigin 1024 x 100, Iso+LineDD", lambda: rastrigin(1024, 100, "iso_line"), 300),
    ]
    if args.quick:
        args.repeats = 1
        workloads = [(name, make, 20) for name, make, _ in workloads]
    print(f"# run_loop  jax {jax.__version__}  {machine.cpu()}  devices: {devices}  repeats: {args.repeats}")
    print("| workload | iterations per call | chunk | ms per call | ns/eval | QD-score at the end |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, make, iterations in workloads:
        for chunk in (100, 10):
            ms, ns, score = measure(make, iterations, chunk, args.repeats)
            print(f"| {name} | {iterations:,} | {chunk} | {ms:,.1f} | {ns:,.1f} | {score:,.2f} |")


if __name__ == "__main__":
    main()
