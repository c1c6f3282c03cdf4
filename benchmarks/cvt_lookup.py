"""The CVT archive's lookup: its candidates one at a time against one argmin.

qdkit's nearest-centroid lookup compares a bucket's candidates one at a time; before,
it took one ``argmin`` over all of them.

A CVT archive of a 1-3 dimensional descriptor space finds a descriptor's cell with a
bucket table (``qdkit.cvt``): the descriptor's bucket lists ``K`` candidate centroids,
and the nearest of them is the cell. qdkit compares the candidates one at a time, each
a few elementwise operations on the batch's ``(B,)`` arrays, up to
``qdkit.cvt.UNROLL_CANDIDATES`` candidates; beyond that (and before this change) it
gathers the ``(B, K)`` candidates and their coordinates and takes an ``argmin`` over
them. Both forms are traced here in one process (``UNROLL_CANDIDATES`` set to 0 while
tracing the ``(B, K)`` form), from the same inputs, and timed in turn (medians of ``--repeats``,
the order alternating):

1. the lookup alone: a jitted scan of ``--lookups`` lookups of 1,024 points (uniform in
   the box, moved each step) in CVTs of uniformly drawn centroids (as ``scaling.py``
   makes them), ns per point, and the seconds to compile the lookup alone; the two
   forms must give the same cells, and on a sample the cells of NumPy's brute force;
2. qdkit's loop on the core-throughput workload (rastrigin, 100 genes, Iso+LineDD,
   batch 1,024) with a CVT archive: ``map_elites.run`` of ``--iterations`` iterations,
   ns per evaluation; both must end with the same archive, bit for bit; and the CVT
   workload of ``core_throughput.py`` (``--core-cells``, k-means centroids, its
   ``jnp.cos`` scoring, descriptors the first two genes);
3. the arm default (8 joints, batch 256) on a 1,024-cell CVT, one seed and ``--seeds``
   vmapped seeds on one device. Under the vmapped seeds, whose archives each carry
   their table, qdkit takes the ``(B, K)`` form (it was the faster one there); the other
   column forces one candidate at a time. The last column reads which form qdkit's own
   program (traced without either setting) takes.

The script exits with status 1 when a check fails (a ``NO`` in its tables).

    python benchmarks/cvt_lookup.py
    python benchmarks/cvt_lookup.py --quick          # smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import machine  # benchmarks/machine.py
import numpy as np
from jax import lax

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import core_throughput  # noqa: E402  (benchmarks/core_throughput.py)
from scaling import centroids_for  # noqa: E402  (benchmarks/scaling.py: its uniformly drawn centroids)

import qdkit  # noqa: E402
from emitters import iso_line  # noqa: E402
from qdkit import cvt, map_elites  # noqa: E402

BATCH = 1024


@contextlib.contextmanager
def row_form():
    """While tracing inside it, the table lookup takes the ``(B, K)`` form."""
    saved = cvt.UNROLL_CANDIDATES
    cvt.UNROLL_CANDIDATES = 0
    try:
        yield
    finally:
        cvt.UNROLL_CANDIDATES = saved


@contextlib.contextmanager
def one_at_a_time_under_seeds():
    """While tracing inside it, the lookup compares one candidate at a time under the
    vmapped seeds too (qdkit takes the ``(B, K)`` form there): the lookup reads
    ``qdkit.xla.vmap_axis`` to choose, and here it answers ``None``."""
    saved = cvt.xla.vmap_axis
    cvt.xla.vmap_axis = lambda: None
    try:
        yield
    finally:
        cvt.xla.vmap_axis = saved


def indexer(cells: int) -> qdkit.indexers.CVTIndexer:
    return qdkit.indexers.CVTIndexer.create(lower=jnp.zeros(2), upper=jnp.ones(2), centroids=centroids_for(cells))


def brute_cells(points: np.ndarray, cents: np.ndarray) -> np.ndarray:
    """Nearest centroid by NumPy brute force, in blocks of centroids (float32 squared
    distances, ties to the lowest index). NumPy does not fuse multiply-adds where XLA
    may, so at a near tie it could pick the other centroid: a ``NO`` there is worth a
    look, not proof of a wrong cell."""
    best = np.full(len(points), np.inf, np.float32)
    index = np.zeros(len(points), np.int64)
    for start in range(0, len(cents), 1 << 16):
        block = cents[start : start + (1 << 16)]
        d2 = np.square(points[:, None, 0] - block[None, :, 0]) + np.square(points[:, None, 1] - block[None, :, 1])
        at = np.argmin(d2, axis=1)
        d = d2[np.arange(len(points)), at]
        closer = d < best
        best[closer], index[closer] = d[closer], at[closer] + start
    return index


def lookup_runner(ix: qdkit.indexers.CVTIndexer, lookups: int, rows: bool):
    """A jitted scan of ``lookups`` lookups (the form chosen while tracing), the cells of
    its first points, and the seconds to compile the lookup alone."""

    def loop(ix, points):
        def step(carry, _):
            p, total = carry
            cells = ix.index_of(p)
            return (jnp.mod(p * 1.618034 + 0.318, 1.0), total + cells), None

        return lax.scan(step, (points, jnp.zeros(points.shape[0], jnp.int32)), None, length=lookups)[0]

    points = jax.random.uniform(jax.random.key(1), (BATCH, 2))
    with row_form() if rows else contextlib.nullcontext():
        compiled = jax.jit(loop).lower(ix, points).compile()  # (the indexer an argument, not a constant)
        lowered = jax.jit(lambda ix, p: ix.index_of(p)).lower(ix, points)
        start = time.perf_counter()
        alone = lowered.compile()
        compile_s = time.perf_counter() - start
        first = alone(ix, points)

    def timed() -> float:
        start = time.perf_counter()
        jax.block_until_ready(compiled(ix, points))
        return (time.perf_counter() - start) / (lookups * BATCH) * 1e9

    return timed, np.asarray(first), np.asarray(points), compile_s


def runner(task, cents, make_emitter, seeds: int, iterations: int, form):
    """qdkit's loop on ``task`` with a CVT archive of ``cents``, ``seeds`` vmapped seeds
    (1: the plain loop), traced inside ``form`` (a new emitter: traced anew); ``timed()``
    gives ns per evaluation, ``holder`` the state (and what :func:`qdkit_form` needs)."""
    archive = qdkit.CVTArchive.create(
        centroids=cents, lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    emitter = make_emitter()
    key = jnp.stack([jax.random.key(k) for k in range(seeds)]) if seeds > 1 else jax.random.key(0)
    with form():  # (read while tracing)
        state = map_elites.init(key, task, archive, emitter)
        state, _ = map_elites.run(state, task, emitter, iterations)  # compiles
        jax.block_until_ready(state)
    holder = {"state": state, "task": task, "make_emitter": make_emitter}

    def timed() -> float:
        start = time.perf_counter()
        holder["state"], _ = map_elites.run(holder["state"], task, emitter, iterations)
        jax.block_until_ready(holder["state"])
        return (time.perf_counter() - start) / (iterations * emitter.batch_size * seeds) * 1e9

    return timed, holder


def loop_runner(cells: int, iterations: int, rows: bool, core: bool = False):
    """qdkit's rastrigin task on a CVT of uniformly drawn centroids; ``core``: the CVT
    workload of ``core_throughput.py`` instead (its ``jnp.cos`` scoring, descriptors the
    first two genes, k-means centroids made as it makes them)."""
    if core:
        task = core_throughput.scored_task("jnp.cos")
        cents = qdkit.cvt.kmeans_centroids(jax.random.key(7), cells, jnp.zeros(2), jnp.ones(2))
    else:
        task, cents = qdkit.tasks.get("rastrigin", dims=100), centroids_for(cells)
    make_emitter = lambda: iso_line(BATCH, 0.005, 0.05, lower=0.0, upper=1.0)  # noqa: E731
    return runner(task, cents, make_emitter, 1, iterations, row_form if rows else contextlib.nullcontext)


def arm_runner(seeds: int, iterations: int, form):
    """The arm default (8 joints, Iso+LineDD, batch 256) on a 1,024-cell CVT."""
    task = qdkit.tasks.get("arm", dof=8)
    cents = np.random.default_rng(7).uniform(-1.0, 1.0, (1024, 2)).astype(np.float32)
    make_emitter = lambda: iso_line(256, 0.01, 0.1, lower=task.genotype_lower, upper=task.genotype_upper)  # noqa: E731
    return runner(task, cents, make_emitter, seeds, iterations, form)


def qdkit_form(holder: dict) -> str:
    """Which form qdkit's own chunk program takes for this state: traced afresh (a new
    emitter: JAX's cache would hand back a trace made inside a forced form) with
    neither setting."""
    state, task, emitter = holder["state"], holder["task"], holder["make_emitter"]()
    if map_elites.num_seeds(state):
        program = jax.make_jaxpr(lambda s: map_elites._run_chunk_seeds(s, jnp.int32(2), task, emitter, 2))(state)
    else:
        program = jax.make_jaxpr(lambda s: map_elites._run_chunk(s, jnp.int32(2), task, emitter, 2, None))(state)
    return "argmin" if "argmin" in str(program) else "one at a time"


def same_archive(a, b) -> bool:
    x, y = a["state"].archive, b["state"].archive
    return all(bool(jnp.array_equal(p, q, equal_nan=True)) for p, q in zip(jax.tree.leaves(x), jax.tree.leaves(y)))


def interleaved(runners: dict, repeats: int) -> dict:
    times = {k: [] for k in runners}
    for repeat in range(repeats):
        for k in list(runners) if repeat % 2 == 0 else list(runners)[::-1]:
            times[k].append(runners[k]())
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", default="1000,10000,100000,1000000", help="comma-separated CVT sizes")
    parser.add_argument("--loop-cells", default="1000,10000,100000", help="CVT sizes of the loop rows")
    parser.add_argument("--core-cells", type=int, default=10_000,
                        help="CVT cells of the row with core_throughput.py's workload (0: none)")  # fmt: skip
    parser.add_argument("--lookups", type=int, default=200, help="lookups of 1,024 points per timed call")
    parser.add_argument("--iterations", type=int, default=200, help="loop iterations per timed call")
    parser.add_argument("--arm-iterations", type=int, default=500, help="arm iterations per timed call")
    parser.add_argument("--seeds", type=int, default=16, help="vmapped seeds of the arm rows")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per form (median)")
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, short timings")
    args = parser.parse_args()
    if args.quick:
        args.cells, args.loop_cells, args.lookups, args.iterations, args.repeats = "1000", "1000", 5, 3, 1
        args.arm_iterations, args.seeds, args.core_cells = 3, 2, 300
    sizes = [int(c) for c in args.cells.split(",") if c]
    loop_sizes = [int(c) for c in args.loop_cells.split(",") if c]
    print(f"# cvt_lookup  jax {jax.__version__}  {machine.cpu()}  repeats: {args.repeats}  "
          f"one candidate at a time up to K = {cvt.UNROLL_CANDIDATES}")  # fmt: skip
    print(f"\n### the lookup alone ({args.lookups} lookups of {BATCH:,} points a call, ns per point)\n")
    print("| cells | K | argmin over (B, K) | one at a time | argmin / one at a time | same cells "
          "| brute force agrees | compile s, argmin / one at a time |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---|---|---:|")
    failed = False
    for cells in sizes:
        ix = indexer(cells)
        rows, rows_first, points, rows_compile = lookup_runner(ix, args.lookups, True)
        ours, ours_first, _, ours_compile = lookup_runner(ix, args.lookups, False)
        med = interleaved({"rows": rows, "ours": ours}, args.repeats)
        sample = slice(0, 256)
        brute = brute_cells(points[sample], np.asarray(ix.centroids))
        agrees = bool(np.array_equal(ours_first[sample], brute))
        same = bool(np.array_equal(rows_first, ours_first))
        print(f"| {cells:,} | {ix.table.shape[1]} | {med['rows']:,.1f} | {med['ours']:,.1f} | "
              f"{med['rows'] / med['ours']:.2f}× | {'yes' if same else 'NO'} | "
              f"{'yes' if agrees else 'NO'} (256 points) | {rows_compile:.2f} / {ours_compile:.2f} |",
              flush=True)  # fmt: skip
        failed |= not (same and agrees)
    print(f"\n### qdkit's loop, rastrigin 100 genes, Iso+LineDD, batch {BATCH:,} "
          f"({args.iterations} iterations a call, ns per evaluation)\n")  # fmt: skip
    print("| CVT cells | argmin over (B, K) | one at a time | difference | same archive |")
    print("|---:|---:|---:|---:|---|")
    rows_of = [(cells, False, f"{cells:,}") for cells in loop_sizes]
    if args.core_cells:
        rows_of.append((args.core_cells, True, f"{args.core_cells:,}, core_throughput.py's workload"))
    for cells, core, label in rows_of:
        (rows, a), (ours, b) = (
            loop_runner(cells, args.iterations, True, core),
            loop_runner(cells, args.iterations, False, core),
        )
        med = interleaved({"rows": rows, "ours": ours}, args.repeats)
        same = same_archive(a, b)
        print(f"| {label} | {med['rows']:,.0f} | {med['ours']:,.0f} | {med['ours'] - med['rows']:+,.0f} | "
              f"{'yes' if same else 'NO'} |", flush=True)  # fmt: skip
        failed |= not same
    print(f"\n### the arm default on a 1,024-cell CVT, one seed and {args.seeds} vmapped seeds on one device "
          f"({args.arm_iterations} iterations a call, ns per evaluation)\n")  # fmt: skip
    print("| seeds | argmin over (B, K) | one at a time | difference | same archive | qdkit's form |")
    print("|---:|---:|---:|---:|---|---|")
    for seeds in (1, args.seeds):
        (rows, a), (ours, b) = (
            arm_runner(seeds, args.arm_iterations, row_form),
            arm_runner(seeds, args.arm_iterations, one_at_a_time_under_seeds),
        )
        med = interleaved({"rows": rows, "ours": ours}, args.repeats)
        same = same_archive(a, b)
        print(f"| {seeds} | {med['rows']:,.1f} | {med['ours']:,.1f} | {med['ours'] - med['rows']:+,.1f} | "
              f"{'yes' if same else 'NO'} | {qdkit_form(b)} |", flush=True)  # fmt: skip
        failed |= not same
    if failed:
        sys.exit("a check failed: see the NO above")


if __name__ == "__main__":
    main()
