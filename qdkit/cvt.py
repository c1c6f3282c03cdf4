"""Centroidal Voronoi tessellations: k-means centroids and fast nearest-centroid lookup.

Nearest-centroid queries are the cost of a CVT archive: brute force is ``B x C``
distances per batch (10 ms for 1,024 x 10,000 on one CPU core). For descriptor spaces
of dimension 3 or less we precompute, once, a *bucket table*: the descriptor box is cut
into a regular grid of buckets, and each bucket lists every centroid that can be the
nearest one to some point inside it. A query then looks at ``K`` candidates (``K`` ~ 10
to 30) instead of ``C``. The table is exact: for a bucket with centre ``b`` and
half-diagonal ``r`` whose nearest centroid is at distance ``d*``, the nearest centroid of
any point in the bucket lies within ``d* + 2r`` of ``b``, and the table keeps all of
those. Ties go to the lowest centroid index, as with brute force.
"""

from __future__ import annotations

import gc
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from qdkit import xla

# Elements of a (rows, C) distance block computed at once while building tables.
_BLOCK_ELEMENTS = 1 << 22
_COLLECT_BYTES = 1 << 25  # a table this large is worth a garbage collection (about 10-50 ms)
MAX_TABLE_DIM = 3
_NONE = np.iinfo(np.int32).max  # no centroid (sorts last)


def _sq_dist(points: jax.Array, centroids: jax.Array) -> jax.Array:
    """``(P, M), (C, M) -> (P, C)`` squared Euclidean distances."""
    return jnp.sum(jnp.square(points[:, None, :] - centroids[None, :, :]), axis=-1)


def nearest_brute(points: jax.Array, centroids: jax.Array) -> jax.Array:
    """``(B,)`` int32 index of the nearest centroid, by brute force."""
    return jnp.argmin(_sq_dist(points, centroids), axis=1).astype(jnp.int32)


def bucket_grid(num_cells: int, dim: int, buckets_per_cell: float) -> tuple[int, ...]:
    """Buckets per axis so that the grid has about ``buckets_per_cell * C`` buckets."""
    per_axis = max(1, round((buckets_per_cell * num_cells) ** (1.0 / dim)))
    return (per_axis,) * dim


def _bucket_centers(lower: jax.Array, upper: jax.Array, grid: tuple[int, ...]) -> jax.Array:
    axes = [(np.arange(g, dtype=np.float32) + 0.5) / g for g in grid]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(grid))
    return lower[None, :] + jnp.asarray(mesh) * (upper - lower)[None, :]


def _blocked(fn, rows: jax.Array, block: int) -> jax.Array:
    """Apply ``fn`` to ``rows`` in blocks of ``block`` rows with ``lax.map``."""
    n = rows.shape[0]
    pad = (-n) % block
    padded = jnp.concatenate([rows, jnp.repeat(rows[-1:], pad, axis=0)]) if pad else rows
    out = lax.map(fn, padded.reshape(-1, block, rows.shape[1]))
    return out.reshape(-1, *out.shape[2:])[:n]


