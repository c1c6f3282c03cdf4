"""Ask/tell with the evaluation in a pool of worker processes (no JAX in the scoring).

The arm of ``qdkit.tasks.get("arm")``, written in NumPy as an evaluator outside JAX
would be: each batch is split over ``--workers`` processes. qdkit's emitter proposes
the batch (``ask``) and inserts the results (``tell``).

python examples/ask_tell_pool.py --iterations 300 --workers 2
"""

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np


def evaluate_arm(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Planar arm of len(angles[0]) links of length 1/n: fitness is minus the variance
    of the joint angles, the descriptor the end effector's (x, y)."""
    absolute = np.cumsum(angles, axis=1)
    n = angles.shape[1]
    x = np.cos(absolute).sum(axis=1) / n
    y = np.sin(absolute).sum(axis=1) / n
    return -angles.var(axis=1), np.stack([x, y], axis=1)


def main() -> None:
    import multiprocessing

    import qdkit  # imported here: the workers need none of it
    from emitters import iso_line

    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--dof", type=int, default=8)
    args = parser.parse_args()

    archive = qdkit.GridArchive.create(
        shape=(32, 32), lower=[-1, -1], upper=[1, 1], example_genotype=np.zeros(args.dof, np.float32)
    )
    emitter = iso_line(batch_size=args.batch_size, iso_sigma=0.01, line_sigma=0.1, lower=-np.pi, upper=np.pi)
    rng = np.random.default_rng(0)
    initial = rng.uniform(-np.pi, np.pi, (args.batch_size, args.dof)).astype(np.float32)
    scheduler = qdkit.Scheduler(archive, emitter, initial=initial, seed=0, qd_offset=-(np.pi**2))

    start = time.perf_counter()
    # "spawn": the parent runs JAX's threads, which a forked child must not inherit
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for _ in range(args.iterations + 1):  # the initial population, then the iterations
            solutions = scheduler.ask()
            parts = list(pool.map(evaluate_arm, np.array_split(solutions, args.workers)))
            fitness = np.concatenate([f for f, _ in parts])
            descriptors = np.concatenate([d for _, d in parts])
            row = scheduler.tell(fitness, descriptors)
    seconds = time.perf_counter() - start
    print(f"{args.iterations} iterations in {seconds:.1f} s with {args.workers} workers")
    print(f"QD-score {float(row['qd_score']):.1f}, coverage {float(row['coverage']):.1%}, "
          f"{int(row['num_elites'])} elites")  # fmt: skip


if __name__ == "__main__":
    main()
