"""MAP-Elites throughput: qdkit vs QDax vs pyribs on the same workload, in one process.

Workload (the issue's): rastrigin, 100-D genotype in [0, 1], descriptor = first two
genes, batch 1,024, Iso+LineDD variation (iso_sigma 0.005, line_sigma 0.05), on
- a 100 x 100 grid archive, and
- a 10,000-cell CVT archive (the same centroids, from qdkit's k-means, for all three),
plus an "evaluation only" run (parent sampling + variation + scoring, no insertion)
as the practical ceiling for qdkit, and a "plain" qdkit run that scores with
``jnp.cos`` and draws noise with threefry, to separate what the MAP-Elites core gains
from what qdkit's vectorised cosine (``qdkit.fastmath``) and noise (``qdkit.rng``) gain.

Each library is warmed up (compiled) first, then timed for ``--iterations``
iterations, ``--repeats`` times, interleaved; the table gives the median evaluations
per second and the ratios. Nothing here is a test: it prints what it measured.

    python benchmarks/core_throughput.py            # full run (a few minutes on 2 cores)
    python benchmarks/core_throughput.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import qdkit  # noqa: E402
from emitters import EmptyState, iso_line  # noqa: E402

DIMS, BATCH, ISO, LINE = 100, 1024, 0.005, 0.05


def rastrigin_np(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = x * 10.0 - 5.0
    f = 10.0 * x.shape[1] + np.sum(z * z - 10.0 * np.cos(2.0 * np.pi * z), axis=1)
    return -f, x[:, :2]


# ------------------------------------------------------------------------------ qdkit


def plain_rastrigin_task() -> qdkit.Task:
    """qdkit's rastrigin task scored with ``jnp.cos`` (XLA's scalar libm cosine), as QDax does."""
    base = qdkit.tasks.get("rastrigin", dims=DIMS)

    def score(key, genotypes):
        x = genotypes * 10.0 - 5.0
        f = 10.0 * DIMS + jnp.sum(x * x - 10.0 * jnp.cos(2.0 * jnp.pi * x), axis=1)
        return qdkit.Evaluation(-f, genotypes[:, :2], {})

    return qdkit.Task(**{**base.__dict__, "score": score, "name": "rastrigin-plain"})


def qdkit_runner(archive_kind: str, centroids, iterations: int, *, plain: bool = False):
    task = plain_rastrigin_task() if plain else qdkit.tasks.get("rastrigin", dims=DIMS)
    if archive_kind == "grid":
        archive = qdkit.GridArchive.create(
            shape=(100, 100), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
        )
    else:
        archive = qdkit.CVTArchive.create(
            centroids=centroids, lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
        )
    emitter = iso_line(BATCH, ISO, LINE, lower=0.0, upper=1.0, noise="threefry" if plain else "fast")
    state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter)
    state, _ = qdkit.map_elites.run(state, task, emitter, 5)  # compile

    def timed():
        nonlocal state
        start = time.perf_counter()
        state, metrics = qdkit.map_elites.run(state, task, emitter, iterations)
        jax.block_until_ready(state.archive.fitness)
        return time.perf_counter() - start, float(metrics["coverage"][-1])

    return timed, (task, emitter, lambda: state)


def evaluation_only_runner(task, emitter, get_state, iterations: int):
    archive = get_state().archive

    @functools.partial(jax.jit, static_argnums=2)
    def loop(key, total, n):
        def body(carry, _):
            key, total = carry
            key, k_emit, k_score = jax.random.split(key, 3)
            genotypes, _ = emitter.emit(k_emit, archive, EmptyState())
            ev = task.score(k_score, genotypes)
            return (key, total + jnp.sum(ev.fitness) + jnp.sum(ev.descriptors)), None

        (key, total), _ = jax.lax.scan(body, (key, total), None, length=n)
        return key, total

    key = jax.random.key(1)
    key, total = loop(key, jnp.float32(0), iterations)
    jax.block_until_ready(total)

    def timed():
        nonlocal key
        start = time.perf_counter()
        key, out = loop(key, jnp.float32(0), iterations)
        jax.block_until_ready(out)
        return time.perf_counter() - start, float("nan")

    return timed


# ------------------------------------------------------------------------------- QDax


def qdax_runner(archive_kind: str, centroids, iterations: int):
    from qdax.core.containers.mapelites_repertoire import compute_euclidean_centroids
    from qdax.core.emitters.mutation_operators import isoline_variation
    from qdax.core.emitters.standard_emitters import MixingEmitter
    from qdax.core.map_elites import MAPElites
    from qdax.tasks.standard_functions import rastrigin_scoring_function
    from qdax.utils.metrics import default_qd_metrics

    if archive_kind == "grid":
        qcentroids = compute_euclidean_centroids(grid_shape=(100, 100), minval=0.0, maxval=1.0)
    else:
        qcentroids = jnp.asarray(centroids)
    variation = functools.partial(isoline_variation, iso_sigma=ISO, line_sigma=LINE, minval=0.0, maxval=1.0)
    emitter = MixingEmitter(mutation_fn=None, variation_fn=variation, variation_percentage=1.0, batch_size=BATCH)
    algo = MAPElites(
        scoring_function=rastrigin_scoring_function,
        emitter=emitter,
        metrics_function=functools.partial(default_qd_metrics, qd_offset=40.5 * DIMS),
    )
    key = jax.random.key(0)
    key, k_init = jax.random.split(key)
    genotypes = jax.random.uniform(k_init, (BATCH, DIMS))
    repertoire, emitter_state, _ = algo.init(genotypes, qcentroids, key)

    @functools.partial(jax.jit, static_argnums=1)
    def many(carry, n):
        return jax.lax.scan(algo.scan_update, carry, None, length=n)

    carry = (repertoire, emitter_state, key)
    carry, _ = many(carry, 2)  # compile (the timed length compiles below once)
    carry, _ = many(carry, iterations)
    jax.block_until_ready(carry[0].fitnesses)

    def timed():
        nonlocal carry
        start = time.perf_counter()
        carry, metrics = many(carry, iterations)
        jax.block_until_ready(carry[0].fitnesses)
        return time.perf_counter() - start, float(metrics["coverage"][-1]) / 100.0

    return timed


# ----------------------------------------------------------------------------- pyribs


def pyribs_runner(archive_kind: str, centroids, iterations: int):
    from ribs.archives import CVTArchive, GridArchive
    from ribs.emitters import IsoLineEmitter
    from ribs.schedulers import Scheduler

    ranges = [(0.0, 1.0), (0.0, 1.0)]
    if archive_kind == "grid":
        archive = GridArchive(solution_dim=DIMS, dims=[100, 100], ranges=ranges, dtype=np.float32)
    else:
        archive = CVTArchive(solution_dim=DIMS, centroids=np.asarray(centroids), ranges=ranges, dtype=np.float32)
    rng = np.random.default_rng(0)
    emitter = IsoLineEmitter(
        archive,
        iso_sigma=ISO,
        line_sigma=LINE,
        initial_solutions=rng.uniform(0, 1, (BATCH, DIMS)).astype(np.float32),
        bounds=[(0.0, 1.0)] * DIMS,
        batch_size=BATCH,
        seed=0,
    )
    scheduler = Scheduler(archive, [emitter])

    def step_n(n):
        for _ in range(n):
            solutions = scheduler.ask()
            objective, measures = rastrigin_np(solutions)
            scheduler.tell(objective, measures)

    step_n(3)

    def timed():
        start = time.perf_counter()
        step_n(iterations)
        return time.perf_counter() - start, archive.stats.coverage

    return timed


# ------------------------------------------------------------------------------- main


def arm_first_call_seconds() -> float:
    """Wall time of init + a first 1-iteration run on the arm task (compilation)."""
    task = qdkit.tasks.get("arm")
    archive = qdkit.GridArchive.create(
        shape=(32, 32), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    emitter = iso_line(256, 0.01, 0.1, lower=task.genotype_lower, upper=task.genotype_upper)
    start = time.perf_counter()
    state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter)
    state, _ = qdkit.map_elites.run(state, task, emitter, 1)
    jax.block_until_ready(state.archive.fitness)
    return time.perf_counter() - start


def measure(name: str, timed, iterations: int, results: dict, repeat: int) -> None:
    seconds, coverage = timed()
    results.setdefault(name, []).append((BATCH * iterations / seconds, coverage))
    print(f"  [{repeat}] {name:32s} {BATCH * iterations / seconds:12,.0f} evals/s  coverage {coverage:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--qdkit-iterations", type=int, default=300)
    parser.add_argument("--pyribs-iterations", type=int, default=100)
    parser.add_argument("--qdax-iterations", type=int, default=20)
    parser.add_argument("--cells", type=int, default=10_000, help="CVT cells")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (a few iterations each)")
    parser.add_argument("--skip", action="append", default=[], choices=["qdax", "pyribs", "cvt"])
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.qdkit_iterations, args.pyribs_iterations, args.qdax_iterations = 1, 5, 3, 2
        args.cells = 500

    print(
        f"# core_throughput  jax {jax.__version__}  devices {jax.devices()}  python {platform.python_version()}  cpus {os.cpu_count()}"
    )
    print(f"arm task, first call (init + first chunk, compilation included): {arm_first_call_seconds():.2f} s")

    start = time.perf_counter()
    centroids = qdkit.cvt.kmeans_centroids(jax.random.key(7), args.cells, jnp.zeros(2), jnp.ones(2))
    centroids = np.asarray(centroids)
    print(f"k-means CVT centroids ({args.cells} cells, compilation included): {time.perf_counter() - start:.2f} s")

    kinds = ["grid"] + ([] if "cvt" in args.skip else ["cvt"])
    summary = []
    for kind in kinds:
        print(f"\n## {kind} archive ({'100x100' if kind == 'grid' else f'{args.cells} cells'}), batch {BATCH}")
        runners = {}
        timed, handles = qdkit_runner(kind, centroids, args.qdkit_iterations)
        runners["qdkit"] = (timed, args.qdkit_iterations)
        if kind == "grid":
            plain, _ = qdkit_runner(kind, centroids, args.qdkit_iterations, plain=True)
            runners["qdkit plain (jnp.cos, threefry)"] = (plain, args.qdkit_iterations)
            runners["qdkit evaluation only"] = (
                evaluation_only_runner(*handles, args.qdkit_iterations),
                args.qdkit_iterations,
            )
        if "pyribs" not in args.skip:
            runners["pyribs"] = (pyribs_runner(kind, centroids, args.pyribs_iterations), args.pyribs_iterations)
        if "qdax" not in args.skip:
            runners["qdax"] = (qdax_runner(kind, centroids, args.qdax_iterations), args.qdax_iterations)
        results: dict = {}
        for r in range(args.repeats):
            for name, (timed, iterations) in runners.items():
                measure(name, timed, iterations, results, r)
        medians = {name: statistics.median(v[0] for v in values) for name, values in results.items()}
        print(f"\n| {kind} | median evals/s |")
        print("|---|---:|")
        for name, value in medians.items():
            print(f"| {name} | {value:,.0f} |")
        q = medians["qdkit"]
        for label, name, suffix in [
            ("qdkit", "qdkit", ""),
            ("qdkit plain", "qdkit plain (jnp.cos, threefry)", " (plain)"),
        ]:
            for peer in ("pyribs", "qdax"):
                if name in medians and peer in medians:
                    print(f"ratio {label} / {peer} ({kind}): {medians[name] / medians[peer]:.1f}x")
                    summary.append((kind, peer + suffix, medians[name] / medians[peer]))
        if "qdkit evaluation only" in medians:
            share = q / medians["qdkit evaluation only"]
            print(f"qdkit / evaluation-only ceiling ({kind}): {share:.0%}")
            summary.append((kind, "ceiling", share))
    print("\n# summary")
    for kind, peer, value in summary:
        print(f"{kind:5s} qdkit vs {peer:16s}: {value:.2f}")


if __name__ == "__main__":
    main()
