"""Key splitting: qdkit's straight-line Threefry split against ``jax.random.split``.

``qdkit.rng.split`` returns the very keys ``jax.random.split`` does (bit for bit), but
JAX lowers its Threefry to an XLA while loop of 5 steps on CPU, which the loop, the
emitters and the gradient learners then run for every key split of every iteration
(DCG's TD3 learner splits a key in each of its training steps). This script compiles
each workload twice in one process, once with ``qdkit.rng.split`` and once with
``qdkit.rng.split`` replaced by ``jax.random.split`` while tracing (what qdkit did
before), and times the two in turn (``--repeats`` interleaved calls of
``map_elites.run``; medians and minima). Both give the same archive: the script checks
that the final QD-scores are equal.

Workloads: the arm default (one seed, and 16 seeds vmapped), the core benchmark's
rastrigin (100-D, batch 1,024, 100 x 100 grid, ``jnp.cos``), CMA-ME on the same
rastrigin (batch 1,024 as 4 instances of 256), and with ``--dcg`` maze + DCG (batch
128, the default TD3 settings of ``qdkit run``: 3.7 s per iteration on a 2-core Xeon
in dcg_defaults.py, 5.9 s with qdkit 0.4.0's minibatches of 256).

    python benchmarks/key_split.py              # about 3 minutes on 2 cores
    python benchmarks/key_split.py --dcg        # and maze + DCG
    python benchmarks/key_split.py --quick      # smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import machine  # benchmarks/machine.py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import emitters  # noqa: E402
import qdkit  # noqa: E402
from qdkit import map_elites, registry, rng  # noqa: E402

QDKIT_SPLIT = rng.split


@contextlib.contextmanager
def _split_as(split):
    rng.split = split
    try:
        yield
    finally:
        rng.split = QDKIT_SPLIT


def _counting(split, calls: dict, variant: str):
    def counted(key, num=2):
        calls[variant] += 1
        return split(key, num)

    return counted


def _cache_sizes() -> tuple[int, int]:
    """Compiled programs of the loop's chunk (one seed, several): constant while timed."""
    return map_elites._run_chunk._cache_size(), map_elites._run_chunk_seeds._cache_size()


def workloads(dcg: bool) -> dict:
    """name -> (make(), iterations): ``make()`` builds ``(task, emitter, state)``, so that
    each variant traces with its own emitter."""
    arm = qdkit.tasks.get("arm")
    arm_archive = qdkit.GridArchive.create(
        shape=(32, 32), lower=arm.lower, upper=arm.upper, example_genotype=arm.example_genotype
    )
    rastrigin = qdkit.tasks.get("rastrigin", dims=100)
    grid = qdkit.GridArchive.create(
        shape=(100, 100), lower=rastrigin.lower, upper=rastrigin.upper, example_genotype=rastrigin.example_genotype
    )

    def arm_default(seeds):
        def make():
            emitter = emitters.iso_line(256, 0.01, 0.1, lower=arm.genotype_lower, upper=arm.genotype_upper)
            keys = jnp.stack([jax.random.key(k) for k in range(seeds)]) if seeds > 1 else jax.random.key(0)
            return arm, emitter, map_elites.init(keys, arm, arm_archive, emitter)

        return make

    def core_rastrigin():
        emitter = emitters.iso_line(1024, 0.005, 0.05, lower=0.0, upper=1.0)
        return rastrigin, emitter, map_elites.init(jax.random.key(0), rastrigin, grid, emitter)

    def cma_me():
        emitter = registry.build_emitter("cma-me", rastrigin, 1024, num_emitters=4)
        return rastrigin, emitter, map_elites.init(jax.random.key(0), rastrigin, grid, emitter)

    def maze_dcg():
        maze = qdkit.tasks.get("maze")
        archive = qdkit.GridArchive.create(
            shape=(32, 32), lower=maze.lower, upper=maze.upper, example_genotype=maze.example_genotype
        )
        emitter = registry.build_emitter("dcg", maze, 128)
        return maze, emitter, map_elites.init(jax.random.key(0), maze, archive, emitter)

    out = {
        "arm default, one seed": (arm_default(1), 500),
        "arm default, 16 seeds vmapped": (arm_default(16), 200),
        "rastrigin 100-D, batch 1,024, Iso+LineDD": (core_rastrigin, 100),
        "rastrigin 100-D, CMA-ME (4 x 256)": (cma_me, 100),
    }
    if dcg:
        out["maze + DCG, batch 128"] = (maze_dcg, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--dcg", action="store_true", help="also maze + DCG (several minutes)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 repeats, few iterations")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.quick:
        args.repeats = 2
    print(f"# key_split.py  jax {jax.__version__}  {machine.cpu()}  {args.repeats} repeats  "
          f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")  # fmt: skip
    print("| workload | iterations per call | jax.random.split ms/iteration | qdkit.rng.split ms/iteration | "
          "jax / qdkit (medians) | minima |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for name, (make, iterations) in workloads(args.dcg).items():
        if args.quick:
            iterations = max(1, iterations // 50)
        runs = {}
        for variant, split in (("jax", jax.random.split), ("qdkit", QDKIT_SPLIT)):
            calls = {"jax": 0, "qdkit": 0}
            counted = _counting(split, calls, variant)
            with _split_as(counted):  # read by the loop and the emitters while they trace
                task, emitter, state = make()
                state, _ = map_elites.run(state, task, emitter, iterations)  # compiles
                jax.block_until_ready(state)
            # the patch reached the traced code, and the other split was not called
            if calls[variant] == 0 or calls["jax" if variant == "qdkit" else "qdkit"]:
                raise SystemExit(f"{name}: the {variant} variant's split calls were {calls}")
            runs[variant] = {"task": task, "emitter": emitter, "state": state, "ms": [], "qd_score": None,
                             "split": counted}  # fmt: skip
        compiled = _cache_sizes()
        for _ in range(args.repeats):
            for run in runs.values():
                with _split_as(run["split"]):
                    start = time.perf_counter()
                    run["state"], metrics = map_elites.run(run["state"], run["task"], run["emitter"], iterations)
                    jax.block_until_ready(run["state"])
                run["ms"].append((time.perf_counter() - start) / iterations * 1e3)
                run["qd_score"] = np.asarray(metrics["qd_score"][-1])
        if _cache_sizes() != compiled:
            raise SystemExit(f"{name}: the loop compiled again while timed ({compiled} -> {_cache_sizes()})")
        if not np.array_equal(runs["jax"]["qd_score"], runs["qdkit"]["qd_score"]):
            raise SystemExit(f"{name}: the two splits gave different QD-scores "
                             f"({runs['jax']['qd_score']} / {runs['qdkit']['qd_score']})")  # fmt: skip
        jt, qt = runs["jax"]["ms"], runs["qdkit"]["ms"]
        print(f"| {name} | {iterations} | {statistics.median(jt):.3f} | {statistics.median(qt):.3f} | "
              f"{statistics.median(jt) / statistics.median(qt):.2f}× | {min(jt) / min(qt):.2f}× |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
