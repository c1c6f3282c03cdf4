"""Archive distillation on the maze: how close the distilled DCG policy gets to each cell.

DCG-MAP-Elites (with DCRL's actor injection) runs on a map of the maze, with policies
that see their position and heading (``observe_position``; the distilled policy cannot
know where it is otherwise), then its descriptor-conditioned actor is run for every
cell's target (:func:`emitters.evaluate_distilled`). Settings compared (``--variants``):

- ``paper``: the papers' similarity on the episode's descriptor, length-scale 0.1;
- ``state-0.03`` / ``state-0.015``: the similarity on the position reached by each step
  (``similarity_on="state"``), with a length-scale of about half a cell (a cell is
  0.0625 wide in normalised units on the 32 x 32 grid) or a quarter of one;
- ``...-bound``: the same with ``return_bound=True`` (critic targets no lower than the
  return an episode actually got for its aim; not in the papers).

Maps (``--maps``): ``empty`` (only the borders: reaching a target is a matter of
control) and ``standard`` (Kheperax's maze: the policy must also find its way around
walls). TD3 settings are the CPU-sized ones of ``maze_dcg.py``.

Prints what it measured; nothing here is a test.

    python benchmarks/maze_distill.py             # 12 runs of 2-4 minutes on 2 cores
    python benchmarks/maze_distill.py --quick     # smoke run
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import emitters  # noqa: E402
from qdkit import GridArchive, map_elites, tasks  # noqa: E402

SHAPE = (32, 32)
VARIANTS = {
    "paper": {},
    "state-0.03": {"similarity_on": "state", "length_scale": 0.03},
    "state-0.015": {"similarity_on": "state", "length_scale": 0.015},
    "state-0.03-bound": {"similarity_on": "state", "length_scale": 0.03, "return_bound": True},
    "state-0.015-bound": {"similarity_on": "state", "length_scale": 0.015, "return_bound": True},
}


def run(task, options, seed, iterations, batch, config):
    emitter = emitters.dcg(task, batch, config=config, num_injected=8, **options)
    archive = GridArchive.create(
        shape=SHAPE, lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    start = time.perf_counter()
    state = map_elites.init(jax.random.key(seed), task, archive, emitter)
    state, metrics = map_elites.run(state, task, emitter, iterations, chunk_size=50)
    seconds = time.perf_counter() - start
    policy = emitters.distilled_policy(state.emitter_state, task)
    report, _ = emitters.evaluate_distilled(policy, task, state.archive, jax.random.key(seed))
    qd = float(metrics["qd_score"][-1]) / (SHAPE[0] * SHAPE[1] * -task.qd_offset)
    return qd, report, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=32, help="policy hidden width")
    parser.add_argument("--critic-steps", type=int, default=200)
    parser.add_argument("--maps", default="empty,standard")
    parser.add_argument("--variants", default="paper,state-0.03,state-0.015", help=f"some of {', '.join(VARIANTS)}")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    config = emitters.TD3Config(critic_hidden=(128, 128), critic_steps=args.critic_steps, batch_size=256,
                                pg_steps=50, pg_batch_size=64, buffer_size=1_000_000)  # fmt: skip
    if args.quick:
        args.iterations, args.seeds, args.batch = 4, 1, 32
        config = config._replace(critic_hidden=(32, 32), critic_steps=10, pg_steps=4, buffer_size=20_000)
    print(
        f"jax {jax.__version__}, {os.cpu_count()} CPU cores; DCG-ME (8 injected actors), batch {args.batch}, "
        f"{args.iterations} iterations, {args.seeds} seed(s), policies 9-{args.hidden}-2 seeing position and heading"
    )
    print(f"TD3/PG settings: {config}")
    print(
        "\n| map | variant | QD-score (norm.) | filled cells | reached in own cell | within one cell | "
        "filled cells reached by some target | mean distance | minutes |\n|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    for map_name in args.maps.split(","):
        task = tasks.get("maze", map=map_name, observe_position=True, hidden=args.hidden)
        for variant in variants:
            rows = []
            for seed in range(args.seeds):
                qd, report, seconds = run(task, VARIANTS[variant], seed, args.iterations, args.batch, config)
                f = report["filled_cells"]
                rows.append(
                    (
                        qd,
                        f["cells"],
                        f["reached_fraction"],
                        f["within_one_cell_fraction"],
                        report["filled_cells_reached_by_some_target"],
                        f["mean_distance"],
                        seconds / 60,
                    )
                )
            a = np.asarray(rows, np.float64)
            m, s = a.mean(axis=0), a.std(axis=0)
            print(
                f"| {map_name} | {variant} | {m[0]:.3f} ± {s[0]:.3f} | {m[1]:.0f} | {m[2]:.1%} ± {s[2]:.1%} | "
                f"{m[3]:.1%} ± {s[3]:.1%} | {m[4]:.1%} | {m[5]:.3f} ± {s[5]:.3f} | {m[6]:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
