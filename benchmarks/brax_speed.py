"""How fast brax runs here, which bounds every figure of ``dcg_paper.py``: rollout
steps/s by backend and batch size, our rollout against the raw brax environment and
against QDax's rollout of the same environment, and one DCG-ME iteration taken apart.

1. **Rollouts.** ``task.score`` of ``ant_omni`` and ``walker2d_uni`` (MLP 128x128,
   100-step episodes), compiled, timed warm: environment steps per second for the
   ``spring``, ``positional`` and ``generalized`` backends at batch 64, and for
   ``spring`` at batch 16, 64 and 256. Beside it, the raw brax environment stepped with
   zero actions in the same ``vmap`` + ``lax.scan`` (no policy, no descriptor, no
   transitions kept): the ceiling our wrapper can reach.
2. **QDax side by side.** QDax 0.5's ``walker2d_uni`` (``qdax.tasks.brax.v2``, its
   feet-contact wrapper, its flax MLP of the same widths, its scoring function with
   random resets) against ours, same backend, batch and episode length.
3. **One DCG-ME iteration** on ``ant_omni`` at ``dcg_paper.py``'s CPU scale (batch 64,
   100 steps, 300 critic steps, 20 PG steps), with 64 actor episodes (a batch's worth,
   as the paper's text has it; ``dcg_paper.py`` plays 16, the official code's
   quarter): the offspring's rollout, the emission (Iso+LineDD plus the
   policy-gradient variation of 32 parents), the actor's episodes, and the TD3
   training, each compiled and timed apart.

    python benchmarks/brax_speed.py             # about 15 minutes on 2 cores
    python benchmarks/brax_speed.py --quick     # fewer configurations
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import machine  # benchmarks/machine.py

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import emitters  # noqa: E402
import qdkit  # noqa: E402
from qdkit.tasks.locomotion import _brax_rules  # noqa: E402

LENGTH = 100
HIDDEN = 128


def best_of(fn, *args, repeats: int = 3) -> float:
    """Seconds of the fastest of ``repeats`` warm calls (one call first to compile)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return min(times)


def ours(task_name: str, backend: str, batch: int) -> float:
    task = qdkit.tasks.get(task_name, episode_length=LENGTH, hidden=HIDDEN, backend=backend)
    params = task.initial_genotypes(jax.random.key(0), batch)
    score = jax.jit(lambda k, p: task.score(k, p)[:2])
    return batch * LENGTH / best_of(score, jax.random.key(1), params)


def raw(task_name: str, backend: str, batch: int) -> float:
    """The brax environment alone: reset, then ``LENGTH`` steps of zero actions."""
    task = qdkit.tasks.get(task_name, episode_length=LENGTH, hidden=8, backend=backend)
    env = task.env.env

    def one(key):
        with _brax_rules():
            state = env.reset(key)
            zero = jnp.zeros(env.action_size)
            state, _ = jax.lax.scan(lambda s, _: (env.step(s, zero), None), state, None, length=LENGTH)
        return state.reward

    run = jax.jit(lambda k: jax.vmap(one)(jax.random.split(k, batch)))
    return batch * LENGTH / best_of(run, jax.random.key(1))


def qdax_walker(batch: int) -> float:
    """QDax's own walker2d_uni rollout: its environment, wrappers, MLP and scoring."""
    import functools

    from qdax.core.neuroevolution.networks.networks import MLP
    from qdax.tasks.brax import descriptor_extractors
    from qdax.tasks.brax.v2 import create
    from qdax.tasks.brax.v2.env_creators import make_policy_network_play_step_fn_brax, scoring_function_brax_envs

    with _brax_rules():
        env = create("walker2d_uni", episode_length=LENGTH, backend="spring")
        network = MLP(layer_sizes=(HIDDEN, HIDDEN, env.action_size), final_activation=jnp.tanh)
        keys = jax.random.split(jax.random.key(0), batch)
        params = jax.vmap(network.init, in_axes=(0, None))(keys, jnp.zeros(env.observation_size))
        scoring = functools.partial(
            scoring_function_brax_envs, episode_length=LENGTH, play_reset_fn=env.reset,
            play_step_fn=make_policy_network_play_step_fn_brax(env, network),
            descriptor_extractor=descriptor_extractors.get_feet_contact_proportion,
        )  # fmt: skip

        def run(p, k):
            with _brax_rules():
                return scoring(p, k)[:2]

        return batch * LENGTH / best_of(jax.jit(run), params, jax.random.key(1))


