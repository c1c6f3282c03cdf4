"""MAP-Elites throughput: qdkit vs QDax vs pyribs on the same workload, in one process.

Workload: rastrigin, 100-D genotype in [0, 1], descriptor = first two genes, batch
1,024, Iso+LineDD variation (iso_sigma 0.005, line_sigma 0.05), on a 100 x 100 grid
archive and a 10,000-cell CVT archive (the same centroids, from qdkit's k-means, for
all three).

Like for like: qdkit and QDax are handed the *same* jitted scoring function, once with
XLA's cosine (``jnp.cos``) and once with qdkit's vectorised one (``fastmath``); pyribs
gets the same maths in NumPy. Each library keeps its own variation, random numbers and
archive. Each scoring function is also timed alone (a jitted loop over a batch that
changes every step; NumPy: a Python loop), and the core's cost is the *overhead per
evaluation*: ``1/end-to-end - 1/scoring-only``, in ns. Its ratio between libraries is
the headline.

On the grid, the same work written out by hand in plain JAX (``plain_loop.py``: no
metrics, no host work) is timed as well (the ``plain JAX loop`` rows; ``--skip plain``
leaves them out): the floor for qdkit's overhead, not a peer library.

On the grid, qdkit's iteration is also built up a stage at a time (parents, the rest of
the variation, insertion, metrics and emitter update, the host callbacks of ``qdkit
run``), to show what each stage adds per evaluation.

Each runner is warmed up (compiled) first, then timed for its number of iterations,
``--repeats`` times, interleaved; tables give medians. Nothing here is a test: it
prints what it measured.

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
import machine  # benchmarks/machine.py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import plain_loop  # noqa: E402  (benchmarks/plain_loop.py)

import qdkit  # noqa: E402
from emitters import EmptyState, iso_line  # noqa: E402

DIMS, BATCH, ISO, LINE = 100, 1024, 0.005, 0.05


def rastrigin_np(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = x * 10.0 - 5.0
    f = 10.0 * x.shape[1] + np.sum(z * z - 10.0 * np.cos(2.0 * np.pi * z), axis=1)
    return -f, x[:, :2]


# ------------------------------------------------------------------------------ qdkit


def rastrigin_jax(cos: str):
    """The rastrigin maths as one jitted JAX function of a batch, ``(fitness,
    descriptors)``, with XLA's cosine (``"jnp.cos"``) or qdkit's vectorised one
    (``"fastmath"``). qdkit and QDax are handed this very function."""
    if cos == "jnp.cos":
        terms = lambda x: x * x - 10.0 * jnp.cos(2.0 * jnp.pi * x)  # noqa: E731
    else:
        terms = lambda x: x * x - 10.0 * qdkit.fastmath.cos_2pi(x)  # noqa: E731

    @jax.jit
    def f(genotypes):
        x = genotypes * 10.0 - 5.0
        return -(10.0 * DIMS + jnp.sum(terms(x), axis=1)), genotypes[:, :2]

    return f


SCORERS = {name: rastrigin_jax(name) for name in ("jnp.cos", "fastmath")}


def scored_task(cos: str) -> qdkit.Task:
    """qdkit's rastrigin task scored by ``SCORERS[cos]``."""
    base = qdkit.tasks.get("rastrigin", dims=DIMS)
    f = SCORERS[cos]

    def score(key, genotypes):
        del key
        fitness, descriptors = f(genotypes)
        return qdkit.Evaluation(fitness, descriptors, {})

    return qdkit.Task(**{**base.__dict__, "score": score, "name": f"rastrigin-{cos}"})


def make_archive(task, archive_kind: str, centroids):
    if archive_kind == "grid":
        return qdkit.GridArchive.create(
            shape=(100, 100), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
        )
    return qdkit.CVTArchive.create(
        centroids=centroids, lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )


def qdkit_runner(archive_kind: str, centroids, iterations: int, *, cos: str = "jnp.cos", noise: str = "fast",
                 hooks=None):  # fmt: skip
    """qdkit's own loop (``map_elites.run``) with its default variation and RNG;
    ``hooks(tmpdir)`` gives host callbacks to run between chunks."""
    task = scored_task(cos)
    archive = make_archive(task, archive_kind, centroids)
    emitter = iso_line(BATCH, ISO, LINE, lower=0.0, upper=1.0, noise=noise)
    state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter)
    callbacks = [] if hooks is None else hooks()
    state, _ = qdkit.map_elites.run(state, task, emitter, 5, callbacks=callbacks)  # compile

    def timed():
        nonlocal state
        start = time.perf_counter()
        state, metrics = qdkit.map_elites.run(state, task, emitter, iterations, callbacks=callbacks)
        jax.block_until_ready(state.archive.fitness)
        return time.perf_counter() - start, float(metrics["coverage"][-1])

    return timed, (task, emitter, lambda: state)


