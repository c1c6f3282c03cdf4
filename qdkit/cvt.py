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

# Elements of a (rows, C) distance block computed at once while building tables.
_BLOCK_ELEMENTS = 1 << 22
_COLLECT_BYTES = 1 << 25  # a table this large is worth a garbage collection (about 10-50 ms)
MAX_TABLE_DIM = 3


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


def _neighbours(tree, cents: np.ndarray, centers: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest centroids of each point (in the tree's order) and their float32
    squared distances."""
    _, idx = tree.query(centers, k=k, workers=-1)  # (every core: a query per point, any order)
    idx = idx.reshape(len(centers), -1)
    diff = centers[:, None, :] - cents[idx]
    return idx, np.sum(diff * diff, axis=-1, dtype=np.float32)


def _nearest_k(tree, cents: np.ndarray, centers: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_neighbours` ordered by float32 squared distance then index (as
    ``lax.top_k`` orders them)."""
    idx, d2 = _neighbours(tree, cents, centers, k)
    order = np.lexsort((idx, d2), axis=1)
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(d2, order, axis=1)


def _reach_counts(tree, cents: np.ndarray, centers: np.ndarray, radius: np.float32) -> np.ndarray:
    """How many centroids lie within each bucket's reach ``d* + 2r`` (the float32 test
    the lookup relies on): the k nearest are looked at, doubling k for the buckets
    whose k-th neighbour is still inside (with a margin for float32 against the tree's
    float64 order)."""
    counts = np.zeros(len(centers), np.int64)
    todo, k = np.arange(len(centers)), min(cents.shape[0], 8)
    while todo.size:
        later = []
        block = max(1, _BLOCK_ELEMENTS // k)  # (block, k) neighbour arrays at once
        for i in range(0, todo.size, block):
            rows = todo[i : i + block]
            _, d2 = _neighbours(tree, cents, centers[rows], k)  # counting needs no order
            reach = np.sqrt(np.min(d2, axis=1)) + np.float32(2.0) * radius
            limit = reach * reach * np.float32(1 + 1e-5) + np.float32(1e-12)
            more = (np.max(d2, axis=1) <= limit * np.float32(1 + 1e-4)) & (k < cents.shape[0])
            counts[rows] = np.sum(d2 <= limit[:, None], axis=1)
            later.append(rows[more])
        todo, k = np.concatenate(later), min(cents.shape[0], 2 * k)
    return counts


def build_table(centroids: jax.Array, lower: jax.Array, upper: jax.Array, grid: tuple[int, ...]) -> jax.Array:
    """``(prod(grid), K)`` int32 candidate centroids per bucket (host-side, not jittable).

    Each bucket keeps ``K`` nearest centroids (stored sorted by index), ``K`` being the
    largest number of centroids within a bucket's reach ``d* + 2r``, rounded up to a
    multiple of 4; every centroid within the reach is among them (which of several
    equally distant ones fill the last places follows the tree's order). Neighbours come
    from a k-d tree (``scipy.spatial.cKDTree``), so building costs about ``C log C``
    rather than the ``C^2`` of comparing every bucket with every centroid."""
    from scipy.spatial import cKDTree

    centers = np.asarray(_bucket_centers(lower, upper, grid), np.float32)
    cents = np.asarray(centroids, np.float32)
    side = (np.asarray(upper, np.float32) - np.asarray(lower, np.float32)) / np.asarray(grid, np.float32)
    radius = np.float32(0.5) * np.sqrt(np.sum(side * side, dtype=np.float32))
    tree = cKDTree(cents.astype(np.float64))
    k = int(np.max(_reach_counts(tree, cents, centers, radius)))
    k = min(cents.shape[0], -(-k // 4) * 4)  # round up: fewer distinct compilations
    block = max(1, _BLOCK_ELEMENTS // k)
    table = np.empty((len(centers), k), np.int32)  # filled in place: no int64 copies of the whole table
    for i in range(0, len(centers), block):
        table[i : i + block] = np.sort(_nearest_k(tree, cents, centers[i : i + block], k)[0], axis=1)
    table, host = jax.device_put(table).block_until_ready(), table  # (jnp.asarray would stage a copy)
    del host
    if table.nbytes >= _COLLECT_BYTES:
        # JAX keeps the NumPy source of a transfer alive until Python's garbage collector
        # runs (JAX 0.10): at 10^6 cells, 160 MB more for the rest of the set-up
        gc.collect()
    return table


def nearest_table(
    points: jax.Array,
    centroids: jax.Array,
    lower: jax.Array,
    upper: jax.Array,
    grid: tuple[int, ...],
    table: jax.Array,
) -> jax.Array:
    """``(B,)`` int32 nearest centroid using a bucket table. Points must be in bounds."""
    g = jnp.asarray(grid, jnp.int32)
    scaled = (points - lower[None, :]) / (upper - lower)[None, :] * g.astype(jnp.float32)[None, :]
    coords = jnp.clip(jnp.floor(scaled).astype(jnp.int32), 0, (g - 1)[None, :])
    strides = np.cumprod((1, *grid[:0:-1]))[::-1].astype(np.int32)
    bucket = jnp.sum(coords * jnp.asarray(strides)[None, :], axis=1)
    cand = table[bucket]  # (B, K)
    d2 = jnp.sum(jnp.square(points[:, None, :] - centroids[cand]), axis=-1)
    return jnp.take_along_axis(cand, jnp.argmin(d2, axis=1)[:, None], axis=1)[:, 0]


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
