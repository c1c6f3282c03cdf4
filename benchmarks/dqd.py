"""The DQD benchmark: MAP-Elites, CMA-ME, CMA-MAE, OMG-MEGA and CMA-MEGA, qdkit vs pyribs.

Workload (the CMA-MEGA and CMA-MAE papers' linear-projection benchmark, as pyribs'
``examples/sphere.py`` configures it): ``sphere_proj`` or ``rastrigin_proj`` with an
unbounded ``--dims``-D genotype, two descriptors (sums of the two halves of the folded
genes), a 100 x 100 grid archive, 540 evaluations per iteration:

==========  =====================================================================
map-elites  Gaussian mutation, sigma 0.5, batch 540
cma-me      15 CMA-ES instances x 36, sigma0 0.5, two-stage improvement ranking,
            filter selection, restart on no improvement
cma-mae     15 x 36, sigma0 0.5, improvement ranking, mu selection, basic restart;
            archive learning rate 0.01, threshold_min 0; the paper's archive rule (the
            best candidate above a cell's threshold replaces the occupant; the
            result archive keeps the best ever)
cma-mae-best  the same with qdkit's earlier archive rule (``replacement="best"``:
            the archive keeps the best candidate ever accepted); qdkit only
omg-mega    270 parents differentiated + 270 offspring, sigma_g 10, normalised grads
cma-mega    15 instances x (theta + 35 branches), sigma_g 10, gradient ascent lr 1,
            mu selection, restart on no improvement
==========  =====================================================================

Every algorithm starts from the origin: pyribs' emitters from ``x0 = 0``; qdkit's
CMA emitters from ``x0 = 0`` after one initial batch of 540 genotypes drawn from
``N(0, 0.5^2)`` (the same distribution as pyribs' first Gaussian batch), which qdkit's
loop evaluates before the first iteration (540 extra evaluations, 0.01% of a
10,000-iteration run). pyribs scores its candidates with the NumPy functions below,
checked against qdkit's JAX tasks; both libraries' CMA-MAE QD-scores are their result
archives'.

Reported per algorithm and library: the normalised QD-score (QD-score / 10,000 cells,
the papers' convention: fitness in [0, 100]), coverage, and wall time of the run after
a warm-up (qdkit: a 1-iteration run that compiles, its time shown as ``+compile``;
pyribs: a 2-iteration run that lets numba compile); then the pyribs/qdkit time ratio.
Nothing here is a test: it prints what it measured.

    python benchmarks/dqd.py --iterations 1000             # one seed, both functions
    python benchmarks/dqd.py --quick                       # smoke run
    python benchmarks/dqd.py --pyribs-cma purecma ...      # pyribs' CMA-ES with purecma's update
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import machine  # benchmarks/machine.py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import emitters  # noqa: E402
from qdkit import GridArchive, map_elites, tasks  # noqa: E402

ALGORITHMS = ("map-elites", "cma-me", "cma-mae", "cma-mae-best", "omg-mega", "cma-mega")
QDKIT_ONLY = ("cma-mae-best",)
BOUND, SHIFT, CELLS = 5.12, 0.4 * 5.12, (100, 100)


# ----------------------------------------------------------------- NumPy tasks
def projection_np(x: np.ndarray, function: str):
    """Fitness, fitness gradient, descriptors, descriptor Jacobian (pyribs' layout)."""
    n = x.shape[1]
    z = x - SHIFT
    if function == "sphere":
        raw, draw = np.sum(z * z, axis=1), 2 * z
        worst = n * (BOUND + SHIFT) ** 2
    else:
        raw = 10 * n + np.sum(z * z - 10 * np.cos(2 * np.pi * z), axis=1)
        draw = 2 * z + 20 * np.pi * np.sin(2 * np.pi * z)
        worst = n * (10 + (BOUND + SHIFT) ** 2 + 10)
    fitness = 100 * (1 - raw / worst)
    dfitness = -100 * draw / worst
    outside = np.abs(x) > BOUND
    folded = np.where(outside, BOUND / np.where(outside, x, 1.0), x)
    dfold = np.where(outside, -BOUND / np.where(outside, x, 1.0) ** 2, 1.0)
    half = n // 2
    descriptors = np.stack([folded[:, :half].sum(1), folded[:, half:].sum(1)], axis=1)
    jac = np.zeros((x.shape[0], 2, n))
    jac[:, 0, :half], jac[:, 1, half:] = dfold[:, :half], dfold[:, half:]
    return fitness, dfitness, descriptors, jac


def check_numpy_task(task, function: str, dims: int) -> None:
    x = np.random.default_rng(0).uniform(-7, 7, size=(64, dims)).astype(np.float32)
    f, df, d, dd = projection_np(x.astype(np.float64), function)
    evaluation, jac = task.jacobian(jax.random.key(0), jnp.asarray(x))
    np.testing.assert_allclose(evaluation.fitness, f, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(evaluation.descriptors, d, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(jac[:, 0], df, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(jac[:, 1:], dd, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------- qdkit
def qdkit_run(name: str, task, iterations: int, seed: int) -> dict:
    g = task.example_genotype
    zero = jnp.zeros_like(g)
    lr, tmin = (0.01, 0.0) if name.startswith("cma-mae") else (1.0, -np.inf)
    replacement = "best" if name == "cma-mae-best" else "threshold"
    if name == "map-elites":
        emitter = emitters.gaussian(540, 0.5)
    elif name == "cma-me":
        emitter = emitters.evolution_strategy(g, 36, num_emitters=15, sigma0=0.5, x0=zero)
    elif name.startswith("cma-mae"):
        emitter = emitters.evolution_strategy(
            g, 36, num_emitters=15, sigma0=0.5, ranker="imp", selection="mu", restart="basic", x0=zero
        )
    elif name == "omg-mega":
        emitter = emitters.omg_mega(task.jacobian, g, 270, sigma_g=10.0)
    else:
        emitter = emitters.cma_mega(task.jacobian, g, 35, num_emitters=15, sigma0=10.0, lr=1.0, x0=zero)
    archive = GridArchive.create(
        shape=CELLS,
        lower=task.lower,
        upper=task.upper,
        example_genotype=g,
        learning_rate=lr,
        threshold_min=tmin,
        replacement=replacement,
    )
    chunk = max(1, min(iterations, 500))

    def go(n):
        start = time.perf_counter()
        state = map_elites.init(jax.random.key(seed), task, archive, emitter, num_initial=540)
        state, _ = map_elites.run(state, task, emitter, n, chunk_size=chunk)
        jax.block_until_ready(state)
        return state, time.perf_counter() - start

    _, compile_seconds = go(1)  # compiles init and the chunk (its length is dynamic)
    state, seconds = go(iterations)
    return {**summary(state.archive.results().fitness, seconds), "compile": compile_seconds}


def summary(fitness, seconds: float) -> dict:
    fitness = np.asarray(fitness, np.float64)
    occupied = np.isfinite(fitness)
    return {
        "qd": float(np.sum(np.maximum(fitness[occupied], 0.0)) / fitness.size),
        "coverage": float(occupied.mean()),
        "seconds": seconds,
    }


# ---------------------------------------------------------------------- pyribs
@contextlib.contextmanager
def purecma_update_in_pyribs() -> Iterator[None]:
    """Make pyribs' CMA-ES update its covariance as Hansen's purecma (and qdkit) do.

    pyribs 0.12's ``CMAEvolutionStrategy.tell`` departs from purecma in two places: its
    evolution path ``pc`` accumulates ``mean - old_mean`` without dividing by sigma, and
    its rank-one term is ``c1 * c1 * pc pc^T`` instead of ``c1 * pc pc^T``. This patch
    keeps pyribs' code and corrects both from outside: during ``tell`` its ``pc`` holds
    purecma's path times the current sigma (so its own recursion yields exactly that),
    and the covariance update uses ``c1 * (pc / sigma)(pc / sigma)^T``. Everything else
    (ranking, restarts, sampling, the sigma update) stays pyribs'. An experiment to find
    what the CMA-MAE and CMA-MEGA gaps to pyribs come from; not a fix of pyribs. The
    class is restored on exit.
    """
    from ribs.emitters.opt import _cma_es

    cls = _cma_es.CMAEvolutionStrategy
    original_tell, original_update = cls.tell, cls.__dict__["_calc_cov_update"]

    def cov_update(cov, c1a, cmu, c1, pc, sigma, rank_mu_update, weights):
        return (
            cov * (1 - c1a - cmu * np.sum(weights))
            + (c1 / sigma**2) * np.outer(pc, pc)
            + rank_mu_update * cmu / sigma**2
        )

    def tell(self, ranking_indices, ranking_values, num_parents):
        sigma = self.sigma
        self.pc = self.pc * sigma
        try:
            original_tell(self, ranking_indices, ranking_values, num_parents)
        finally:
            self.pc = self.pc / sigma

    cls._calc_cov_update, cls.tell = staticmethod(cov_update), tell
    try:
        yield
    finally:
        cls._calc_cov_update, cls.tell = original_update, original_tell


def pyribs_run(name: str, function: str, dims: int, iterations: int, seed: int) -> dict:
    from ribs.archives import GridArchive as RibsGrid
    from ribs.emitters import (
        EvolutionStrategyEmitter,
        GaussianEmitter,
        GradientArborescenceEmitter,
        GradientOperatorEmitter,
    )
    from ribs.schedulers import Scheduler

    half = dims // 2
    ranges = [(-BOUND * half, BOUND * half), (-BOUND * (dims - half), BOUND * (dims - half))]
    x0 = np.zeros(dims)
    kwargs = {"learning_rate": 0.01, "threshold_min": 0.0} if name == "cma-mae" else {}
    archive = RibsGrid(solution_dim=dims, dims=CELLS, ranges=ranges, seed=seed, **kwargs)
    result = RibsGrid(solution_dim=dims, dims=CELLS, ranges=ranges, seed=seed) if name == "cma-mae" else None
    seeds = np.random.SeedSequence(seed).generate_state(15)
    dqd = name in ("omg-mega", "cma-mega")
    if name == "map-elites":
        emitter_list = [GaussianEmitter(archive, sigma=0.5, x0=x0, batch_size=540, seed=int(seeds[0]))]
    elif name in ("cma-me", "cma-mae"):
        options = (
            {"ranker": "2imp", "selection_rule": "filter", "restart_rule": "no_improvement"}
            if name == "cma-me"
            else {"ranker": "imp", "selection_rule": "mu", "restart_rule": "basic"}
        )
        emitter_list = [
            EvolutionStrategyEmitter(archive, x0=x0, sigma0=0.5, batch_size=36, seed=int(s), **options) for s in seeds
        ]
    elif name == "omg-mega":
        emitter_list = [
            GradientOperatorEmitter(
                archive, sigma=0.0, sigma_g=10.0, initial_solutions=np.random.default_rng(seed).normal(0, 0.5, (270, dims)),
                measure_gradients=True, normalize_grad=True, batch_size=270, seed=int(seeds[0]),
            )
        ]  # fmt: skip
    else:
        emitter_list = [
            GradientArborescenceEmitter(
                archive, x0=x0, sigma0=10.0, lr=1.0, grad_opt="gradient_ascent", selection_rule="mu", batch_size=35,
                seed=int(s),
            )
            for s in seeds
        ]  # fmt: skip
    scheduler = Scheduler(archive, emitter_list, result_archive=result)
    start = time.perf_counter()
    for _ in range(iterations):  # numba compiles on the first calls (warmed up by the caller)
        if dqd:
            solutions = scheduler.ask_dqd()
            f, df, d, dd = projection_np(solutions, function)
            scheduler.tell_dqd(f, d, np.concatenate([df[:, None, :], dd], axis=1))
        solutions = scheduler.ask()
        f, _, d, _ = projection_np(solutions, function)
        scheduler.tell(f, d)
    seconds = time.perf_counter() - start
    final = result if result is not None else archive
    fitness = np.full(int(np.prod(CELLS)), -np.inf)
    data = final.data(["index", "objective"])
    fitness[data["index"]] = data["objective"]
    return summary(fitness, seconds)


# ------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--dims", type=int, default=100)
    parser.add_argument("--functions", nargs="+", default=["sphere", "rastrigin"], choices=["sphere", "rastrigin"])
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-pyribs", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke run: 10-D, 5 iterations")
    parser.add_argument(
        "--pyribs-cma", choices=["as-is", "purecma"], default="as-is",
        help="purecma: pyribs' CMA-ES with purecma's evolution path and rank-one update (an experiment)",
    )  # fmt: skip
    args = parser.parse_args()
    with purecma_update_in_pyribs() if args.pyribs_cma == "purecma" else contextlib.nullcontext():
        run(args)


def run(args) -> None:
    warnings.filterwarnings("ignore", message=".*was empty before adding solutions.*")
    if args.quick:
        args.iterations, args.dims = 5, 10
    print(f"# DQD benchmark: {args.dims}-D, {args.iterations} iterations x 540 evaluations, seed {args.seed}")
    print(f"# {machine.cpu()}, jax {jax.__version__}")
    print(f"# pyribs' CMA-ES update: {args.pyribs_cma}" + ("" if args.pyribs_cma == "as-is" else
          " (its covariance update is then plain NumPy, not numba: pyribs' times are not its own speed)"))  # fmt: skip
    print(
        "| function | algorithm | qdkit QD | qdkit cov | qdkit s (+compile) | pyribs QD | pyribs cov | pyribs s "
        "| time pyribs/qdkit |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for function in args.functions:
        base = tasks.get(f"{function}_proj", dims=args.dims)
        check_numpy_task(base, function, args.dims)
        task = dataclasses.replace(base, init=lambda key, n, d=args.dims: 0.5 * jax.random.normal(key, (n, d)))
        for name in args.algorithms:
            ours = qdkit_run(name, task, args.iterations, args.seed)
            row = (
                f"| {function} | {name} | {ours['qd']:.2f} | {ours['coverage']:.1%} "
                f"| {ours['seconds']:.1f} (+{ours['compile']:.1f}) |"
            )
            if args.skip_pyribs or name in QDKIT_ONLY:
                print(row + " – | – | – | – |", flush=True)
                continue
            pyribs_run(name, function, args.dims, 2, args.seed)  # warm-up: numba compilation
            theirs = pyribs_run(name, function, args.dims, args.iterations, args.seed)
            ratio = theirs["seconds"] / ours["seconds"]
            print(
                row + f" {theirs['qd']:.2f} | {theirs['coverage']:.1%} | {theirs['seconds']:.1f} | {ratio:.1f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