def scan_runner(body, carry, iterations: int):
    """Time ``iterations`` steps of ``body(carry) -> (carry, scalar)`` in one jitted scan."""

    @functools.partial(jax.jit, static_argnums=1)
    def loop(carry, n):
        def step(c, _):
            c, value = body(c)
            return c, value

        return jax.lax.scan(step, carry, None, length=n)

    carry, out = loop(carry, iterations)
    jax.block_until_ready(out)

    def timed():
        nonlocal carry
        start = time.perf_counter()
        carry, out = loop(carry, iterations)
        jax.block_until_ready(out)
        return time.perf_counter() - start, float("nan")

    return timed


def scoring_only_runner(cos: str, iterations: int):
    """The scoring function alone on a batch that changes every step (so nothing is
    hoisted out of the loop): the ceiling of a library that calls it."""
    f = SCORERS[cos]
    genotypes = jax.random.uniform(jax.random.key(3), (BATCH, DIMS))

    def body(g):
        fitness, descriptors = f(g)
        return g * 0.999 + 0.0005, jnp.sum(fitness) + jnp.sum(descriptors)

    return scan_runner(body, genotypes, iterations)


def numpy_scoring_only_runner(iterations: int):
    x = np.random.default_rng(3).uniform(0, 1, (BATCH, DIMS)).astype(np.float32)
    rastrigin_np(x)

    def timed():
        start = time.perf_counter()
        for _ in range(iterations):
            rastrigin_np(x)
        return time.perf_counter() - start, float("nan")

    return timed


def stage_runners(task, emitter, get_state, iterations: int) -> dict:
    """qdkit's iteration built up a stage at a time (each a jitted scan on a copy of the
    run's archive), to see what each stage adds per evaluation."""
    archive = get_state().archive
    key = jax.random.key(1)

    # The archive is carried (not a constant of the loop), as in the run: the emitters'
    # qdkit.xla.own_kernels needs the archive's size unknown to the compiler.
    def parents_and_score(c):
        key, a = c
        key, k_parents, k_score = jax.random.split(key, 3)
        ev = task.score(k_score, a.sample(k_parents, BATCH))
        return (key, a), jnp.sum(ev.fitness) + jnp.sum(ev.descriptors)

    def emit_and_score(c):
        key, a = c
        key, k_emit, k_score = jax.random.split(key, 3)
        genotypes, _ = emitter.emit(k_emit, a, EmptyState())
        ev = task.score(k_score, genotypes)
        return (key, a), jnp.sum(ev.fitness) + jnp.sum(ev.descriptors)

    def emit_score_insert(c):
        key, a = c
        key, k_emit, k_score = jax.random.split(key, 3)
        genotypes, _ = emitter.emit(k_emit, a, EmptyState())
        ev = task.score(k_score, genotypes)
        a, info = a.add(genotypes, ev.fitness, ev.descriptors)
        return (key, a), jnp.sum(info.status)

    return {
        "parents + scoring": scan_runner(parents_and_score, (key, jax.tree.map(jnp.copy, archive)), iterations),
        "emit (parents, noise, line, clip) + scoring": scan_runner(
            emit_and_score, (key, jax.tree.map(jnp.copy, archive)), iterations
        ),
        "emit + scoring + insertion": scan_runner(
            emit_score_insert, (key, jax.tree.map(jnp.copy, archive)), iterations
        ),
    }


