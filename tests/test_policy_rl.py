"""Policies, rollouts, the maze, TD3 and the PGA / DCG emitters, archive distillation."""

from __future__ import annotations

import dataclasses
import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

import emitters
import qdkit
from emitters import rl
from qdkit import registry, rundir
from qdkit.cli import main
from qdkit.policy import MLP
from qdkit.rollout import batch_rollout, episode_return, final_state_descriptor
from qdkit.tasks.maze import MazeEnv

SMALL = emitters.TD3Config(critic_hidden=(32, 32), critic_steps=40, batch_size=64, pg_steps=5, pg_batch_size=32,
                           buffer_size=20_000)  # fmt: skip

# ----------------------------------------------------------------------- the maze


def test_maze_lasers_bumpers_and_motion_by_hand():
    env = MazeEnv("standard")
    lasers = env.lasers(jnp.asarray([0.5, 0.1]), jnp.asarray(-np.pi / 2, jnp.float32))  # facing down
    np.testing.assert_allclose(np.asarray(lasers), [np.sqrt(2) * 0.1 / 0.2, 0.5, np.sqrt(2) * 0.1 / 0.2], rtol=1e-5)
    state = env.reset(jax.random.key(0))._replace(pos=jnp.asarray([0.5, 0.02]), angle=jnp.asarray(-np.pi / 2))
    blocked = env.step(state, jnp.asarray([1.0, 1.0]))  # straight into the bottom wall: no move
    np.testing.assert_allclose(np.asarray(blocked.pos), [0.5, 0.02])
    assert np.asarray(blocked.obs[3:]).tolist() == [1.0, 1.0]  # the wall is dead ahead: both bumpers
    free = env.step(state._replace(pos=jnp.asarray([0.7, 0.7]), angle=jnp.asarray(0.0)), jnp.asarray([1.0, 1.0]))
    np.testing.assert_allclose(np.asarray(free.pos), [0.725, 0.7], atol=1e-6)
    assert np.asarray(free.obs[3:]).tolist() == [-1.0, -1.0]
    np.testing.assert_allclose(float(free.reward), -np.linalg.norm([0.725 - 0.15, 0.7 - 0.9]), rtol=1e-6)
    turned = env.step(state._replace(pos=jnp.asarray([0.7, 0.7]), angle=jnp.asarray(0.0)), jnp.asarray([-1.0, 1.0]))
    np.testing.assert_allclose(float(turned.angle), 2 * 0.025 / (2 * 0.015), rtol=1e-6)  # spin on the spot
    np.testing.assert_allclose(np.asarray(turned.pos), [0.7, 0.7], atol=1e-7)


class Countdown(NamedTuple):
    """A toy env: reward 1 per step, done at step 3; the state descriptor counts steps."""

    observation_size: int = 1
    action_size: int = 1

    def reset(self, key):
        return _S(jnp.zeros((1,)), jnp.zeros(()), jnp.zeros(()), {"state_descriptor": jnp.zeros((1,))})

    def step(self, state, action):
        t = state.info["state_descriptor"] + 1.0
        return _S(state.obs + action, jnp.ones(()), (t[0] >= 3).astype(jnp.float32), {"state_descriptor": t})


class _S(NamedTuple):
    obs: jax.Array
    reward: jax.Array
    done: jax.Array
    info: dict


def test_rollout_masks_the_steps_after_the_episode_ends():
    policy = MLP((1, 1), final="identity")
    params = policy.init_batch(jax.random.key(0), 2)
    t = batch_rollout(Countdown(), policy.apply, params, jax.random.key(1), 6)
    assert t.reward.shape == (2, 6) and np.asarray(t.mask).tolist() == [[1, 1, 1, 0, 0, 0]] * 2
    np.testing.assert_allclose(np.asarray(episode_return(t)), [3.0, 3.0])
    np.testing.assert_allclose(np.asarray(final_state_descriptor(t)), [[3.0], [3.0]])


def test_rollout_action_noise_perturbs_the_actions_it_records():
    from qdkit.rollout import rollout

    env, policy = MazeEnv("empty"), MLP((5, 8, 2))
    params = policy.init(jax.random.key(0))
    plain = rollout(env, policy.apply, params, jax.random.key(1), 200)
    same = rollout(env, policy.apply, params, jax.random.key(1), 200, action_noise=0.0)
    for a, b in zip(plain, same):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    noisy = rollout(env, policy.apply, params, jax.random.key(1), 200, action_noise=0.05)
    # the recorded action is the policy's own for the observation seen, plus the noise
    noise = np.asarray(noisy.action - jax.vmap(policy.apply, (None, 0))(params, noisy.obs))
    assert noise.shape == (200, 2) and abs(noise.std() - 0.05) < 0.01 and abs(noise.mean()) < 0.01
    assert not np.allclose(np.asarray(noisy.next_state_desc[-1]), np.asarray(plain.next_state_desc[-1]))
    with pytest.raises(ValueError, match="action_noise must be >= 0"):
        rollout(env, policy.apply, params, jax.random.key(1), 5, action_noise=-0.1)


def test_maze_task_scores_a_batch_with_transitions_and_draws_it(tmp_path):
    task = qdkit.tasks.get("maze", episode_length=30)
    params = task.initial_genotypes(jax.random.key(0), 4)
    evaluation = jax.jit(task.score)(jax.random.key(1), params)
    t = evaluation.extras["transitions"]
    assert evaluation.fitness.shape == (4,) and evaluation.descriptors.shape == (4, 2)
    assert t.obs.shape == (4, 30, 5) and t.action.shape == (4, 30, 2)
    np.testing.assert_allclose(np.asarray(evaluation.fitness), np.asarray(t.reward.sum(axis=1)), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(evaluation.descriptors), np.asarray(t.next_state_desc[:, -1]))
    assert np.all(np.asarray(evaluation.fitness) >= task.qd_offset)
    path = task.render(task, params, str(tmp_path / "maze.png"))
    assert (tmp_path / "maze.png").stat().st_size > 5000 and path.endswith("maze.png")


# ---------------------------------------------------------------------- RL pieces


