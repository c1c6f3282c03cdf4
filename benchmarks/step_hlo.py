"""Operation counts of the compiled MAP-Elites step on the core-throughput workload.

Prints, for the grid workload of ``core_throughput.py`` (fast and plain scoring), how
many fusions and operations of each kind XLA's optimised program for one
``qdkit.map_elites.step`` holds. Two commits compile the same program when the counts
agree: copy this file into the other checkout's ``benchmarks/`` and run it in both, to
compare them without timing noise.
"""

from __future__ import annotations

import collections
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import core_throughput  # noqa: E402

import qdkit  # noqa: E402


def counts(plain: bool) -> collections.Counter:
    _, (task, emitter, get_state) = core_throughput.qdkit_runner(
        "grid", None, 5, cos="jnp.cos" if plain else "fastmath", noise="threefry" if plain else "fast"
    )
    text = qdkit.map_elites.step.lower(get_state(), task, emitter).compile().as_text()
    return collections.Counter(re.findall(r"= \S+ (\w[\w-]*)\(", text))


def main() -> None:
    print(f"qdkit from {os.path.dirname(qdkit.__file__)}")
    for plain in (False, True):
        ops = counts(plain)
        name = "plain (jnp.cos, threefry)" if plain else "fast"
        print(f"{name}: {sum(ops.values())} operations, {ops['fusion']} fusions")
        print("  " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))


if __name__ == "__main__":
    main()