def plain_runner(cos: str, iterations: int):
    """The same work written out by hand in plain JAX (``plain_loop.py``: Iso+LineDD, the
    100 x 100 grid, ``SCORERS[cos]``, no metrics, no host work): the floor for qdkit's
    loop. Like qdkit's runner, it goes on from where the last call left the archive."""
    setup = plain_loop.Setup(SCORERS[cos], batch=BATCH, dims=DIMS, side=100, genotype_low=0.0, genotype_high=1.0,
                             descriptor_low=0.0, descriptor_high=1.0, iso_sigma=ISO, line_sigma=LINE)  # fmt: skip
    loop = jax.jit(lambda archive, key, n: plain_loop.iterate(setup, archive, key, 1, n), static_argnums=2,
                   donate_argnums=0)  # fmt: skip
    archive = loop(jax.jit(lambda key: plain_loop.init(setup, key, 1))(jax.random.key(0)), jax.random.key(1), 5)
    loop(jax.tree.map(jnp.copy, archive), jax.random.key(2), iterations)  # compiles (on a copy: the archive stays
    # 5 iterations in, as qdkit's runner's does)
    calls = [2]

    def timed():
        nonlocal archive
        calls[0] += 1
        start = time.perf_counter()
        archive = loop(archive, jax.random.key(calls[0]), iterations)
        jax.block_until_ready(archive)
        seconds = time.perf_counter() - start
        return seconds, float(plain_loop.summary(setup, archive, 1, -40.5 * DIMS)[1][0])

    return timed


# ------------------------------------------------------------------------------- QDax


