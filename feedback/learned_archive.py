"""Archives over learned descriptors (QDHF, AURORA).

:class:`LearnedArchive` builds an ordinary :class:`qdkit.Archive` whose indexer is a
:class:`qdkit.indexers.LearnedIndexer`: a :class:`feedback.Projection` of task
*features* (``task.features``) to latent descriptors, binned by a grid or a CVT over
the latent bounds. The projection's parameters and the bounds are data, so a refit
(:func:`redescribe`) changes neither shapes nor the compiled loop: every elite is
re-described from its stored features and re-inserted into a fresh archive.

The MAP-Elites loop describes each batch itself (:func:`qdkit.map_elites.describe`):
it asks the task for the features, projects them with the archive's current
parameters, and inserts with ``add(genotypes, fitness, descriptors, features)``.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp

from feedback.learned import Projection, latent_bounds
from qdkit.archive import Archive
from qdkit.indexers import CVTIndexer, GridIndexer, LearnedIndexer


class LearnedArchive:
    """Constructor of archives over learned descriptors (a namespace: the value it
    builds is an :class:`qdkit.Archive` with a learned indexer)."""

    def __init__(self) -> None:  # pragma: no cover - a namespace
        raise TypeError("LearnedArchive is a constructor namespace: use LearnedArchive.create(...)")

    @staticmethod
    def create(
        *,
        projection: Projection,
        params: Any,
        example_genotype: Any,
        shape: tuple[int, ...] | list[int] | None = None,
        cells: int | None = None,
        centroids: Any = None,
        lower: Any = -1.0,
        upper: Any = 1.0,
        key: jax.Array | None = None,
        samples: int | None = None,
        learning_rate: float = 1.0,
        threshold_min: float = -math.inf,
        replacement: str = "threshold",
    ) -> Archive:
        """An empty archive over the latent descriptors of ``projection``: a grid of
        ``shape`` cells, or a CVT of ``cells`` cells (k-means over the unit box with
        ``key`` and ``samples``, or the given unit-box ``centroids``), spanning the
        latent bounds ``lower``/``upper`` (moved by :func:`redescribe` once there are
        elites). ``learning_rate``, ``threshold_min`` and ``replacement`` make it a
        threshold (CMA-MAE) archive."""
        dims = projection.dims
        if (shape is None) == (cells is None and centroids is None):
            raise ValueError("a learned archive needs a grid shape or a CVT (cells or centroids), one of them")
        if shape is not None:
            shape = tuple(int(s) for s in shape)
            if len(shape) != dims or any(s < 1 for s in shape):
                raise ValueError(f"grid shape {shape} must have {dims} positive entries (the latent size)")
            base = GridIndexer.create(shape=shape, lower=0.0, upper=1.0)
        else:
            base = CVTIndexer.create(
                lower=[0.0] * dims, upper=[1.0] * dims, cells=cells, centroids=centroids, key=key, samples=samples
            )
        indexer = LearnedIndexer.create(projection, params, base, lower=lower, upper=upper)
        return Archive.create(
            indexer, example_genotype, learning_rate=learning_rate, threshold_min=threshold_min, replacement=replacement
        )


def redescribe(archive: Archive, params: Any, *, lower: Any = None, upper: Any = None, pad: float = 0.05) -> Archive:
    """A fresh archive under new projection ``params`` holding every current elite,
    re-described from its features and re-inserted (the best per new cell survives).
    Bounds default to the elites' new latent range, padded by ``pad`` of its width
    (``lower``/``upper`` to fix them). Jittable."""
    if not archive.learned:
        raise ValueError("redescribe needs an archive over learned descriptors")
    if lower is None or upper is None:
        # the range over elites only: empty cells repeat an elite's features
        first = archive.order[0]
        feats = jnp.where(archive.occupied[:, None], archive.features, archive.features[first][None, :])
        lower, upper = latent_bounds(archive.indexer.projection, params, feats, pad)
    return archive.reindex(archive.indexer.refit(params, lower, upper))
