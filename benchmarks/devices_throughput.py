"""MAP-Elites throughput with the batch split over 1, 2 and 4 devices.

On a CPU machine the devices are forced (``XLA_FLAGS=--xla_force_host_platform_device_count``,
set here before JAX starts): they share the same cores, so no gain is expected — the
point is that the sharded path runs and what it costs. On a GPU machine with several
GPUs it measures the real thing.

    python benchmarks/devices_throughput.py [--iterations 200] [--repeats 3]
    python benchmarks/devices_throughput.py --processes 2   # plus 2 processes x 2 devices

With ``--processes P`` the script also starts itself P times on 127.0.0.1 (each with
4 / P forced devices, joined by ``qdkit.distributed``) and measures the same workload on
the mesh of all their devices: the row "P processes x D devices". It then prints the
bytes that the replicated archive's gather moves per iteration, for this workload and
for a brax-sized policy (ant_omni's MLP with two hidden layers of 128, batch 256).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import jax  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import qdkit  # noqa: E402
from emitters import iso_line  # noqa: E402
from qdkit import distributed, sharding  # noqa: E402


def workload(batch):
    task = qdkit.tasks.get("rastrigin", dims=100)
    archive = qdkit.GridArchive.create(
        shape=(100, 100), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    return task, archive, iso_line(batch, 0.005, 0.05, lower=0.0, upper=1.0)


def prepared(task, archive, emitter, mesh):
    state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter, mesh=mesh)
    state, _ = qdkit.map_elites.run(state, task, emitter, 5, mesh=mesh)  # compile
    return state


def rate(task, emitter, state, mesh, iterations, batch) -> float:
    start = time.perf_counter()
    out, _ = qdkit.map_elites.run(state, task, emitter, iterations, mesh=mesh)
    jax.block_until_ready(out.archive.fitness)
    return batch * iterations / (time.perf_counter() - start)


def child(args) -> None:
    """One of ``--processes`` processes: the workload on the mesh of all processes' devices."""
    distributed.initialize()
    task, archive, emitter = workload(args.batch)
    mesh = sharding.batch_mesh()
    state = prepared(task, archive, emitter, mesh)
    rates = [rate(task, emitter, state, mesh, args.iterations, args.batch) for _ in range(args.repeats)]
    if distributed.is_writer():
        print(f"RATE {statistics.median(rates)}", flush=True)


def processes_row(args, base: float) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    per = 4 // args.processes
    procs = []
    for i in range(args.processes):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={per}",
               "QDKIT_COORDINATOR": f"127.0.0.1:{port}", "QDKIT_NUM_PROCESSES": str(args.processes),
               "QDKIT_PROCESS_ID": str(i)}  # fmt: skip
        command = [sys.executable, __file__, "--child", "--iterations", str(args.iterations), "--repeats",
                   str(args.repeats), "--batch", str(args.batch)]  # fmt: skip
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    outputs = [p.communicate()[0] for p in procs]
    rate = float(next(line.split()[1] for line in outputs[0].splitlines() if line.startswith("RATE")))
    print(f"| {args.processes} processes x {per} devices | {rate:,.0f} | {rate / base:.2f} |")


def gather_bytes(args) -> None:
    """Bytes the replicated archive's gather moves per iteration: every device receives
    the rows scored on the others (genotype, fitness, descriptors)."""
    import numpy as np

    def row_bytes(task) -> int:
        genotype = sum(int(np.prod(np.shape(x))) * 4 for x in jax.tree.leaves(task.example_genotype))
        return genotype + 4 + 4 * task.descriptor_dim

    rastrigin = row_bytes(workload(args.batch)[0])
    ant = qdkit.tasks.get("ant_omni", hidden=128)
    print(f"\nGather per iteration, (devices - 1) x batch x row bytes in total, (devices - 1) / devices x batch x row "
          f"into each device; ant_omni policy sizes {ant.policy.sizes}:")  # fmt: skip
    print("| workload | batch | bytes per row | devices | bytes into each device | bytes in total |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, batch, row in (("rastrigin-100", args.batch, rastrigin), ("ant_omni MLP 128x128", 256, row_bytes(ant))):
        for n in (2, 4, 8):
            print(f"| {name} | {batch} | {row:,} | {n} | {(n - 1) * batch * row // n:,} | {(n - 1) * batch * row:,} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--processes", type=int, default=0, help="also measure this many processes (2 or 4)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.processes and args.processes not in (2, 4):
        parser.error("--processes must be 2 or 4 (4 forced devices in all)")
    devices = jax.devices()
    print(f"# devices_throughput  jax {jax.__version__}  {len(devices)} devices: {devices[0].device_kind}")
    task, archive, emitter = workload(args.batch)
    counts = [n for n in (1, 2, 4, 8) if n <= len(devices)]
    meshes = {n: None if n == 1 else sharding.batch_mesh(n) for n in counts}
    states = {n: prepared(task, archive, emitter, meshes[n]) for n in counts}
    results = {n: [] for n in counts}
    for _ in range(args.repeats):  # interleaved, so a slow spell of the machine hits every count
        for n in counts:
            results[n].append(rate(task, emitter, states[n], meshes[n], args.iterations, args.batch))
    print("| devices | median evals/s | vs 1 device |")
    print("|---:|---:|---:|")
    base = statistics.median(results[1])
    for n in counts:
        median = statistics.median(results[n])
        print(f"| {n} | {median:,.0f} | {median / base:.2f} |")
    if args.processes:
        processes_row(args, base)
    gather_bytes(args)


if __name__ == "__main__":
    main()