def qdax_runner(archive_kind: str, centroids, iterations: int, *, cos: str = "jnp.cos"):
    from qdax.core.containers.mapelites_repertoire import compute_euclidean_centroids
    from qdax.core.emitters.mutation_operators import isoline_variation
    from qdax.core.emitters.standard_emitters import MixingEmitter
    from qdax.core.map_elites import MAPElites
    from qdax.utils.metrics import default_qd_metrics

    if archive_kind == "grid":
        qcentroids = compute_euclidean_centroids(grid_shape=(100, 100), minval=0.0, maxval=1.0)
    else:
        qcentroids = jnp.asarray(centroids)
    variation = functools.partial(isoline_variation, iso_sigma=ISO, line_sigma=LINE, minval=0.0, maxval=1.0)
    emitter = MixingEmitter(mutation_fn=None, variation_fn=variation, variation_percentage=1.0, batch_size=BATCH)
    algo = MAPElites(
        scoring_function=lambda genotypes, key: (*SCORERS[cos](genotypes), {}),  # the function qdkit gets
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
    print(f"  [{repeat}] {name:48s} {BATCH * iterations / seconds:12,.0f} evals/s  coverage {coverage:.3f}", flush=True)


def host_hooks():
    """What ``qdkit run`` adds between chunks: the metrics log and checkpoints (every 100,
    written from a thread while the next chunk runs, as ``qdkit run`` writes them)."""
    import tempfile

    directory = tempfile.mkdtemp(prefix="qdkit-bench-")
    return [qdkit.callbacks.MetricsLog(os.path.join(directory, "metrics.jsonl")),
            qdkit.callbacks.Checkpointer(os.path.join(directory, "checkpoint.npz"), 100, background=True)]  # fmt: skip


def ns(evals_per_second: float) -> float:
    return 1e9 / evals_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--qdkit-iterations", type=int, default=300)
    parser.add_argument("--pyribs-iterations", type=int, default=100)
    parser.add_argument("--qdax-iterations", type=int, default=20)
    parser.add_argument("--cells", type=int, default=10_000, help="CVT cells")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (a few iterations each)")
    parser.add_argument("--skip", action="append", default=[], choices=["qdax", "pyribs", "cvt", "stages", "plain"])
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.qdkit_iterations, args.pyribs_iterations, args.qdax_iterations = 1, 5, 3, 2
        args.cells = 500

    print(
        f"# core_throughput  jax {jax.__version__}  devices {jax.devices()}  python {platform.python_version()}  {machine.cpu()}"
    )
    print(f"arm task, first call (init + first chunk, compilation included): {arm_first_call_seconds():.2f} s")
    start = time.perf_counter()
    centroids = qdkit.cvt.kmeans_centroids(jax.random.key(7), args.cells, jnp.zeros(2), jnp.ones(2))
    centroids = np.asarray(centroids)
    print(f"k-means CVT centroids ({args.cells} cells, compilation included): {time.perf_counter() - start:.2f} s")

    kinds = ["grid"] + ([] if "cvt" in args.skip else ["cvt"])
    for kind in kinds:
        print(f"\n## {kind} archive ({'100x100' if kind == 'grid' else f'{args.cells} cells'}), batch {BATCH}")
        runners, ceilings = {}, {}
        handles = None
        for cos in ("jnp.cos", "fastmath"):
            timed, h = qdkit_runner(kind, centroids, args.qdkit_iterations, cos=cos)
            handles = handles or h
            runners[f"qdkit ({cos})"] = (timed, args.qdkit_iterations)
            ceilings[f"qdkit ({cos})"] = f"scoring only ({cos})"
            if "qdax" not in args.skip:
                runners[f"qdax ({cos})"] = (qdax_runner(kind, centroids, args.qdax_iterations, cos=cos),
                                            args.qdax_iterations)  # fmt: skip
                ceilings[f"qdax ({cos})"] = f"scoring only ({cos})"
            runners[f"scoring only ({cos})"] = (scoring_only_runner(cos, args.qdkit_iterations), args.qdkit_iterations)
            if kind == "grid" and "plain" not in args.skip:
                runners[f"plain JAX loop ({cos})"] = (plain_runner(cos, args.qdkit_iterations), args.qdkit_iterations)
                ceilings[f"plain JAX loop ({cos})"] = f"scoring only ({cos})"
        if "pyribs" not in args.skip:
            runners["pyribs (NumPy)"] = (pyribs_runner(kind, centroids, args.pyribs_iterations), args.pyribs_iterations)
            runners["scoring only (NumPy)"] = (numpy_scoring_only_runner(args.pyribs_iterations),
                                               args.pyribs_iterations)  # fmt: skip
            ceilings["pyribs (NumPy)"] = "scoring only (NumPy)"
        if kind == "grid" and "stages" not in args.skip:
            for name, timed in stage_runners(*handles, args.qdkit_iterations).items():
                runners[f"stage: {name}"] = (timed, args.qdkit_iterations)
            runners["stage: map_elites.run (+ metrics, emitter update)"] = runners["qdkit (jnp.cos)"]
            hooked, _ = qdkit_runner(kind, centroids, args.qdkit_iterations, hooks=host_hooks)
            runners["stage: run + metrics log and checkpoints"] = (hooked, args.qdkit_iterations)
        results: dict = {}
        for r in range(args.repeats):
            for name, (timed, iterations) in runners.items():
                if name == "stage: map_elites.run (+ metrics, emitter update)":
                    continue  # the same runner as qdkit (jnp.cos)
                measure(name, timed, iterations, results, r)
        medians = {name: statistics.median(v[0] for v in values) for name, values in results.items()}
        if "stage: run + metrics log and checkpoints" in medians:
            medians["stage: map_elites.run (+ metrics, emitter update)"] = medians["qdkit (jnp.cos)"]

        print(f"\n### {kind}: end to end against each library's scoring alone")
        print("| library (scoring) | end-to-end evals/s | scoring-only evals/s | overhead ns/eval | share of ceiling |")
        print("|---|---:|---:|---:|---:|")
        overhead = {}
        for name, ceiling in ceilings.items():
            if name in medians and ceiling in medians:
                overhead[name] = ns(medians[name]) - ns(medians[ceiling])
                print(f"| {name} | {medians[name]:,.0f} | {medians[ceiling]:,.0f} | {overhead[name]:,.0f} | "
                      f"{medians[name] / medians[ceiling]:.0%} |")  # fmt: skip
        for cos in ("jnp.cos", "fastmath"):
            mine = overhead.get(f"qdkit ({cos})")
            if mine and f"plain JAX loop ({cos})" in overhead:
                print(f"overhead qdkit ({cos}) / plain JAX loop ({cos}), {kind}: "
                      f"{mine / overhead[f'plain JAX loop ({cos})']:.2f}x")  # fmt: skip
            for peer in (f"qdax ({cos})", "pyribs (NumPy)"):
                if mine and peer in overhead:
                    print(f"overhead ratio {peer} / qdkit ({cos}), {kind}: {overhead[peer] / mine:.1f}x; "
                          f"end-to-end ratio: {medians[f'qdkit ({cos})'] / medians[peer]:.1f}x")  # fmt: skip
        stages = [k for k in runners if k.startswith("stage: ") and k in medians]  # in the order built up
        if stages:
            print(f"\n### {kind}: qdkit's iteration a stage at a time (jnp.cos scoring)")
            print("| stage | evals/s | ns/eval | added by the stage, ns/eval |")
            print("|---|---:|---:|---:|")
            previous = ns(medians["scoring only (jnp.cos)"])
            print(f"| scoring only | {medians['scoring only (jnp.cos)']:,.0f} | {previous:,.0f} | — |")
            for name in stages:
                here = ns(medians[name])
                print(f"| {name[len('stage: ') :]} | {medians[name]:,.0f} | {here:,.0f} | {here - previous:+,.0f} |")
                previous = here


if __name__ == "__main__":
    main()