def test_similarity_scaled_reward_by_hand():
    d = jnp.asarray([[0.0, 0.0], [0.3, 0.4]])
    d_prime = jnp.asarray([[0.0, 0.0], [0.0, 0.0]])
    r = jnp.asarray([-1.0, -0.5])
    got = rl.conditioned_reward(r, d, d_prime, 0.1, reward_min=-1.5)
    np.testing.assert_allclose(np.asarray(got), [1.0 * 0.5, np.exp(-0.5 / 0.1) * 1.0], rtol=1e-6)


def test_buffer_keeps_only_valid_rows_and_wraps():
    buffer = rl.buffer_init(5, 1, 1, 1, state_descs=True)
    column, scalar = jnp.arange(4, dtype=jnp.float32).reshape(4, 1), jnp.arange(4, dtype=jnp.float32)
    rows = rl.Replay(obs=column, action=column, reward=scalar, next_obs=column, done=scalar, desc=column, aim=column,
                     state_desc=column)  # fmt: skip
    buffer = rl.buffer_add(buffer, rows, jnp.asarray([True, False, True, True]))
    assert int(buffer.size) == 3 and np.asarray(buffer.data.reward).tolist() == [0, 2, 3, 0, 0]
    buffer = rl.buffer_add(buffer, rows, jnp.asarray([True, True, True, False]))
    assert int(buffer.size) == 5 and int(buffer.position) == 1
    assert np.asarray(buffer.data.reward).tolist() == [2, 2, 3, 0, 1]  # the oldest row was overwritten
    with pytest.raises(ValueError):  # a buffer that keeps state descriptors needs them in every batch
        rl.buffer_add(buffer, rows._replace(state_desc=None), jnp.ones((4,), bool))


def _maze_buffer(n_policies=32, length=40):
    task = qdkit.tasks.get("maze", episode_length=length)
    evaluation = jax.jit(task.score)(jax.random.key(1), task.initial_genotypes(jax.random.key(0), n_policies))
    desc = rl.normalise(evaluation.descriptors, task.lower, task.upper)
    rows, valid = rl.transitions_to_rows(evaluation.extras["transitions"], desc)
    return task, rl.buffer_add(rl.buffer_init(10_000, 5, 2, 2), rows, valid), desc


def test_critic_loss_falls_on_a_fixed_buffer():
    task, buffer, desc = _maze_buffer()
    nets = rl.make_networks(task.policy, 2, SMALL)
    learner = rl.td3_init(jax.random.key(2), nets, SMALL)
    train = jax.jit(lambda lr, k: rl.td3_train(lr, buffer, k, nets, SMALL, target_descs=desc,
                                               reward_min=task.reward_min))  # fmt: skip
    losses = []
    for i in range(8):
        learner, info = train(learner, jax.random.key(10 + i))
        losses.append(float(info["critic_loss"]))
    assert losses[-1] < 0.6 * losses[0] and losses[-1] < min(losses[:4]), losses


class _Steps(NamedTuple):
    reward: jax.Array
    done: jax.Array
    mask: jax.Array


def test_aimed_returns_by_hand():
    config = SMALL._replace(discount=0.5, reward_scale=2.0)
    steps = _Steps(
        jnp.asarray([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]), jnp.zeros((2, 3)), jnp.asarray([[1.0] * 3, [1, 1, 0.0]])
    )
    aims = jnp.asarray([[0.0, 0.0], [0.0, 0.0]])
    # episode descriptors: the first hit its aim (similarity 1), the second missed by 0.1 (similarity e^-1)
    got = rl.aimed_returns(steps, jnp.asarray([[0.0, 0.0], [0.1, 0.0]]), aims, config, 0.1, reward_min=-1.0)
    r0 = np.asarray([4.0, 6.0, 8.0])  # (2r - 2 r_min)
    r1 = np.exp(-1.0) * np.asarray([4.0, 4.0, 0.0])  # the masked last step counts nothing
    np.testing.assert_allclose(np.asarray(got[0]), [r0[0] + 0.5 * r0[1] + 0.25 * r0[2], r0[1] + 0.5 * r0[2], r0[2]])
    np.testing.assert_allclose(np.asarray(got[1]), [r1[0] + 0.5 * r1[1], r1[1], 0.0], rtol=1e-6)
    # per-step state descriptors; an episode end cuts the return
    per_step = jnp.zeros((2, 3, 2)).at[0, 1].set(jnp.asarray([0.0, 0.1]))
    ended = steps._replace(done=jnp.zeros((2, 3)).at[0, 0].set(1.0))
    got = rl.aimed_returns(ended, per_step, aims, config, 0.1, reward_min=-1.0)
    np.testing.assert_allclose(np.asarray(got[0]), [4.0, r0[1] * np.exp(-1.0) + 0.5 * r0[2], r0[2]], rtol=1e-6)


def test_return_bound_lifts_the_critic_for_rows_replayed_for_their_aim_only():
    task, buffer, desc = _maze_buffer(16, 20)
    buffer = buffer._replace(data=buffer.data._replace(aim_return=jnp.full_like(buffer.data.reward, 20.0)))
    config = SMALL._replace(critic_steps=300, discount=0.0, critic_lr=1e-3)
    nets = rl.make_networks(task.policy, 2, config)
    rows = rl.buffer_sample(buffer, jax.random.key(5), 256)

    def trained_q(archive_replay):
        learner = rl.td3_init(jax.random.key(2), nets, config)
        learner, _ = jax.jit(lambda lr: rl.td3_train(lr, buffer, jax.random.key(3), nets, config, target_descs=desc,
                                                     reward_min=task.reward_min, archive_replay=archive_replay,
                                                     return_bound=True))(learner)  # fmt: skip
        return float(jnp.mean(nets.q_values(learner.critic, rows.obs, rows.action, rows.aim)[0]))

    assert trained_q(0.0) > 15.0  # every row replayed for its aim: the bound (20) is the target
    assert trained_q(1.0) < 3.0  # every target from the archive: the bound does not hold, rewards are <= 1.5
    plain = rl.buffer_init(10, 5, 2, 2)
    with pytest.raises(ValueError, match="aimed returns"):
        rl.td3_train(rl.td3_init(jax.random.key(0), nets, config), plain, jax.random.key(1), nets, config,
                     target_descs=desc, return_bound=True)  # fmt: skip


