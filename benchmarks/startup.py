"""Start-up: the time to the first iteration of `qdkit run --iterations 1`, with JAX's
persistent compilation cache empty (first start) and filled by that first start
(second start).

Each configuration runs three times as separate processes, with a fresh cache
directory: ``--no-compile-cache``, then twice with the cache (the first fills it).
The time to the first iteration runs from starting the process to the first row of
``metrics.jsonl`` (polled every 5 ms): Python and JAX imports, building the task,
compiling, the initial batch and one iteration (for DCG: its critic training). The
whole process, in brackets, adds the final checkpoint, the plots and the report
(matplotlib's import and drawing: the same in every start).

    python benchmarks/startup.py                        # arm, maze + DCG, ant_omni + DCG
    python benchmarks/startup.py --configs arm          # one of them
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import jax
import machine  # benchmarks/machine.py

CONFIGS = {
    "arm": [],  # the default of `qdkit run`
    "maze_dcg": ["--task", "maze", "--emitter", "dcg", "--batch-size", "128"],
    "ant_omni_dcg": ["--task", "ant_omni", "--emitter", "dcg", "--batch-size", "64", "-t", "episode_length=100"],
}


def start(args: list[str], out: str, env: dict[str, str]) -> tuple[float, float]:
    """Run ``qdkit run --iterations 1`` in a new process; returns the seconds until the
    first iteration's metrics row is in ``metrics.jsonl`` (the time to the first
    iteration: imports, compiling, the initial batch and the iteration) and until the
    process ends (also the final checkpoint, plots and report)."""
    metrics = os.path.join(out, "metrics.jsonl")
    begin = time.perf_counter()
    first = None
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "qdkit.cli", "run", "--iterations", "1", "--no-progress", "--out", out, *args],
            env=env, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
        while process.poll() is None:
            if first is None and _has_row(metrics):
                first = time.perf_counter() - begin
            time.sleep(0.005)
        total = time.perf_counter() - begin
        if process.returncode != 0:
            err.seek(0)
            raise SystemExit(f"qdkit run {' '.join(args)} failed:\n{err.read().decode()[-2000:]}")
    if first is None:  # written within the last poll interval
        if not _has_row(metrics):
            raise SystemExit(f"qdkit run {' '.join(args)} wrote no metrics row to {metrics}")
        first = total
    return first, total


def _has_row(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().endswith("\n")
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()
    print(f"# startup.py — {machine.cpu()}, jax {jax.__version__}")
    print("Seconds to the first iteration (whole process in brackets).")
    print("| configuration | arguments | no cache s | first start s | second start s | first / second |")
    print("|---|---|---:|---:|---:|---:|")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in args.configs.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "QDKIT_COMPILE_CACHE")}
            env.update(QDKIT_CACHE_DIR=os.path.join(tmp, "cache"), PYTHONPATH=root, MPLBACKEND="Agg")
            plain = start([*CONFIGS[name], "--no-compile-cache"], os.path.join(tmp, "plain"), env)
            first = start(CONFIGS[name], os.path.join(tmp, "first"), env)
            second = start(CONFIGS[name], os.path.join(tmp, "second"), env)
        shown = " ".join(CONFIGS[name]) or "(defaults)"
        print(f"| {name} | `{shown}` | {plain[0]:.2f} ({plain[1]:.2f}) | {first[0]:.2f} ({first[1]:.2f}) | "
              f"{second[0]:.2f} ({second[1]:.2f}) | {first[0] / second[0]:.2f}× ({first[1] / second[1]:.2f}×) |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
