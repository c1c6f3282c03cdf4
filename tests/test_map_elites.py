"""The MAP-Elites loop: end-to-end, chunking, no recompilation, interruption."""

import contextlib
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qdkit
from emitters import iso_line
from qdkit import map_elites


def setup(task_name="arm", batch=64, shape=(16, 16), **task_options):
    task = qdkit.tasks.get(task_name, **task_options)
    archive = qdkit.GridArchive.create(
        shape=shape, lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    emitter = iso_line(batch, 0.01, 0.1, lower=task.genotype_lower, upper=task.genotype_upper)
    return task, archive, emitter


def test_end_to_end_arm_reaches_threshold():
    task, archive, emitter = setup(batch=128)
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    state, metrics = map_elites.run(state, task, emitter, 300, chunk_size=50)
    # the reachable disc covers ~78% of the box; a working loop fills most of it
    assert metrics["coverage"][-1] > 0.7
    assert metrics["max_fitness"][-1] > -0.05
    assert np.all(np.diff(metrics["qd_score"]) >= 0)
    assert np.all(np.diff(metrics["num_elites"]) >= 0)
    assert np.all(metrics["qd_score"] >= 0)
    np.testing.assert_array_equal(metrics["iteration"], np.arange(1, 301))
    assert int(state.iteration) == 300
    assert metrics["num_elites"][-1] == len(state.archive)


def test_chunking_does_not_change_results():
    task, archive, emitter = setup("rastrigin", dims=6)
    state = map_elites.init(jax.random.key(1), task, archive, emitter)
    a, ma = map_elites.run(state, task, emitter, 37, chunk_size=37)
    b, mb = map_elites.run(state, task, emitter, 37, chunk_size=10)
    c = state
    for _ in range(37):
        c, _ = map_elites.step(c, task, emitter)
    for x, y in [(a, b), (a, c)]:
        np.testing.assert_array_equal(x.archive.fitness, y.archive.fitness)
        np.testing.assert_array_equal(x.archive.genotypes, y.archive.genotypes)
        np.testing.assert_array_equal(jax.random.key_data(x.key), jax.random.key_data(y.key))
    for k in ma:
        np.testing.assert_array_equal(ma[k], mb[k])


def test_input_state_is_not_consumed():
    task, archive, emitter = setup()
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    before = np.asarray(state.archive.fitness).copy()
    map_elites.run(state, task, emitter, 5)
    np.testing.assert_array_equal(state.archive.fitness, before)  # still readable, unchanged


def test_a_donated_state_is_consumed_and_gives_the_same_run():
    task, archive, emitter = setup()
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    kept, kept_metrics = map_elites.run(state, task, emitter, 12, chunk_size=5)
    assert not state.archive.fitness.is_deleted()
    given, given_metrics = map_elites.run(state, task, emitter, 12, chunk_size=5, donate=True)
    assert state.archive.fitness.is_deleted() and state.archive.genotypes.is_deleted()  # its buffers were reused
    for a, b in zip(jax.tree.leaves(given.archive), jax.tree.leaves(kept.archive)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(given_metrics["qd_score"], kept_metrics["qd_score"])
    again, _ = map_elites.run(given, task, emitter, 3, donate=True)  # the returned state goes on
    assert int(again.iteration) == 15 and given.archive.fitness.is_deleted()
    # a threshold archive holds its empty storage twice (storage and result archive)
    soft = qdkit.GridArchive.create(shape=(16, 16), lower=task.lower, upper=task.upper,
                                    example_genotype=task.example_genotype, learning_rate=0.5, threshold_min=-10.0)  # fmt: skip
    soft_state, _ = map_elites.run(map_elites.init(jax.random.key(1), task, soft, emitter), task, emitter, 3,
                                   donate=True)  # fmt: skip
    assert int(soft_state.iteration) == 3


def test_a_donated_archive_becomes_the_initial_state_in_place():
    task, archive, emitter = setup()
    kept = map_elites.init(jax.random.key(0), task, archive, emitter)
    assert not archive.genotypes.is_deleted()
    given = map_elites.init(jax.random.key(0), task, archive, emitter, donate=True)
    assert archive.genotypes.is_deleted() and archive.fitness.is_deleted()  # written in place
    for a, b in zip(jax.tree.leaves(given), jax.tree.leaves(kept)):
        a, b = (jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x for x in (a, b))
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the compiled initial step writes the archive into the donated buffers, none new
    fresh = qdkit.GridArchive.create(shape=(16, 16), lower=task.lower, upper=task.upper,
                                     example_genotype=task.example_genotype)  # fmt: skip
    stats = map_elites._init_donated.lower(jax.random.key(0), task, fresh, emitter, 32, None).compile()
    held = sum(leaf.nbytes for leaf in jax.tree.leaves(fresh) if leaf.ndim)  # (its scalar totals are rebuilt)
    assert stats.memory_analysis().alias_size_in_bytes >= held
    # a threshold archive holds its empty storage twice: one copy is made, not a refusal
    soft = qdkit.GridArchive.create(shape=(16, 16), lower=task.lower, upper=task.upper,
                                    example_genotype=task.example_genotype, learning_rate=0.5, threshold_min=-10.0)  # fmt: skip
    assert int(map_elites.init(jax.random.key(1), task, soft, emitter, donate=True).iteration) == 0
    # several seeds build their archives from the given one, which stays intact
    seeds = map_elites.init(qdkit.rng.key([0, 1]), task, fresh, emitter, donate=True)
    assert not fresh.genotypes.is_deleted() and map_elites.num_seeds(seeds) == 2


def test_no_recompilation_after_first_chunk():
    task, archive, emitter = setup(batch=32)
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    state, _ = map_elites.run(state, task, emitter, 10, chunk_size=10)
    compiled = map_elites._run_chunk._cache_size()
    # more chunks, a shorter last chunk, another run call: same compiled program
    state, _ = map_elites.run(state, task, emitter, 25, chunk_size=10)
    state, _ = map_elites.run(state, task, emitter, 3, chunk_size=10)
    assert map_elites._run_chunk._cache_size() == compiled


def test_callbacks_see_every_chunk():
    task, archive, emitter = setup()
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    calls = []
    map_elites.run(
        state,
        task,
        emitter,
        25,
        chunk_size=10,
        callbacks=[lambda s, m: calls.append((int(s.iteration), list(m["iteration"])))],
    )
    assert [c[0] for c in calls] == [10, 20, 25]
    assert calls[-1][1] == [21, 22, 23, 24, 25]


def test_ctrl_c_finishes_chunk_and_raises_interrupted():
    task, archive, emitter = setup()
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when the tests run in the background

    def press_ctrl_c(s, m):
        if int(s.iteration) == 20:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(qdkit.Interrupted) as caught:
        map_elites.run(state, task, emitter, 100, chunk_size=10, callbacks=[press_ctrl_c])
    assert int(caught.value.state.iteration) == 20
    assert len(caught.value.metrics["iteration"]) == 20
    # the handler is restored afterwards
    assert signal.getsignal(signal.SIGINT) is before


def test_metrics_read_behind_the_next_chunk_are_those_read_at_once():
    # without callbacks a chunk's metrics are read while the next chunk runs; with a
    # callback, before it starts: the same rows, numbered on from the state's iteration
    task, archive, emitter = setup("rastrigin", dims=6)
    state = map_elites.init(jax.random.key(2), task, archive, emitter)
    state, _ = map_elites.run(state, task, emitter, 7)
    a, ma = map_elites.run(state, task, emitter, 35, chunk_size=10)
    b, mb = map_elites.run(state, task, emitter, 35, chunk_size=10, callbacks=[lambda s, m: None])
    np.testing.assert_array_equal(ma["iteration"], np.arange(8, 43))
    assert ma.keys() == mb.keys()
    for k in ma:
        np.testing.assert_array_equal(ma[k], mb[k])
    np.testing.assert_array_equal(a.archive.fitness, b.archive.fitness)
    assert int(a.iteration) == int(b.iteration) == 42


@pytest.mark.parametrize("pressed_at", [1, 2])
def test_ctrl_c_without_callbacks_keeps_every_dispatched_chunk(monkeypatch, pressed_at):
    # Ctrl-C (the flag set, as the handler sets it) once chunk `pressed_at` was handed
    # to the device: the dispatched chunks finish, no more start, and the state and
    # metrics agree
    task, archive, emitter = setup()
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    _, full = map_elites.run(state, task, emitter, 30, chunk_size=10)
    flag, dispatched, real = [False], [], map_elites._run_chunk

    def chunk(*args):
        dispatched.append(int(args[1]))
        flag[0] = len(dispatched) == pressed_at
        return real(*args)

    @contextlib.contextmanager
    def sigint_flag(enabled):
        yield flag

    monkeypatch.setattr(map_elites, "_run_chunk", chunk)
    monkeypatch.setattr(map_elites, "_sigint_flag", sigint_flag)
    with pytest.raises(qdkit.Interrupted) as caught:
        map_elites.run(state, task, emitter, 100, chunk_size=10)
    assert dispatched == [10] * pressed_at
    assert int(caught.value.state.iteration) == 10 * pressed_at
    np.testing.assert_array_equal(caught.value.metrics["iteration"], np.arange(1, 10 * pressed_at + 1))
    np.testing.assert_array_equal(caught.value.metrics["qd_score"], full["qd_score"][: 10 * pressed_at])


@pytest.mark.parametrize("with_callback", [False, True])
def test_the_next_chunk_is_dispatched_before_the_metrics_are_read(monkeypatch, with_callback):
    task, archive, emitter = setup()
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    events, run_chunk, to_host = [], map_elites._run_chunk, map_elites.distributed.to_host

    def chunk(*args):
        events.append("dispatch")
        return run_chunk(*args)

    def read(tree):
        events.append("read metrics" if isinstance(tree, dict) else "read iteration")
        return to_host(tree)

    monkeypatch.setattr(map_elites, "_run_chunk", chunk)
    monkeypatch.setattr(map_elites.distributed, "to_host", read)
    callbacks = [lambda s, m: None] if with_callback else []
    map_elites.run(state, task, emitter, 30, chunk_size=10, callbacks=callbacks)
    if with_callback:
        assert events == ["read iteration"] + ["dispatch", "read metrics"] * 3
    else:
        assert events == ["read iteration", "dispatch", "dispatch", "read metrics", "dispatch", "read metrics",
                          "read metrics"]  # fmt: skip


def test_a_replacement_state_numbers_the_rows_from_its_own_iteration():
    task, archive, emitter = setup()
    state = map_elites.init(jax.random.key(0), task, archive, emitter)

    def skip_ahead(s, m):
        if int(m["iteration"][-1]) == 10:
            return s.replace(iteration=s.iteration + 100)
        return None

    state, metrics = map_elites.run(state, task, emitter, 30, chunk_size=10, callbacks=[skip_ahead])
    np.testing.assert_array_equal(metrics["iteration"], np.r_[1:11, 111:131])
    assert int(state.iteration) == 130


def test_nan_fitness_never_enters_through_the_loop():
    base = qdkit.tasks.get("sphere", dims=4)

    def score(key, genotypes):
        ev = base.score(key, genotypes)
        return ev._replace(fitness=jnp.where(genotypes[:, 2] > 0.5, jnp.nan, ev.fitness))

    task = qdkit.Task(**{**base.__dict__, "score": score})
    archive = qdkit.GridArchive.create(shape=(8, 8), lower=0, upper=1, example_genotype=task.example_genotype)
    emitter = iso_line(64, 0.05, 0.1, lower=0.0, upper=1.0)
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    state, _ = map_elites.run(state, task, emitter, 20)
    occupied = np.asarray(state.archive.occupied)
    assert occupied.sum() > 10
    assert np.all(np.asarray(state.archive.genotypes)[occupied, 2] <= 0.5)


def test_bad_arguments():
    task, archive, emitter = setup()
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    with pytest.raises(ValueError, match="iterations"):
        map_elites.run(state, task, emitter, -1)
    with pytest.raises(ValueError, match="chunk_size"):
        map_elites.run(state, task, emitter, 5, chunk_size=0)
    with pytest.raises(ValueError, match="num_initial"):
        map_elites.init(jax.random.key(0), task, archive, emitter, num_initial=0)