@pytest.mark.parametrize("archive_replay,similarity_on", [(1.0, "episode"), (0.0, "episode"), (1.0, "state")])
def test_conditioned_actor_learns_to_act_by_target(archive_replay, similarity_on):
    """Episodes of descriptor +1 took action +1, those of -1 took -1, all with reward 1
    and ending at once; replayed for targets +-1, only the matching action is rewarded,
    so pi(s | +1) must learn +1 and pi(s | -1) must learn -1. Replayed for the targets
    they were aimed at (``archive_replay=0``; half the episodes missed their aim), the
    same. With ``similarity_on="state"`` the sign is only in the rows' state
    descriptors (the episode descriptors say nothing), and the actor still learns it."""
    config = SMALL._replace(critic_steps=400, discount=0.0, policy_noise=0.0, critic_lr=1e-3, actor_lr=1e-3)
    n = 512
    sign = jnp.where(jnp.arange(n) % 2 == 0, 1.0, -1.0)
    obs = jax.random.normal(jax.random.key(0), (n, 3))
    aim = jnp.where(jnp.arange(n) % 4 < 2, sign, -sign)
    informative, blank = sign[:, None], jnp.zeros((n, 1))
    desc, state_desc = (blank, informative) if similarity_on == "state" else (informative, blank)
    rows = rl.Replay(obs=obs, action=sign[:, None], reward=jnp.ones((n,)), next_obs=obs, done=jnp.ones((n,)),
                     desc=desc, aim=aim[:, None], state_desc=state_desc)  # fmt: skip
    buffer = rl.buffer_add(rl.buffer_init(n, 3, 1, 1, state_descs=True), rows, jnp.ones((n,), bool))
    policy = MLP((3, 16, 1))
    nets = rl.make_networks(policy, 1, config)
    learner = rl.td3_init(jax.random.key(1), nets, config)
    targets = jnp.asarray([[1.0], [-1.0]])
    learner, _ = jax.jit(lambda lr: rl.td3_train(lr, buffer, jax.random.key(2), nets, config, target_descs=targets,
                                                 length_scale=0.2, archive_replay=archive_replay,
                                                 similarity_on=similarity_on))(learner)  # fmt: skip
    up = nets.act(learner.actor, obs[:64], jnp.ones((64, 1)))
    down = nets.act(learner.actor, obs[:64], -jnp.ones((64, 1)))
    assert float(jnp.mean(up)) > 0.5 and float(jnp.mean(down)) < -0.5
    # the same through the specialised plain policy (the descriptor folded into the bias)
    folded = rl.specialise(learner.actor, 3, jnp.asarray([1.0]))
    np.testing.assert_allclose(np.asarray(policy.apply(folded, obs[:64])), np.asarray(up), rtol=1e-5, atol=1e-6)


def test_dcg_buffer_rows_carry_what_each_offspring_was_aimed_at():
    task = qdkit.tasks.get("maze", episode_length=20)
    emitter = emitters.dcg(task, 16, pg_fraction=0.5, num_injected=4, actor_rollouts=6, actor_rollout_noise=0.01,
                           config=SMALL._replace(critic_steps=2))  # fmt: skip
    archive = qdkit.GridArchive.create(shape=(8, 8), lower=task.lower, upper=task.upper,
                                       example_genotype=task.example_genotype)  # fmt: skip
    state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter)
    assert isinstance(state.emitter_state, rl.GradientState)
    # the initial population's transitions are in the buffer, aimed at their own descriptors (raw task units:
    # training normalises them with the archive's bounds)
    first = state.emitter_state.buffer
    assert int(first.size) == 16 * 20
    desc = np.asarray(first.data.desc[: 16 * 20]).reshape(16, 20, 2)
    np.testing.assert_array_equal(np.asarray(first.data.aim[: 16 * 20]).reshape(16, 20, 2), desc)
    assert np.all(desc == desc[:, :1]) and len(np.unique(desc[:, 0], axis=0)) > 1
    elites = np.asarray(state.archive.descriptors)[np.asarray(state.archive.occupied)]
    assert all(np.isclose(desc[:, 0], e, atol=1e-6).all(axis=1).any() for e in elites)  # the elites came from them
    # emit draws the PG parents and injected targets from the archive it sees, and keeps their aims in the state
    genotypes, emitted = emitter.emit(jax.random.key(1), state.archive, state.emitter_state)
    aims = np.asarray(emitted.aims)
    assert aims.shape == (12, 2)
    assert all(np.isclose(elites, a, atol=1e-6).all(axis=1).any() for a in aims)  # each aim is an elite's descriptor
    _, other = emitter.emit(jax.random.key(2), state.archive, state.emitter_state)
    assert not np.array_equal(np.asarray(other.aims), aims)  # another key, other parents
    evaluation = task.score(jax.random.key(2), genotypes)
    archive, info = state.archive.add(genotypes, evaluation.fitness, evaluation.descriptors)
    new = emitter.update(emitted, archive, genotypes, evaluation, info)
    # first the actor's own episodes (the papers' negative samples), aimed at elites' descriptors plus noise
    assert int(new.buffer.size) == 16 * 20 + 6 * 20 + 16 * 20
    rows = slice(16 * 20, 16 * 20 + 6 * 20)
    wanted = np.asarray(new.buffer.data.aim[rows]).reshape(6, 20, 2)[:, 0]
    elites = np.asarray(archive.descriptors)[np.asarray(archive.occupied)]
    nearest = np.min(np.linalg.norm(wanted[:, None] - elites[None], axis=-1), axis=1)
    scale = float(np.max(np.asarray(task.upper) - np.asarray(task.lower))) / 2
    assert np.all(nearest > 0) and np.all(nearest < 5 * 0.01 * scale * np.sqrt(2))
    # what they reached is what the actor (before this update's training) does for those aims: the maze is
    # deterministic, so replaying it gives the same descriptors
    actor = rl.specialise(emitted.learner.actor, task.policy.sizes[0], rl.normalise(jnp.asarray(wanted), task.lower,
                                                                                     task.upper))  # fmt: skip
    replay = task.score(jax.random.key(9), actor)
    np.testing.assert_allclose(np.asarray(new.buffer.data.desc[rows]).reshape(6, 20, 2)[:, 0],
                               np.asarray(replay.descriptors), atol=1e-5)  # fmt: skip
    stored = np.asarray(new.buffer.data.aim[16 * 20 + 6 * 20 : 2 * 16 * 20 + 6 * 20]).reshape(16, 20, 2)
    achieved = np.asarray(evaluation.descriptors)
    np.testing.assert_allclose(stored[:4], np.repeat(achieved[:4, None], 20, 1))  # Iso+LineDD: their own
    np.testing.assert_allclose(stored[4:], np.repeat(aims[:, None], 20, 1))  # PG and injected: what emit aimed at
    with pytest.raises(ValueError, match="archive_replay"):
        emitters.dcg(task, 16, archive_replay=1.5)
    with pytest.raises(ValueError, match="actor_rollouts must be >= 0"):
        emitters.dcg(task, 16, actor_rollouts=-1)
    # by default DCG-ME plays the actor for a quarter of the batch, aimed exactly at elites without noise
    plain = emitters.dcg(task, 16, actor_rollout_noise=0.0, config=SMALL._replace(critic_steps=2))
    start = qdkit.map_elites.init(jax.random.key(0), task, archive, plain)
    _, aimed = plain.emit(jax.random.key(1), start.archive, start.emitter_state)
    after = plain.update(aimed, archive, genotypes, evaluation, info)
    assert int(after.buffer.size) == 16 * 20 + 4 * 20 + 16 * 20
    exact = np.asarray(after.buffer.data.aim[16 * 20 : 16 * 20 + 4 * 20]).reshape(4, 20, 2)[:, 0]
    assert all((elites == a).all(axis=1).any() for a in exact)
    assert new.buffer.data.state_desc is None  # kept only for similarity_on="state"
    nets = rl.make_networks(task.policy, 2, SMALL)
    with pytest.raises(ValueError, match="keeps state descriptors"):
        rl.td3_train(new.learner, new.buffer, jax.random.key(3), nets, SMALL, similarity_on="state")


