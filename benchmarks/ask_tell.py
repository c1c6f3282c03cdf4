"""Ask/tell overhead: qdkit.Scheduler against pyribs' Scheduler on the same workload.

Workload: pyribs' sphere tutorial function (shifted sphere, objective scaled to
[0, 100], measures = sums of the two halves of the clipped solution), evaluated in
NumPy outside both libraries; a 100 x 100 grid archive over the measures' range;
one Gaussian emitter (sigma 0.5) or one Iso+LineDD emitter (iso_sigma 0.1,
line_sigma 0.2), at each batch size. Both start from the same initial solutions
(qdkit's first ``ask`` returns them; pyribs' emitters sample around ``x0``, so
pyribs starts with that batch told as its first iteration too).

Timed per iteration: ``ask`` and ``tell`` apart from the evaluation; the overhead is
``ask + tell`` in microseconds, the median of ``--repeats`` runs of ``--iterations``
iterations after a warm-up (qdkit compiles at its first ask and tell). The final
QD-score (offset 0: the objective is already in [0, 100]) shows both searched alike.

    python benchmarks/ask_tell.py                  # full run (a few minutes on 2 cores)
    python benchmarks/ask_tell.py --quick          # smoke run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import machine  # benchmarks/machine.py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402

import qdkit  # noqa: E402
from emitters import gaussian, iso_line  # noqa: E402

SHIFT = 5.12 * 0.4


def sphere(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The shifted sphere of pyribs' tutorials (written here from its definition)."""
    dim = x.shape[1]
    worst = (-5.12 - SHIFT) ** 2 * dim
    objective = (np.sum((x - SHIFT) ** 2, axis=1) - worst) / (0.0 - worst) * 100.0
    clipped = np.where(np.abs(x) > 5.12, 5.12 / np.where(x == 0, 1.0, x), x)
    half = dim // 2
    measures = np.stack([clipped[:, :half].sum(axis=1), clipped[:, half:].sum(axis=1)], axis=1)
    return objective, measures


def bounds(dim: int) -> tuple[float, float]:
    return -5.12 * (dim // 2), 5.12 * (dim // 2)


def qdkit_scheduler(kind: str, dim: int, batch: int, initial: np.ndarray):
    lo, hi = bounds(dim)
    archive = qdkit.GridArchive.create(
        shape=(100, 100), lower=[lo, lo], upper=[hi, hi], example_genotype=np.zeros(dim, np.float32)
    )
    emitter = gaussian(batch, 0.5) if kind == "gaussian" else iso_line(batch, 0.1, 0.2)
    return qdkit.Scheduler(archive, emitter, initial=initial, seed=0)


def ribs_scheduler(kind: str, dim: int, batch: int, initial: np.ndarray):
    from ribs.archives import GridArchive
    from ribs.emitters import GaussianEmitter, IsoLineEmitter
    from ribs.schedulers import Scheduler

    lo, hi = bounds(dim)
    archive = GridArchive(solution_dim=dim, dims=[100, 100], ranges=[(lo, hi), (lo, hi)], seed=0)
    if kind == "gaussian":
        emitter = GaussianEmitter(archive, sigma=0.5, x0=np.zeros(dim), batch_size=batch, seed=0)
    else:
        emitter = IsoLineEmitter(archive, iso_sigma=0.1, line_sigma=0.2, x0=np.zeros(dim), batch_size=batch, seed=0)
    scheduler = Scheduler(archive, [emitter])
    archive.add(initial, *sphere(initial))  # the same initial population, inserted directly
    return scheduler, archive


def timed(scheduler, iterations: int) -> tuple[float, float, float]:
    """Seconds in ask, in the evaluation, in tell, over ``iterations`` iterations."""
    t_ask = t_eval = t_tell = 0.0
    for _ in range(iterations):
        t0 = time.perf_counter()
        solutions = scheduler.ask()
        t1 = time.perf_counter()
        objective, measures = sphere(np.asarray(solutions, np.float64))
        t2 = time.perf_counter()
        scheduler.tell(objective, measures)
        t3 = time.perf_counter()
        t_ask, t_eval, t_tell = t_ask + t1 - t0, t_eval + t2 - t1, t_tell + t3 - t2
    return t_ask, t_eval, t_tell


def qd_score_ribs(archive) -> float:
    return float(archive.stats.qd_score)


def qd_score_qdkit(scheduler) -> float:
    return float(scheduler.archive.qd_score(0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--batch-sizes", default="36,256,1024")
    parser.add_argument("--emitters", default="gaussian,iso_line")
    parser.add_argument("--quick", action="store_true", help="smoke run: few iterations, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.iterations, args.repeats, args.batch_sizes = 20, 1, "36"
    import ribs

    print(f"# ask_tell.py — {machine.cpu()}, "
          f"jax {jax.__version__} ({jax.devices()[0].platform}), ribs {ribs.__version__}")  # fmt: skip
    print(f"# sphere, {args.dim}-D, 100 x 100 grid, {args.iterations} iterations, median of {args.repeats}")
    print("| emitter | batch | library | ask µs | tell µs | overhead µs/iteration | evaluation µs | "
          "overhead ratio | QD-score |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for kind in args.emitters.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            initial = np.random.default_rng(0).normal(0.0, 0.5, (batch, args.dim)).astype(np.float32)
            results = {"qdkit": [], "pyribs": []}
            scores = {}
            for _ in range(args.repeats):  # interleaved: qdkit, pyribs, qdkit, ...
                scheduler = qdkit_scheduler(kind, args.dim, batch, initial)
                scheduler.tell(*sphere(scheduler.ask()))  # the initial population
                timed(scheduler, 5)  # compile the emit and tell programs
                results["qdkit"].append(timed(scheduler, args.iterations))
                scores["qdkit"] = qd_score_qdkit(scheduler)
                ribs_sched, ribs_archive = ribs_scheduler(kind, args.dim, batch, initial)
                timed(ribs_sched, 5)
                results["pyribs"].append(timed(ribs_sched, args.iterations))
                scores["pyribs"] = qd_score_ribs(ribs_archive)
            overhead = {}
            for lib, runs in results.items():
                ask = statistics.median(r[0] for r in runs) / args.iterations * 1e6
                ev = statistics.median(r[1] for r in runs) / args.iterations * 1e6
                tell = statistics.median(r[2] for r in runs) / args.iterations * 1e6
                overhead[lib] = (ask, tell, ev)
            for lib, (ask, tell, ev) in overhead.items():
                ratio = (overhead["pyribs"][0] + overhead["pyribs"][1]) / (ask + tell)
                print(f"| {kind} | {batch} | {lib} | {ask:.0f} | {tell:.0f} | {ask + tell:.0f} | {ev:.0f} | "
                      f"{ratio:.2f}× | {scores[lib]:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
