"""Checkpoints: bit-identical resume, atomic writes, clear errors on bad files."""

import os
import zipfile

import jax
import numpy as np
import pytest
from builders import leaves_equal, small_archive

import qdkit
from emitters import gaussian, iso_line, mix
from qdkit import checkpoint, map_elites
from qdkit.checkpoint import CheckpointError


def build(archive_kind="grid"):
    task = qdkit.tasks.get("rastrigin", dims=5)
    archive = small_archive(task, archive_kind)
    emitter = mix(iso_line(24, 0.01, 0.1, lower=0.0, upper=1.0), gaussian(8, 0.05, lower=0.0, upper=1.0))
    return task, archive, emitter


@pytest.mark.parametrize("archive_kind", ["grid", "cvt"])
def test_resume_is_bit_identical(tmp_path, archive_kind):
    task, archive, emitter = build(archive_kind)
    state = map_elites.init(jax.random.key(42), task, archive, emitter)
    straight, metrics_straight = map_elites.run(state, task, emitter, 30, chunk_size=7)

    half, metrics_a = map_elites.run(state, task, emitter, 13, chunk_size=7)
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, half, {"note": "test"})
    template = jax.eval_shape(lambda k: map_elites.init(k, task, archive, emitter), jax.random.key(0))
    restored = checkpoint.load(path, template)
    leaves_equal(restored, half)
    resumed, metrics_b = map_elites.run(restored, task, emitter, 17, chunk_size=5)
    leaves_equal(resumed, straight)
    np.testing.assert_array_equal(
        np.concatenate([metrics_a["qd_score"], metrics_b["qd_score"]]), metrics_straight["qd_score"]
    )
    assert checkpoint.read_meta(path)["iteration"] == 13
    assert checkpoint.read_meta(path)["config"] == {"note": "test"}


def saved(tmp_path):
    task, archive, emitter = build()
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    path = tmp_path / "ckpt.npz"
    checkpoint.save(path, state)
    return path, state


def test_save_seeds_writes_what_save_writes_for_each_seed(tmp_path):
    task, archive, emitter = build()
    keys = qdkit.rng.key([3, 4, 5])
    state, _ = map_elites.run(map_elites.init(keys, task, archive, emitter), task, emitter, 4)
    paths = [tmp_path / f"seeds-{k}.npz" for k in range(3)]
    checkpoint.save_seeds(paths, state, [{"seed": 3 + k} for k in range(3)])
    template = map_elites.state_template(task, archive, emitter)
    for k, path in enumerate(paths):
        one = map_elites.seed_state(state, k)
        checkpoint.save(tmp_path / "one.npz", one, {"seed": 3 + k})
        assert checkpoint.read_meta(path) == checkpoint.read_meta(tmp_path / "one.npz")
        leaves_equal(checkpoint.load(path, template), one)
        leaves_equal(checkpoint.load(path, template), checkpoint.load(tmp_path / "one.npz", template))
    with pytest.raises(ValueError, match="3 paths but 2 configs"):
        checkpoint.save_seeds(paths, state, [{}, {}])
    with pytest.raises(ValueError, match=r"2 paths, but the state's leaves have leading axes \[3\]"):
        checkpoint.save_seeds(paths[:2], state)
    # one host copy serves the checkpoint of all seeds and each seed's
    copy = checkpoint.on_host(state)
    checkpoint.save(tmp_path / "all-a.npz", state, {"n": 1})
    checkpoint.save(tmp_path / "all-b.npz", copy, {"n": 1})
    assert (tmp_path / "all-a.npz").read_bytes() == (tmp_path / "all-b.npz").read_bytes()
    checkpoint.save_seeds([tmp_path / "copy-0.npz", tmp_path / "copy-1.npz", tmp_path / "copy-2.npz"], copy,
                          [{"seed": 3 + k} for k in range(3)])  # fmt: skip
    for k, path in enumerate(paths):
        assert path.read_bytes() == (tmp_path / f"copy-{k}.npz").read_bytes()


def test_write_is_atomic(tmp_path, monkeypatch):
    path, state = saved(tmp_path)
    good = path.read_bytes()

    def failing_savez(f, **arrays):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, state)
    assert path.read_bytes() == good  # old checkpoint intact
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]  # no temporary file left


def test_truncated_file(tmp_path):
    path, state = saved(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        checkpoint.load(path, state)


def test_corrupted_bytes(tmp_path):
    path, state = saved(tmp_path)
    data = bytearray(path.read_bytes())
    # flip bytes inside the first stored array (after its local header)
    for i in range(200, 260):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        checkpoint.load(path, state)


@pytest.mark.parametrize("kind", ["text", "foreign-npz", "other-zip"])
def test_foreign_files(tmp_path, kind):
    _, state = saved(tmp_path)
    path = tmp_path / "foreign.npz"
    if kind == "text":
        path.write_text("hello")
    elif kind == "foreign-npz":
        np.savez(path, a=np.zeros(3))
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("x.txt", "y")
    with pytest.raises(CheckpointError, match="not a"):
        checkpoint.load(path, state)


def test_missing_file(tmp_path):
    _, state = saved(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        checkpoint.load(tmp_path / "nope.npz", state)


def test_other_run_configuration_is_refused(tmp_path):
    path, state = saved(tmp_path)
    task = qdkit.tasks.get("rastrigin", dims=7)  # different genotype size
    archive = qdkit.GridArchive.create(
        shape=(12, 12), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    emitter = mix(iso_line(24, 0.01, 0.1), gaussian(8, 0.05))
    other = map_elites.init(jax.random.key(0), task, archive, emitter)
    with pytest.raises(CheckpointError, match="keeps its QD-score for qd_offset"):  # another task: another offset
        checkpoint.load(path, other)
    other = other.replace(archive=other.archive.with_qd_offset(state.archive.qd_offset))  # leaf shapes differ
    with pytest.raises(CheckpointError, match="does not match"):
        checkpoint.load(path, other)
    single = iso_line(32, 0.01, 0.1)  # different emitter structure
    other = map_elites.init(jax.random.key(0), task, archive, single)
    with pytest.raises(CheckpointError, match="different run configuration"):
        checkpoint.load(path, other)