def test_dcg_return_bound_stores_each_steps_return_for_its_aim():
    task = qdkit.tasks.get("maze", episode_length=20)
    config = SMALL._replace(critic_steps=2)
    emitter = emitters.dcg(task, 16, num_injected=4, similarity_on="state", return_bound=True, length_scale=0.05,
                           actor_rollouts=0, config=config)  # fmt: skip
    archive = qdkit.GridArchive.create(shape=(8, 8), lower=task.lower, upper=task.upper,
                                       example_genotype=task.example_genotype)  # fmt: skip
    state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter)
    assert int(state.emitter_state.buffer.size) == 16 * 20
    genotypes, emitted = emitter.emit(jax.random.key(1), state.archive, state.emitter_state)
    evaluation = task.score(jax.random.key(2), genotypes)
    archive, info = state.archive.add(genotypes, evaluation.fitness, evaluation.descriptors)
    new = emitter.update(emitted, archive, genotypes, evaluation, info)
    stored = np.asarray(new.buffer.data.aim_return[16 * 20 : 2 * 16 * 20]).reshape(16, 20)
    t = evaluation.extras["transitions"]
    aims = np.asarray(new.buffer.data.aim[16 * 20 : 2 * 16 * 20]).reshape(16, 20, 2)[:, 0]
    per_step = rl.normalise(t.next_state_desc, task.lower, task.upper)
    want = rl.aimed_returns(t, per_step, rl.normalise(jnp.asarray(aims), task.lower, task.upper), config, 0.05,
                            task.reward_min)  # fmt: skip
    np.testing.assert_allclose(stored, np.asarray(want), rtol=1e-5)
    assert (stored[:, :-1] >= stored[:, 1:] * config.discount - 1e-6).all() and stored.max() > 0


def test_pg_variation_raises_the_critics_value():
    task, buffer, desc = _maze_buffer()
    config = SMALL._replace(pg_steps=20, pg_lr=1e-2)
    nets = rl.make_networks(task.policy, 2, config)
    learner = rl.td3_init(jax.random.key(2), nets, config)
    learner, _ = rl.td3_train(learner, buffer, jax.random.key(3), nets, config, target_descs=desc,
                              reward_min=task.reward_min)  # fmt: skip
    parents = task.initial_genotypes(jax.random.key(4), 4)
    children = rl.pg_variation(parents, task.policy, learner.critic, buffer, jax.random.key(5), nets, config,
                               desc[:4])  # fmt: skip
    rows = rl.buffer_sample(buffer, jax.random.key(6), 256)

    def value(params, d):
        q1, _ = nets.q_values(learner.critic, rows.obs, task.policy.apply(params, rows.obs),
                              jnp.broadcast_to(d, (256, 2)))  # fmt: skip
        return float(jnp.mean(q1))

    for i in range(4):
        one = lambda tree, i=i: jax.tree.map(lambda x: x[i], tree)  # noqa: E731
        assert value(one(children), desc[i]) > value(one(parents), desc[i])


# ------------------------------------------------------------------ runs and CLI


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


RUN = ["run", "--task", "maze", "-t", "episode_length=40", "--batch-size", "16", "--shape", "8x8", "--no-progress",
       "-e", "critic_hidden=32,32", "-e", "critic_steps=20", "-e", "pg_steps=4", "-e", "pg_batch_size=32",
       "-e", "train_batch_size=32", "-e", "buffer_size=5000"]  # fmt: skip


@pytest.mark.parametrize("emitter", ["dcg"])  # PGA's state is the same GradientState (less the aims)
def test_resume_of_a_run_with_a_replay_buffer_is_bit_identical(tmp_path, emitter):
    extra = ["-e", "num_injected=2"] if emitter == "dcg" else []
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert _cli(*RUN, *extra, "--emitter", emitter, "--iterations", 6, "--out", whole).exit_code == 0
    assert _cli(*RUN, *extra, "--emitter", emitter, "--iterations", 3, "--out", part).exit_code == 0
    result = _cli("resume", part, "--iterations", 6, "--no-progress")
    assert result.exit_code == 0, result.output
    a, b = rundir.load(str(whole)).state, rundir.load(str(part)).state
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # every transition: the initial population and 6 batches (with injected actors, no actor episodes by default)
    assert int(a.emitter_state.buffer.size) == 7 * 16 * 40


