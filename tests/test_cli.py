"""The command line: runs, resume, config files, errors, export, plots, Ctrl-C."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from qdkit import checkpoint
from qdkit.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def small_run(out, *extra):
    return invoke(
        "run",
        "--iterations",
        30,
        "--batch-size",
        32,
        "--shape",
        "8x8",
        "--checkpoint-every",
        10,
        "--no-progress",
        "--out",
        out,
        *extra,
    )


def read_rows(directory):
    with open(os.path.join(directory, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_run_writes_archive_metrics_plots(tmp_path):
    out = tmp_path / "run"
    result = small_run(out)
    assert result.exit_code == 0, result.output
    for name in ["config.json", "checkpoint.npz", "metrics.jsonl", "archive.npz", "heatmap.png", "metrics.png"]:
        assert (out / name).exists(), name
    rows = read_rows(out)
    assert [r["iteration"] for r in rows] == list(range(1, 31))
    assert rows[-1]["coverage"] > 0
    assert checkpoint.read_meta(out / "checkpoint.npz")["iteration"] == 30
    assert "elites" in result.output


def test_default_run_is_the_arm(tmp_path):
    out = tmp_path / "default"
    result = invoke("run", "--no-progress", "--out", out)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["task"], config["iterations"], config["batch_size"], config["shape"]) == ("arm", 1000, 256, None)
    rows = read_rows(out)
    assert len(rows) == 1000 and rows[-1]["coverage"] > 0.75


def test_resume_continues_and_matches_uninterrupted(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert small_run(straight, "--iterations", 50).exit_code == 0
    assert small_run(split, "--iterations", 20).exit_code == 0
    result = invoke("resume", split, "--iterations", 50, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output
    a, b = np.load(straight / "archive.npz"), np.load(split / "archive.npz")
    for key in ["index", "fitness", "genotypes", "descriptors"]:
        np.testing.assert_array_equal(a[key], b[key])
    assert [r["iteration"] for r in read_rows(split)] == list(range(1, 51))
    assert read_rows(split) == read_rows(straight)
    # already complete
    assert "complete" in invoke("resume", split, "--no-progress").output


@pytest.mark.parametrize("emitter", ["cma-mae", "cma-mega"])
def test_cma_runs_resume_exactly(tmp_path, emitter):
    """Threshold archive, CMA-ES and optimiser states all survive a checkpoint."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    extra = ["--task", "sphere_proj", "--emitter", emitter, "--batch-size", 24, "-e", "num_emitters=3"]
    assert small_run(straight, *extra, "--iterations", 24).exit_code == 0
    assert small_run(split, *extra, "--iterations", 10).exit_code == 0
    assert invoke("resume", split, "--iterations", 24, "--no-progress").exit_code == 0
    a, b = np.load(straight / "archive.npz"), np.load(split / "archive.npz")
    for key in ["index", "fitness", "genotypes"]:
        np.testing.assert_array_equal(a[key], b[key])
    config = json.loads((straight / "config.json").read_text())
    assert config["learning_rate"] is None  # the emitter's default applies: 0.01 for cma-mae


def test_cvt_run_and_resume(tmp_path):
    out = tmp_path / "cvt"
    result = invoke(
        "run", "--archive", "cvt", "--cells", 100, "--iterations", 10, "--batch-size", 16, "--no-progress", "--out", out
    )
    assert result.exit_code == 0, result.output
    assert (out / "centroids.npy").exists()
    assert invoke("resume", out, "--iterations", 15, "--no-progress").exit_code == 0
    assert checkpoint.read_meta(out / "checkpoint.npz")["iteration"] == 15


