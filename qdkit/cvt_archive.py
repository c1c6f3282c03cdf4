"""CVT archives: an :class:`qdkit.Archive` over a :class:`qdkit.indexers.CVTIndexer`."""

from __future__ import annotations

import math
from typing import Any

import jax

from qdkit.archive import Archive
from qdkit.indexers import CVTIndexer


class CVTArchive:
    """Constructor of MAP-Elites archives over a centroidal Voronoi tessellation
    (CVT-MAP-Elites; a namespace: the value it builds is an :class:`qdkit.Archive` whose
    indexer is a :class:`qdkit.indexers.CVTIndexer`).

    A descriptor belongs to the cell of its nearest centroid (Euclidean distance in
    descriptor units; ties to the lowest index). Descriptors outside ``[lower, upper]``
    are clipped into the box before the lookup, so they land in the nearest edge cell.
    For ``M <= 3`` descriptor dimensions a precomputed bucket table (see
    :mod:`qdkit.cvt`) makes a lookup cost ``K`` distances instead of ``C``.
    """

    def __init__(self) -> None:  # pragma: no cover - a namespace
        raise TypeError("CVTArchive is a constructor namespace: use CVTArchive.create(...), which returns an Archive")

    @staticmethod
    def create(
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
        replacement: str = "threshold",
    ) -> Archive:
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
            learning_rate, threshold_min, replacement: make it a threshold (CMA-MAE)
                archive, see :mod:`qdkit.archive`; the defaults give the usual archive.
        """
        indexer = CVTIndexer.create(
            lower=lower, upper=upper, cells=cells, centroids=centroids, key=key, samples=samples,
            iterations=iterations, lookup=lookup,
        )  # fmt: skip
        return Archive.create(
            indexer, example_genotype, learning_rate=learning_rate, threshold_min=threshold_min, replacement=replacement
        )