def test_dcg_run_distill_save_load_and_run_for_a_target(tmp_path):
    out = tmp_path / "dcg"
    result = _cli(*RUN, "--emitter", "dcg", "-e", "num_injected=2", "--iterations", 4, "--out", out)
    assert result.exit_code == 0, result.output
    result = _cli("distill", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "distill.json").read_text())
    assert report["all_cells"]["cells"] == 64 and 0.0 <= report["all_cells"]["reached_fraction"] <= 1.0
    # a filled cell reached from its own target is reached by some target
    assert report["filled_cells"]["reached_fraction"] <= report["filled_cells_reached_by_some_target"] <= 1.0
    # on square cells, landing in the target's own cell is within one cell's size of it
    assert report["all_cells"]["reached_fraction"] <= report["all_cells"]["within_one_cell_fraction"] <= 1.0
    assert (out / "distill.png").stat().st_size > 5000
    # the reference: the archive's own elites replayed with a little action noise
    elites = report["elites_with_action_noise"]
    assert elites["action_noise"] == 0.001 and elites["filled_cells"]["cells"] == report["filled_cells"]["cells"]
    assert "the archive's own elites replayed with action noise 0.001" in result.output
    quiet = _cli("distill", out, "--elite-noise", 0)
    assert quiet.exit_code == 0 and "own elites" not in quiet.output
    assert "elites_with_action_noise" not in json.loads((out / "distill.json").read_text())
    refused = _cli("distill", out, "--elite-noise", -1)
    assert refused.exit_code != 0 and "--elite-noise" in refused.output
    loaded = rundir.load(str(out))
    policy = emitters.distilled_policy(loaded.state.emitter_state, loaded.task)
    again = emitters.DistilledPolicy.load(out / "distilled.npz")
    obs, target = jnp.ones((3, 5)) * 0.5, jnp.asarray([0.2, 0.8])
    np.testing.assert_array_equal(np.asarray(policy.act(obs, target)), np.asarray(again.act(obs, target)))
    # the paper's measures (DCG-MAP-Elites' Table 2), checked against a re-run from Python:
    # the maze is deterministic, so re-scored elites get their stored fitness and descriptor
    paper, archive, offset = report["paper"], loaded.state.archive, loaded.task.qd_offset
    filled = np.asarray(archive.occupied)
    centres = np.asarray(archive.cell_centers())[filled]
    assert paper["filled_cells"] == int(filled.sum()) and paper["qd_offset"] == offset
    assert paper["qd_score_archive"] == pytest.approx(float(archive.qd_score(offset)), rel=1e-6)
    assert paper["qd_score_archive_reevaluated"] == pytest.approx(paper["qd_score_archive"], rel=1e-5)
    stored = np.asarray(archive.descriptors)[filled]
    assert paper["dem_archive"] == pytest.approx(float(np.linalg.norm(stored - centres, axis=1).mean()), rel=1e-4)
    rerun = jax.jit(loaded.task.score)(jax.random.key(5), again.specialise(jnp.asarray(centres)))
    fitness = np.asarray(rerun.fitness, np.float64)
    assert paper["qd_score_policy"] == pytest.approx(float(np.maximum(fitness - offset, 0).sum()), rel=1e-5)
    reached = np.clip(np.asarray(rerun.descriptors), np.asarray(archive.lower), np.asarray(archive.upper))
    assert paper["dem_policy"] == pytest.approx(float(np.linalg.norm(reached - centres, axis=1).mean()), rel=1e-4)
    assert paper["policy_over_archive"] == pytest.approx(paper["qd_score_policy"] / paper["qd_score_archive"])
    assert "as DCG-MAP-Elites measures it" in result.output
    result = _cli("distill", out, "--target", "0.2,0.8", "--render", tmp_path / "t.png")
    assert result.exit_code == 0, result.output
    assert "target [0.2, 0.8]: reached" in result.output and (tmp_path / "t.png").exists()
    # the reported figure is what the policy does: re-run it from Python
    evaluation = jax.jit(loaded.task.score)(jax.random.key(0), again.specialise(jnp.asarray([[0.2, 0.8]])))
    printed = json.loads(result.output.split("reached ")[1].split(" (")[0])
    np.testing.assert_allclose(printed, np.asarray(evaluation.descriptors[0]), atol=2e-4)
    assert _cli("render", out, "--out", tmp_path / "best.png").exit_code == 0 and (tmp_path / "best.png").exists()
    bad = _cli("distill", out, "--target", "0.2")
    assert bad.exit_code != 0 and "needs 2 coordinates" in bad.output
    (tmp_path / "junk.npz").write_bytes(b"not a policy")
    junk = _cli("distill", out, "--policy", tmp_path / "junk.npz", "--target", "0.1,0.1")
    assert junk.exit_code != 0 and "is not a distilled policy file" in junk.output


def test_policy_emitters_refuse_other_tasks_and_pga_runs_cannot_distill(tmp_path):
    result = _cli("run", "--task", "arm", "--emitter", "dcg", "--iterations", 2, "--out", tmp_path / "x")
    assert result.exit_code != 0 and "needs a policy task" in result.output
    out = tmp_path / "pga"
    assert _cli(*RUN, "--emitter", "pga", "--iterations", 2, "--out", out).exit_code == 0
    result = _cli("distill", out)
    assert result.exit_code != 0 and "distillation needs --emitter dcg" in result.output
    bad = _cli(*RUN, "--emitter", "dcg", "-e", "critic_steps=-5", "--iterations", 2, "--out", tmp_path / "bad")
    assert bad.exit_code != 0 and "critic_steps must be a positive integer" in bad.output
    bad = _cli(*RUN, "--emitter", "pga", "-e", "discount=1.5", "--iterations", 2, "--out", tmp_path / "bad")
    assert bad.exit_code != 0 and "discount must be in [0, 1]" in bad.output


