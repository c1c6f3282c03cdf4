"""A regular grid over the descriptor box."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qdkit.archive import Archive, as_bounds, empty_storage, threshold_fields


@dataclasses.dataclass(frozen=True)
class GridArchive(Archive):
    """MAP-Elites archive on a regular grid of ``shape`` cells.

    Cell ``(i_1, ..., i_M)`` covers ``lower + (i_k / n_k) * (upper - lower)`` to
    ``lower + ((i_k + 1) / n_k) * (upper - lower)`` along each axis (lower edge
    included). Flat indices are row-major (C order). A descriptor equal to ``upper``
    falls in the last cell; descriptors outside the bounds go to the nearest edge cell.

    With ``edges`` the cells are not uniform: axis ``k`` has the ``shape[k] + 1``
    increasing boundaries ``edges[k]`` (first = ``lower[k]``, last = ``upper[k]``),
    e.g. cells finer near the ends of a rating scale, as QDAIF uses.
    """

    shape: tuple[int, ...] = ()
    edges: tuple[tuple[float, ...], ...] | None = None

    @classmethod
    def create(
        cls,
        *,
        shape: tuple[int, ...] | list[int] | None = None,
        lower: Any = None,
        upper: Any = None,
        example_genotype: Any,
        edges: Any = None,
        learning_rate: float = 1.0,
        threshold_min: float = -math.inf,
    ) -> GridArchive:
        """An empty grid archive.

        Args:
            shape: cells per descriptor dimension, e.g. ``(32, 32)``.
            lower, upper: descriptor bounds, scalars or ``(M,)``.
            edges: instead of ``shape``, ``lower`` and ``upper``: one increasing
                sequence of cell boundaries per descriptor dimension (non-uniform cells).
            example_genotype: one genotype (no batch axis), any pytree of arrays.
            learning_rate, threshold_min: CMA-MAE archive learning rate (alpha) and
                initial threshold; the defaults give the usual MAP-Elites archive (see
                :mod:`qdkit.archive`).
        """
        if edges is not None:
            edges = check_edges(edges)
            derived = tuple(len(e) - 1 for e in edges)
            if shape is not None and tuple(int(s) for s in shape) != derived:
                raise ValueError(f"grid shape {tuple(shape)} does not match the edges, which give {derived}")
            shape = derived
            lower, upper = [e[0] for e in edges], [e[-1] for e in edges]
        if shape is None or lower is None or upper is None:
            raise ValueError("a grid archive needs shape, lower and upper (or edges)")
        shape = tuple(int(s) for s in shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"grid shape must be positive integers; got {shape}")
        lo, hi = as_bounds(lower, upper, len(shape))
        storage = empty_storage(math.prod(shape), len(shape), example_genotype)
        soft = threshold_fields(math.prod(shape), learning_rate, threshold_min)
        return cls(**storage, **soft, lower=lo, upper=hi, shape=shape, edges=edges)

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
        """The cell boundaries of each axis (``shape[k] + 1`` values)."""
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


jax.tree_util.register_dataclass(
    GridArchive,
    data_fields=["genotypes", "fitness", "descriptors", "lower", "upper", "order", "threshold"],
    meta_fields=["learning_rate", "threshold_min", "shape", "edges"],
)


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
