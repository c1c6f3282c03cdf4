"""The checks of tests/test_locomotion.py, run in a separate process each (see there).

Usage: python tests/locomotion_checks.py CHECK_NAME
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import emitters
import qdkit
from qdkit.tasks.locomotion import _brax_rules

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


def _zero_policies(task, n):
    return jax.tree.map(jnp.zeros_like, task.initial_genotypes(jax.random.key(0), n))


def check_walker_standing_still_lands_then_touches_the_ground_with_both_feet():
    task = qdkit.tasks.get("walker2d_uni", episode_length=20)
    evaluation = jax.jit(task.score)(jax.random.key(0), _zero_policies(task, 2))  # zero actions: it stands
    t = evaluation.extras["transitions"]
    contact = np.asarray(t.next_state_desc[0])
    assert contact[0].tolist() == [0.0, 0.0] and contact[-1].tolist() == [1.0, 1.0]  # dropped onto its feet
    np.testing.assert_allclose(np.asarray(evaluation.descriptors), contact.mean(axis=0)[None].repeat(2, 0))
    assert 0.3 < float(evaluation.descriptors[0, 0]) < 0.9
    assert t.obs.shape == (2, 20, task.env.observation_size) and t.action.shape == (2, 20, task.env.action_size)
    assert task.descriptor_names == ("foot 0 contact", "foot 1 contact")


def check_ant_omni_descriptor_is_the_final_torso_position_and_drops_the_forward_reward():
    task = qdkit.tasks.get("ant_omni", episode_length=4)
    params = task.initial_genotypes(jax.random.key(1), 2)
    evaluation = jax.jit(task.score)(jax.random.key(2), params)
    # replay the first policy in the raw brax env with the same key
    env = task.env.env
    key = jax.random.split(jax.random.key(2), 2)[0]
    one = jax.tree.map(lambda x: x[0], params)
    with _brax_rules():  # brax needs JAX's default promotion rules
        state, total = jax.jit(env.reset)(key), 0.0
        step = jax.jit(env.step)
        for _ in range(4):
            state = step(state, task.policy.apply(one, state.obs))
            total += float(state.reward - state.metrics["forward_reward"])
    np.testing.assert_allclose(np.asarray(evaluation.descriptors[0]), np.asarray(state.pipeline_state.x.pos[0, :2]),
                               rtol=1e-4, atol=1e-5)  # fmt: skip
    np.testing.assert_allclose(float(evaluation.fitness[0]), total, rtol=1e-4, atol=1e-4)


def _slide(task, x0=10.0, vx=8.0, steps=40):
    """The ant's torso x over ``steps`` steps of zero actions, started at ``x0`` sliding
    towards +x at ``vx`` m/s: straight at the trap's back wall (x = 12)."""
    env = task.env.env
    with _brax_rules():
        q = env.sys.init_q.at[0].set(x0)
        qd = jnp.zeros(env.sys.qd_size()).at[0].set(vx)
        state = jax.jit(env.pipeline_init)(q, qd)
        step = jax.jit(env.pipeline_step)
        xs = []
        for _ in range(steps):
            state = step(state, jnp.zeros(env.action_size))
            xs.append(float(state.x.pos[0, 0]))
    return np.array(xs)


