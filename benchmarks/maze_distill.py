"""Archive distillation on the maze: how close the distilled DCG policy gets to each cell.

DCG-MAP-Elites (with DCRL's actor injection) runs on a map of the maze, with policies
that see their position and heading (``observe_position``; the distilled policy cannot
know where it is otherwise), then its descriptor-conditioned actor is run for every
cell's target (:func:`emitters.distill.distill`, the pipeline of ``qdkit distill``).
Settings compared (``--variants``):

- ``paper``: the papers' similarity on the episode's descriptor, length-scale 0.1;
- ``state-0.03`` / ``state-0.015``: the similarity on the position reached by each step
  (``similarity_on="state"``), with a length-scale of about half a cell (a cell is
  0.0625 wide in normalised units on the 32 x 32 grid) or a quarter of one;
- ``...-bound``: the same with ``return_bound=True`` (critic targets no lower than the
  return an episode actually got for its aim; not in the papers).

Maps (``--maps``): ``empty`` (only the borders: reaching a target is a matter of
control) and ``standard`` (Kheperax's maze: the policy must also find its way around
walls). TD3 settings are the CPU-sized ones of ``maze_dcg.py`` (not the papers'). For reference, the
archive's own elites are also replayed with a 0.1% action noise
(:func:`emitters.evaluate_elites`): what a close copy of them would reach.

Prints what it measured; nothing here is a test.

    python benchmarks/maze_distill.py             # 12 runs of 2-4 minutes on 2 cores
    python benchmarks/maze_distill.py --quick     # smoke run
    python benchmarks/maze_distill.py --variants state-0.015 --refine 1000   # plus refine_distilled
    python benchmarks/maze_distill.py --variants state-0.015 --imitate 3000  # plus imitate_distilled
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import machine  # benchmarks/machine.py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import emitters  # noqa: E402
from emitters.distill import distill  # noqa: E402
from qdkit import GridArchive, map_elites, tasks  # noqa: E402

SHAPE = (32, 32)
ELITE_NOISE = 0.001
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
    policy = emitters.distilled_policy(state.emitter_state, task, state.archive)
    # the pipeline of `qdkit distill`, with the reference: the archive's own elites, replayed with a 0.1% action noise
    result = distill(task, state.archive, jax.random.key(seed), policy=policy, elite_noise=ELITE_NOISE)
    qd = float(metrics["qd_score"][-1]) / (SHAPE[0] * SHAPE[1] * -task.qd_offset)
    return qd, result.report, seconds, policy, state.archive, result.report["elites_with_action_noise"]["filled_cells"]


def refine(task, policy, archive, seed, steps, hidden=None):
    """The pipeline with ``refine`` (from the DCG actor, or a fresh actor with ``hidden``);
    returns (report, seconds)."""
    start = time.perf_counter()
    result = distill(task, archive, jax.random.key(seed), policy=None if hidden else policy, refine=steps,
                     hidden=hidden, elite_noise=0)  # fmt: skip
    return result.report, time.perf_counter() - start


def imitate(task, archive, seed, steps, teacher):
    """The pipeline with ``imitate`` (a fresh 256-256 actor); returns (report, seconds)."""
    start = time.perf_counter()
    result = distill(task, archive, jax.random.key(seed), imitate=steps, teacher=teacher, elite_noise=0)
    return result.report, time.perf_counter() - start


def grouped(rows):
    """``(name, mean, std)`` over the seeds, for each name of ``(name, values)`` rows, in order."""
    for name in dict.fromkeys(k for k, _ in rows):
        a = np.asarray([v for k, v in rows if k == name], np.float64)
        yield name, a.mean(axis=0), a.std(axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed ... first-seed + seeds - 1")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=32, help="policy hidden width")
    parser.add_argument("--critic-steps", type=int, default=200)
    parser.add_argument("--maps", default="empty,standard")
    parser.add_argument("--variants", default="paper,state-0.03,state-0.015", help=f"some of {', '.join(VARIANTS)}")
    parser.add_argument("--refine", type=int, default=0, metavar="STEPS",
                        help="also fine-tune the distilled actor, and a fresh 64-64 one, for STEPS steps "
                             "(emitters.refine_distilled) and report them in a second table")  # fmt: skip
    parser.add_argument("--imitate", type=int, default=0, metavar="STEPS",
                        help="also train a fresh 256-256 actor by imitation (emitters.imitate_distilled) of the "
                             "maze's shortest-path teacher and of the archive's elites, and report them in a third table")  # fmt: skip
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join(VARIANTS)}")
    config = emitters.TD3Config(critic_hidden=(128, 128), critic_steps=args.critic_steps, batch_size=256,
                                pg_steps=50, pg_batch_size=64, buffer_size=1_000_000, pg_lr=1e-3)  # fmt: skip
    if args.quick:
        args.iterations, args.seeds, args.batch = 4, 1, 32
        args.refine = min(args.refine, 20)
        args.imitate = min(args.imitate, 20)
        config = config._replace(critic_hidden=(32, 32), critic_steps=10, pg_steps=4, buffer_size=20_000)
    print(
        f"jax {jax.__version__}, {machine.cpu()}; DCG-ME (8 injected actors), batch {args.batch}, "
        f"{args.iterations} iterations, {args.seeds} seed(s), policies 9-{args.hidden}-2 seeing position and heading"
    )
    print(f"TD3/PG settings: {config}")
    print(f"'elites with noise': the archive's own elites replayed with action noise {ELITE_NOISE} "
          "(emitters.evaluate_elites), scored like the distilled policy")  # fmt: skip
    print(
        "\n| map | variant | QD-score (norm.) | filled cells | reached in own cell | within one cell | "
        "filled cells reached by some target | mean distance | elites with noise: own cell | "
        "elites with noise: within one | minutes |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    refined_rows, imitated_rows = [], []
    for map_name in args.maps.split(","):
        task = tasks.get("maze", map=map_name, observe_position=True, hidden=args.hidden)
        for variant in variants:
            rows = []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                qd, report, seconds, policy, archive, elites = run(
                    task, VARIANTS[variant], seed, args.iterations, args.batch, config
                )
                f = report["filled_cells"]
                if args.refine:
                    for start, hidden in (("DCG actor", None), ("fresh 64-64", (64, 64))):
                        r, secs = refine(task, policy, archive, seed, args.refine, hidden)
                        g = r["filled_cells"]
                        refined_rows.append(((map_name, variant, start), (f["reached_fraction"], f["within_one_cell_fraction"],
                                             g["reached_fraction"], g["within_one_cell_fraction"], g["mean_distance"], secs)))  # fmt: skip
                for teacher in ("task", "elites") if args.imitate else ():
                    r, secs = imitate(task, archive, seed, args.imitate, teacher)
                    g = r["filled_cells"]
                    imitated_rows.append(((map_name, variant, teacher), (g["reached_fraction"], g["within_one_cell_fraction"],
                                          g["mean_distance"], g["mean_fitness"], report["archive_mean_fitness"], secs)))  # fmt: skip
                rows.append(
                    (
                        qd,
                        f["cells"],
                        f["reached_fraction"],
                        f["within_one_cell_fraction"],
                        report["filled_cells_reached_by_some_target"],
                        f["mean_distance"],
                        elites["reached_fraction"],
                        elites["within_one_cell_fraction"],
                        seconds / 60,
                    )
                )
            a = np.asarray(rows, np.float64)
            m, s = a.mean(axis=0), a.std(axis=0)
            print(
                f"| {map_name} | {variant} | {m[0]:.3f} ± {s[0]:.3f} | {m[1]:.0f} | {m[2]:.1%} ± {s[2]:.1%} | "
                f"{m[3]:.1%} ± {s[3]:.1%} | {m[4]:.1%} | {m[5]:.3f} ± {s[5]:.3f} | {m[6]:.1%} ± {s[6]:.1%} | "
                f"{m[7]:.1%} ± {s[7]:.1%} | {m[8]:.1f} |",
                flush=True,
            )
    if refined_rows:
        print(f"\nrefine_distilled, {args.refine} steps (batch 64, Adam 1e-3), on the filled cells:")
        print("\n| map | variant | start | own cell before | within one before | own cell after | within one after | "
              "mean distance after | seconds |\n|---|---|---|---:|---:|---:|---:|---:|---:|")  # fmt: skip
        for name, m, s in grouped(refined_rows):
            print(f"| {' | '.join(name)} | {m[0]:.1%} | {m[1]:.1%} | {m[2]:.1%} ± {s[2]:.1%} | {m[3]:.1%} ± {s[3]:.1%} | "
                  f"{m[4]:.3f} ± {s[4]:.3f} | {m[5]:.0f} |", flush=True)  # fmt: skip

    if imitated_rows:
        print(f"\nimitate_distilled, {args.imitate} steps (fresh 256-256 actor, batch 64, Adam 1e-3, DAgger mix 0.3), "
              "on the filled cells; teacher 'task': shortest paths on the map, 'elites': the archive's elites:")  # fmt: skip
        print("\n| map | variant | teacher | own cell | within one cell | mean distance | mean fitness | archive fitness | "
              "seconds |\n|---|---|---|---:|---:|---:|---:|---:|---:|")  # fmt: skip
        for name, m, s in grouped(imitated_rows):
            print(f"| {' | '.join(name)} | {m[0]:.1%} ± {s[0]:.1%} | {m[1]:.1%} ± {s[1]:.1%} | {m[2]:.3f} ± {s[2]:.3f} | "
                  f"{m[3]:.1f} | {m[4]:.1f} | {m[5]:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
