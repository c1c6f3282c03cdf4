"""Experiment trackers (`qdkit run --log ...`): what TensorBoard, MLflow and W&B hold,
read back with each one's own reader, equals metrics.jsonl, through a resume after a
kill; a missing extra is named before anything runs."""

import glob
import json
import os
import shutil
import struct

import numpy as np
import pytest
from click.testing import CliRunner

from qdkit import callbacks, trackers
from qdkit.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def tensorboard_scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(logdir, size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {t[len("qd/") :]: {e.step: e.value for e in acc.Scalars(t)} for t in tags["scalars"]}
    steps = {t[len("qd/") :]: [e.step for e in acc.Scalars(t)] for t in tags["scalars"]}
    images = [e.step for e in acc.Images("heatmap")] if "heatmap" in tags["images"] else []
    text = b"".join(e.tensor_proto.string_val[0] for t in tags["tensors"] for e in acc.Tensors(t)).decode()
    return scalars, steps, images, text


def wandb_records(directory):
    """Every record of the W&B offline runs under ``directory``: the .wandb transaction
    log (LevelDB-log framing: 32 KiB blocks, 7-byte record headers) of protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    records = []
    for path in sorted(glob.glob(os.path.join(directory, "wandb", "offline-run-*", "*.wandb"))):
        data = open(path, "rb").read()
        assert data[:4] == b":W&B"
        pos, block, pending = 7, 32768, b""
        while pos + 7 <= len(data):
            if block - pos % block < 7:
                pos += block - pos % block
                continue
            _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
            if kind == 0 and length == 0:
                break
            pending += data[pos + 7 : pos + 7 + length]
            pos += 7 + length
            if kind in (1, 4):  # a full record, or the last piece of one
                record = pb.Record()
                record.ParseFromString(pending)
                records.append(record)
                pending = b""
    return records


def test_every_tracker_holds_the_metrics_log_through_a_resume(tmp_path, monkeypatch):
    pytest.importorskip("tensorboardX")
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    out = tmp_path / "run"
    small = ["--batch-size", 16, "--shape", "6x6", "--checkpoint-every", 20, "--no-progress"]
    logs = ["--log", "tensorboard", "--log", "mlflow", "--log", "wandb"]
    assert invoke("run", "--out", out, "--iterations", 20, *small, *logs).exit_code == 0
    saved = tmp_path / "at20.npz"
    shutil.copy(out / "checkpoint.npz", saved)
    assert invoke("resume", out, "--iterations", 30, "--no-progress").exit_code == 0
    # a kill after rows 21..30 were logged everywhere but before their checkpoint
    shutil.copy(saved, out / "checkpoint.npz")
    result = invoke("resume", out, "--iterations", 40, "--no-progress")
    assert result.exit_code == 0, result.output
    logged = callbacks.read_metrics(out / "metrics.jsonl")
    assert list(logged["iteration"]) == list(range(1, 41))
    names = [k for k in logged if k != "iteration"]
    ids = json.loads((out / "trackers.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["log"] == ["mlflow", "tensorboard", "wandb"]

    # TensorBoard: one value per step (the resume purged the orphaned 21..30), images at checkpoints
    scalars, steps, images, text = tensorboard_scalars(str(out / "tensorboard"))
    assert set(scalars) == set(names)
    for name in names:
        assert steps[name] == list(range(1, 41)), name
        finite = np.isfinite(logged[name])
        np.testing.assert_allclose([scalars[name][s] for s in logged["iteration"][finite]], logged[name][finite])
    assert 20 in images and 40 in images
    assert 'task = "arm"' in text and "batch_size = 16" in text

    # MLflow: the same run continued; the re-logged steps repeat the same values
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=ids["mlflow"]["tracking_uri"])
    run = client.get_run(ids["mlflow"]["run_id"])
    assert run.data.params["task"] == "arm" and run.data.params["batch_size"] == "16"
    assert run.info.status == "FINISHED"
    for name in names:
        history = {}
        for m in client.get_metric_history(run.info.run_id, name):
            assert history.setdefault(m.step, m.value) == pytest.approx(m.value), (name, m.step)
        finite = np.isfinite(logged[name])
        assert sorted(history) == [int(s) for s in logged["iteration"][finite]]
        np.testing.assert_allclose([history[s] for s in logged["iteration"][finite]], logged[name][finite])
    images = {int(a.path.split("+step+")[1].split("+")[0]) for a in client.list_artifacts(run.info.run_id, "images")
              if a.path.endswith(".png")}  # fmt: skip
    assert {20, 40} <= images, images

    # W&B (offline): three offline runs of one id, the config, every row, the heatmaps
    records = wandb_records(str(out))
    runs = {r.run.run_id for r in records if r.WhichOneof("record_type") == "run"}
    assert runs == {ids["wandb"]["run_id"]}
    first = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    run_config = {i.key: json.loads(i.value_json) for i in first.config.update}
    assert run_config["task"] == "arm" and run_config["batch_size"] == 16
    history = {}
    heatmaps = []
    for r in records:
        if r.WhichOneof("record_type") != "history":
            continue
        row = {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
        if "heatmap" in row or any(k.startswith("heatmap") for k in row):
            heatmaps.append(r.history.step.num)
        history.setdefault(r.history.step.num, {}).update({k: v for k, v in row.items() if k in names})
    for name in names:
        finite = np.isfinite(logged[name])
        got = [history[int(s)][name] for s in logged["iteration"][finite]]
        np.testing.assert_allclose(got, logged[name][finite], rtol=1e-6)
    assert 20 in heatmaps and 40 in heatmaps


def test_a_missing_extra_is_named_before_the_run_starts(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(ImportError, match=r"needs the 'mlflow' extra: pip install 'qdkit\[mlflow\]'"):
        trackers.check(["tensorboard", "mlflow"])
    result = CliRunner().invoke(main, ["run", "--out", str(tmp_path / "r"), "--log", "mlflow", "--no-progress"])
    assert result.exit_code == 2 and "pip install 'qdkit[mlflow]'" in result.output
    assert not (tmp_path / "r").exists()
    result = CliRunner().invoke(main, ["run", "--out", str(tmp_path / "r"), "--log", "neptune"])
    assert result.exit_code == 2 and "'tensorboard', 'mlflow', 'wandb'" in result.output


def test_trackers_end_as_what_happened_and_take_numpy_settings(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    import qdkit

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = {"sigma": np.float32(0.5), "lower": np.array([0.0, 1.0]), "name": "x"}
    task = qdkit.tasks.get("arm", dof=3)
    archive = qdkit.GridArchive.create(shape=(4, 4), lower=task.lower, upper=task.upper,
                                       example_genotype=task.example_genotype)  # fmt: skip

    class State:  # what a tracker reads of a run state
        def __init__(self, iteration):
            self.archive, self.iteration = archive, np.int32(iteration)

    runs = {}
    for status in ("failed", "killed", "finished"):
        tracker = trackers.MLflow(tracking_uri=uri, config=config, every=2, run_name=status)
        tracker(State(2), {"iteration": np.array([1, 2]), "qd_score": np.array([1.0, 2.0], np.float32)})
        tracker.close(State(2), status)  # the heatmap of step 2 was logged already: not again
        runs[status] = tracker.run_id
    client = MlflowClient(tracking_uri=uri)
    for status, run_id in runs.items():
        run = client.get_run(run_id)
        assert run.info.status == status.upper()
        assert run.data.params["sigma"] == "0.5" and run.data.params["lower"] == "[0.0, 1.0]"
        images = [a.path for a in client.list_artifacts(run_id, "images") if a.path.endswith(".png")]
        assert len(images) == 1 and "+step+2+" in images[0]
    with pytest.raises(ValueError, match="unknown status"):
        trackers.MLflow(tracking_uri=uri).close(None, "crashed")
    with pytest.raises(ConnectionError, match="no MLflow tracking server answers at http://127.0.0.1:9"):
        trackers.MLflow(tracking_uri="http://127.0.0.1:9")
