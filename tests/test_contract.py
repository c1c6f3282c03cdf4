"""The core contract: every emitter run in a Python loop equals the compiled loop; emit
returns the state update needs (no Python-side state); TD3's target networks and policy
delay by hand."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import emitters
import feedback
import qdkit
from emitters import rl
from qdkit import map_elites

TINY_TD3 = emitters.TD3Config(critic_hidden=(16,), critic_steps=4, batch_size=16, pg_steps=2, pg_batch_size=8,
                              buffer_size=4000)  # fmt: skip


def _arm():
    return qdkit.tasks.get("arm", dof=4)


def _proj():
    return qdkit.tasks.get("sphere_proj", dims=6)


def _maze():
    return qdkit.tasks.get("maze", episode_length=10, hidden=4)


def _grid(task, **kwargs):
    return qdkit.GridArchive.create(
        shape=(8,) * task.descriptor_dim, lower=task.lower, upper=task.upper, example_genotype=task.example_genotype,
        **kwargs,
    )  # fmt: skip


def _bounds(task):
    return {"lower": task.genotype_lower, "upper": task.genotype_upper}


#: name -> (task, archive, emitter) at tiny sizes; every emitter `qdkit emitters` lists but
#: lmx (a host emitter, below), and mix.
CASES = {
    "gaussian": lambda: (t := _arm(), _grid(t), emitters.gaussian(12, 0.1, **_bounds(t))),
    "iso-line": lambda: (t := _arm(), _grid(t), emitters.iso_line(12, 0.01, 0.1, **_bounds(t))),
    "mix": lambda: (t := _arm(), _grid(t), emitters.mix(emitters.iso_line(6, **_bounds(t)), emitters.gaussian(6, 0.1))),
    "cma-me": lambda: (t := _proj(), _grid(t), emitters.evolution_strategy(t.example_genotype, 6, num_emitters=2)),
    "cma-mae": lambda: (
        t := _proj(), _grid(t, learning_rate=0.01, threshold_min=t.qd_offset),
        emitters.evolution_strategy(t.example_genotype, 6, num_emitters=2, ranker="imp", selection="mu",
                                    restart="basic"),
    ),
    "cma-mega": lambda: (t := _proj(), _grid(t), emitters.cma_mega(t.jacobian, t.example_genotype, 5, num_emitters=2)),
    "omg-mega": lambda: (t := _proj(), _grid(t), emitters.omg_mega(t.jacobian, t.example_genotype, 12)),
    "pga": lambda: (t := _maze(), _grid(t), emitters.pga(t, 12, config=TINY_TD3)),
    "dcg": lambda: (t := _maze(), _grid(t), emitters.dcg(t, 12, num_injected=2, config=TINY_TD3)),
    "iso-line-learned": lambda: (t := _arm(), _learned(t, 8), emitters.iso_line(12, **_bounds(t))),
}  # fmt: skip


def _learned(task, features=20):
    projection = feedback.Projection(features, 2)
    return feedback.LearnedArchive.create(
        shape=(8, 8), projection=projection, params=projection.init(jax.random.key(5)),
        example_genotype=task.example_genotype,
    )  # fmt: skip


def python_loop(state, task, emitter, iterations):
    """The MAP-Elites iteration written out in Python: each piece compiled on its own
    (host code called as it is), the emitter's state carried by the caller from emit to
    update."""
    host = map_elites.is_host(task, emitter)
    emit, update = (f if host else jax.jit(f) for f in (emitter.emit, emitter.update))
    score = task.score if task.host else jax.jit(task.score)
    describe = jax.jit(lambda archive, evaluation: map_elites.describe(archive, task, evaluation))
    add = jax.jit(lambda archive, *rows: archive.add(*rows))
    archive, emitter_state, key = state.archive, state.emitter_state, state.key
    for _ in range(iterations):
        key, k_emit, k_score = jax.random.split(key, 3)
        genotypes, emitter_state = emit(k_emit, archive, emitter_state)
        evaluation, features = describe(archive, score(k_score, genotypes))
        archive, info = add(archive, genotypes, evaluation.fitness, evaluation.descriptors, features)
        emitter_state = update(emitter_state, archive, genotypes, evaluation, info)
    return archive, emitter_state


@pytest.mark.parametrize("name", sorted(CASES), ids=sorted(CASES))
def test_every_emitter_in_a_python_loop_equals_the_compiled_loop(name):
    task, archive, emitter = CASES[name]()
    start = map_elites.init(jax.random.key(0), task, archive, emitter)
    looped_archive, looped_state = python_loop(start, task, emitter, 3)
    compiled, _ = map_elites.run(start, task, emitter, 3, chunk_size=3)
    np.testing.assert_array_equal(looped_archive.occupied, compiled.archive.occupied)
    np.testing.assert_allclose(looped_archive.fitness, compiled.archive.fitness, rtol=1e-5)
    for got, want in zip(jax.tree.leaves(looped_state), jax.tree.leaves(compiled.emitter_state), strict=True):
        if jnp.issubdtype(got.dtype, jax.dtypes.prng_key):
            got, want = jax.random.key_data(got), jax.random.key_data(want)
        np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=1e-4, atol=1e-5)
    # emitter states are named pytrees, never dicts
    named = jax.tree_util.tree_flatten_with_path(compiled.emitter_state)[0]
    assert not any(isinstance(k, jax.tree_util.DictKey) for path, _ in named for k in path[:1])


def test_lmx_returns_its_counts_from_emit_and_the_host_loop_equals_a_python_loop(scripted):
    from qdkit import registry

    config = {"task": "text", "task_options": {"domain": "opinions"}, "emitter": "lmx", "emitter_options": {},
              "batch_size": 3, "seed": 0, "base_url": f"http://127.0.0.1:{scripted.server_port}/v1", "model": "m",
              "concurrency": 1}  # fmt: skip
    task, archive, emitter = registry.build(config)
    start = map_elites.init(jax.random.key(0), task, archive, emitter)
    served = scripted.count  # the scripted answers follow its request count: replay them from here
    hosted, _ = map_elites.run(start, task, emitter, 2)
    scripted.count = served
    looped_archive, looped_state = python_loop(start, task, emitter, 2)
    assert emitter.stats(hosted.emitter_state) == emitter.stats(looped_state)
    assert emitter.stats(looped_state)["lmx_generated"] == 6
    np.testing.assert_array_equal(hosted.archive.occupied, looped_archive.occupied)
    np.testing.assert_array_equal(hosted.archive.fitness, looped_archive.fitness)
    # no channel but the state: two emits from one state, and each returns its own counts
    _, first = emitter.emit(jax.random.key(1), start.archive, start.emitter_state)
    scripted.script["write"] = ["empty"]
    _, second = emitter.emit(jax.random.key(2), start.archive, start.emitter_state)
    assert int(first.generated) == int(second.generated) == 3
    assert (int(first.empty), int(second.empty)) == (0, 1)
    assert emitter.stats(start.emitter_state)["lmx_generated"] == 0  # the state emit was given is unchanged


def test_td3_target_networks_and_policy_delay_by_hand():
    """One round of TD3 with policy delay 2 on a buffer of one repeated transition (so
    the minibatches are known) and no target noise: two critic steps toward
    ``r + gamma * min(Q1', Q2')(s', pi'(s'))`` with the *target* networks, then one actor
    step up ``Q1(s, pi(s))`` with the updated critic, then one soft update of both
    targets with ``tau``."""
    config = emitters.TD3Config(critic_hidden=(4,), critic_steps=2, batch_size=3, policy_delay=2, policy_noise=0.0,
                                discount=0.9, tau=0.25, critic_lr=0.1, actor_lr=0.05)  # fmt: skip
    policy = qdkit.policy.MLP((3, 4, 2))
    nets = rl.make_networks(policy, 0, config)
    obs, action, next_obs = jnp.asarray([0.1, -0.2, 0.3]), jnp.asarray([0.5, -0.5]), jnp.asarray([0.2, 0.0, -0.1])
    reward, done = 1.5, 0.0
    rows = rl.Replay(obs=obs[None], action=action[None], reward=jnp.asarray([reward]), next_obs=next_obs[None],
                     done=jnp.asarray([done]), desc=jnp.zeros((1, 1)), aim=jnp.zeros((1, 1)))  # fmt: skip
    buffer = rl.buffer_add(rl.buffer_init(8, 3, 2, 0), rows, jnp.ones((1,), bool))
    learner0 = rl.td3_init(jax.random.key(0), nets, config)
    # make the targets differ from the online networks, so that using the wrong one shows
    shift = lambda tree, c: jax.tree.map(lambda x: x + c, tree)  # noqa: E731
    learner0 = learner0._replace(critic_target=shift(learner0.critic, 0.05), actor_target=shift(learner0.actor, -0.1))

    with jax.numpy_dtype_promotion("standard"):
        learner, _ = rl.td3_train(learner0, buffer, jax.random.key(1), nets, config)

        def q(critic, s, a):
            x = jnp.concatenate([s, a])[None]
            return nets.q.apply(critic[0], x)[0, 0], nets.q.apply(critic[1], x)[0, 0]

        def pi(actor, s):
            return nets.actor.apply(actor, s[None])[0]

        target_q = jnp.minimum(
            *q(learner0.critic_target, next_obs, jnp.clip(pi(learner0.actor_target, next_obs), -1, 1))
        )
        y = reward + 0.9 * (1 - done) * target_q  # the targets do not move during the round
        critic_opt = optax.adam(0.1)
        critic, opt = learner0.critic, learner0.critic_opt
        for _ in range(2):
            grads = jax.grad(lambda c: sum((qi - y) ** 2 for qi in q(c, obs, action)))(critic)
            updates, opt = critic_opt.update(grads, opt)
            critic = optax.apply_updates(critic, updates)
        actor_opt = optax.adam(0.05)
        grads = jax.grad(lambda a: -q(critic, obs, pi(a, obs))[0])(learner0.actor)
        updates, _ = actor_opt.update(grads, learner0.actor_opt)
        actor = optax.apply_updates(learner0.actor, updates)
    soft = lambda target, online: jax.tree.map(lambda t, o: 0.75 * t + 0.25 * o, target, online)  # noqa: E731
    for got, want in (
        (learner.critic, critic),
        (learner.actor, actor),
        (learner.critic_target, soft(learner0.critic_target, critic)),
        (learner.actor_target, soft(learner0.actor_target, actor)),
    ):
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)
    # two critic steps and one actor step: Adam's step counts
    assert int(jax.tree.leaves(learner.critic_opt)[0]) == 2 and int(jax.tree.leaves(learner.actor_opt)[0]) == 1
