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
    """

    shape: tuple[int, ...] = ()

    @classmethod
    def create(
        cls,
        *,
        shape: tuple[int, ...] | list[int],
        lower: Any,
        upper: Any,
        example_genotype: Any,
        learning_rate: float = 1.0,
        threshold_min: float = -math.inf,
    ) -> GridArchive:
        """An empty grid archive.

        Args:
            shape: cells per descriptor dimension, e.g. ``(32, 32)``.
            lower, upper: descriptor bounds, scalars or ``(M,)``.
            example_genotype: one genotype (no batch axis), any pytree of arrays.
            learning_rate, threshold_min: CMA-MAE archive learning rate (alpha) and
                initial threshold; the defaults give the usual MAP-Elites archive (see
                :mod:`qdkit.archive`).
        """
        shape = tuple(int(s) for s in shape)
        if not shape or any(s < 1 for s in shape):
            raise ValueError(f"grid shape must be positive integers; got {shape}")
        lo, hi = as_bounds(lower, upper, len(shape))
        storage = empty_storage(math.prod(shape), len(shape), example_genotype)
        soft = threshold_fields(math.prod(shape), learning_rate, threshold_min)
        return cls(**storage, **soft, lower=lo, upper=hi, shape=shape)

    def grid_indices(self, descriptors: jax.Array) -> jax.Array:
        """``(B, M)`` int32 per-axis cell coordinates (clipped into the grid)."""
        n = jnp.asarray(self.shape, jnp.float32)
        scaled = (descriptors - self.lower[None, :]) / (self.upper - self.lower)[None, :] * n[None, :]
        coords = jnp.floor(scaled).astype(jnp.int32)
        return jnp.clip(coords, 0, (jnp.asarray(self.shape, jnp.int32) - 1)[None, :])

    def index_of(self, descriptors: jax.Array) -> jax.Array:
        coords = self.grid_indices(descriptors)
        strides = np.cumprod((1, *self.shape[:0:-1]))[::-1].astype(np.int32)
        return jnp.sum(coords * jnp.asarray(strides)[None, :], axis=1, dtype=jnp.int32)

    def cell_centers(self) -> jax.Array:
        axes = [(np.arange(n, dtype=np.float32) + 0.5) / n for n in self.shape]
        mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(self.shape))
        return self.lower[None, :] + jnp.asarray(mesh) * (self.upper - self.lower)[None, :]


jax.tree_util.register_dataclass(
    GridArchive,
    data_fields=["genotypes", "fitness", "descriptors", "lower", "upper", "order", "threshold"],
    meta_fields=["learning_rate", "threshold_min", "shape"],
)
