"""Start-up: the wall time of `qdkit run --iterations 1`, with JAX's persistent
compilation cache empty (first start) and filled by that first start (second start).

Each configuration runs three times as separate processes, with a fresh cache
directory: ``--no-compile-cache``, then twice with the cache (the first fills it).
Everything is included: Python and JAX imports, building the task, compiling,
the initial batch, one iteration (for DCG: its critic training) and writing the
outputs. The iteration itself is in every figure alike; ``--iterations 1`` keeps it
to one.

    python benchmarks/startup.py                        # arm, maze + DCG, ant_omni + DCG
    python benchmarks/startup.py --configs arm          # one of them
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

import jax

CONFIGS = {
    "arm": [],  # the default of `qdkit run`
    "maze_dcg": ["--task", "maze", "--emitter", "dcg", "--batch-size", "128"],
    "ant_omni_dcg": ["--task", "ant_omni", "--emitter", "dcg", "--batch-size", "64", "-t", "episode_length=100"],
}


def start(args: list[str], out: str, env: dict[str, str]) -> float:
    begin = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "qdkit.cli", "run", "--iterations", "1", "--no-progress", "--out", out, *args],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"qdkit run {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    args = parser.parse_args()
    print(f"# startup.py — {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, jax {jax.__version__}")
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
        print(f"| {name} | `{shown}` | {plain:.1f} | {first:.1f} | {second:.1f} | {first / second:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
