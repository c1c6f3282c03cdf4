"""Where qdkit's iteration spends its time: JAX's profiler over the headline loop.

Runs ``map_elites.run`` on ``core_throughput.py``'s workload (rastrigin scored with
``jnp.cos``, 100 genes, Iso+LineDD, batch 1,024, 100 x 100 grid), traces ``--iterations``
iterations with ``jax.profiler``, and prints the compiled kernels (XLA's fused loops and
other thunks) that took the most time, per iteration, and on how many of XLA's threads
they ran over the run; the kernels' times summed against the wall time per iteration
show whether kernels overlapped.
The profiler's own cost inflates the small kernels; the large ones are what to read.
``--one-loop`` makes the Gaussian noise as one loop (``qdkit.rng.PIECE_ELEMENTS`` set
high: the code before the pieces), to compare. ``--arm-seeds S`` profiles ``seeds.py``'s
arm default instead (8 joints, 32 x 32 grid, Iso+LineDD, batch 256), with S seeds
vmapped on one device (one seed: the plain loop); in a trace of many small kernels the
profiler's cost is most of the wall time, so read it for the kernels' shapes and order
more than for their times.

    python benchmarks/step_profile.py
    python benchmarks/step_profile.py --one-loop
    python benchmarks/step_profile.py --arm-seeds 16
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import sys
import tempfile
import time

import jax
import machine  # benchmarks/machine.py

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import core_throughput  # noqa: E402  (benchmarks/core_throughput.py)
import seeds  # noqa: E402  (benchmarks/seeds.py)

import qdkit  # noqa: E402
from emitters import iso_line  # noqa: E402
from qdkit import rng  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--one-loop", action="store_true", help="the Gaussian noise as one loop")
    parser.add_argument("--arm-seeds", type=int, default=0,
                        help="profile seeds.py's arm default with this many vmapped seeds on one device instead")  # fmt: skip
    args = parser.parse_args()
    if args.arm_seeds < 0:
        parser.error("--arm-seeds must be 0 (the headline workload) or more")
    if args.one_loop:
        rng.PIECE_ELEMENTS = 1 << 62
    workload = f"arm default, {args.arm_seeds} seed(s)" if args.arm_seeds else "headline"
    print(f"# step_profile  jax {jax.__version__}  {machine.cpu()}  {workload}  "
          f"noise: {'one loop' if args.one_loop else 'pieces'}")  # fmt: skip
    if args.arm_seeds:
        task, archive, emitter = seeds.setup()
        keys = jax.random.split(jax.random.key(0), args.arm_seeds)
        state = qdkit.map_elites.init(keys if args.arm_seeds > 1 else keys[0], task, archive, emitter)
    else:
        task = core_throughput.scored_task("jnp.cos")
        archive = core_throughput.make_archive(task, "grid", None)
        emitter = iso_line(core_throughput.BATCH, core_throughput.ISO, core_throughput.LINE, lower=0.0, upper=1.0)
        state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter)
    print(f"seeds in the state: {qdkit.map_elites.num_seeds(state) or 1}, genotypes {archive.genotypes.shape[1:]}")
    state, _ = qdkit.map_elites.run(state, task, emitter, 100)  # compiled, archive filled
    jax.block_until_ready(state.archive.fitness)
    directory = tempfile.mkdtemp(prefix="qdkit-profile-")
    jax.profiler.start_trace(directory)
    start = time.perf_counter()
    state, _ = qdkit.map_elites.run(state, task, emitter, args.iterations)
    jax.block_until_ready(state.archive.fitness)
    wall = (time.perf_counter() - start) / args.iterations * 1e6
    jax.profiler.stop_trace()
    trace = glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True)[0]
    data = jax.profiler.ProfileData.from_file(trace)
    total, calls, threads = collections.Counter(), collections.Counter(), collections.defaultdict(set)
    for plane in data.planes:
        for line in plane.lines:
            if "XLAEigen" not in line.name:  # (XLA's CPU worker threads)
                continue
            for event in line.events:
                if event.name.startswith(("ThunkExecutor", "while", "end:")):
                    continue
                total[event.name] += event.duration_ns
                calls[event.name] += 1
                threads[event.name].add(line.name)
    per_iteration = sum(total.values()) / args.iterations / 1e3
    print(f"kernels: {sum(calls.values()) / args.iterations:.0f} per iteration, {per_iteration:,.1f} µs in all; "
          f"wall time per iteration (traced): {wall:,.1f} µs")  # fmt: skip
    print("| kernel | µs per iteration | calls per iteration | threads |")
    print("|---|---:|---:|---:|")
    for name, ns in total.most_common(args.top):
        print(f"| {name} | {ns / args.iterations / 1e3:,.1f} | {calls[name] / args.iterations:.1f} | "
              f"{len(threads[name])} |")  # fmt: skip


if __name__ == "__main__":
    main()