def dcg_iteration() -> list[tuple[str, float]]:
    """Each part of one DCG-ME iteration on ant_omni at dcg_paper.py's CPU scale."""
    task = qdkit.tasks.get("ant_omni", preset="paper", episode_length=LENGTH)
    config = emitters.TD3Config(batch_size=100, critic_steps=300, pg_steps=20, pg_batch_size=100, buffer_size=100_000,
                                pg_lr=5e-3)  # fmt: skip
    archive = qdkit.CVTArchive.create(cells=1024, lower=task.lower, upper=task.upper,
                                      example_genotype=task.example_genotype, samples=50_000)  # fmt: skip
    parts = {}
    for rollouts in (0, 64):
        emitter = emitters.dcg(task, 64, length_scale=0.016, archive_replay=1.0, actor_rollouts=rollouts,
                               actor_rollout_noise=0.0008, config=config)  # fmt: skip
        state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter)
        emit = jax.jit(emitter.emit)
        genotypes, emitted = emit(jax.random.key(1), state.archive, state.emitter_state)
        evaluation = jax.jit(task.score)(jax.random.key(2), genotypes)
        archive2, info = state.archive.add(genotypes, evaluation.fitness, evaluation.descriptors)
        update = jax.jit(emitter.update)
        parts[f"update {rollouts}"] = best_of(update, emitted, archive2, genotypes, evaluation, info)
        if rollouts == 0:
            parts["rollout"] = best_of(jax.jit(lambda k, g: task.score(k, g)[:2]), jax.random.key(2), genotypes)
            parts["emit"] = best_of(emit, jax.random.key(1), state.archive, state.emitter_state)
            ga = emitters.iso_line(32, 0.005, 0.05)
            parts["iso"] = best_of(jax.jit(lambda k, a: ga.emit(k, a, emitters.EmptyState())[0]), jax.random.key(1),
                                   state.archive)  # fmt: skip
    total = parts["rollout"] + parts["emit"] + parts["update 64"]
    return [
        ("offspring rollout (64 x 100 steps)", parts["rollout"]),
        ("Iso+LineDD (32 offspring)", parts["iso"]),
        ("PG variation (32 parents x 20 steps)", parts["emit"] - parts["iso"]),
        ("actor episodes (64 x 100 steps)", parts["update 64"] - parts["update 0"]),
        ("TD3 training (300 critic steps)", parts["update 0"]),
        ("one iteration", total),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="ant_omni with spring at batch 64 only, QDax, and the DCG profile"
    )
    args = parser.parse_args()
    print(f"# brax_speed.py — {machine.cpu()}, jax "
          f"{jax.__version__} ({jax.devices()[0].platform}); {LENGTH}-step episodes, MLP {HIDDEN}x{HIDDEN}")  # fmt: skip
    rows = [("spring", 64)] if args.quick else [("spring", 16), ("spring", 64), ("spring", 256), ("positional", 64),
                                                  ("generalized", 64)]  # fmt: skip
    print("\n| task | backend | batch | ours (steps/s) | raw brax, zero actions (steps/s) | ours / raw |")
    print("|---|---|---:|---:|---:|---:|")
    for task in ("ant_omni",) if args.quick else ("ant_omni", "walker2d_uni"):
        for backend, batch in rows:
            a, b = ours(task, backend, batch), raw(task, backend, batch)
            print(f"| {task} | {backend} | {batch} | {a:,.0f} | {b:,.0f} | {a / b:.0%} |", flush=True)
    print("\n| walker2d_uni, spring, batch 64 | steps/s |\n|---|---:|")
    print(f"| qdkit (`task.score`) | {ours('walker2d_uni', 'spring', 64):,.0f} |", flush=True)
    print(f"| QDax 0.5 (`scoring_function_brax_envs`) | {qdax_walker(64):,.0f} |", flush=True)
    print("\n| one DCG-ME iteration, ant_omni, CPU scale | seconds | share |\n|---|---:|---:|")
    parts = dcg_iteration()
    total = parts[-1][1]
    for name, seconds in parts:
        print(f"| {name} | {seconds:.3f} | {seconds / total:.0%} |")


if __name__ == "__main__":
    main()
