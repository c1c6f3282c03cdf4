"""Host callbacks: progress bar, metrics log (and its truncation on resume), checkpointer."""

import io
import json
import math

import numpy as np
import pytest

from qdkit import callbacks, checkpoint


def chunk(start, n, qd=1.0):
    return {
        "iteration": np.arange(start + 1, start + n + 1),
        "qd_score": np.full(n, qd, np.float32),
        "coverage": np.full(n, 0.25, np.float32),
        "max_fitness": np.full(n, -np.inf, np.float32),
        "num_added": np.arange(n, dtype=np.int32),
    }


def test_progress_bar_counts_and_shows_live_metrics():
    out = io.StringIO()
    bar = callbacks.ProgressBar(30, initial=10, disable=False, file=out, mininterval=0)
    bar(None, chunk(10, 5, qd=12.5))
    assert bar._bar.n == 15
    assert set(bar._bar.postfix.split(", ")) == {"qd_score=12.5", "coverage=25.0%"}
    bar.close()
    assert "15/30" in out.getvalue()


def test_metrics_log_rows_and_truncation(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = callbacks.MetricsLog(path)
    log(None, chunk(0, 3))
    log(None, chunk(3, 2))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["max_fitness"] is None  # -inf is not JSON: written as null
    assert rows[4]["num_added"] == 1
    read = callbacks.read_metrics(path)
    assert math.isnan(read["max_fitness"][0]) and list(read["iteration"]) == [1, 2, 3, 4, 5]
    callbacks.truncate_metrics(path, 3)
    assert [json.loads(line)["iteration"] for line in path.read_text().splitlines()] == [1, 2, 3]
    callbacks.truncate_metrics(tmp_path / "absent.jsonl", 3)  # nothing to do, no error


def test_metrics_log_writes_each_value_as_its_python_scalar(tmp_path):
    # a column is converted at once; each value is written as the value's .item() would be
    metrics = {
        "qd_score": np.array([0.1, 2.5e6, np.nan], np.float32),
        "max_fitness": np.array([-np.inf, -0.3, np.inf], np.float32),
        "num_added": np.array([0, 7, 2**31 - 1], np.int32),
        "flag": np.array([True, False, True]),
        "iteration": np.array([4, 5, 6], np.int64),
    }
    callbacks.MetricsLog(tmp_path / "m.jsonl")(None, {**metrics, "listed": [1, 2.5, True]})
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    for i, row in enumerate(rows):
        for name, column in metrics.items():
            value = column[i].item()
            assert row[name] == (None if isinstance(value, float) and not math.isfinite(value) else value)
            assert type(row[name]) is (type(None) if row[name] is None else type(value))
    assert list(rows[0]) == [*metrics, "listed"]
    # a list column keeps each value's own type (NumPy would make them one dtype)
    assert [type(row["listed"]) for row in rows] == [int, float, bool]
    with pytest.raises(ValueError):  # a column of another length is an error, not rows lost
        callbacks.MetricsLog(tmp_path / "m.jsonl")(None, {**metrics, "short": np.zeros(2)})


class FakeState:
    def __init__(self, iteration):
        self.iteration = np.int32(iteration)


def test_checkpointer_saves_when_crossing_a_multiple(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(checkpoint, "save", lambda path, state, config, host=None: saved.append(int(state.iteration)))
    ckpt = callbacks.Checkpointer(tmp_path / "c.npz", every=10)
    for start, n in [(0, 7), (7, 7), (14, 5), (19, 1), (20, 15)]:
        ckpt(FakeState(start + n), chunk(start, n))
    assert saved == [14, 20, 35]
    assert ckpt.last_saved == 35
    with pytest.raises(ValueError, match="positive"):
        callbacks.Checkpointer(tmp_path / "c.npz", every=0)


def test_progress_bar_shows_live_counters_during_a_slow_iteration():
    """A host iteration that takes a while shows its model requests, tokens and texts
    rated as they grow, before the iteration ends."""
    import io
    import time

    from qdkit.callbacks import ProgressBar

    counters = {"llm_requests": 3, "llm_completion_tokens": 100, "rate_rated": 0, "llm_failures": 0}
    out = io.StringIO()
    bar = ProgressBar(2, disable=False, live=lambda: dict(counters), interval=0.05, file=out)
    counters.update(llm_requests=5, llm_completion_tokens=160, rate_rated=2)  # during iteration 1
    deadline = time.monotonic() + 10
    while "requests=2" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    shown = out.getvalue()
    assert "requests=2" in shown and "tokens out=60" in shown and "rated=2" in shown, shown
    assert "failures" not in shown
    bar(None, {"iteration": np.asarray([1]), "qd_score": np.asarray([1.5]), "coverage": np.asarray([0.25])})
    counters.update(llm_requests=6)  # iteration 2: counted from the end of iteration 1
    time.sleep(0.3)
    bar.close()
    last = out.getvalue().rsplit("\r", 1)[-1]
    assert "requests=1" in last and "qd_score=1.5" in last, last


def test_background_checkpoints_match_and_survive_donated_buffers(tmp_path):
    """Periodic checkpoints written from a thread, while later chunks run on donated
    buffers, hold the same state as checkpoints written in the loop; the last one is the
    latest state."""
    import jax

    import qdkit
    from emitters import iso_line

    task = qdkit.tasks.get("rastrigin", dims=20)
    archive = qdkit.GridArchive.create(shape=(10, 10), lower=task.lower, upper=task.upper,
                                       example_genotype=task.example_genotype)  # fmt: skip
    emitter = iso_line(64, 0.01, 0.1, lower=0.0, upper=1.0)
    template = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter)
    saved = {}
    for background in (False, True):
        path = tmp_path / f"{background}.npz"
        ckpt = callbacks.Checkpointer(path, every=10, background=background)
        state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter)
        snapshots = []

        def keep(state, metrics, path=path, snapshots=snapshots, ckpt=ckpt):
            ckpt.wait()  # the write of the previous chunk end is complete: its file is read
            if path.exists():
                snapshots.append(checkpoint.load(path, template))

        state, _ = qdkit.map_elites.run(state, task, emitter, 40, chunk_size=10, callbacks=[keep, ckpt], donate=True)
        ckpt.wait()
        snapshots.append(checkpoint.load(path, template))
        saved[background] = snapshots
        assert int(snapshots[-1].iteration) == 40
        np.testing.assert_array_equal(snapshots[-1].archive.fitness, state.archive.fitness)
    assert [int(s.iteration) for s in saved[True]] == [int(s.iteration) for s in saved[False]] == [10, 20, 30, 40]
    for a, b in zip(saved[False], saved[True]):
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                x, y = jax.random.key_data(x), jax.random.key_data(y)
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_background_write_errors_are_raised_not_lost(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    ckpt = callbacks.Checkpointer(tmp_path / "file" / "c.npz", every=1, background=True)
    ckpt(FakeState(1), chunk(0, 1))  # the write fails in its thread
    with pytest.raises(OSError):
        ckpt.wait()
    ckpt.wait()  # reported once
    ckpt(FakeState(2), chunk(1, 1))
    ckpt.path = str(tmp_path / "c.npz")
    with pytest.raises(OSError):
        ckpt.save(FakeState(3))  # the next save reports the write before it, after writing
    assert ckpt.last_saved == 3 and (tmp_path / "c.npz").exists()
    # with host state, the writes stay in the loop
    assert not callbacks.Checkpointer(tmp_path / "c.npz", every=1, host=dict, background=True).background
