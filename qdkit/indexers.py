"""Cell indexers: the map from a descriptor to an archive cell.

An archive (:class:`qdkit.Archive`) is one storage value plus an indexer plus optional
thresholds. The indexer is the only part that differs between archive kinds:

- :class:`GridIndexer`: a regular grid over the descriptor box, or a grid with
  per-axis cell boundaries (``edges``, e.g. finer near the poles of a rating scale);
- :class:`CVTIndexer`: the Voronoi cells of a set of centroids (CVT-MAP-Elites);
- :class:`LearnedIndexer`: a learned projection of task *features* to descriptors,
  binned by a grid or a CVT over the projection's current bounds. Its parameters and
  bounds are data fields, so a refit is a new value of the same shapes: the compiled
  loop is not recompiled.

Every indexer is a frozen pytree dataclass with ``lower`` / ``upper`` ``(M,)`` bounds as
data, a static ``num_cells``, and two pure, jittable methods:

- ``index_of(descriptors (B, M)) -> (B,) int32``: descriptors outside the bounds go to
  the nearest edge cell (they are clipped into the box first);
- ``cell_centers() -> (C, M)``: a representative point per cell.

A learned indexer also has ``describe(features (B, F)) -> (B, M)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qdkit import cvt


def as_bounds(lower: Any, upper: Any, dim: int | None = None) -> tuple[jax.Array, jax.Array]:
    """Validate descriptor bounds and return them as ``(M,)`` float32 arrays."""
    lo = np.atleast_1d(np.asarray(lower, np.float32))
    hi = np.atleast_1d(np.asarray(upper, np.float32))
    if dim is not None:
        lo = np.broadcast_to(lo, (dim,))
        hi = np.broadcast_to(hi, (dim,))
    if lo.shape != hi.shape or lo.ndim != 1:
        raise ValueError(f"lower and upper must have the same (M,) shape; got {lo.shape}, {hi.shape}")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)):
        raise ValueError(f"descriptor bounds must be finite with upper > lower; got {lo}, {hi}")
    # copies, then device_put: jnp.asarray would compile a program per shape, and a
    # device_put of the caller's own array may alias its memory on a CPU
    return jax.device_put(np.array(lo, np.float32)), jax.device_put(np.array(hi, np.float32))


def check_edges(edges: Any) -> tuple[tuple[float, ...], ...]:
    """Validate per-axis cell boundaries; returns them as nested tuples (hashable)."""
    out = []
    for k, axis in enumerate(edges):
        values = tuple(float(v) for v in axis)
        if len(values) < 2 or not all(math.isfinite(v) for v in values):
            raise ValueError(f"edges of axis {k} must be at least two finite numbers; got {values}")
        if any(b <= a for a, b in zip(values, values[1:])):
            raise ValueError(f"edges of axis {k} must increase strictly; got {values}")
        out.append(values)
    if not out:
        raise ValueError("edges must give at least one axis")
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class GridIndexer:
    """A grid of ``shape`` cells over ``[lower, upper]``.

    Uniform cells: cell ``(i_1, ..., i_M)`` covers ``lower + (i_k / n_k) * (upper -
    lower)`` to ``lower + ((i_k + 1) / n_k) * (upper - lower)`` along each axis (lower
    edge included; a descriptor equal to ``upper`` falls in the last cell). With
    ``edges``, axis ``k`` has the ``shape[k] + 1`` increasing boundaries ``edges[k]``
    instead. Flat indices are row-major (C order).
    """

    lower: jax.Array
    upper: jax.Array
    shape: tuple[int, ...] = ()
    edges: tuple[tuple[float, ...], ...] | None = None

    @classmethod
    def create(cls, *, shape: Any = None, lower: Any = None, upper: Any = None, edges: Any = None) -> GridIndexer:
        """A uniform grid (``shape``, ``lower``, ``upper``) or one with per-axis
        boundaries (``edges``; ``shape`` optional, checked)."""
        if edges is not None:
            edges = check_edges(edges)
            derived = tuple(len(e) - 1 for e in edges)
            if shape is not None and tuple(int(s) for s in shape) != derived:
                raise ValueError(f"grid shape {tuple(shape)} does not match the edges, which give {derived}")
            shape = derived
            lower, upper = [e[0] for e in edges], [e[-1] for e in edges]
        if shape is None or lower is None or upper is None:
            raise ValueError("a grid needs shape, lower and upper (or edges)")
        shape = tuple(int(s) for s in shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"grid shape must be positive integers; got {shape}")
        lo, hi = as_bounds(lower, upper, len(shape))
        return cls(lower=lo, upper=hi, shape=shape, edges=edges)

    kind = "grid"
    learned = False

    @property
    def num_cells(self) -> int:
        return math.prod(self.shape)

    @property
    def dim(self) -> int:
        return len(self.shape)

    def grid_indices(self, descriptors: jax.Array) -> jax.Array:
        """``(B, M)`` int32 per-axis cell coordinates (clipped into the grid)."""
        if self.edges is not None:
            inner = [jnp.asarray(e[1:-1], jnp.float32) for e in self.edges]
            coords = [jnp.searchsorted(b, descriptors[:, k], side="right") for k, b in enumerate(inner)]
            return jnp.stack(coords, axis=1).astype(jnp.int32)
        n = jnp.asarray(self.shape, jnp.float32)
        scaled = (descriptors - self.lower[None, :]) / (self.upper - self.lower)[None, :] * n[None, :]
        coords = jnp.floor(scaled).astype(jnp.int32)
        return jnp.clip(coords, 0, (jnp.asarray(self.shape, jnp.int32) - 1)[None, :])

    def index_of(self, descriptors: jax.Array) -> jax.Array:
        coords = self.grid_indices(descriptors)
        strides = np.cumprod((1, *self.shape[:0:-1]))[::-1].astype(np.int32)
        return jnp.sum(coords * jnp.asarray(strides)[None, :], axis=1, dtype=jnp.int32)

    def cell_edges(self) -> list[np.ndarray]:
        """The cell boundaries of each axis (``shape[k] + 1`` values; host NumPy)."""
        if self.edges is not None:
            return [np.asarray(e, np.float32) for e in self.edges]
        lo, hi = np.asarray(self.lower), np.asarray(self.upper)
        return [lo[k] + np.arange(n + 1, dtype=np.float32) / n * (hi[k] - lo[k]) for k, n in enumerate(self.shape)]

    def cell_centers(self) -> jax.Array:
        if self.edges is not None:
            axes = [(e[1:] + e[:-1]) / 2 for e in self.cell_edges()]
            mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(self.shape))
            return jnp.asarray(mesh, jnp.float32)
        axes = [(np.arange(n, dtype=np.float32) + 0.5) / n for n in self.shape]
        mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(self.shape))
        return self.lower[None, :] + jnp.asarray(mesh) * (self.upper - self.lower)[None, :]


jax.tree_util.register_dataclass(GridIndexer, data_fields=["lower", "upper"], meta_fields=["shape", "edges"])


@dataclasses.dataclass(frozen=True)
class CVTIndexer:
    """The Voronoi cells of ``centroids`` ``(C, M)``: a descriptor belongs to its nearest
    centroid (Euclidean distance in descriptor units; ties to the lowest index), after
    clipping into ``[lower, upper]``. For ``M <= 3`` a precomputed bucket table
    (:mod:`qdkit.cvt`) makes a lookup cost ``K`` distances instead of ``C``."""

    lower: jax.Array
    upper: jax.Array
    centroids: jax.Array
    table: jax.Array | None = None
    table_grid: tuple[int, ...] | None = None

    @classmethod
    def create(
        cls,
        *,
        lower: Any,
        upper: Any,
        cells: int | None = None,
        centroids: Any = None,
        key: jax.Array | None = None,
        samples: int | None = None,
        iterations: int = 10,
        lookup: str = "auto",
    ) -> CVTIndexer:
        """Centroids as given, or by k-means (:func:`qdkit.cvt.kmeans_centroids`) of
        ``cells`` cells in the box; ``lookup``: ``"auto"`` (bucket table when
        ``M <= 3``), ``"table"`` or ``"brute"``."""
        if lookup not in ("auto", "table", "brute"):
            raise ValueError(f"lookup must be one of 'auto', 'table', 'brute'; got {lookup!r}")
        if centroids is not None:
            centroids = jnp.asarray(centroids, jnp.float32)
            if centroids.ndim != 2:
                raise ValueError(f"centroids must be (C, M); got shape {centroids.shape}")
            lo, hi = as_bounds(lower, upper, centroids.shape[1])
        else:
            if cells is None or int(cells) < 1:
                raise ValueError(f"cells must be a positive integer; got {cells}")
            if np.ndim(lower) == 0 and np.ndim(upper) == 0:
                raise ValueError("a CVT needs (M,) bounds to know the descriptor dimension, or centroids")
            lo, hi = as_bounds(lower, upper)
            key = jax.random.key(0) if key is None else key
            centroids = cvt.kmeans_centroids(key, int(cells), lo, hi, samples=samples, iterations=iterations)
        num_cells, dim = centroids.shape
        grid = cvt.table_shape_for(num_cells, dim)
        if lookup == "brute":
            grid = None
        elif lookup == "table" and grid is None:
            grid = cvt.bucket_grid(num_cells, dim, 1.0)
        table = None if grid is None else cvt.build_table(centroids, lo, hi, grid)
        return cls(lower=lo, upper=hi, centroids=centroids, table=table, table_grid=grid)

    kind = "cvt"
    learned = False

    @property
    def num_cells(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    def index_of(self, descriptors: jax.Array) -> jax.Array:
        points = jnp.clip(descriptors, self.lower[None, :], self.upper[None, :])
        if self.table is None:
            return cvt.nearest_brute(points, self.centroids)
        return cvt.nearest_table(points, self.centroids, self.lower, self.upper, self.table_grid, self.table)

    def cell_centers(self) -> jax.Array:
        return self.centroids


jax.tree_util.register_dataclass(
    CVTIndexer, data_fields=["lower", "upper", "centroids", "table"], meta_fields=["table_grid"]
)


@dataclasses.dataclass(frozen=True)
class LearnedIndexer:
    """Descriptors learned from features: ``describe(features) = projection.apply(params,
    features)``, binned by ``base`` (a grid or a CVT over the unit box) after mapping
    ``[lower, upper]`` onto the unit box.

    ``projection`` is static (any hashable value with ``apply(params, features)`` and a
    ``feature_dim``, such as :class:`feedback.Projection`); ``params``, ``lower`` and
    ``upper`` are data: :meth:`refit` returns a new indexer of the same shapes.
    """

    lower: jax.Array
    upper: jax.Array
    params: Any
    base: GridIndexer | CVTIndexer
    projection: Any = None

    @classmethod
    def create(
        cls, projection: Any, params: Any, base: GridIndexer | CVTIndexer, *, lower: Any = -1.0, upper: Any = 1.0
    ) -> LearnedIndexer:
        """``base`` must cover the unit box ``[0, 1]^M`` (``M`` the projection's latent
        size); ``lower``/``upper`` are the starting latent bounds."""
        if base.learned or base.dim != int(getattr(projection, "dims", base.dim)):
            raise ValueError(
                f"the base grid or CVT must have {getattr(projection, 'dims', '?')} dimensions (the latent size)"
            )
        if not (np.allclose(np.asarray(base.lower), 0.0) and np.allclose(np.asarray(base.upper), 1.0)):
            raise ValueError("the base grid or CVT of a learned indexer must cover the unit box [0, 1]^M")
        lo, hi = as_bounds(lower, upper, base.dim)
        return cls(lower=lo, upper=hi, params=params, base=base, projection=projection)

    learned = True

    @property
    def kind(self) -> str:
        return self.base.kind

    @property
    def num_cells(self) -> int:
        return self.base.num_cells

    @property
    def dim(self) -> int:
        return self.base.dim

    @property
    def feature_dim(self) -> int:
        return int(self.projection.feature_dim)

    def describe(self, features: jax.Array) -> jax.Array:
        """Latent descriptors ``(B, M)`` of features ``(B, F)`` under the current params."""
        return self.projection.apply(self.params, jnp.asarray(features, jnp.float32))

    def unit(self, descriptors: jax.Array) -> jax.Array:
        """Descriptors mapped from ``[lower, upper]`` to the unit box."""
        return (descriptors - self.lower[None, :]) / (self.upper - self.lower)[None, :]

    def index_of(self, descriptors: jax.Array) -> jax.Array:
        return self.base.index_of(self.unit(descriptors))

    def cell_centers(self) -> jax.Array:
        return self.lower[None, :] + self.base.cell_centers() * (self.upper - self.lower)[None, :]

    def refit(self, params: Any, lower: Any, upper: Any) -> LearnedIndexer:
        """The same indexer with new parameters and latent bounds (jittable)."""
        return dataclasses.replace(
            self, params=params, lower=jnp.asarray(lower, jnp.float32), upper=jnp.asarray(upper, jnp.float32)
        )


jax.tree_util.register_dataclass(
    LearnedIndexer, data_fields=["lower", "upper", "params", "base"], meta_fields=["projection"]
)

Indexer = GridIndexer | CVTIndexer | LearnedIndexer
