"""Several processes, one search: real ``qdkit`` processes on 127.0.0.1.

Each process is a ``python -m qdkit.cli`` subprocess with 2 forced CPU devices, joined
by ``jax.distributed`` through a free local port: 2 processes make a 4-device mesh.
The reference is one process with 4 forced devices (the same device layout, so the
same archive bit for bit).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from qdkit import distributed

ARM = ["--task", "arm", "--seed", "5", "--no-progress"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path, devices: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QDKIT_")}
    env.update(
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu", MPLBACKEND="Agg",
        QDKIT_HEARTBEAT_TIMEOUT="5", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),
    )  # fmt: skip
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "qdkit.cli", *args]


def _start(tmp_path, args, *, by_env: bool = False) -> list[subprocess.Popen]:
    """Two processes of the same command: process settings as flags, or (``by_env``)
    as the ``QDKIT_*`` environment variables a launcher would set."""
    port = _port()
    procs = []
    for i in range(2):
        env = _env(tmp_path, 2)
        command = _cli(*args)
        if by_env:
            env.update(QDKIT_COORDINATOR=f"127.0.0.1:{port}", QDKIT_NUM_PROCESSES="2", QDKIT_PROCESS_ID=str(i))
        else:
            command += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i)]
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def _finish(procs, timeout: float = 300) -> list[tuple[int, str, str]]:
    results = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        results.append((p.returncode, out, err))
    return results


def _one(tmp_path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(_cli(*args), env=_env(tmp_path, 4), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _same_archive(a, b) -> None:
    with np.load(os.path.join(a, "archive.npz")) as x, np.load(os.path.join(b, "archive.npz")) as y:
        assert sorted(x.files) == sorted(y.files)
        for name in x.files:
            np.testing.assert_array_equal(x[name], y[name], err_msg=name)


def _metrics(directory) -> list[dict]:
    with open(os.path.join(directory, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_two_processes_match_one_and_resume_in_one(tmp_path):
    two, ref = str(tmp_path / "two"), str(tmp_path / "ref")
    budget = ["--iterations", "30", "--batch-size", "64", "--checkpoint-every", "10"]
    results = _finish(_start(tmp_path, ["run", *ARM, *budget, "--out", two], by_env=True))
    for rc, _, err in results:
        assert rc == 0, err[-3000:]
    assert "30 iterations" in results[0][1]
    said = [line for line in results[1][1].splitlines() if not line.startswith("[Gloo]")]  # gloo's own lines
    assert said == []  # process 1 computes and says nothing
    _one(tmp_path, "run", *ARM, *budget, "--out", ref)
    _same_archive(two, ref)
    rows = _metrics(two)
    assert [r["iteration"] for r in rows] == list(range(1, 31))  # one row per iteration, not one per process
    assert rows == _metrics(ref)
    assert not [f for f in os.listdir(two) if "tmp" in f or "partial" in f]

    # the 2-process checkpoint resumes on one device (another layout: it runs, scores may
    # differ in their last bit), and in one process of 4 devices (same layout: bit for bit)
    single = str(tmp_path / "single")
    shutil.copytree(two, single)
    _one(tmp_path, "resume", single, "--iterations", "40", "--devices", "1")
    assert [r["iteration"] for r in _metrics(single)] == list(range(1, 41))
    _one(tmp_path, "resume", two, "--iterations", "50")
    _one(tmp_path, "resume", ref, "--iterations", "50")
    _same_archive(two, ref)
    assert [r["iteration"] for r in _metrics(two)] == list(range(1, 51))


def test_ctrl_c_in_one_process_ends_both_at_once(tmp_path):
    """Ctrl-C in process 0: it checkpoints the finished chunk and leaves at once (no
    minutes in jax.distributed's shutdown); process 1 stops with the resume message."""
    out = str(tmp_path / "run")
    procs = _start(tmp_path, ["run", *ARM, "--iterations", "3000", "--batch-size", "1024", "--checkpoint-every", "20",
                              "--out", out])  # fmt: skip
    metrics = os.path.join(out, "metrics.jsonl")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (os.path.exists(metrics) and os.path.getsize(metrics)):
        assert all(p.poll() is None for p in procs)
        time.sleep(0.01)
    procs[0].send_signal(signal.SIGINT)
    sent = time.monotonic()
    (rc0, _, err0), (rc1, _, err1) = _finish(procs, timeout=120)
    assert time.monotonic() - sent < 60
    assert rc0 == 130 and "checkpoint saved" in err0 and "--process-id" in err0, err0[-2000:]
    assert rc1 != 0


def test_killed_process_ends_the_other_and_the_run_resumes(tmp_path):
    out, ref = str(tmp_path / "run"), str(tmp_path / "ref")
    budget = ["--iterations", "400", "--batch-size", "1024", "--checkpoint-every", "20"]
    procs = _start(tmp_path, ["run", *ARM, *budget, "--out", out])
    metrics = os.path.join(out, "metrics.jsonl")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (os.path.exists(metrics) and os.path.getsize(metrics)):
        assert all(p.poll() is None for p in procs), [p.stderr.read()[-2000:] for p in procs if p.poll() is not None]
        time.sleep(0.01)
    time.sleep(random.Random(0).uniform(0.0, 0.5))
    if procs[0].poll() is not None:
        pytest.fail("the run finished before the kill; make it longer")
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    (rc0, _, err0), _ = _finish(procs, timeout=120)
    waited = time.monotonic() - killed_at
    assert rc0 != 0
    assert waited < 60, waited  # bounded by the heartbeat timeout (5 s here), not a hang
    assert "another process of this run stopped" in err0 or "another task died" in err0, err0[-3000:]

    # the same processes again, with qdkit resume, finish the run as if uninterrupted
    results = _finish(_start(tmp_path, ["resume", out, "--no-progress"]))
    for rc, _, err in results:
        assert rc == 0, err[-3000:]
    _one(tmp_path, "run", *ARM, *budget, "--out", ref)
    _same_archive(out, ref)
    assert _metrics(out) == _metrics(ref)


def test_settings_are_checked_before_anything_starts(tmp_path, monkeypatch):
    for name in (distributed.ENV_COORDINATOR, distributed.ENV_NUM_PROCESSES, distributed.ENV_PROCESS_ID):
        monkeypatch.delenv(name, raising=False)
    assert distributed.settings() is None
    assert distributed.settings(num_processes=1) is None
    assert distributed.settings("h:1", 2, 1) == ("h:1", 2, 1)
    with pytest.raises(distributed.DistributedError, match="is needed when process_id is given"):
        distributed.settings(process_id=1)
    monkeypatch.setenv(distributed.ENV_COORDINATOR, "host0:1234")
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "3")
    monkeypatch.setenv(distributed.ENV_PROCESS_ID, "2")
    assert distributed.settings() == ("host0:1234", 3, 2)
    assert distributed.settings(process_id=0) == ("host0:1234", 3, 0)  # a flag wins over the variable
    for kwargs, words in [
        ({"process_id": 3}, "process_id must be in [0, 2]"),
        ({"coordinator": "host0"}, "HOST:PORT"),
        ({"num_processes": 0}, "must be positive"),
    ]:
        with pytest.raises(distributed.DistributedError, match=words.replace("[", r"\[")):
            distributed.settings(**kwargs)
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "two")
    with pytest.raises(distributed.DistributedError, match="QDKIT_NUM_PROCESSES"):
        distributed.settings()

    # on the command line: a usage error naming the option, before JAX starts
    env = _env(tmp_path, 2)
    done = subprocess.run(_cli("run", *ARM, "--out", str(tmp_path / "x"), "--coordinator", "127.0.0.1:1",
                               "--num-processes", "2"), env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "process_id" in done.stderr, done.stderr
    assert not os.path.exists(tmp_path / "x")


def test_host_work_is_refused_in_several_processes(tmp_path):
    """Language models, people and refits run on the host: refused with the reason, in
    every process, before anything is written."""
    out = str(tmp_path / "learned")
    results = _finish(_start(tmp_path, ["run", *ARM, "--descriptors", "learned", "--iterations", "5", "--out", out]))
    for rc, _, err in results:
        assert rc == 2, err[-2000:]
        assert "run it in one process" in err
    assert not os.path.exists(os.path.join(out, "config.json"))
    # different settings in the two processes (a seed per rank): refused in both, nothing written
    out = str(tmp_path / "seeds")
    procs = []
    port = _port()
    for i in range(2):
        command = _cli("run", "--task", "arm", "--seed", str(i), "--no-progress", "--out", out, "--coordinator",
                       f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(i))  # fmt: skip
        procs.append(subprocess.Popen(command, env=_env(tmp_path, 2), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))  # fmt: skip
    for rc, _, err in _finish(procs):
        assert rc == 2 and "given different settings" in err, err[-2000:]
    assert not os.path.exists(out)
    # a device count that leaves out a process's devices: refused in both, nothing written
    out = str(tmp_path / "devices")
    results = _finish(_start(tmp_path, ["run", *ARM, "--devices", "2", "--batch-size", "64", "--out", out]))
    for rc, _, err in results:
        assert rc == 2 and "devices must be auto or 4" in err, err[-2000:]
    assert not os.path.exists(os.path.join(out, "config.json"))