def test_cell_size_is_the_distance_to_the_nearest_other_centre():
    from emitters.distill.evaluate import _cell_size

    grid = qdkit.GridArchive.create(shape=(4, 2), lower=[0.0, 0.0], upper=[1.0, 1.0], example_genotype=jnp.zeros(1))
    np.testing.assert_allclose(_cell_size(np.asarray(grid.cell_centers()), chunk=3), np.full(8, 0.25))
    np.testing.assert_allclose(_cell_size(np.asarray([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])), [1.0, 1.0, 2.0])
    assert np.isinf(_cell_size(np.zeros((1, 2)))).all()


def _mean_distance(task, policy, targets):
    """Mean distance between ``targets`` and where ``policy`` gets for them."""
    reached = np.asarray(jax.jit(task.score)(jax.random.key(0), policy.specialise(jnp.asarray(targets))).descriptors)
    return float(np.linalg.norm(reached - targets, axis=1).mean())


def test_refine_distilled_brings_the_policy_to_the_archives_descriptors():
    from qdkit.tasks.maze import maze

    task = maze(episode_length=40, hidden=8, map="empty", observe_position=True)
    archive = qdkit.GridArchive.create(shape=(4, 4), lower=task.lower, upper=task.upper,
                                       example_genotype=task.example_genotype)  # fmt: skip
    state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitters.iso_line(32), num_initial=64)
    archive = state.archive
    filled = np.asarray(archive.occupied)
    targets = np.asarray(archive.descriptors)[filled]
    assert len(targets) >= 4
    start = emitters.DistilledPolicy(MLP((11, 8, 2)).init(jax.random.key(1)), MLP((11, 8, 2)), task.lower, task.upper)

    seen = []
    refined, history = emitters.refine_distilled(start, task, archive, jax.random.key(2), steps=300, batch_size=32,
                                                 learning_rate=1e-2, hidden=(32,), chunk=50,
                                                 callback=lambda step, d: seen.append(step))  # fmt: skip
    assert seen == [50, 100, 150, 200, 250, 300] and history.shape == (6,)
    assert refined.actor.sizes == (11, 32, 2)
    # the distance (in the unit square) falls well below that of the fresh actor's first steps
    assert _mean_distance(task, refined, targets) < 0.5 * history[0]
    assert history[-1] < 0.5 * history[0]
    # starting from the given policy (no fresh actor) keeps its shape and trains it
    again, _ = emitters.refine_distilled(start, task, archive, jax.random.key(2), steps=20, chunk=20)
    assert again.actor == start.actor
    assert not np.array_equal(np.asarray(again.params[0]["w"]), np.asarray(start.params[0]["w"]))
    with pytest.raises(ValueError, match="no differentiable descriptor"):
        emitters.refine_distilled(start, dataclasses.replace(task, descriptor_of=None), archive, jax.random.key(0))
    empty = qdkit.GridArchive.create(shape=(4, 4), lower=task.lower, upper=task.upper,
                                     example_genotype=task.example_genotype)  # fmt: skip
    with pytest.raises(ValueError, match="archive is empty"):
        emitters.refine_distilled(start, task, empty, jax.random.key(0))
    with pytest.raises(ValueError, match="must be positive"):
        emitters.refine_distilled(start, task, archive, jax.random.key(0), steps=0)


def test_evaluate_elites_replays_the_archive_with_and_without_action_noise():
    from qdkit.tasks.maze import maze

    task = maze(episode_length=60, hidden=8, map="standard", observe_position=True)
    archive = qdkit.GridArchive.create(shape=(6, 6), lower=task.lower, upper=task.upper,
                                       example_genotype=task.example_genotype)  # fmt: skip
    archive = qdkit.map_elites.init(jax.random.key(0), task, archive, emitters.iso_line(32), num_initial=64).archive
    filled = np.asarray(archive.occupied)
    assert filled.sum() >= 4
    # without noise the elites land where the archive says (chunks of another size included)
    report, arrays = emitters.evaluate_elites(task, archive, jax.random.key(1), action_noise=0.0, chunk=3)
    f = report["filled_cells"]
    assert f["cells"] == filled.sum() and f["reached_fraction"] == 1.0 and f["within_one_cell_fraction"] == 1.0
    np.testing.assert_allclose(arrays["reached"], np.asarray(archive.descriptors)[filled], atol=1e-5)
    np.testing.assert_allclose(f["mean_fitness"], report["archive_mean_fitness"], rtol=1e-5)
    np.testing.assert_allclose(arrays["targets"], np.asarray(archive.cell_centers())[filled])
    # the distance is to the cell centre, as for the distilled policy
    centre_distance = np.linalg.norm(np.asarray(archive.descriptors)[filled] - arrays["targets"], axis=1).mean()
    np.testing.assert_allclose(f["mean_distance"], centre_distance, rtol=1e-4)
    # with noise they scatter; the same key gives the same replay
    noisy, moved = emitters.evaluate_elites(task, archive, jax.random.key(1), action_noise=0.3)
    assert noisy["action_noise"] == 0.3
    assert np.abs(moved["reached"] - arrays["reached"]).max() > 0.01
    assert noisy["filled_cells"]["mean_fitness"] != f["mean_fitness"]
    again, _ = emitters.evaluate_elites(task, archive, jax.random.key(1), action_noise=0.3)
    assert again == noisy
    with pytest.raises(ValueError, match="cannot replay its elites"):
        emitters.evaluate_elites(dataclasses.replace(task, descriptor_of=None), archive, jax.random.key(0))
    empty = qdkit.GridArchive.create(shape=(6, 6), lower=task.lower, upper=task.upper,
                                     example_genotype=task.example_genotype)  # fmt: skip
    with pytest.raises(ValueError, match="archive is empty"):
        emitters.evaluate_elites(task, empty, jax.random.key(0))
    with pytest.raises(ValueError, match="action_noise must be non-negative"):
        emitters.evaluate_elites(task, archive, jax.random.key(0), action_noise=-1.0)


