"""DCG-MAP-Elites against PGA-MAP-Elites and Iso+LineDD MAP-Elites on the maze.

All three run on the same budget: ``--iterations`` iterations of ``--batch`` policies
(episodes of 250 steps; MLP 5-8-2 policies; 32 x 32 grid over the final position).
PGA and DCG use the same CPU-sized TD3 settings (printed below; the papers' are
larger: 3000 critic steps, 256x256 critics, 150 PG steps; and their minibatches of 100
and PG learning rate of 5e-3 differ from the 256 and 1e-3 here); DCG adds 8 injected actors
per batch (DCRL). The table gives the final QD-score (normalised by the number of cells
and the fitness range, so 1 would be every cell at the goal), coverage and max fitness,
mean ± std over seeds; the figure the QD-score curves with 95% bands. Then the
distilled DCG policy is run for every cell's target of its final archive. Finally the
raw speeds: maze evaluations per second, critic (TD3) updates per second and PG steps
per second.

``dcg-learned`` (in ``--methods``; no paper has tried it) is DCG-ME over *learned*
descriptors: a linear projection of the robot's path (the maze's features) trained from
200 simulated similarity judgments (the judge sees the final position), refitted at 0,
10, 25 and 50% of the run (QDHF), so the critic is conditioned on a latent that moves
at each refit. ``iso-line-learned`` is QDHF with Iso+LineDD on the same schedule. Their
archives are scored with the ground truth: their elites re-inserted into the 32 x 32
grid over the final position (QD-score and coverage in the table; no curve).

Prints what it measured; nothing here is a test.

    python benchmarks/maze_dcg.py                 # full (about 20 minutes on 2 cores)
    python benchmarks/maze_dcg.py --quick         # smoke run
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
import feedback  # noqa: E402
from qdkit import GridArchive, map_elites, plot, tasks  # noqa: E402

SHAPE = (32, 32)
METHODS = ("iso-line", "pga", "dcg", "dcg-learned", "iso-line-learned")
JUDGMENTS = 200  # the QDHF paper's maze budget


def build(method: str, task, batch: int, config: emitters.TD3Config):
    if method.startswith("iso-line"):
        return emitters.iso_line(batch, 0.005, 0.05)
    if method == "pga":
        return emitters.pga(task, batch, config=config)
    return emitters.dcg(task, batch, config=config, num_injected=8)


def ground_truth(task, archive):
    """``(QD-score normalised, coverage)`` of an archive's elites re-inserted into the
    32 x 32 grid over the final position (the maze is deterministic: re-scoring an
    elite gives its descriptor again)."""
    occupied = np.asarray(archive.occupied)
    genotypes = jax.tree.map(lambda g: np.asarray(g)[occupied], archive.genotypes)
    truth = GridArchive.create(shape=SHAPE, lower=task.lower, upper=task.upper, example_genotype=task.example_genotype)
    evaluation = jax.jit(task.score)(jax.random.key(0), genotypes)
    truth, _ = truth.add(genotypes, evaluation.fitness, evaluation.descriptors)
    return float(truth.qd_score(task.qd_offset)) / (SHAPE[0] * SHAPE[1] * -task.qd_offset), float(truth.coverage())


def run(method, task, seed, iterations, batch, config):
    emitter = build(method, task, batch, config)
    refitter, callbacks, chunk = None, [], 50
    if method.endswith("-learned"):
        projection = feedback.Projection(task.feature_dim, 2)
        archive = feedback.LearnedArchive.create(
            shape=SHAPE, projection=projection, params=projection.init(jax.random.key(seed + 7)),
            example_genotype=task.example_genotype,
        )  # fmt: skip
        refitter = feedback.Refitter(feedback.SimulatedJudge.from_task(task, seed=seed), iterations=iterations,
                                     judgments=JUDGMENTS, seed=seed)  # fmt: skip
        callbacks, chunk = [refitter], 25
    else:
        archive = GridArchive.create(
            shape=SHAPE, lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
        )
    start = time.perf_counter()
    state = map_elites.init(jax.random.key(seed), task, archive, emitter)
    if refitter is not None:
        state = refitter.start(state)
    state, metrics = map_elites.run(state, task, emitter, iterations, chunk_size=chunk, callbacks=callbacks)
    seconds = time.perf_counter() - start
    scale = SHAPE[0] * SHAPE[1] * -task.qd_offset
    qd, coverage = ground_truth(task, state.archive)
    return state, {**metrics, "qd_norm": metrics["qd_score"] / scale, "truth": (qd, coverage)}, seconds


def speeds(task, config, batch, desc_dim=2):
    score = jax.jit(task.score)
    params = task.initial_genotypes(jax.random.key(0), batch)
    jax.block_until_ready(score(jax.random.key(1), params).fitness)
    start = time.perf_counter()
    for i in range(5):
        jax.block_until_ready(score(jax.random.key(2 + i), params).fitness)
    evals = 5 * batch / (time.perf_counter() - start)

    evaluation = score(jax.random.key(1), params)
    desc = emitters.rl.normalise(evaluation.descriptors, task.lower, task.upper)
    rows, valid = emitters.rl.transitions_to_rows(evaluation.extras["transitions"], desc)
    obs, act = task.policy.sizes[0], task.policy.sizes[-1]
    buffer = emitters.rl.buffer_add(emitters.rl.buffer_init(100_000, obs, act, desc_dim), rows, valid)
    nets = emitters.rl.make_networks(task.policy, desc_dim, config)
    learner = emitters.rl.td3_init(jax.random.key(3), nets, config)
    train = jax.jit(lambda lr, k: emitters.rl.td3_train(lr, buffer, k, nets, config, target_descs=desc))
    jax.block_until_ready(train(learner, jax.random.key(4))[0].critic)
    start = time.perf_counter()
    for i in range(3):
        learner = jax.block_until_ready(train(learner, jax.random.key(5 + i))[0])
    critic = 3 * (config.critic_steps // config.policy_delay * config.policy_delay) / (time.perf_counter() - start)

    n = batch // 2
    vary = jax.jit(lambda k: emitters.rl.pg_variation(jax.tree.map(lambda x: x[:n], params), task.policy,
                                                      learner.critic, buffer, k, nets, config, desc[:n]))  # fmt: skip
    jax.block_until_ready(vary(jax.random.key(9)))
    start = time.perf_counter()
    jax.block_until_ready(vary(jax.random.key(10)))
    pg = n * config.pg_steps / (time.perf_counter() - start)
    return evals, critic, pg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--plot", default=os.path.join(os.path.dirname(__file__), "maze_dcg.png"))
    parser.add_argument("--speeds-only", action="store_true", help="only the speeds, for the maze and ant_omni")
    parser.add_argument("--methods", default="iso-line,pga,dcg,dcg-learned", help=f"some of {', '.join(METHODS)}")
    args = parser.parse_args()
    config = emitters.TD3Config(critic_hidden=(128, 128), critic_steps=200, batch_size=256, pg_steps=50,
                                pg_batch_size=64, buffer_size=300_000, pg_lr=1e-3)  # fmt: skip
    if args.quick:
        args.iterations, args.seeds, args.batch = 6, 1, 32
        config = config._replace(critic_hidden=(32, 32), critic_steps=10, pg_steps=4, buffer_size=20_000)
    task = tasks.get("maze", episode_length=250)
    if args.speeds_only:
        for name, t in [("maze (250 steps)", task), ("ant_omni (brax spring, 100 steps)",
                                                     tasks.get("ant_omni", episode_length=100))]:  # fmt: skip
            evals, critic, pg = speeds(t, config, args.batch)
            print(f"{name}: {evals:,.1f} evaluations/s (batch {args.batch}); {critic:,.0f} critic updates/s "
                  f"(batch {config.batch_size}, critic {config.critic_hidden}); {pg:,.0f} PG steps/s "
                  f"({args.batch // 2} policies, batch {config.pg_batch_size})", flush=True)  # fmt: skip
        return
    print(f"jax {jax.__version__}, {machine.cpu()}; maze (standard map, 250 steps), batch {args.batch}, "
          f"{args.iterations} iterations, {args.seeds} seed(s)")  # fmt: skip
    print(f"TD3/PG settings: {config}")

    methods = args.methods.split(",")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(METHODS)}")
    curves, finals, dcg_states = {}, {}, []
    for method in methods:
        for seed in range(args.seeds):
            state, metrics, seconds = run(method, task, seed, args.iterations, args.batch, config)
            if not method.endswith("-learned"):  # a learned archive's own QD-score is not the ground truth's
                curves.setdefault(method, []).append(metrics)
            qd, coverage = metrics["truth"]
            finals.setdefault(method, []).append((qd, coverage, metrics["max_fitness"][-1], seconds))
            if method == "dcg":
                dcg_states.append(state)
            print(f"  {method} seed {seed}: QD {qd:.4f}, coverage {coverage:.1%} (ground truth), {seconds:.0f} s",
                  flush=True)  # fmt: skip

    print("\nQD-score and coverage of the ground truth (the 32 x 32 grid over the final position; a learned run's "
          "elites re-inserted into it):")  # fmt: skip
    print("\n| method | QD-score (normalised) | coverage | max fitness | minutes per run |\n|---|---:|---:|---:|---:|")
    for method, rows in finals.items():
        a = np.asarray(rows)
        print(f"| {method} | {a[:, 0].mean():.4f} ± {a[:, 0].std():.4f} | {a[:, 1].mean():.1%} ± {a[:, 1].std():.1%} "
              f"| {a[:, 2].mean():.1f} ± {a[:, 2].std():.1f} | {a[:, 3].mean() / 60:.1f} |")  # fmt: skip

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    plot.compare_runs(curves, key="qd_norm", ax=axes[0])
    axes[0].set_ylabel("QD-score (normalised)")
    plot.compare_runs(curves, key="coverage", ax=axes[1])
    fig.suptitle(f"maze: {args.seeds} seed(s), batch {args.batch} (runs over the task's descriptors)")
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    print(f"wrote {args.plot}")

    print("\n| distilled DCG policy (per seed) | filled cells | reached in own cell | filled cells reached by some "
          "target | mean distance | mean fitness (archive's) |\n|---|---:|---:|---:|---:|---:|")  # fmt: skip
    for seed, state in enumerate(dcg_states):
        policy = emitters.distilled_policy(state.emitter_state, task, state.archive)
        report, _ = emitters.evaluate_distilled(policy, task, state.archive, jax.random.key(seed))
        f = report["filled_cells"]
        print(f"| seed {seed} | {f['cells']} | {f['reached_fraction']:.1%} | "
              f"{report['filled_cells_reached_by_some_target']:.1%} | {f['mean_distance']:.3f} | "
              f"{f['mean_fitness']:.1f} ({report['archive_mean_fitness']:.1f}) |")  # fmt: skip

    evals, critic, pg = speeds(task, config, args.batch)
    print(
        f"\nspeeds: {evals:,.0f} maze evaluations/s (250 steps each, batch {args.batch}); "
        f"{critic:,.0f} critic updates/s (batch {config.batch_size}, critic {config.critic_hidden}); "
        f"{pg:,.0f} PG steps/s ({args.batch // 2} policies in parallel, batch {config.pg_batch_size})"
    )


if __name__ == "__main__":
    main()
