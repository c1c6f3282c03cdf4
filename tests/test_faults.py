"""Runs killed with SIGKILL at random moments resume to the same result, bit for bit.

Real processes: each run is a ``python -m qdkit.cli`` subprocess, killed with SIGKILL
once its metrics log reaches a randomly drawn iteration (plus a random delay, so the kill
lands anywhere in the chunk that follows: computing, logging, checkpointing, refitting,
writing outputs), then continued with ``qdkit resume`` until it completes. The last kill
of each run comes after its last metrics row, between the final checkpoint and the
outputs or after them. The final checkpoint (every leaf of the run state, and the
judgments saved with it), ``archive.npz`` and the metrics log must equal those of an
uninterrupted run. The processes share a JAX compilation cache, so restarts compile
little.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

COMMON = ["--no-progress", "--seed", "3"]
RUNS = {
    "plain": ["--task", "arm", "--iterations", "300", "--batch-size", "64", "--checkpoint-every", "40"],
    # refits at 0, 40, 100 and 200 fall between checkpoints (every 150): the judgments and
    # the state they made must be committed together
    "learned": ["--task", "arm", "--descriptors", "learned", "--judgments", "80", "--iterations", "400",
                "--batch-size", "64", "--shape", "16x16", "--checkpoint-every", "150"],
    "cma-mae": ["--task", "sphere", "-t", "dims=10", "--emitter", "cma-mae", "-e", "num_emitters=4",
                "--iterations", "200", "--batch-size", "32", "--shape", "16x16", "--checkpoint-every", "30"],
    "dcg": ["--task", "maze", "-t", "episode_length=20", "--emitter", "dcg", "-e", "num_injected=2",
            "-e", "critic_hidden=16,16", "-e", "critic_steps=4", "-e", "pg_steps=2", "-e", "train_batch_size=16",
            "-e", "pg_batch_size=8", "-e", "buffer_size=4000", "--iterations", "24", "--batch-size", "16",
            "--shape", "8x8", "--checkpoint-every", "5"],
}  # fmt: skip
KILLS = 3
#: Where the kills of a run land (ranges of logged iterations, then a random delay):
#: by default KILLS - 1 anywhere; the learned run's just after each refit, before the
#: next periodic checkpoint (the refits' own checkpoints must cover them).
WINDOWS = {"learned": [(40, 60), (100, 120), (200, 220)]}


def _env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(MPLBACKEND="Agg", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"))
    return env


def _rows(path) -> int:
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "qdkit.cli", *args]


def _run_until(command, env, metrics, rows: int, delay: float) -> bool:
    """Start ``command``; SIGKILL it ``delay`` seconds after ``metrics`` has ``rows``
    rows. True if it was killed, False if it finished first (it must succeed)."""
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    reached = None
    while proc.poll() is None and time.monotonic() < deadline:
        if reached is None and _rows(metrics) >= rows:
            reached = time.monotonic()
        if reached is not None and time.monotonic() - reached >= delay:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stderr.close()
            return True
        time.sleep(0.002)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.returncode == 0, stderr
    return False


def _checkpoint(path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files if k != "__qdkit__"}


@pytest.mark.parametrize("name", list(RUNS))
def test_runs_killed_at_random_moments_resume_bit_identically(tmp_path, name):
    args = [*RUNS[name], *COMMON]
    iterations = int(args[args.index("--iterations") + 1])
    env = _env(tmp_path)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_cli("run", *args, "--out", str(straight)), env=env, check=True, capture_output=True)

    rng = np.random.default_rng(sum(map(ord, name)))
    if name in WINDOWS:
        targets = [int(rng.integers(lo, hi)) for lo, hi in WINDOWS[name]] + [iterations]
    else:
        targets = [*sorted(rng.choice(np.arange(1, iterations), KILLS - 1, replace=False)), iterations]
    metrics = killed / "metrics.jsonl"
    command = _cli("run", *args, "--out", str(killed))
    kills = 0
    for target in targets:
        if _run_until(command, env, metrics, int(target), float(rng.uniform(0.0, 0.02))):
            kills += 1
        command = _cli("resume", str(killed), "--no-progress")
    while _run_until(command, env, metrics, 10**9, 0.0):  # to the end (the loop never kills)
        pass
    assert kills >= len(targets) - 1, f"only {kills} kills landed"

    a, b = _checkpoint(straight / "checkpoint.npz"), _checkpoint(killed / "checkpoint.npz")
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=f"checkpoint entry {key}")
    a, b = _checkpoint(straight / "archive.npz"), _checkpoint(killed / "archive.npz")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=f"archive.npz entry {key}")
    logged = (killed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in logged] == list(range(1, iterations + 1))
    assert (killed / "heatmap.png").stat().st_size > 1000


def test_a_run_killed_before_its_outputs_gets_them_on_resume(tmp_path):
    out = tmp_path / "run"
    args = ["run", "--iterations", "20", "--batch-size", "16", "--no-progress", "--out", str(out)]
    env = _env(tmp_path)
    subprocess.run(_cli(*args), env=env, check=True, capture_output=True)
    first = _checkpoint(out / "archive.npz")
    for name in ("archive.npz", "heatmap.png", "metrics.png"):
        os.remove(out / name)  # as if killed after the final checkpoint
    result = subprocess.run(_cli("resume", str(out)), env=env, capture_output=True, text=True)
    assert result.returncode == 0 and "had run all 20 iterations; wrote its outputs" in result.stdout, result.stderr
    again = _checkpoint(out / "archive.npz")
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    assert (out / "heatmap.png").exists() and (out / "metrics.png").exists()
    result = subprocess.run(_cli("resume", str(out)), env=env, capture_output=True, text=True)
    assert "is complete (20 of 20 iterations)" in result.stdout, result.stderr