def test_maze_teacher_drives_around_the_walls_to_its_targets():
    from qdkit.tasks.maze import START, ShortestPaths

    env = MazeEnv("standard")
    paths = ShortestPaths(np.asarray(env.walls))
    start = jnp.asarray(START[:2], jnp.float32)
    # in the open the path is the straight line; the goal (top left) is behind walls
    near, goal = jnp.asarray([0.15, 0.4]), jnp.asarray(env.goal)
    fields = paths.fields(jnp.stack([near, goal]))
    assert abs(float(paths.distance(fields[0], start)) - 0.25) < 0.02
    assert float(paths.distance(fields[1], start)) > 1.5 * float(jnp.linalg.norm(goal - start))
    # nodes too close to a wall are on no path
    assert np.all(np.asarray(fields)[:, ~paths.free] == ShortestPaths.UNREACHABLE)
    targets = jnp.asarray([[0.15, 0.9], [0.9, 0.1], [0.6, 0.45], [0.9, 0.9]])
    data, act = env.teacher(targets)

    def drive(field, target):
        def body(state, _):
            return env.step(state, act(state, field, target)), None

        return jax.lax.scan(body, env.reset(jax.random.key(0)), None, length=250)[0].pos

    reached = np.asarray(jax.jit(jax.vmap(drive))(data, targets))
    np.testing.assert_allclose(reached, np.asarray(targets), atol=0.02)


def test_imitate_distilled_learns_the_teacher_or_the_elites():
    from qdkit.rollout import rollout
    from qdkit.tasks.maze import maze

    task = maze(episode_length=40, hidden=8, map="standard", observe_position=True)
    archive = qdkit.GridArchive.create(shape=(5, 5), lower=task.lower, upper=task.upper,
                                       example_genotype=task.example_genotype)  # fmt: skip
    archive = qdkit.map_elites.init(jax.random.key(0), task, archive, emitters.iso_line(32), num_initial=64).archive
    filled = np.asarray(archive.occupied)
    targets = np.asarray(archive.descriptors)[filled]
    assert len(targets) >= 4

    seen = []
    fresh, _ = emitters.imitate_distilled(None, task, archive, jax.random.key(1), steps=1, hidden=(32, 32))
    taught, history = emitters.imitate_distilled(None, task, archive, jax.random.key(1), steps=300, batch_size=16,
                                                 hidden=(32, 32), learning_rate=3e-3, chunk=100,
                                                 callback=lambda step, value: seen.append(step))  # fmt: skip
    assert seen == [100, 200, 300] and history.shape == (3,) and taught.actor.sizes == (11, 32, 32, 2)
    assert _mean_distance(task, taught, targets) < 0.5 * _mean_distance(task, fresh, targets)
    # the elites as teachers: on an elite's own path, the policy comes to act as the elite does
    cells = np.nonzero(filled)[0]
    elites = jax.tree.map(lambda g: g[jnp.asarray(cells)], archive.genotypes)

    def gap(policy):
        def one(params, target):
            t = rollout(task.env, task.policy.apply, params, jax.random.key(0), 40)
            return jnp.mean(jnp.sum((policy.act(t.obs, target) - t.action) ** 2, axis=-1))

        return float(jnp.mean(jax.vmap(one)(elites, jnp.asarray(targets))))

    copied, _ = emitters.imitate_distilled(None, task, archive, jax.random.key(1), teacher="elites", steps=300,
                                           batch_size=16, hidden=(32, 32), learning_rate=3e-3)  # fmt: skip
    assert gap(copied) < 0.5 * gap(fresh)
    # a given policy is trained in place (same shape, other weights)
    again, _ = emitters.imitate_distilled(fresh, task, archive, jax.random.key(2), steps=3)
    assert again.actor == fresh.actor
    assert not np.array_equal(np.asarray(again.params[0]["w"]), np.asarray(fresh.params[0]["w"]))
    with pytest.raises(ValueError, match="unknown teacher 'oracle'; valid teachers: task, elites"):
        emitters.imitate_distilled(None, task, archive, jax.random.key(0), teacher="oracle")
    with pytest.raises(ValueError, match="has no teacher of its own; use teacher='elites'"):
        emitters.imitate_distilled(None, dataclasses.replace(task, teacher=None), archive, jax.random.key(0))
    with pytest.raises(ValueError, match="is not a policy task"):
        emitters.imitate_distilled(None, qdkit.tasks.get("arm"), archive, jax.random.key(0), teacher="elites")
    empty = qdkit.GridArchive.create(shape=(5, 5), lower=task.lower, upper=task.upper,
                                     example_genotype=task.example_genotype)  # fmt: skip
    with pytest.raises(ValueError, match="archive is empty"):
        emitters.imitate_distilled(None, task, empty, jax.random.key(0))
    with pytest.raises(ValueError, match="mix must be in"):
        emitters.imitate_distilled(None, task, archive, jax.random.key(0), mix=1.5)


def test_cli_distill_imitate_a_teacher_on_any_run(tmp_path):
    out = tmp_path / "dcg"
    assert _cli(*RUN, "--emitter", "dcg", "--iterations", 2, "--out", out).exit_code == 0
    result = _cli("distill", out, "--imitate", 20, "--hidden", "16,16")
    assert result.exit_code == 0, result.output
    assert "imitate step 20/20: loss" in result.output
    report = json.loads((out / "distill.json").read_text())
    assert report["imitate"]["teacher"] == "task" and report["imitate"]["hidden"] == [16, 16]
    assert len(report["imitate"]["loss_per_100_steps"]) == 1 and "refine" not in report
    assert emitters.DistilledPolicy.load(out / "distilled.npz").actor.sizes == (7, 16, 16, 2)
    # a run of another emitter, the elites as teachers, then refinement of the imitating actor
    iso = tmp_path / "iso"
    assert _cli(*RUN[:10], "--emitter", "iso-line", "--iterations", 2, "--out", iso).exit_code == 0
    result = _cli("distill", iso, "--imitate", 10, "--teacher", "elites", "--hidden", "8", "--refine", 5)
    assert result.exit_code == 0, result.output
    report = json.loads((iso / "distill.json").read_text())
    assert report["imitate"]["teacher"] == "elites" and report["refine"]["steps"] == 5
    assert emitters.DistilledPolicy.load(iso / "distilled.npz").actor.sizes == (7, 8, 2)
    for bad, message in [
        (("--teacher", "elites"), "needs --imitate"),
        (("--imitate", 5, "--teacher", "oracle"), "'oracle' is not one of 'task', 'elites'"),
        (("--imitate", 5, "--target", "0.2,0.8"), "train first"),
        (("--imitate", 0), "0 is not in the range"),
    ]:
        result = _cli("distill", out, *bad)
        assert result.exit_code != 0 and message in result.output, (bad, result.output)
    arm = tmp_path / "arm"
    assert _cli("run", "--task", "arm", "--iterations", 2, "--no-progress", "--out", arm).exit_code == 0
    result = _cli("distill", arm, "--imitate", 5)
    assert result.exit_code != 0 and "task 'arm' is not a policy task" in result.output