def check_anttrap_walls_stop_the_ant_and_the_paper_preset():
    trapped = qdkit.tasks.get("anttrap_omni", episode_length=4)
    free = qdkit.tasks.get("ant_omni", episode_length=4)
    # thrown at the back wall (x = 12, radius 0.5) the torso (radius 0.25) stops at 11.25 and bounces back;
    # without the trap it slides past 12
    xs, ys = _slide(trapped), _slide(free)
    assert 11.0 < xs.max() <= 11.26 and xs[-1] < xs.max(), xs
    assert ys.max() > 12.0, ys
    # the same observations and scoring as ant_omni otherwise
    assert trapped.env.observation_size == free.env.observation_size == 27 and trapped.name == "anttrap_omni"
    evaluation = jax.jit(trapped.score)(jax.random.key(2), trapped.initial_genotypes(jax.random.key(1), 2))
    assert evaluation.descriptors.shape == (2, 2) and np.all(np.abs(np.asarray(evaluation.descriptors)) < 2)
    # preset=paper: DCG-MAP-Elites' settings and QD offsets (reward offset x episode length)
    paper = {name: qdkit.tasks.get(name, preset="paper") for name in ("ant_omni", "anttrap_omni", "walker2d_uni")}
    for name, (length, offset) in {"ant_omni": (250, 3.03), "anttrap_omni": (250, 3.03),
                                   "walker2d_uni": (1000, 1.413)}.items():  # fmt: skip
        task = paper[name]
        assert task.episode_length == length and task.policy.sizes[1:-1] == (128, 128)
        assert task.qd_offset == pytest.approx(-offset * length) and task.options["preset"] == "paper"
    np.testing.assert_array_equal(paper["anttrap_omni"].lower, [-30, -30])
    np.testing.assert_array_equal(paper["anttrap_omni"].upper, [30, 30])
    # options given beside the preset override it (the offset follows the episode length)
    short = qdkit.tasks.get("walker2d_uni", preset="paper", episode_length=20, hidden=16)
    assert short.episode_length == 20 and short.policy.sizes[1:-1] == (16, 16)
    assert short.qd_offset == pytest.approx(-1.413 * 20)
    assert free.policy.sizes[1:-1] == (64, 64) and free.qd_offset == -40.0  # qdkit's own defaults
    with pytest.raises(ValueError, match="unknown preset 'nope'; valid presets: qdkit, paper"):
        qdkit.tasks.get("ant_omni", preset="nope")
    with pytest.raises(TypeError, match="task 'ant_uni' has no option 'preset'"):
        qdkit.tasks.get("ant_uni", preset="paper")
    with pytest.raises(ValueError, match="episode_length and hidden must be positive integers"):
        qdkit.tasks.get("anttrap_omni", episode_length=0)


def check_pga_runs_on_a_brax_task():
    task = qdkit.tasks.get("hopper_uni", episode_length=5, hidden=8)
    config = emitters.TD3Config(critic_hidden=(16,), critic_steps=4, batch_size=16, pg_steps=2, pg_batch_size=8,
                                buffer_size=1000)  # fmt: skip
    emitter = emitters.pga(task, 8, config=config)
    archive = qdkit.GridArchive.create(shape=(10,), lower=task.lower, upper=task.upper,
                                       example_genotype=task.example_genotype)  # fmt: skip
    state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter)
    state, metrics = qdkit.map_elites.run(state, task, emitter, 2)
    # the initial population (8) and two emitted batches of 8, 5 steps each, all stored
    assert int(state.emitter_state.buffer.size) == 3 * 8 * 5 and len(state.archive) >= 1
    with pytest.raises(ValueError, match="unknown brax backend"):
        qdkit.tasks.get("hopper_uni", backend="bullet")


def check_imitation_of_the_elites_runs_on_a_brax_task():
    task = qdkit.tasks.get("hopper_uni", episode_length=5, hidden=8)
    archive = qdkit.GridArchive.create(shape=(10,), lower=task.lower, upper=task.upper,
                                       example_genotype=task.example_genotype)  # fmt: skip
    archive = qdkit.map_elites.init(jax.random.key(0), task, archive, emitters.iso_line(8)).archive
    with pytest.raises(ValueError, match="has no teacher of its own"):
        emitters.imitate_distilled(None, task, archive, jax.random.key(1), steps=1)
    policy, history = emitters.imitate_distilled(None, task, archive, jax.random.key(1), teacher="elites", steps=4,
                                                 batch_size=4, hidden=(8,), chunk=2)  # fmt: skip
    assert history.shape == (2,) and np.all(np.isfinite(history))
    assert policy.actor.sizes == (task.policy.sizes[0] + 1, 8, task.policy.sizes[-1])
    report, _ = emitters.evaluate_distilled(policy, task, archive, jax.random.key(2))
    assert report["all_cells"]["cells"] == 10


if __name__ == "__main__":
    globals()[sys.argv[1]]()
    print("OK")
