"""Several seeds as one compiled computation: each seed's search is the run of that seed
alone (on a CVT, with the first seed's centroids); `qdkit run --seeds` writes seed
directories that resume together or alone."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from builders import small_archive
from click.testing import CliRunner

import qdkit
from emitters import evolution_strategy, iso_line
from qdkit import callbacks, checkpoint, map_elites, rundir, sharding, xla
from qdkit.cli import main


def keys(*seeds):
    return jnp.stack([jax.random.key(s) for s in seeds])


@pytest.mark.parametrize("kind", ["grid", "cvt"])
def test_each_seed_of_a_vmapped_run_is_the_run_of_that_seed(kind):
    # (on the CVT, the seeds' table lookup takes the argmin form, one seed's the other)
    task = qdkit.tasks.get("arm", dof=4)
    archive = small_archive(task, kind)
    emitter = iso_line(32, 0.01, 0.1, lower=task.genotype_lower, upper=task.genotype_upper)
    state = map_elites.init(keys(3, 4, 5), task, archive, emitter)
    assert map_elites.num_seeds(state) == 3
    state, metrics = map_elites.run(state, task, emitter, 25, chunk_size=10)
    assert metrics["qd_score"].shape == (25, 3) and metrics["iteration"].shape == (25,)
    for k, seed in enumerate((3, 4, 5)):
        one = map_elites.init(jax.random.key(seed), task, archive, emitter)
        one, one_metrics = map_elites.run(one, task, emitter, 25, chunk_size=10)
        mine = map_elites.seed_state(state, k)
        for a, b in zip(jax.tree.leaves(mine.archive), jax.tree.leaves(one.archive)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_array_equal(metrics["qd_score"][:, k], one_metrics["qd_score"])
    assert len({float(v) for v in metrics["qd_score"][-1]}) == 3  # three different searches


def test_a_stateful_emitter_runs_seeds_and_host_work_is_refused():
    task = qdkit.tasks.get("sphere", dims=6)
    archive = small_archive(task, "grid")
    emitter = evolution_strategy(task.example_genotype, 6, num_emitters=2, sigma0=0.2)
    state = map_elites.init(keys(0, 1), task, archive, emitter)
    state, metrics = map_elites.run(state, task, emitter, 15)
    assert metrics["num_elites"].shape == (15, 2) and np.all(metrics["num_elites"][-1] > 0)
    one = map_elites.init(jax.random.key(1), task, archive, emitter)
    one, one_metrics = map_elites.run(one, task, emitter, 15)
    np.testing.assert_allclose(metrics["qd_score"][:, 1], one_metrics["qd_score"], rtol=1e-4)

    host_task = dataclasses.replace(task, host=True)
    with pytest.raises(ValueError, match="runs host code between steps"):
        map_elites.init(keys(0, 1), host_task, archive, emitter)
    with pytest.raises(ValueError, match="a vector of keys from jax.random.key"):
        map_elites.init(jnp.stack([keys(0, 1)] * 2), task, archive, emitter)
    raw = map_elites.init(jax.random.PRNGKey(0), task, archive, emitter)  # raw key data: one run, as before
    assert map_elites.num_seeds(raw) is None


def test_seeds_split_over_devices_are_the_one_device_runs_to_the_bit():
    # conftest makes 4 CPU devices: each runs its share of the seeds, with no communication
    task = qdkit.tasks.get("arm", dof=4)
    archive = small_archive(task, "grid")
    emitter = iso_line(32, 0.01, 0.1, lower=task.genotype_lower, upper=task.genotype_upper)
    one = map_elites.init(keys(3, 4, 5, 6), task, archive, emitter)
    one, one_metrics = map_elites.run(one, task, emitter, 25, chunk_size=10)
    for count in (2, 4):
        mesh = sharding.batch_mesh(count)
        state = map_elites.init(keys(3, 4, 5, 6), task, archive, emitter, mesh=mesh)
        assert len(state.archive.fitness.sharding.device_set) == count
        state, metrics = map_elites.run(state, task, emitter, 25, chunk_size=10, mesh=mesh)
        assert len(state.archive.fitness.sharding.device_set) == count
        for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(one)):
            a, b = (jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x for x in (a, b))
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        for name, values in one_metrics.items():
            np.testing.assert_array_equal(metrics[name], values)
        # a state from one device continues over several, and the other way round
        half, _ = map_elites.run(map_elites.init(keys(3, 4, 5, 6), task, archive, emitter), task, emitter, 10)
        rest, _ = map_elites.run(half, task, emitter, 15, chunk_size=10, mesh=mesh)
        np.testing.assert_array_equal(np.asarray(rest.archive.fitness), np.asarray(one.archive.fitness))
        split = map_elites.init(keys(3, 4, 5, 6), task, archive, emitter, mesh=mesh)
        half, _ = map_elites.run(split, task, emitter, 10, mesh=mesh)
        rest, _ = map_elites.run(half, task, emitter, 15, chunk_size=10)
        np.testing.assert_array_equal(np.asarray(rest.archive.fitness), np.asarray(one.archive.fitness))
        np.testing.assert_array_equal(np.asarray(rest.archive.genotypes), np.asarray(one.archive.genotypes))
    with pytest.raises(ValueError, match="3 seeds do not split evenly over 2 devices"):
        map_elites.init(keys(0, 1, 2), task, archive, emitter, mesh=sharding.batch_mesh(2))
    with pytest.raises(ValueError, match="3 seeds do not split evenly over 2 devices"):
        map_elites.run(map_elites.init(keys(0, 1, 2), task, archive, emitter), task, emitter, 5,
                       mesh=sharding.batch_mesh(2))  # fmt: skip
    square = jax.sharding.Mesh(np.asarray(jax.devices()[:4]).reshape(2, 2), ("a", "b"))
    with pytest.raises(ValueError, match="1-D mesh"):
        map_elites.init(keys(0, 1, 2, 3), task, archive, emitter, mesh=square)


def test_use_cpu_devices_leaves_a_chosen_count_alone(monkeypatch):
    jax.devices()  # this process's backend has started: nothing may change now
    with pytest.warns(UserWarning, match="already started with 4 CPU device"):
        assert not xla.use_cpu_devices(2, {})
    monkeypatch.setattr(xla, "_backend_started", lambda: False)  # as before anything touched a device
    assert jax.config.jax_num_cpu_devices == -1  # conftest chose its count in XLA_FLAGS
    updates = []
    monkeypatch.setattr(jax.config, "update", lambda name, value: updates.append((name, value)))
    assert not xla.use_cpu_devices(2, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert not xla.use_cpu_devices(1, {})
    assert updates == []
    assert xla.use_cpu_devices(2, {}) and updates == [("jax_num_cpu_devices", 2)]
    assert xla.use_cpu_devices(3, {"QDKIT_XLA_DEFAULTS": "off"})  # about XLA's flags, not the device count


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


SMALL = ["--batch-size", 16, "--shape", "6x6", "--checkpoint-every", 10, "--no-progress"]


def test_cli_seeds_write_seed_directories_that_resume_together_or_alone(tmp_path):
    top, single = tmp_path / "three", tmp_path / "single"
    result = invoke("run", "--seeds", 3, "--seed", 7, "--iterations", 20, "--out", top, *SMALL)
    assert result.exit_code == 0, result.output
    assert "3 seeds over 3 devices: mean QD-score" in result.output and (top / "comparison.png").stat().st_size > 1000
    for k in range(3):
        config = json.loads((top / f"seed-{k}" / "config.json").read_text())
        assert config["seed"] == 7 + k and "seeds" not in config
        for name in ("checkpoint.npz", "metrics.jsonl", "archive.npz", "heatmap.png"):
            assert (top / f"seed-{k}" / name).exists(), (k, name)
    assert invoke("run", "--seed", 8, "--iterations", 20, "--out", single, *SMALL).exit_code == 0
    assert (top / "seed-1" / "metrics.jsonl").read_text() == (single / "metrics.jsonl").read_text()

    # killed after rows 21..30 were logged but before their checkpoint; resumed, all seeds together
    checkpoints = ["checkpoint.npz", *(f"seed-{k}/checkpoint.npz" for k in range(3))]
    saved = {name: (top / name).read_bytes() for name in checkpoints}
    assert invoke("resume", top, "--iterations", 30, "--no-progress").exit_code == 0
    for name, data in saved.items():
        (top / name).write_bytes(data)
    assert invoke("resume", top, "--iterations", 40, "--no-progress").exit_code == 0
    assert invoke("resume", single, "--iterations", 40, "--no-progress").exit_code == 0
    assert (top / "seed-1" / "metrics.jsonl").read_text() == (single / "metrics.jsonl").read_text()
    rows = [json.loads(line) for line in (top / "seed-0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == list(range(1, 41))

    # a seed directory is a run of its own
    result = invoke("resume", top / "seed-2", "--iterations", 45, "--no-progress")
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["export", str(top)])
    assert result.exit_code != 0 and "holds a run of 3 seeds" in result.output and "seed-0" in result.output
    # seed-2 went on alone to 45: continuing the run would drop that
    result = CliRunner().invoke(main, ["resume", str(top), "--iterations", "50", "--no-progress"])
    assert result.exit_code == 1 and "was continued on its own to iteration 45" in result.output
    shutil.rmtree(top / "seed-2")  # removed: the run writes it again from its own checkpoint
    assert invoke("resume", top, "--no-progress").exit_code == 0
    assert checkpoint.read_meta(top / "seed-2" / "checkpoint.npz")["iteration"] == 40
    assert (top / "seed-2" / "archive.npz").exists()
    result = invoke("plot", top, single, "--out", tmp_path / "both.png")  # the seeds as one group with a band
    assert result.exit_code == 0 and (tmp_path / "both.png").stat().st_size > 1000
    # a run of one over it (--overwrite) leaves no seed directories behind
    assert invoke("run", "--out", top, "--overwrite", "--iterations", 5, *SMALL).exit_code == 0
    assert not (top / "seed-0").exists() and not (top / "comparison.png").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--devices", 3], "2 seeds do not split evenly over 3 devices"),
        (["--descriptors", "learned"], "host work between steps"),
        (["--task", "text"], "host work between steps"),
    ],
)
def test_cli_seeds_refuse_what_cannot_work_before_writing(tmp_path, extra, message):
    out = tmp_path / "refused"
    result = CliRunner().invoke(main, ["run", "--seeds", "2", "--out", str(out), *map(str, extra), "--no-progress"])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not out.exists() and "starting the bundled" not in result.output


def test_cli_seeds_over_devices_give_the_runs_of_one_device(tmp_path, monkeypatch):
    one, two = tmp_path / "one", tmp_path / "two"
    assert invoke("run", "--seeds", 4, "--iterations", 20, "--devices", 1, "--out", one, *SMALL).exit_code == 0
    result = invoke("run", "--seeds", 4, "--iterations", 20, "--devices", 2, "--out", two, *SMALL)
    assert result.exit_code == 0 and "4 seeds over 2 devices: mean QD-score" in result.output, result.output
    for k in range(4):
        assert (one / f"seed-{k}" / "metrics.jsonl").read_text() == (two / f"seed-{k}" / "metrics.jsonl").read_text()
    # resumed over 4 devices (auto: 4 of them divide 4 seeds), and the one-device run on one
    result = invoke("resume", two, "--iterations", 30, "--devices", "auto", "--no-progress")
    assert result.exit_code == 0 and "4 seeds over 4 devices" in result.output, result.output
    assert invoke("resume", one, "--iterations", 30, "--no-progress").exit_code == 0
    for k in range(4):
        assert (one / f"seed-{k}" / "metrics.jsonl").read_text() == (two / f"seed-{k}" / "metrics.jsonl").read_text()
    loaded = rundir.load(str(two), 2)  # each device reads its own seeds from the checkpoint
    for leaf in jax.tree.leaves(loaded.state):
        assert len(leaf.sharding.device_set) == 2 and leaf.sharding.spec[0] == sharding.AXIS
    copies, on_host = [], checkpoint.on_host  # the run's checkpoint and the seeds' from one host copy
    monkeypatch.setattr(checkpoint, "on_host", lambda s: copies.append(type(s)) or on_host(s))
    rundir.RunCheckpointer(loaded, 1).save(loaded.state)
    assert copies.count(checkpoint.HostCopy) == 2 and len(copies) == 3, copies
    monkeypatch.undo()
    before = {p: p.read_bytes() for p in sorted(two.rglob("*")) if p.is_file()}
    result = CliRunner().invoke(main, ["resume", str(two), "--iterations", "40", "--devices", "3", "--no-progress"])
    assert result.exit_code != 0 and "4 seeds do not split evenly over 3 devices" in result.output, result.output
    assert "device counts that do here: 1, 2, 4" in result.output, result.output
    assert {p: p.read_bytes() for p in sorted(two.rglob("*")) if p.is_file()} == before  # nothing rewritten


def test_cli_seeds_take_one_cpu_device_per_core(tmp_path):
    # a fresh process that chose no device count: qdkit run --seeds makes one CPU device per core
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_NUM_CPU_DEVICES")}
    result = subprocess.run(
        [sys.executable, "-m", "qdkit.cli", "run", "--seeds", "2", "--iterations", "3", "--no-progress",
         "--out", str(tmp_path / "run"), *map(str, SMALL)],
        env={**env, "JAX_PLATFORMS": "cpu"}, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    over = "2 seeds over 2 devices" if xla.cpus() >= 2 else "2 seeds: mean"
    assert over in result.stdout, result.stdout


def test_cli_seeds_log_each_seed_to_its_own_tracker_runs_through_a_resume(tmp_path, monkeypatch):
    pytest.importorskip("tensorboardX")
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    from mlflow.tracking import MlflowClient
    from test_trackers import tensorboard_scalars, wandb_records

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("WANDB_MODE", "offline")
    top = tmp_path / "seeds"
    logs = ["--log", "tensorboard", "--log", "mlflow", "--log", "wandb"]
    assert invoke("run", "--seeds", 2, "--seed", 3, "--out", top, "--iterations", 10, *SMALL, *logs).exit_code == 0
    assert invoke("resume", top, "--iterations", 20, "--no-progress").exit_code == 0
    client = MlflowClient()
    run_ids = []
    for k in range(2):
        seed_dir = top / f"seed-{k}"
        logged = callbacks.read_metrics(seed_dir / "metrics.jsonl")
        assert list(logged["iteration"]) == list(range(1, 21))
        scalars, steps, images, text = tensorboard_scalars(str(seed_dir / "tensorboard"))
        np.testing.assert_allclose([scalars["qd_score"][s] for s in range(1, 21)], logged["qd_score"])
        assert steps["qd_score"] == list(range(1, 21)) and 10 in images and 20 in images
        assert f"seed = {3 + k}" in text and "seeds" not in text  # the seed's own config
        run_id = json.loads((seed_dir / "trackers.json").read_text())["mlflow"]["run_id"]
        run = client.get_run(run_id)  # the resume continued the seed's own MLflow run
        assert run.info.status == "FINISHED" and run.data.params["seed"] == str(3 + k)
        assert run.info.run_name == f"seeds-seed-{k}"
        history = client.get_metric_history(run_id, "qd_score")
        np.testing.assert_allclose([m.value for m in sorted(history, key=lambda m: m.step)][-20:], logged["qd_score"])
        run_ids.append(run_id)
        # W&B: the seed's own run (all open at once in one process), with its own rows
        records = wandb_records(str(seed_dir))
        wandb_id = json.loads((seed_dir / "trackers.json").read_text())["wandb"]["run_id"]
        assert {r.run.run_id for r in records if r.WhichOneof("record_type") == "run"} == {wandb_id}
        rows = {}
        for r in records:
            if r.WhichOneof("record_type") == "history":
                for i in r.history.item:
                    if (i.key or "/".join(i.nested_key)) == "qd_score":
                        rows.setdefault(r.history.step.num, {})["qd_score"] = json.loads(i.value_json)
        np.testing.assert_allclose([rows[s]["qd_score"] for s in range(1, 21)], logged["qd_score"], rtol=1e-6)
        run_ids.append(wandb_id)
    assert len(set(run_ids)) == 4
    assert not np.array_equal(
        callbacks.read_metrics(top / "seed-0" / "metrics.jsonl")["qd_score"],
        callbacks.read_metrics(top / "seed-1" / "metrics.jsonl")["qd_score"],
    )
