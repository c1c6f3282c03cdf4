"""The kernels RESULTS.md explains qdkit's speed with, timed one at a time.

- cosine of 1,024 x 100 float32 values: XLA's ``jnp.cos(2 pi x)``, NumPy's ``np.cos``
  (SIMD, what pyribs' scoring gets) and ``qdkit.fastmath.cos_2pi``, with each one's
  largest error against float64;
- 1,024 x 100 standard normals: ``jax.random.normal`` (threefry) and
  ``qdkit.rng.normal`` (counter hash + Box-Muller);
- a CVT's exact lookup table (``qdkit.cvt``) for 10,000 centroids, built once;
- small batches, where a compiled call costs more than its arithmetic: parent sampling
  of 36 rows from a 10,000-cell archive and 36 x 100 normals (what an ask/tell ``ask``
  computes at pyribs' default batch).

Each jitted kernel is compiled first, then timed as the median of ``--repeats`` runs of
``--number`` calls (blocking on each result).

    python benchmarks/kernels.py
    taskset -c 0 python benchmarks/kernels.py     # on one core: compare the small batches
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
from qdkit import cvt, fastmath, rng  # noqa: E402


def timed(call, number: int, repeats: int) -> float:
    """Median seconds per call."""
    jax.block_until_ready(call())
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            jax.block_until_ready(call())
        runs.append((time.perf_counter() - start) / number)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n, r = args.number, args.repeats
    print(f"# kernels.py — {machine.cpu()}, "
          f"jax {jax.__version__}, numpy {np.__version__}; affinity {sorted(os.sched_getaffinity(0))}")  # fmt: skip

    x = np.random.default_rng(0).uniform(0, 1, (1024, 100)).astype(np.float32)
    xj = jnp.asarray(x)
    exact = np.cos(2 * np.pi * x.astype(np.float64))
    jcos = jax.jit(lambda v: jnp.cos(2.0 * jnp.pi * v))
    fcos = jax.jit(fastmath.cos_2pi)
    two_pi = np.float32(2 * np.pi)
    print("\n| kernel (1,024 x 100 float32) | ms per call | max abs error vs float64 |")
    print("|---|---:|---:|")
    for name, call, value in [
        ("jnp.cos(2 pi x), XLA", lambda: jcos(xj), lambda: jcos(xj)),
        ("np.cos(2 pi x), NumPy", lambda: np.cos(two_pi * x), lambda: np.cos(two_pi * x)),
        ("qdkit.fastmath.cos_2pi(x)", lambda: fcos(xj), lambda: fcos(xj)),
    ]:
        error = float(np.max(np.abs(np.asarray(value(), np.float64) - exact)))
        print(f"| {name} | {timed(call, n, r) * 1e3:.3f} | {error:.1e} |")

    key = jax.random.key(0)
    threefry = jax.jit(lambda k: jax.random.normal(k, (1024, 100)))
    fast = jax.jit(lambda k: rng.normal(k, (1024, 100)))
    print("\n| normals (1,024 x 100) | ms per call |")
    print("|---|---:|")
    print(f"| jax.random.normal (threefry) | {timed(lambda: threefry(key), n, r) * 1e3:.3f} |")
    print(f"| qdkit.rng.normal | {timed(lambda: fast(key), n, r) * 1e3:.3f} |")

    centroids = cvt.kmeans_centroids(jax.random.key(7), 10_000, jnp.zeros(2), jnp.ones(2))
    start = time.perf_counter()
    indexer = qdkit.CVTIndexer.create(lower=[0.0, 0.0], upper=[1.0, 1.0], centroids=centroids)
    jax.block_until_ready(indexer)
    print(f"\nCVT indexer with its exact lookup table, 10,000 centroids (built once): "
          f"{time.perf_counter() - start:.2f} s")  # fmt: skip

    task = qdkit.tasks.get("rastrigin", dims=100)
    archive = qdkit.GridArchive.create(shape=(100, 100), lower=task.lower, upper=task.upper,
                                       example_genotype=task.example_genotype)  # fmt: skip
    genotypes = task.initial_genotypes(jax.random.key(1), 4096)
    evaluation = task.score(jax.random.key(2), genotypes)
    archive, _ = archive.add(genotypes, evaluation.fitness, evaluation.descriptors)
    sample = jax.jit(lambda a, k: a.sample(k, 36))
    small = jax.jit(lambda k: rng.normal(k, (36, 100)))
    empty = jax.jit(lambda a: a.fitness[0])
    print("\n| small batch (a 10,000-cell archive) | µs per call |")
    print("|---|---:|")
    print(f"| archive.sample, 36 rows | {timed(lambda: sample(archive, key), n, r) * 1e6:.1f} |")
    print(f"| qdkit.rng.normal, 36 x 100 | {timed(lambda: small(key), n, r) * 1e6:.1f} |")
    print(f"| an empty jitted call on the archive | {timed(lambda: empty(archive), n, r) * 1e6:.1f} |")


if __name__ == "__main__":
    main()
