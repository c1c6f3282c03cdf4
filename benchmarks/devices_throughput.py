"""MAP-Elites throughput with the batch split over 1, 2 and 4 devices.

On a CPU machine the devices are forced (``XLA_FLAGS=--xla_force_host_platform_device_count``,
set here before JAX starts): they share the same cores, so no gain is expected — the
point is that the sharded path runs and what it costs. On a GPU machine with several
GPUs it measures the real thing.

    python benchmarks/devices_throughput.py [--iterations 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import qdkit  # noqa: E402
from emitters import iso_line  # noqa: E402
from qdkit import sharding  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args()
    devices = jax.devices()
    print(f"# devices_throughput  jax {jax.__version__}  {len(devices)} devices: {devices[0].device_kind}")
    task = qdkit.tasks.get("rastrigin", dims=100)
    archive = qdkit.GridArchive.create(
        shape=(100, 100), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    emitter = iso_line(args.batch, 0.005, 0.05, lower=0.0, upper=1.0)
    counts = [n for n in (1, 2, 4, 8) if n <= len(devices)]
    runs = {}
    for n in counts:
        mesh = None if n == 1 else sharding.batch_mesh(n)
        state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter, mesh=mesh)
        state, _ = qdkit.map_elites.run(state, task, emitter, 5, mesh=mesh)  # compile
        runs[n] = (mesh, state)
    results = {n: [] for n in counts}
    for _ in range(args.repeats):
        for n in counts:
            mesh, state = runs[n]
            start = time.perf_counter()
            out, _ = qdkit.map_elites.run(state, task, emitter, args.iterations, mesh=mesh)
            jax.block_until_ready(out.archive.fitness)
            results[n].append(args.batch * args.iterations / (time.perf_counter() - start))
    print("| devices | median evals/s | vs 1 device |")
    print("|---:|---:|---:|")
    base = statistics.median(results[1])
    for n in counts:
        median = statistics.median(results[n])
        print(f"| {n} | {median:,.0f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