def test_cli_distill_refine_from_the_dcg_actor_or_a_fresh_one(tmp_path):
    out = tmp_path / "dcg"
    assert _cli(*RUN, "--emitter", "dcg", "--iterations", 2, "--out", out).exit_code == 0
    result = _cli("distill", out, "--refine", 30)
    assert result.exit_code == 0, result.output
    assert "refine step 30/30: mean distance" in result.output
    report = json.loads((out / "distill.json").read_text())
    assert report["refine"]["steps"] == 30 and len(report["refine"]["mean_distance_per_100_steps"]) == 1
    saved = emitters.DistilledPolicy.load(out / "distilled.npz")
    loaded = rundir.load(str(out))
    actor = emitters.distilled_policy(loaded.state.emitter_state, loaded.task)
    assert saved.actor == actor.actor  # refined from the run's actor: same shape, other weights
    assert not np.array_equal(np.asarray(saved.params[0]["w"]), np.asarray(actor.params[0]["w"]))
    # the saved, refined policy is what --target then runs
    assert _cli("distill", out, "--target", "0.3,0.3").exit_code == 0
    # a run of another emitter: only with a fresh actor
    iso = tmp_path / "iso"
    assert _cli(*RUN[:10], "--emitter", "iso-line", "--iterations", 2, "--out", iso).exit_code == 0
    refused = _cli("distill", iso)
    assert refused.exit_code != 0 and "--refine N --hidden W" in refused.output
    result = _cli("distill", iso, "--refine", 10, "--hidden", "16,16")
    assert result.exit_code == 0, result.output
    assert emitters.DistilledPolicy.load(iso / "distilled.npz").actor.sizes == (7, 16, 16, 2)
    for bad, message in [
        (("--hidden", "16"), "needs --refine or --imitate"),
        (("--refine", 0), "0 is not in the range"),
        (("--refine", 5, "--hidden", "16,x"), "not a list of widths"),
        (("--refine", 5, "--target", "0.2,0.8"), "train first"),
        (("--refine", 5, "--learning-rate", "-1"), "--learning-rate"),
    ]:
        result = _cli("distill", out, *bad)
        assert result.exit_code != 0 and message in result.output, (bad, result.output)
    arm = tmp_path / "arm"
    assert _cli("run", "--task", "arm", "--iterations", 2, "--no-progress", "--out", arm).exit_code == 0
    result = _cli("distill", arm, "--refine", 5, "--hidden", "8")
    assert result.exit_code != 0 and "task 'arm' has no differentiable descriptor" in result.output


def test_td3_defaults_are_the_official_dcg_me_code_s_and_qdkit_emitters_lists_them():
    # configs/algo/dcg_me.yaml and pga_me.yaml of the DCRL-MAP-Elites repository
    official = {"critic_hidden": (256, 256), "critic_steps": 3000, "pg_steps": 150, "batch_size": 100,
                "pg_batch_size": 100, "buffer_size": 1_000_000, "discount": 0.99, "critic_lr": 3e-4, "actor_lr": 3e-4,
                "pg_lr": 5e-3, "noise_clip": 0.5, "policy_noise": 0.2, "tau": 0.005, "policy_delay": 2}  # fmt: skip
    assert {k: getattr(rl.DEFAULT_CONFIG, k) for k in official} == official
    listing = _cli("emitters")
    assert listing.exit_code == 0, listing.output
    lines = listing.output.splitlines()
    for name in ("dcg", "pga"):
        options = lines[next(i for i, line in enumerate(lines) if line.split()[:1] == [name]) + 1]
        assert "options:" in options and "train_batch_size=100" in options and "pg_lr=0.005" in options, options


def test_a_run_records_its_td3_defaults_and_one_written_before_resumes_with_the_old_ones(tmp_path):
    given = RUN[: RUN.index("train_batch_size=32") - 1] + ["-e", "buffer_size=5000"]  # the default minibatch
    out = tmp_path / "run"
    result = _cli(*given, "-e", "critic_steps=2", "--emitter", "dcg", "--iterations", 1, "--out", out)
    assert result.exit_code == 0, result.output
    path = out / rundir.CONFIG
    config = json.loads(path.read_text())
    assert config["td3_defaults"] == {"train_batch_size": 100, "pg_lr": 0.005}
    assert "train_batch_size" not in config["emitter_options"]  # what was asked, as before
    # a run directory of qdkit 0.4.0 did not record them: it resumes with 0.4.0's defaults
    del config["td3_defaults"]
    path.write_text(json.dumps(config))
    old = rundir.read_config(str(out))
    assert old["td3_defaults"] == {"train_batch_size": 256, "pg_lr": 1e-3}
    options = registry.emitter_options_of(old)
    assert options["train_batch_size"] == 256 and options["pg_lr"] == 1e-3
    assert options["critic_steps"] == config["emitter_options"]["critic_steps"]  # the given ones kept
    assert registry.emitter_options_of({**old, "emitter_options": {"pg_lr": 0.1}})["pg_lr"] == 0.1  # given wins
    # the recorded defaults are what a resumed run builds its emitter with
    path.write_text(json.dumps({**config, "td3_defaults": {"train_batch_size": 0, "pg_lr": 0.005}}))
    result = _cli("resume", out, "--iterations", 2, "--no-progress")
    assert result.exit_code != 0 and "batch_size must be a positive integer" in result.output, result.output
