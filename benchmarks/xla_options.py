"""XLA:CPU compiler options, A/B: the same compiled MAP-Elites chunk with XLA's defaults
and with the options qdkit sets (``qdkit.xla``).

XLA:CPU hands some reductions to the YNNPACK library ("YNN reduce fusions"). For the
small reductions of a QD iteration (the arm's 8 joints, a 2-D descriptor) the hand-off
costs more than the arithmetic, and the fusion stops XLA from computing the reduced
values in the loop that produces them. This script measures that on whole iterations:
each workload's chunk (``qdkit.map_elites``' compiled loop of ``--iterations``
iterations) is lowered once and compiled once per option set in the same process; the
two executables are timed in turn, ``--repeats`` times, and the table gives medians.

Workloads: the arm default of ``qdkit run`` (one seed and 16 vmapped seeds), the
core-throughput rastrigin (100-D, batch 1,024, 100 x 100 grid, XLA's cosine) and the
same rastrigin's scoring alone, and the maze with Iso+LineDD (batch 128).

    python benchmarks/xla_options.py
    python benchmarks/xla_options.py --quick      # smoke run (the arm and the scoring alone)
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time

import machine  # benchmarks/machine.py

# Measure XLA's own defaults against qdkit's: keep qdkit from setting its flags here.
os.environ["QDKIT_XLA_DEFAULTS"] = "0"

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))

import core_throughput  # noqa: E402

import qdkit  # noqa: E402
from emitters import iso_line  # noqa: E402
from qdkit import map_elites  # noqa: E402


def arm(seeds: int):
    task = qdkit.tasks.get("arm", dof=8)
    archive = qdkit.GridArchive.create(
        shape=(32, 32), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    emitter = iso_line(256, 0.01, 0.1, lower=task.genotype_lower, upper=task.genotype_upper)
    return task, archive, emitter, seeds


def rastrigin():
    task = core_throughput.scored_task("jnp.cos")
    archive = core_throughput.make_archive(task, "grid", None)
    emitter = iso_line(core_throughput.BATCH, core_throughput.ISO, core_throughput.LINE, lower=0.0, upper=1.0)
    return task, archive, emitter, 1


def maze():
    task = qdkit.tasks.get("maze")
    archive = qdkit.GridArchive.create(
        shape=(32, 32), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    emitter = iso_line(128, 0.01, 0.1, lower=task.genotype_lower, upper=task.genotype_upper)
    return task, archive, emitter, 1


WORKLOADS = {
    "arm, 1 seed (batch 256)": functools.partial(arm, 1),
    "arm, 16 seeds vmapped (batch 256 each)": functools.partial(arm, 16),
    "rastrigin 100-D, batch 1,024, 100x100 grid": rastrigin,
    "maze, Iso+LineDD, batch 128": maze,
}


def chunk_lowering(build, iterations: int):
    """The lowered chunk of a workload and a fresh state for it."""
    task, archive, emitter, seeds = build()
    if seeds == 1:
        state = map_elites.init(jax.random.key(0), task, archive, emitter)
        lowered = map_elites._run_chunk.lower(state, jnp.int32(iterations), task, emitter, iterations, None)
    else:
        keys = jnp.stack([jax.random.key(s) for s in range(seeds)])
        state = map_elites.init(keys, task, archive, emitter)
        lowered = map_elites._run_chunk_seeds.lower(state, jnp.int32(iterations), task, emitter, iterations)
    return lowered, state


def scoring_lowering(iterations: int):
    """rastrigin's scoring alone, as core_throughput.py times it (a jitted scan)."""
    f = core_throughput.SCORERS["jnp.cos"]
    genotypes = jax.random.uniform(jax.random.key(3), (core_throughput.BATCH, core_throughput.DIMS))

    def loop(g):
        def step(c, _):
            fitness, descriptors = f(c)
            return c * 0.999 + 0.0005, jnp.sum(fitness) + jnp.sum(descriptors)

        return jax.lax.scan(step, g, None, length=iterations)

    return jax.jit(loop, donate_argnums=0).lower(genotypes), genotypes


def timer(compiled, state, iterations: int):
    state = jax.tree.map(jnp.copy, state)
    args = (jnp.int32(iterations),) if isinstance(state, map_elites.RunState) else ()
    state, _ = compiled(state, *args)  # warm up
    jax.block_until_ready(state)

    def timed() -> float:
        nonlocal state
        start = time.perf_counter()
        state, out = compiled(state, *args)
        jax.block_until_ready((state, out))
        return (time.perf_counter() - start) / iterations * 1e6

    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200, help="iterations per timed call")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="smoke run: few iterations, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.repeats = 5, 1
    if "xla_cpu_experimental_ynn_fusion_type" in os.environ.get("XLA_FLAGS", ""):
        parser.error(
            "XLA_FLAGS sets xla_cpu_experimental_ynn_fusion_type: the 'XLA defaults' column would not be XLA's"
        )
    print(f"# xla_options.py  jax {jax.__version__}  {jax.devices()[0].device_kind}  python "
          f"{platform.python_version()}  {machine.cpu()}  {args.iterations} iterations x {args.repeats}")  # fmt: skip
    options = qdkit.xla.compiler_options()
    print(f"qdkit's options: {options}; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print("\n| workload | XLA defaults µs/iteration | qdkit's options µs/iteration | defaults / qdkit |")
    print("|---|---:|---:|---:|")
    workloads = {k: v for k, v in WORKLOADS.items() if not args.quick or k.startswith("arm, 1 seed")}
    cases = {name: functools.partial(chunk_lowering, build) for name, build in workloads.items()}
    cases["rastrigin scoring alone (the ceiling), batch 1,024"] = scoring_lowering
    for name, lower in cases.items():
        lowered, state = lower(args.iterations)
        runners = {
            "default": timer(lowered.compile(), state, args.iterations),
            "qdkit": timer(lowered.compile(compiler_options=options), state, args.iterations),
        }
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(args.repeats):
            for k, timed in runners.items():
                times[k].append(timed())
        default, ours = (statistics.median(times[k]) for k in ("default", "qdkit"))
        print(f"| {name} | {default:,.1f} | {ours:,.1f} | {default / ours:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
