"""Offspring written once (``qdkit.xla.own_kernels``) against offspring fused into
every consumer, in qdkit's own loop.

The Iso+LineDD and Gaussian emitters compute their offspring inside a conditional on a
CPU backend, so XLA writes them once instead of computing them again in the scoring,
the finite check, the cell index and the archive write. Traced inside
``qdkit.xla.plain_kernels()``, the same code makes the plain call: the offspring fused
into every consumer, as before ``own_kernels`` (the emitters otherwise as now: their
noise drawn before the offspring's arithmetic). For each workload this script traces
both, from the same state, times them interleaved (medians of ``--repeats``, the order
alternating), and checks that both end with the same archive, bit for bit.

Workloads: rastrigin with Iso+LineDD on a 100 x 100 grid (the core-throughput
workload, ``batch x genes``), the same with the Gaussian emitter, and the arm default of
``qdkit run`` (one seed, and 16 seeds vmapped, over the CPU devices as
``qdkit run --seeds`` runs them).

    python benchmarks/own_kernels.py
    python benchmarks/own_kernels.py --quick         # smoke run
"""

from __future__ import annotations

import argparse
import contextlib
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

import qdkit  # noqa: E402
from emitters import gaussian, iso_line  # noqa: E402
from qdkit import map_elites, sharding  # noqa: E402

RASTRIGIN = ((1024, 100), (256, 100), (4096, 100), (1024, 1000))


def rastrigin(batch: int, dims: int, emitter_name: str):
    task = qdkit.tasks.get("rastrigin", dims=dims)
    archive = qdkit.GridArchive.create(
        shape=(100, 100), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    if emitter_name == "iso_line":
        emitter = iso_line(batch, 0.005, 0.05, lower=0.0, upper=1.0)
    else:
        emitter = gaussian(batch, 0.01, lower=0.0, upper=1.0)
    return task, archive, emitter, jax.random.key(0), None


def seeds_mesh(seeds: int):
    devices = len(jax.devices())
    return sharding.batch_mesh(devices) if devices > 1 and seeds % devices == 0 else None


def arm(seeds: int | None):
    task = qdkit.tasks.get("arm", dof=8)
    archive = qdkit.GridArchive.create(
        shape=(32, 32), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    emitter = iso_line(256, 0.01, 0.1, lower=task.genotype_lower, upper=task.genotype_upper)
    if seeds is None:
        return task, archive, emitter, jax.random.key(0), None
    keys = jnp.stack([jax.random.key(k) for k in range(seeds)])
    return task, archive, emitter, keys, seeds_mesh(seeds)


def runner(make, own: bool, iterations: int):
    """The loop traced with or without the offspring's own kernels; ``timed()`` gives
    ns per evaluation, ``holder["state"]`` the state."""
    task, archive, emitter, key, mesh = make()  # a new emitter: traced anew
    with contextlib.nullcontext() if own else xla.plain_kernels():  # (read while tracing)
        state = map_elites.init(key, task, archive, emitter, mesh=mesh)
        state, _ = map_elites.run(state, task, emitter, iterations, mesh=mesh)  # compiles
        jax.block_until_ready(state)
    holder = {"state": state}
    seeds = map_elites.num_seeds(state) or 1

    def timed() -> float:
        start = time.perf_counter()
        holder["state"], _ = map_elites.run(holder["state"], task, emitter, iterations, mesh=mesh)
        jax.block_until_ready(holder["state"])
        return (time.perf_counter() - start) / (iterations * emitter.batch_size * seeds) * 1e9

    return timed, holder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--evaluations", type=int, default=300 * 1024, help="evaluations per timed run (rastrigin)")
    parser.add_argument("--arm-iterations", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    configs = [(f"rastrigin {b} x {d}, Iso+LineDD", b, d, "iso_line") for b, d in RASTRIGIN]
    configs.append(("rastrigin 1024 x 100, Gaussian", 1024, 100, "gaussian"))
    workloads = [
        (name, (lambda b=b, d=d, e=e: rastrigin(b, d, e)), max(1, args.evaluations // b)) for name, b, d, e in configs
    ]
    workloads += [
        ("arm default, one seed", lambda: arm(None), args.arm_iterations),
        (
            f"arm default, 16 seeds over {getattr(seeds_mesh(16), 'size', 1)} device(s)",
            lambda: arm(16),
            args.arm_iterations,
        ),
    ]
    if args.quick:
        args.repeats = 1
        workloads = [(name, make, 4) for name, make, _ in (workloads[0], workloads[4], workloads[-1])]
    print(f"# own_kernels  jax {jax.__version__}  {machine.cpu()}  devices: {len(jax.devices())}  "
          f"repeats: {args.repeats}")  # fmt: skip
    print("| workload | fused (before) ns/eval | own kernels ns/eval | difference | before / after | same archive |")
    print("|---|---:|---:|---:|---:|---|")
    for name, make, iterations in workloads:
        runs = {own: runner(make, own, iterations) for own in (False, True)}
        times = {own: [] for own in runs}
        for repeat in range(args.repeats):
            for own in (False, True) if repeat % 2 == 0 else (True, False):
                times[own].append(runs[own][0]())
        before, after = statistics.median(times[False]), statistics.median(times[True])
        a, b = (runs[own][1]["state"].archive for own in (False, True))
        same = all(bool(jnp.array_equal(x, y, equal_nan=True)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
        print(f"| {name} | {before:,.0f} | {after:,.0f} | {after - before:+,.0f} | {before / after:.2f}× | "
              f"{'yes' if same else 'NO'} |")  # fmt: skip


if __name__ == "__main__":
    main()
