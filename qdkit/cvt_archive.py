"""An archive whose cells are the Voronoi cells of a set of centroids."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qdkit import cvt
from qdkit.archive import Archive, as_bounds, empty_storage, threshold_fields


@dataclasses.dataclass(frozen=True)
class CVTArchive(Archive):
    """MAP-Elites archive over a centroidal Voronoi tessellation (CVT-MAP-Elites).

    A descriptor belongs to the cell of its nearest centroid (Euclidean distance in
    descriptor units; ties to the lowest index). Descriptors outside ``[lower, upper]``
    are clipped into the box before the lookup, so they land in the nearest edge cell.

    For ``M <= 3`` descriptor dimensions a precomputed bucket table (see
    :mod:`qdkit.cvt`) makes a lookup cost ``K`` distances instead of ``C``.
    """

    centroids: jax.Array | None = None
    table: jax.Array | None = None
    table_grid: tuple[int, ...] | None = None

    @classmethod
    def create(
        cls,
        *,
        cells: int | None = None,
        lower: Any,
        upper: Any,
        example_genotype: Any,
        centroids: Any = None,
        key: jax.Array | None = None,
        samples: int | None = None,
        iterations: int = 10,
        lookup: str = "auto",
        learning_rate: float = 1.0,
        threshold_min: float = -math.inf,
    ) -> CVTArchive:
        """An empty CVT archive.

        Args:
            cells: number of cells ``C`` (ignored when ``centroids`` is given).
            lower, upper: descriptor bounds, ``(M,)``.
            example_genotype: one genotype (no batch axis), any pytree of arrays.
            centroids: ``(C, M)`` centroids to use as they are (e.g. from a previous
                run or another library); otherwise computed by k-means.
            key: PRNG key for k-means (default ``jax.random.key(0)``).
            samples, iterations: k-means settings, see :func:`qdkit.cvt.kmeans_centroids`.
            lookup: ``"auto"`` (bucket table when ``M <= 3``), ``"table"`` or ``"brute"``.
            learning_rate, threshold_min: CMA-MAE archive learning rate (alpha) and
                initial threshold; the defaults give the usual archive (see
                :mod:`qdkit.archive`).
        """
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
                raise ValueError("CVTArchive.create needs (M,) bounds to know the descriptor dimension, or centroids")
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
        return cls(
            **empty_storage(num_cells, dim, example_genotype),
            **threshold_fields(num_cells, learning_rate, threshold_min),
            lower=lo,
            upper=hi,
            centroids=centroids,
            table=table,
            table_grid=grid,
        )

    def index_of(self, descriptors: jax.Array) -> jax.Array:
        points = jnp.clip(descriptors, self.lower[None, :], self.upper[None, :])
        if self.table is None:
            return cvt.nearest_brute(points, self.centroids)
        return cvt.nearest_table(points, self.centroids, self.lower, self.upper, self.table_grid, self.table)

    def cell_centers(self) -> jax.Array:
        return self.centroids


jax.tree_util.register_dataclass(
    CVTArchive,
    data_fields=["genotypes", "fitness", "descriptors", "lower", "upper", "order", "threshold", "centroids", "table"],
    meta_fields=["learning_rate", "threshold_min", "table_grid"],
)
