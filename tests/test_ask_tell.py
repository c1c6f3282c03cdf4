"""Ask/tell (qdkit.Scheduler): the same search as map_elites.run, resume bit for bit,
misuse refused with a clear error, NaN rows dropped and counted."""

import jax
import numpy as np
import pytest
from builders import leaves_equal, small_archive

import feedback
import qdkit
from emitters import gaussian, iso_line, mix
from qdkit import callbacks, checkpoint, map_elites


@pytest.fixture(scope="module")
def setup():
    task = qdkit.tasks.get("rastrigin", dims=5)
    archive = small_archive(task, "grid")
    emitter = mix(iso_line(24, 0.01, 0.1, lower=0.0, upper=1.0), gaussian(8, 0.05, lower=0.0, upper=1.0))
    return task, archive, emitter


def numpy_rastrigin(task, genotypes):
    """The task's scoring, outside JAX (what an external evaluator returns)."""
    e = jax.jit(task.score)(jax.random.key(0), genotypes)
    return np.array(e.fitness), np.array(e.descriptors)


def drive(scheduler, task, iterations):
    for _ in range(iterations):
        scheduler.tell(*numpy_rastrigin(task, scheduler.ask()))


def test_ask_tell_is_map_elites_run_cut_at_the_scoring(tmp_path, setup):
    task, archive, emitter = setup
    state = map_elites.init(jax.random.key(7), task, archive, emitter)
    log_run = tmp_path / "run.jsonl"
    state, metrics = map_elites.run(state, task, emitter, 12, chunk_size=5, callbacks=[callbacks.MetricsLog(log_run)])

    log_at = tmp_path / "ask_tell.jsonl"
    scheduler = qdkit.Scheduler(
        archive, emitter, initial=task.initial_genotypes, seed=7, qd_offset=task.qd_offset,
        callbacks=[callbacks.MetricsLog(log_at)],
    )  # fmt: skip
    assert scheduler.iteration == -1 and not scheduler.asked
    first = scheduler.ask()
    assert isinstance(first, np.ndarray) and first.shape == (emitter.batch_size, 5)
    scheduler.tell(*numpy_rastrigin(task, first))
    drive(scheduler, task, 12)
    # the same search; emit and insertion are compiled apart here and fused in run's
    # chunk, so the last bit of a float may differ (as in test_contract's Python loop)
    np.testing.assert_array_equal(scheduler.archive.occupied, state.archive.occupied)
    np.testing.assert_allclose(scheduler.archive.genotypes, state.archive.genotypes, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scheduler.archive.fitness, state.archive.fitness, rtol=1e-5)
    assert int(scheduler.state.iteration) == int(state.iteration) == 12
    logged = [callbacks.read_metrics(p) for p in (log_at, log_run)]  # the same rows, iterations 1..12
    assert set(logged[0]) == set(logged[1]) == set(metrics) and len(logged[0]["iteration"]) == 12
    for name, values in metrics.items():
        np.testing.assert_allclose(scheduler.metrics[name], values, rtol=1e-5)
        np.testing.assert_allclose(logged[0][name], logged[1][name], rtol=1e-5)


def test_restored_scheduler_continues_bit_for_bit(tmp_path, setup):
    task, archive, emitter = setup
    straight = qdkit.Scheduler(archive, emitter, initial=task.initial_genotypes, seed=3)
    drive(straight, task, 11)  # the initial batch, then iterations 1..10

    path = tmp_path / "ckpt.npz"
    first = qdkit.Scheduler(
        archive, emitter, initial=task.initial_genotypes, seed=3, callbacks=[callbacks.Checkpointer(path, every=4)]
    )
    drive(first, task, 7)  # killed after 6 (iteration 0 is the initial batch): the checkpoint holds iteration 4
    first.ask()  # and a batch was in flight
    assert checkpoint.read_meta(path)["iteration"] == 4

    resumed = qdkit.Scheduler(archive, emitter)  # an empty archive and no initial: only from a checkpoint
    resumed.restore(path)
    assert resumed.iteration == 4
    drive(resumed, task, 6)
    leaves_equal(resumed.state, straight.state)
    np.testing.assert_array_equal(resumed.metrics["qd_score"], straight.metrics["qd_score"][4:])

    other = qdkit.Scheduler(small_archive(qdkit.tasks.get("rastrigin", dims=3), "grid"), gaussian(8, 0.05))
    with pytest.raises(checkpoint.CheckpointError):
        other.restore(path)
    wider = qdkit.GridArchive.create(shape=(12, 12), lower=[-1, -1], upper=[2, 2], example_genotype=np.zeros(5))
    with pytest.raises(checkpoint.CheckpointError, match="other bounds"):
        qdkit.Scheduler(wider, emitter).restore(path)