def _neighbours(tree, columns: list[np.ndarray], centers: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest centroids of each point (in the tree's order) and their float32
    squared distances, ``sum((point - centroid) ** 2)`` added left to right over the
    coordinates, a coordinate at a time from the centroids' ``columns`` (no ``(points,
    k, dim)`` arrays; 5x faster). Up to 7 coordinates these are the bits of ``np.sum``
    over the last axis (NumPy adds 8 or more in another order; tables are built for 3
    or fewer unless asked for, and the reach test's margin covers either rounding)."""
    _, idx = tree.query(centers, k=k, workers=-1)  # (every core: a query per point, any order)
    idx = idx.reshape(len(centers), -1)
    d2 = None
    for j, column in enumerate(columns):
        diff = centers[:, j, None] - column[idx]
        d2 = diff * diff if d2 is None else d2 + diff * diff
    return idx, d2


def _reach_sets(tree, cents: np.ndarray, centers: np.ndarray, radius: np.float32, k: int = 8) -> list:
    """Every centroid within each bucket's reach ``d* + 2r`` (the float32 test the
    lookup relies on), as ``(rows, counts, members)`` groups: bucket ``rows[j]`` has
    ``counts[j]`` centroids (at least one), in increasing index order in ``members``
    after those of ``rows[:j]``. The k nearest are looked at (``k`` first), doubling k
    for the buckets whose k-th neighbour is still inside (with a margin for float32
    against the tree's float64 order)."""
    groups = []
    columns = [np.ascontiguousarray(cents[:, j]) for j in range(cents.shape[1])]
    todo, k = np.arange(len(centers), dtype=np.int32), min(cents.shape[0], k)
    while todo.size:
        later = []
        block = max(1, _BLOCK_ELEMENTS // k)  # (block, k) neighbour arrays at once
        for i in range(0, todo.size, block):
            rows = todo[i : i + block]
            idx, d2 = _neighbours(tree, columns, centers[rows], k)
            reach = np.sqrt(np.min(d2, axis=1)) + np.float32(2.0) * radius
            limit = reach * reach * np.float32(1 + 1e-5) + np.float32(1e-12)
            more = (np.max(d2, axis=1) <= limit * np.float32(1 + 1e-4)) & (k < cents.shape[0])
            done = ~more
            inside = d2[done] <= limit[done, None]
            members = np.where(inside, idx[done], _NONE).astype(np.int32)
            members.sort(axis=1)  # in index order, then _NONE
            counts = np.sum(inside, axis=1).astype(np.int32)
            # ragged: each row's members one after another (less memory than the rows)
            groups.append((rows[done], counts, members[members != _NONE]))
            later.append(rows[more])
        todo, k = np.concatenate(later), min(cents.shape[0], 2 * k)
    return groups


def build_table(centroids: jax.Array, lower: jax.Array, upper: jax.Array, grid: tuple[int, ...]) -> jax.Array:
    """``(prod(grid), K)`` int32 candidate centroids per bucket (host-side, not jittable).

    Each bucket lists every centroid within its reach ``d* + 2r``, in increasing index
    order, and fills the rest of its ``K`` places with its first (lowest) one; ``K`` is
    the largest number of centroids within a bucket's reach, rounded up to a multiple of
    4. Neighbours come from a k-d tree (``scipy.spatial.cKDTree``), so building costs
    about ``C log C`` rather than the ``C^2`` of comparing every bucket with every
    centroid; each bucket is queried with twice as many neighbours until its reach is
    covered, starting from what covers three quarters of a sample of buckets."""
    from scipy.spatial import cKDTree

    centers = np.asarray(_bucket_centers(lower, upper, grid), np.float32)
    cents = np.asarray(centroids, np.float32)
    side = (np.asarray(upper, np.float32) - np.asarray(lower, np.float32)) / np.asarray(grid, np.float32)
    radius = np.float32(0.5) * np.sqrt(np.sum(side * side, dtype=np.float32))
    tree = cKDTree(cents.astype(np.float64))
    # the first k: what covers three quarters of a sample of the buckets (too small a k costs a
    # query of the same buckets with twice as many, too large one neighbours never used)
    sample = np.random.default_rng(0).choice(len(centers), min(len(centers), 1024), replace=False)
    sampled = np.concatenate([c for _, c, _ in _reach_sets(tree, cents, centers[sample], radius)])
    first = 1 << int(np.ceil(np.log2(max(1.0, np.percentile(sampled, 75)))))
    groups = _reach_sets(tree, cents, centers, radius, max(8, first))
    k = max(int(np.max(counts, initial=1)) for _, counts, _ in groups)
    k = min(cents.shape[0], -(-k // 4) * 4)  # round up: fewer distinct compilations
    table = np.empty((len(centers), k), np.int32)  # filled in place: no int64 copies of the whole table
    block = max(1, _BLOCK_ELEMENTS // k)
    while groups:
        rows, counts, members = groups.pop()  # (each group's memory released once copied)
        ends = np.cumsum(counts, dtype=np.int64)
        for i in range(0, len(rows), block):
            at, count = rows[i : i + block], counts[i : i + block]
            start = int(ends[i] - counts[i])
            part = members[start : int(ends[min(i + block, len(rows)) - 1])]
            offsets = np.cumsum(count, dtype=np.int64) - count
            fill = np.repeat(part[offsets], k)  # every place the row's first (each has one in reach)
            # then its members in the first places: member j of row r goes to r * k + j
            fill[np.repeat(np.arange(len(at), dtype=np.int64) * k - offsets, count) + np.arange(len(part))] = part
            if np.all(np.diff(at) == 1):  # (consecutive rows: most of them)
                table[at[0] : at[-1] + 1] = fill.reshape(len(at), k)
            else:
                table[at] = fill.reshape(len(at), k)
            del at, count, part, fill  # (views of the group: released with it)
        del rows, counts, members
    out = jax.device_put(table).block_until_ready()  # (jnp.asarray would stage a copy)
    del table
    if out.nbytes >= _COLLECT_BYTES:
        # JAX keeps the NumPy source of a transfer alive until Python's garbage collector
        # runs (JAX 0.10): at 10^6 cells, 160 MB more for the rest of the set-up
        gc.collect()
    return out


# Up to this many candidates a bucket's are compared one at a time (see nearest_table).
UNROLL_CANDIDATES = 64


def nearest_table(
    points: jax.Array,
    centroids: jax.Array,
    lower: jax.Array,
    upper: jax.Array,
    grid: tuple[int, ...],
    table: jax.Array,
) -> jax.Array:
    """``(B,)`` int32 nearest centroid using a bucket table. Points must be in bounds.

    Up to :data:`UNROLL_CANDIDATES` candidates per bucket, the candidates are compared
    one at a time, each a few elementwise operations on ``(B,)`` arrays (the candidate's
    index read from the flat table, its coordinates from the flat centroids, the squared
    distance, a running minimum kept with strict ``<``, so the first of equal distances
    wins, as with ``argmin``). XLA fuses them into one loop over the points; the
    ``(B, K)`` form (gathered candidates, then ``argmin`` over them) is a reduction
    XLA's CPU backend runs one row at a time, 1.3-2.0x as slow from 10^3 to 10^6 cells
    (``benchmarks/cvt_lookup.py``, 2-D). 3-D tables often have more than 64 candidates
    (84 for the 1,500-cell k-means CVT of tests/test_cvt.py) and keep the ``(B, K)``
    form. Under qdkit's vmapped seeds (:func:`qdkit.xla.vmap_axis`), whose archives each
    carry their table, the lookup takes the ``(B, K)`` form too: there it was the faster
    one (the other 1.3-1.4x slower on 16 seeds of the arm). The unrolled form costs
    compile time: 0.2-0.3 s more for the lookup alone at 28-40 candidates. The same
    index either way: the distances are the same sums in the same order (XLA could fuse
    a multiply-add differently in another kernel; tests/test_cvt.py checks both forms
    against brute force in 1-3 dimensions and on ties)."""
    g = jnp.asarray(grid, jnp.int32)
    scaled = (points - lower[None, :]) / (upper - lower)[None, :] * g.astype(jnp.float32)[None, :]
    coords = jnp.clip(jnp.floor(scaled).astype(jnp.int32), 0, (g - 1)[None, :])
    strides = np.cumprod((1, *grid[:0:-1]))[::-1].astype(np.int32)
    k = table.shape[1]
    if k > UNROLL_CANDIDATES or xla.vmap_axis() is not None:
        bucket = jnp.sum(coords * jnp.asarray(strides)[None, :], axis=1)
        cand = table[bucket]  # (B, K)
        d2 = jnp.sum(jnp.square(points[:, None, :] - centroids[cand]), axis=-1)
        return jnp.take_along_axis(cand, jnp.argmin(d2, axis=1)[:, None], axis=1)[:, 0]
    m = points.shape[1]
    first = coords[:, 0] * int(strides[0])
    for j in range(1, m):
        first = first + coords[:, j] * int(strides[j])
    first = first * k  # where the bucket's row starts in the flat table
    flat, coordinates = table.reshape(-1), centroids.reshape(-1)  # (row-major: no copies)
    best = index = None
    for i in range(k):
        candidate = flat[first + i]
        at = candidate * m  # where its coordinates start
        d2 = jnp.square(points[:, 0] - coordinates[at])
        for j in range(1, m):
            d2 = d2 + jnp.square(points[:, j] - coordinates[at + j])
        if best is None:
            best, index = d2, candidate
        else:
            closer = d2 < best
            best, index = jnp.where(closer, d2, best), jnp.where(closer, candidate, index)
    return index


@jax.jit
def _lloyd_update(samples: jax.Array, assign: jax.Array, centroids: jax.Array) -> jax.Array:
    c = centroids.shape[0]
    sums = jax.ops.segment_sum(samples, assign, num_segments=c)
    counts = jax.ops.segment_sum(jnp.ones_like(assign, jnp.float32), assign, num_segments=c)
    return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], centroids)


_nearest_table_jit = jax.jit(nearest_table, static_argnames="grid")


def _assign(samples, centroids, lower, upper) -> jax.Array:
    c, m = centroids.shape
    if m <= MAX_TABLE_DIM and c > 256:
        grid = bucket_grid(c, m, 0.25)
        table = build_table(centroids, lower, upper, grid)
        return _nearest_table_jit(samples, centroids, lower, upper, grid, table)
    block = max(1, _BLOCK_ELEMENTS // c)
    return _blocked(lambda p: nearest_brute(p, centroids), samples, block)


def kmeans_centroids(
    key: jax.Array,
    num_cells: int,
    lower: jax.Array,
    upper: jax.Array,
    *,
    samples: int | None = None,
    iterations: int = 10,
) -> jax.Array:
    """CVT centroids by Lloyd's k-means on points drawn uniformly in the box.

    Deterministic for a given key. Host-side driver (not jittable); each step is
    compiled.

    Args:
        key: PRNG key for the sample and the initial centroids.
        num_cells: number of centroids ``C``.
        lower, upper: ``(M,)`` bounds of the descriptor box.
        samples: number of uniform points (default ``max(10 * C, 10_000)``, capped at
            ``200_000`` but never fewer than ``C``).
        iterations: Lloyd iterations.

    Returns:
        ``(C, M)`` float32 centroids.
    """
    if samples is None:
        samples = max(num_cells, min(max(10 * num_cells, 10_000), 200_000))
    if samples < num_cells:
        raise ValueError(f"need at least as many samples ({samples}) as cells ({num_cells})")
    dim = lower.shape[0]
    unit = jax.random.uniform(key, (samples, dim), jnp.float32)
    points = lower[None, :] + unit * (upper - lower)[None, :]
    centroids = points[:num_cells]
    for _ in range(iterations):
        assign = _assign(points, centroids, lower, upper)
        centroids = _lloyd_update(points, assign, centroids)
    return centroids


def table_shape_for(num_cells: int, dim: int) -> tuple[int, ...] | None:
    """Bucket grid used by a CVT archive of this size, or ``None`` for brute force."""
    if dim > MAX_TABLE_DIM or num_cells <= 256:
        return None
    grid = bucket_grid(num_cells, dim, 1.0)
    return grid if math.prod(grid) <= 1 << 22 else None
