"""Many seeds in one compiled run against one seed, on the arm default.

The arm default of ``qdkit run`` (8 joints, 32 x 32 grid, Iso+LineDD, batch 256,
1,000 iterations): one seed, then S seeds as one computation
(``map_elites.init`` with a vector of keys), then S seeds one after another in the same
process (compiled once, as ``--seeds`` avoids compiling S times in S processes).
Times are wall-clock: the first call of each configuration includes its compilation
("cold"), a second identical call does not ("warm"); the table gives both, and the
ratio of S vmapped seeds to one seed, warm. A warm time is the median of ``--repeats``
calls; "one after another" is one call per seed, summed.

The S seeds run on one device, and then split over ``--devices`` devices (each running
its share of the seeds vmapped; :mod:`qdkit.sharding`), as ``qdkit run --seeds`` does. On
a CPU the script makes that many CPU devices (``jax_num_cpu_devices``, default: one per
core) before JAX starts; one seed and the one-device rows use the first device.

``--arm-cos xla`` scores the arm with XLA's cosine and sine instead of qdkit's vectorised
ones (the arm's ``cos`` option; the default is ``fast``), to show what that speed-up of
the task's maths does on its own.

    python benchmarks/seeds.py                      # S = 4, 16 (about 3 minutes on 2 cores)
    python benchmarks/seeds.py --arm-cos xla        # the same with XLA's cosine in the arm
    python benchmarks/seeds.py --seeds 4 --iterations 200    # quick
    python benchmarks/seeds.py --devices 1          # without the rows over several devices
    python benchmarks/seeds.py --cores 1 --seeds 8,16   # the process on one core

``--cores N`` (Linux) keeps the process on the first N of the CPUs it may use: set before
JAX starts, so every thread started after it, all of XLA's, stays there; the devices
default to N. The table is followed by a straight line fitted through the one-device
warm times in µs per iteration (one seed, the plain loop, and each S seeds vmapped):
what each further seed adds, and what is left at no seed, everything in a call that does
not grow with the seeds (the loop's own work, and ``init`` and the host's work around
the chunks, spread over the iterations).
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
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import qdkit  # noqa: E402
from emitters import iso_line  # noqa: E402
from qdkit import map_elites, sharding, xla  # noqa: E402
from qdkit.tasks.arm import COS as ARM_COS  # noqa: E402


def setup(cos: str = "fast"):
    task = qdkit.tasks.get("arm", dof=8, cos=cos)
    archive = qdkit.GridArchive.create(
        shape=(32, 32), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    emitter = iso_line(256, 0.01, 0.1, lower=task.genotype_lower, upper=task.genotype_upper)
    return task, archive, emitter


def timed(task, archive, emitter, key, iterations, mesh=None) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    state = map_elites.init(key, task, archive, emitter, mesh=mesh)
    state, metrics = map_elites.run(state, task, emitter, iterations, mesh=mesh)
    jax.block_until_ready(state)
    return time.perf_counter() - start, metrics["qd_score"][-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="4,16", help="comma-separated seed counts")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="warm calls per configuration (median)")
    parser.add_argument("--arm-cos", choices=ARM_COS, default="fast")
    parser.add_argument("--devices", type=int, default=None,
                        help="devices to split the seeds over, in rows of their own (default: one per core; 1: none)")  # fmt: skip
    parser.add_argument("--cores", type=int, default=None,
                        help="keep the process on this many of its CPUs (default: all it may use)")  # fmt: skip
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.devices is not None and args.devices < 1:
        parser.error("--devices must be at least 1")
    usable = xla.cpus()
    if args.cores is not None:
        if not hasattr(os, "sched_setaffinity"):
            parser.error("--cores needs os.sched_setaffinity (Linux)")
        if not 1 <= args.cores <= usable:
            parser.error(f"--cores must be between 1 and {usable} (the CPUs this process may use)")
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])  # before JAX starts its threads
    if args.devices is None:
        args.devices = xla.cpus()
    xla.use_cpu_devices(args.devices)  # before JAX starts (a CPU makes that many devices)
    task, archive, emitter = setup(args.arm_cos)
    print(f"# seeds.py — {machine.cpu()}, "
          f"jax {jax.__version__} ({jax.devices()[0].platform}); arm default (cos={args.arm_cos}), "
          f"{args.iterations} iterations; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; "
          f"{len(jax.devices())} devices; on {xla.cpus()} of {usable} CPUs")  # fmt: skip

    def warm(key, mesh=None):
        runs = [timed(task, archive, emitter, key, args.iterations, mesh) for _ in range(args.repeats)]
        return statistics.median(t for t, _ in runs), runs[-1][1]

    cold1, _ = timed(task, archive, emitter, jax.random.key(0), args.iterations)
    warm1, score1 = warm(jax.random.key(0))
    print("| configuration | seeds | cold s | warm s | warm / one seed | mean final QD-score |")
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| one seed | 1 | {cold1:.2f} | {warm1:.3f} | 1.00× | {float(score1):.1f} |")
    one_device = [(1, warm1)]
    for s in (int(x) for x in args.seeds.split(",")):
        keys = jnp.stack([jax.random.key(k) for k in range(s)])
        cold, _ = timed(task, archive, emitter, keys, args.iterations)
        warm_s, scores = warm(keys)
        print(f"| {s} seeds, vmapped | {s} | {cold:.2f} | {warm_s:.3f} | {warm_s / warm1:.2f}× | "
              f"{float(np.mean(scores)):.1f} |")  # fmt: skip
        one_device.append((s, warm_s))
        count = min(args.devices, len(jax.devices()))
        if count > 1 and s % count == 0:
            mesh = sharding.batch_mesh(count)
            cold, _ = timed(task, archive, emitter, keys, args.iterations, mesh)
            warm_d, scores_d = warm(keys, mesh)
            same = "same" if np.array_equal(np.asarray(scores_d), np.asarray(scores)) else "DIFFERENT"
            print(f"| {s} seeds over {count} devices, vmapped on each ({same} scores) | {s} | {cold:.2f} | "
                  f"{warm_d:.3f} | {warm_d / warm1:.2f}× | {float(np.mean(scores_d)):.1f} |")  # fmt: skip
        sequential = [timed(task, archive, emitter, jax.random.key(k), args.iterations) for k in range(s)]
        total = sum(t for t, _ in sequential)
        print(f"| {s} seeds, one after another (compiled once) | {s} | — | {total:.3f} | {total / warm1:.2f}× | "
              f"{float(np.mean([q for _, q in sequential])):.1f} |")  # fmt: skip
    if len({n for n, _ in one_device}) > 1:
        per_seed, fixed = np.polyfit([n for n, _ in one_device], [t for _, t in one_device], 1)
        per_iteration = 1e6 / args.iterations
        points = ", ".join(f"{n}: {t * per_iteration:.1f}" for n, t in one_device)
        print(f"\nOne device, a line through (seeds: µs an iteration) {points}: each seed adds "
              f"{per_seed * per_iteration:.1f} µs an iteration, {fixed * per_iteration:.1f} µs at no seed.")  # fmt: skip


if __name__ == "__main__":
    main()
