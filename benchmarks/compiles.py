"""What `qdkit run` compiles, and what its imports cost: the parts of a start that the
compilation cache does not remove.

For each configuration (those of ``startup.py``), one ``qdkit run --iterations 1
--no-compile-cache`` with ``JAX_LOG_COMPILES=1``: the programs compiled before the
loop's first chunk (``jit(_chunk)``), with the seconds XLA spent on each, then how many
programs the whole run compiled and how many of them took under 0.5 s (the floor of
time below which the compilation cache once kept nothing). Then, ``--repeats`` times
each, the cumulative import time of ``ml_dtypes`` (which JAX imports) and of
``qdkit.cli``, from ``python -X importtime``.

To compare two commits, copy this file into the other checkout's ``benchmarks/`` (next
to its startup.py) and run it in both.

    python benchmarks/compiles.py                   # arm and maze + DCG
    python benchmarks/compiles.py --configs arm
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

import machine  # benchmarks/machine.py
import startup  # benchmarks/startup.py: its configurations

COMPILED = re.compile(r"Finished XLA compilation of (\S+) in ([0-9.e-]+) sec")


def compiles(args: list[str], env: dict[str, str]) -> list[tuple[str, float]]:
    """``(program, seconds)`` in the order ``qdkit run`` compiled them."""
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [sys.executable, "-m", "qdkit.cli", "run", "--iterations", "1", "--no-progress", "--no-compile-cache",
             "--out", os.path.join(tmp, "run"), *args],
            env={**env, "JAX_LOG_COMPILES": "1"}, capture_output=True, text=True,
        )  # fmt: skip
    if result.returncode != 0:
        raise SystemExit(f"qdkit run {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return [(name, float(seconds)) for name, seconds in COMPILED.findall(result.stderr)]


def import_ms(module: str, env: dict[str, str]) -> float:
    """Cumulative import time of ``module`` in a fresh interpreter, in ms."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"], env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"import {module} failed:\n{result.stderr[-2000:]}")
    last = [line for line in result.stderr.splitlines() if line.rstrip().endswith(f"| {module}")][-1]
    return int(last.split("|")[1]) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="arm,maze_dcg", help=f"comma-separated, of {', '.join(startup.CONFIGS)}")
    parser.add_argument("--repeats", type=int, default=3, help="import timings per module")
    args = parser.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "MPLBACKEND": "Agg"}
    version = subprocess.run(
        [sys.executable, "-c", "import ml_dtypes; print(ml_dtypes.__version__)"],
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"# compiles.py — {machine.cpu()}, qdkit from {root}, ml_dtypes {version}")
    print("| configuration | programs before the first chunk | their compile s | programs in the run | under 0.5 s "
          "(their s) |")  # fmt: skip
    print("|---|---|---:|---:|---:|")
    for name in args.configs.split(","):
        done = compiles(startup.CONFIGS[name], env)
        names = [n for n, _ in done]
        first = names.index("jit(_chunk)") if "jit(_chunk)" in names else len(done)
        before = done[:first]
        listed = ", ".join(n.removeprefix("jit(").removesuffix(")") for n, _ in before) or "none"
        small = [s for _, s in done if s < 0.5]
        print(f"| {name} | {len(before)}: {listed} | {sum(s for _, s in before):.2f} | {len(done)} | "
              f"{len(small)} ({sum(small):.2f}) |")  # fmt: skip
    print("\nImport time, ms (fresh interpreter each; median and all):")
    for module in ("ml_dtypes", "qdkit.cli"):
        times = [import_ms(module, env) for _ in range(args.repeats)]
        print(f"- {module}: {statistics.median(times):.0f} ({', '.join(f'{t:.0f}' for t in times)})")


if __name__ == "__main__":
    main()
