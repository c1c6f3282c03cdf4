"""Grid archives: an :class:`qdkit.Archive` over a :class:`qdkit.indexers.GridIndexer`."""

from __future__ import annotations

import math
from typing import Any

from qdkit.archive import Archive
from qdkit.indexers import GridIndexer, check_edges  # noqa: F401  (check_edges re-exported)


class GridArchive:
    """Constructor of MAP-Elites archives on a grid (a namespace: the value it builds is
    an :class:`qdkit.Archive` whose indexer is a :class:`qdkit.indexers.GridIndexer`).

    Cell ``(i_1, ..., i_M)`` covers ``lower + (i_k / n_k) * (upper - lower)`` to
    ``lower + ((i_k + 1) / n_k) * (upper - lower)`` along each axis (lower edge
    included). Flat indices are row-major (C order). A descriptor equal to ``upper``
    falls in the last cell; descriptors outside the bounds go to the nearest edge cell.
    With ``edges`` the cells are not uniform: axis ``k`` has the ``shape[k] + 1``
    increasing boundaries ``edges[k]``, e.g. cells finer near the ends of a rating scale,
    as QDAIF uses.
    """

    def __init__(self) -> None:  # pragma: no cover - a namespace
        raise TypeError("GridArchive is a constructor namespace: use GridArchive.create(...), which returns an Archive")

    @staticmethod
    def create(
        *,
        shape: tuple[int, ...] | list[int] | None = None,
        lower: Any = None,
        upper: Any = None,
        example_genotype: Any,
        edges: Any = None,
        learning_rate: float = 1.0,
        threshold_min: float = -math.inf,
        replacement: str = "threshold",
    ) -> Archive:
        """An empty grid archive.

        Args:
            shape: cells per descriptor dimension, e.g. ``(32, 32)``.
            lower, upper: descriptor bounds, scalars or ``(M,)``.
            edges: instead of ``shape``, ``lower`` and ``upper``: one increasing
                sequence of cell boundaries per descriptor dimension (non-uniform cells).
            example_genotype: one genotype (no batch axis), any pytree of arrays.
            learning_rate, threshold_min, replacement: make it a threshold (CMA-MAE)
                archive, see :mod:`qdkit.archive`; the defaults give the usual
                MAP-Elites archive.
        """
        indexer = GridIndexer.create(shape=shape, lower=lower, upper=upper, edges=edges)
        return Archive.create(
            indexer, example_genotype, learning_rate=learning_rate, threshold_min=threshold_min, replacement=replacement
        )