def test_restore_drops_the_logged_rows_that_will_be_told_again(tmp_path, setup):
    task, archive, emitter = setup
    log, path = tmp_path / "metrics.jsonl", tmp_path / "ckpt.npz"
    first = qdkit.Scheduler(archive, emitter, initial=task.initial_genotypes,
                            callbacks=[callbacks.MetricsLog(log), callbacks.Checkpointer(path, every=5)])  # fmt: skip
    drive(first, task, 9)  # rows 1..8 logged, the checkpoint holds 5
    again = qdkit.Scheduler(archive, emitter, callbacks=[callbacks.MetricsLog(log)])
    again.restore(path)
    drive(again, task, 3)
    assert list(callbacks.read_metrics(log)["iteration"]) == list(range(1, 9))


def test_misuse_is_refused_with_a_clear_error(setup):
    task, archive, emitter = setup
    with pytest.raises(ValueError, match="the archive is empty: give `initial`"):
        qdkit.Scheduler(archive, emitter).ask()
    with pytest.raises(ValueError, match=r"initial: genotypes of shape \(4,\) per row; the archive stores \(5,\)"):
        qdkit.Scheduler(archive, emitter, initial=np.zeros((8, 4), np.float32))
    scheduler = qdkit.Scheduler(archive, emitter, initial=np.full((8, 5), 0.5, np.float32))
    with pytest.raises(ValueError, match="seed or key, not both"):
        qdkit.Scheduler(archive, emitter, initial=task.initial_genotypes, seed=1, key=jax.random.key(1))
    with pytest.raises(ValueError, match="seed must be an integer"):
        qdkit.Scheduler(archive, emitter, initial=task.initial_genotypes, seed=1.7)
    as_ints = qdkit.Scheduler(archive, emitter, initial=np.zeros((8, 5), np.int64))
    assert as_ints.ask().dtype == np.float32  # cast to the archive's genotypes
    with pytest.raises(RuntimeError, match=r"tell\(\) without ask\(\)"):
        scheduler.tell(np.zeros(8), np.zeros((8, 2)))
    with pytest.raises(RuntimeError, match="nothing to save"):
        scheduler.save("never.npz")
    solutions = scheduler.ask()
    assert solutions.shape == (8, 5)
    with pytest.raises(RuntimeError, match=r"ask\(\) called again before tell\(\): tell the 8 solutions"):
        scheduler.ask()
    with pytest.raises(ValueError, match=r"fitness: expected shape \(8,\)"):
        scheduler.tell(np.zeros(7), np.zeros((8, 2)))
    with pytest.raises(ValueError, match=r"descriptors: expected shape \(8, 2\)"):
        scheduler.tell(np.zeros(8), np.zeros((8, 3)))
    with pytest.raises(ValueError, match=r"extras\['x'\]: expected a leading axis of 8"):
        scheduler.tell(np.zeros(8), np.zeros((8, 2)), extras={"x": np.zeros(3)})
    with pytest.raises(ValueError, match="must be real numbers"):
        scheduler.tell(np.array(["a"] * 8), np.zeros((8, 2)))
    with pytest.raises(ValueError, match="must be real numbers"):
        scheduler.tell(np.zeros(8, complex), np.zeros((8, 2)))
    with pytest.raises(ValueError, match="extras must be a dict"):
        scheduler.tell(np.zeros(8), np.zeros((8, 2)), extras=[1, 2])

    # after the refusals the batch is still pending; NaN and infinite rows are dropped and counted
    fitness, descriptors = numpy_rastrigin(task, solutions)
    fitness[0], descriptors[1, 0], fitness[2] = np.nan, np.inf, -np.inf
    row = scheduler.tell(fitness, descriptors)  # the initial batch: iteration 0
    assert int(row["num_invalid"]) == 3 and int(row["num_elites"]) >= 1
    assert np.all(np.isfinite(np.asarray(scheduler.archive.fitness)[np.asarray(scheduler.archive.occupied)]))
    solutions = scheduler.ask()
    row = scheduler.tell(np.full(len(solutions), np.nan), np.zeros((len(solutions), 2)))
    assert int(row["num_invalid"]) == emitter.batch_size and int(row["num_added"]) == 0
    assert int(row["iteration"]) == 1 and list(scheduler.metrics["num_invalid"]) == [emitter.batch_size]

    projection = feedback.Projection(20, 2)
    learned = feedback.LearnedArchive.create(
        shape=(8, 8), projection=projection, params=projection.init(jax.random.key(5)),
        example_genotype=task.example_genotype,
    )  # fmt: skip
    with pytest.raises(ValueError, match="learned descriptors need features and a refit schedule"):
        qdkit.Scheduler(learned, emitter, initial=np.zeros((8, 5), np.float32))


def test_a_prefilled_archive_emits_at_once(setup):
    task, archive, emitter = setup
    genotypes = task.initial_genotypes(jax.random.key(1), 16)
    e = task.score(jax.random.key(0), genotypes)
    filled, _ = archive.add(genotypes, e.fitness, e.descriptors)
    scheduler = qdkit.Scheduler(filled, emitter, seed=1)
    assert scheduler.iteration == 0
    drive(scheduler, task, 3)
    assert scheduler.iteration == 3 and int(scheduler.metrics["num_elites"][-1]) >= 16