def test_devices_in_a_subprocess(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    common = ["-m", "qdkit.cli", "run", "--iterations", "20", "--batch-size", "32", "--no-progress"]
    for n in ("1", "4"):
        result = subprocess.run(
            [sys.executable, *common, "--devices", n, "--out", str(tmp_path / n)],
            env=env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr
    one, four = np.load(tmp_path / "1" / "archive.npz"), np.load(tmp_path / "4" / "archive.npz")
    np.testing.assert_array_equal(one["index"], four["index"])
    np.testing.assert_array_equal(one["genotypes"], four["genotypes"])
    np.testing.assert_allclose(one["fitness"], four["fitness"], rtol=1e-6)
    result = subprocess.run(
        [sys.executable, *common, "--devices", "5", "--out", str(tmp_path / "5")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "between 1 and 4" in result.stderr


def test_config_file_and_override(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        'task = "sphere"\niterations = 12\nbatch-size = 16\nshape = [5, 5]\nseed = 3\n'
        "[task_options]\ndims = 4\n[emitter_options]\nline_sigma = 0.2\n"
    )
    out = tmp_path / "run"
    result = invoke("run", "--config", config, "--iterations", 7, "--no-progress", "--out", out)
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["task"] == "sphere" and saved["iterations"] == 7 and saved["batch_size"] == 16
    assert saved["shape"] == [5, 5] and saved["task_options"] == {"dims": 4} and saved["seed"] == 3
    assert saved["emitter_options"] == {"line_sigma": 0.2}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--task", "nope"], "'nope' is not one of 'ant_omni', 'ant_uni', 'anttrap_omni', 'arm'"),
        (["--emitter", "cma"], "is not one of 'cma-mae', 'cma-maega', 'cma-me'"),
        (["--iterations", "0"], "0 is not in the range x>=1"),
        (["--batch-size", "ten"], "'ten' is not a valid integer"),
        (["--shape", "8xq"], "is not a grid shape"),
        (["--shape", "0x8"], "must be a positive integer"),
        (["--shape", "8x8x8"], "has 3 dimensions but task 'arm' has 2"),
        (["-t", "legs=3"], "valid options: dof"),
        (["-t", "dof=-2"], "dof must be at least 1"),
        (["-e", "iso_sigma=-1"], "iso_sigma must be non-negative"),
        (["-e", "sigma"], "is not of the form KEY=VALUE"),
        (["--archive", "kd"], "is not one of 'grid', 'cvt'"),
        (["--learning-rate", "1.5"], "1.5 is not in the range 0.0<=x<=1.0"),
        (["--learning-rate", "0.5", "--threshold-min", "nan"], "threshold_min must be a number"),
        (["--emitter", "cma-me", "--batch-size", "32"], "must be a multiple of 15"),
        (["--emitter", "cma-me", "--batch-size", "30", "-e", "ranker=best"], "valid: 2imp, imp, obj"),
        (["--task", "maze", "--emitter", "dcg", "-e", "return_bound=maybe"], "return_bound must be true or false"),
        (["-e", "iso_sigma=wide"], "iso_sigma must be a number; got 'wide'"),
    ],
    ids=[
        "task",
        "emitter",
        "iterations",
        "batch",
        "shape-text",
        "shape-zero",
        "shape-dims",
        "task-option",
        "task-value",
        "emitter-value",
        "key-value",
        "archive",
        "learning-rate",
        "threshold-min",
        "cma-batch",
        "cma-ranker",
        "bool-option",
        "number-option",
    ],
)
def test_bad_input_is_refused_with_a_message(tmp_path, args, message):
    result = CliRunner().invoke(main, ["run", "--no-progress", "--out", str(tmp_path / "x"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_bad_config_file(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("itterations = 5\n")
    result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code == 2 and "unknown key 'itterations'" in result.output and "iterations" in result.output
    config.write_text("iterations = [\n")
    result = CliRunner().invoke(main, ["run", "--config", str(config)])
    assert result.exit_code == 2 and "cannot read" in result.output


def test_existing_run_is_not_overwritten(tmp_path):
    out = tmp_path / "run"
    assert small_run(out).exit_code == 0
    result = CliRunner().invoke(main, ["run", "--no-progress", "--out", str(out)])
    assert result.exit_code == 2 and "qdkit resume" in result.output
    assert small_run(out, "--overwrite", "--iterations", 5).exit_code == 0
    assert len(read_rows(out)) == 5


def test_resume_errors(tmp_path):
    result = CliRunner().invoke(main, ["resume", str(tmp_path)])
    assert result.exit_code == 1 and "not a qdkit run directory" in result.output
    out = tmp_path / "run"
    assert small_run(out).exit_code == 0
    (out / "checkpoint.npz").write_bytes(b"garbage")
    result = CliRunner().invoke(main, ["resume", str(out), "--iterations", 40])
    assert result.exit_code == 1 and "truncated or corrupt" in result.output


def test_export_and_plot(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert small_run(a).exit_code == 0
    assert small_run(b, "--seed", 1).exit_code == 0
    result = invoke("export", a, "--format", "csv")
    assert result.exit_code == 0 and (a / "archive.csv").exists()
    header = (a / "archive.csv").read_text().splitlines()[0]
    assert header.startswith("index,fitness,end-effector x,end-effector y")
    assert invoke("export", a, "--format", "npz", "--out", tmp_path / "e.npz").exit_code == 0
    assert len(np.load(tmp_path / "e.npz")["fitness"]) == int(result.output.split()[1])
    result = invoke("plot", a, b, "--out", tmp_path / "cmp.png")
    assert result.exit_code == 0 and (tmp_path / "cmp.png").stat().st_size > 1000
    result = CliRunner().invoke(main, ["plot", str(a), str(b), "--metric", "speed"])
    assert result.exit_code == 2 and "valid metrics" in result.output


def test_listings():
    result = invoke("tasks")
    assert result.exit_code == 0 and "arm" in result.output and "dof=8" in result.output
    result = invoke("emitters")
    assert "iso-line" in result.output and "line_sigma=0.1" in result.output


def test_ctrl_c_saves_checkpoint_and_says_how_to_resume(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qdkit.cli",
            "run",
            "--iterations",
            "10000000",
            "--batch-size",
            "16",
            "--checkpoint-every",
            "1000000",
            "--no-progress",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert (out / "metrics.jsonl").exists(), "run did not start"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "Interrupted at iteration" in err and "qdkit resume" in err
    done = checkpoint.read_meta(out / "checkpoint.npz")["iteration"]
    assert done > 0  # the final checkpoint is later than the iteration-0 one
    assert read_rows(out)[-1]["iteration"] >= done
    result = invoke("resume", out, "--iterations", done + 5, "--no-progress")
    assert result.exit_code == 0
    assert [r["iteration"] for r in read_rows(out)] == list(range(1, done + 6))


@pytest.mark.parametrize(
    "args, check",
    [
        (["--task", "maze", "-t", "episode_length=8", "--emitter", "dcg", "--descriptors", "learned", "--judgments",
          "12", "-e", "critic_hidden=8", "-e", "critic_steps=2", "-e", "pg_steps=1", "-e", "buffer_size=2000",
          "-e", "train_batch_size=8", "-e", "pg_batch_size=8"], "learned"),
        (["--task", "arm", "--emitter", "cma-mae", "-e", "num_emitters=2", "--descriptors", "learned", "--judgments",
          "12"], "soft learned"),
        (["--task", "arm", "--archive", "cvt", "--cells", "30", "--descriptors", "aurora"], "cvt learned"),
        (["--task", "sphere_proj", "--emitter", "cma-mae", "-e", "num_emitters=2", "--replacement", "best"], "soft best"),
    ],
    ids=["dcg-learned", "cma-mae-learned", "cvt-aurora", "cma-mae-best"],
)  # fmt: skip
def test_cli_sample_of_the_combination_matrix(tmp_path, args, check):
    from qdkit import rundir

    out = tmp_path / "run"
    result = invoke("run", "--iterations", 4, "--batch-size", 16, "--no-progress", "--out", out, *args)
    assert result.exit_code == 0, result.output
    archive = rundir.load(str(out)).state.archive
    assert archive.learned == ("learned" in check) and archive.soft == ("soft" in check)
    if archive.soft:
        assert archive.thresholds.replacement == ("best" if "best" in check else "threshold")
        assert (archive.result is None) == ("best" in check)
    if "cvt" in check:
        assert archive.kind == "cvt" and (out / "centroids.npy").exists()
        assert invoke("resume", out, "--iterations", 6, "--no-progress").exit_code == 0


@pytest.mark.parametrize(
    "args, reason",
    [
        (["--task", "maze", "--emitter", "cma-mega"], "cma-mega on maze with task descriptors (grid archive): "
         "cma-mega needs gradients"),
        (["--task", "sphere", "--descriptors", "learned"], "no features to learn descriptors from"),
        (["--task", "arm", "--emitter", "omg-mega", "--descriptors", "aurora"], "learned descriptors have none"),
        (["--task", "arm", "--emitter", "dcg"], "needs a policy task"),
        (["--task", "maze", "--emitter", "dcg", "--descriptors", "learned", "-e", "similarity_on=state"],
         "similarity_on=state"),
        (["--task", "text", "--emitter", "iso-line", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"],
         "only lmx writes them"),
        (["--emitter", "cma-me", "-e", "num_emitters=5"], "multiple of 5"),
    ],
    ids=["gradients", "no-features", "learned-gradients", "policy", "dcg-state", "text", "batch"],
)  # fmt: skip
def test_cli_refuses_a_combination_in_one_line_before_writing_anything(tmp_path, args, reason):
    out = tmp_path / "refused"
    result = CliRunner().invoke(main, ["run", "--batch-size", "16", "--no-progress", "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(error) == 1 and reason in error[0], result.output
    assert not out.exists()  # nothing written


def test_a_checkpoint_of_the_earlier_format_names_its_version_and_what_to_do(tmp_path):
    out = tmp_path / "run"
    assert small_run(out, "--iterations", 2).exit_code == 0
    path = out / "checkpoint.npz"
    with np.load(path) as f:
        arrays = dict(f)
    meta = json.loads(bytes(arrays["__qdkit__"]).decode())
    meta.pop("qdkit")
    meta["version"] = 1  # as qdkit 0.1 wrote them
    arrays["__qdkit__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    result = CliRunner().invoke(main, ["resume", str(out), "--iterations", 4, "--no-progress"])
    assert result.exit_code == 1
    assert "checkpoint format 1, written by qdkit 0.1; this qdkit reads format 4" in result.output
    assert "start it again" in result.output


@pytest.mark.parametrize("task, args, batch", [("arm", [], 256), ("text", [], 8), ("text", ["--batch-size", "3"], 3)])
def test_the_batch_size_defaults_to_the_tasks(tmp_path, monkeypatch, task, args, batch):
    """A text run without --batch-size asks for a handful of candidates per iteration
    (each is a model call), not the 256 of the other tasks."""
    import sys

    run_module = sys.modules["qdkit.cli.run"]  # (qdkit.cli.run is also the command's name)
    seen = {}

    def create(directory, config, runtime=None):
        seen.update(config)
        raise ValueError("stop here")

    monkeypatch.setattr(run_module.rundir, "create", create)
    result = CliRunner().invoke(main, ["run", "--task", task, "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                                       "--out", str(tmp_path / "r"), *args])  # fmt: skip
    assert "stop here" in result.output
    assert seen["batch_size"] == batch


def test_the_compile_cache_keeps_programs_and_a_second_start_reuses_them(tmp_path):
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "QDKIT_COMPILE_CACHE")}
    env.update(QDKIT_CACHE_DIR=str(cache), QDKIT_CACHE_MIN_COMPILE_SECS="0")  # every program: no timing in the test
    args = ["--iterations", "3", "--batch-size", "32", "--shape", "8x8", "--no-progress"]

    def start(out, *extra):
        result = subprocess.run([sys.executable, "-m", "qdkit.cli", "run", "--out", str(tmp_path / out), *args, *extra],
                                env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr
        return sorted(p.name for p in cache.rglob("*") if p.is_file()) if cache.exists() else []

    first = start("a")
    assert first, "nothing was kept"
    assert start("b") == first  # every program came from the cache: nothing new was written
    assert read_rows(tmp_path / "a") == read_rows(tmp_path / "b")
    shutil.rmtree(cache)
    assert start("c", "--no-compile-cache") == [] and not cache.exists()
