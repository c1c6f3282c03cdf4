"""A grid archive over learned descriptors.

:class:`LearnedArchive` receives *features* where other archives receive descriptors:
``add(genotypes, fitness, features)`` projects them with its own parameters
(``projection.apply(params, features)``) and bins the latent descriptors on its grid.
The parameters and the latent bounds are data fields, so a refit
(:meth:`LearnedArchive.redescribe`) changes neither shapes nor the compiled loop: every
elite is re-described from its stored features and re-inserted into a fresh grid.

A task used with it returns features as its ``descriptors`` (see
:func:`features_task`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from feedback.learned import Projection, latent_bounds
from qdkit.archive import NOT_ADDED, AddInfo, as_bounds, empty_storage, threshold_fields
from qdkit.grid_archive import GridArchive
from qdkit.tasks import Evaluation, Task


@dataclasses.dataclass(frozen=True)
class LearnedArchive(GridArchive):
    """Grid archive whose descriptors are a learned projection of task features.

    Extra fields: ``params`` (the projection's parameters), ``features`` ``(C, F)``
    (each elite's features, for re-describing it) and the static ``projection``.
    """

    params: Any = None
    features: jax.Array | None = None
    projection: Projection | None = None

    @classmethod
    def create(  # type: ignore[override]
        cls,
        *,
        shape: tuple[int, ...] | list[int],
        projection: Projection,
        params: Any,
        example_genotype: Any,
        lower: Any = -1.0,
        upper: Any = 1.0,
    ) -> LearnedArchive:
        """An empty archive of ``shape`` cells over latent bounds ``lower``/``upper``
        (refined by :meth:`redescribe` once there are elites)."""
        shape = tuple(int(s) for s in shape)
        if len(shape) != projection.dims or any(s < 1 for s in shape):
            raise ValueError(f"grid shape {shape} must have {projection.dims} positive entries (the latent size)")
        lo, hi = as_bounds(lower, upper, projection.dims)
        cells = math.prod(shape)
        return cls(
            **empty_storage(cells, projection.dims, example_genotype),
            **threshold_fields(cells, 1.0, -math.inf),
            lower=lo,
            upper=hi,
            shape=shape,
            params=params,
            features=jnp.zeros((cells, projection.feature_dim), jnp.float32),
            projection=projection,
        )

    def describe(self, features: jax.Array) -> jax.Array:
        """Latent descriptors ``(B, M)`` of features ``(B, F)`` under the current params."""
        return self.projection.apply(self.params, features)

    def add(self, genotypes: Any, fitness: jax.Array, features: jax.Array) -> tuple[LearnedArchive, AddInfo]:
        """Project ``features`` (``(B, F)``) and insert as :meth:`qdkit.Archive.add`."""
        features = jnp.asarray(features, jnp.float32)
        new, info = GridArchive.add(self, genotypes, fitness, self.describe(features))
        target = jnp.where(info.status != NOT_ADDED, info.index, self.num_cells)
        return new.replace(features=new.features.at[target].set(features, mode="drop")), info

    def redescribe(self, params: Any, *, lower: Any = None, upper: Any = None, pad: float = 0.05) -> LearnedArchive:
        """A fresh archive under new ``params`` holding every current elite, re-described
        from its features and re-inserted (the best per new cell survives). Bounds
        default to the elites' new latent range, padded by ``pad`` (``lower``/``upper``
        to fix them). Jittable when the bounds are given or computed."""
        occupied = self.occupied
        if lower is None or upper is None:
            # the range over elites only: empty cells repeat an elite's features
            first = self.order[0]
            feats = jnp.where(occupied[:, None], self.features, self.features[first][None, :])
            lower, upper = latent_bounds(self.projection, params, feats, pad)
        empty = self.replace(
            **empty_storage(self.num_cells, self.descriptor_dim, jax.tree.map(lambda g: g[0], self.genotypes)),
            lower=jnp.asarray(lower, jnp.float32),
            upper=jnp.asarray(upper, jnp.float32),
            params=params,
            features=jnp.zeros_like(self.features),
        )
        fitness = jnp.where(occupied, self.fitness, jnp.nan)  # empty cells are rejected rows
        return empty.add(self.genotypes, fitness, self.features)[0]

    def elite_features(self) -> np.ndarray:
        """``(N, F)`` features of the occupied cells (host NumPy, cell order)."""
        return np.asarray(self.features)[np.asarray(self.occupied)]


jax.tree_util.register_dataclass(
    LearnedArchive,
    data_fields=["genotypes", "fitness", "descriptors", "lower", "upper", "order", "threshold", "params", "features"],
    meta_fields=["learning_rate", "threshold_min", "shape", "edges", "projection"],
)


def features_task(task: Task, extra: str, *, lower: float = -1.0, upper: float = 1.0) -> Task:
    """``task`` with ``extras[extra]`` (flattened per row) as its descriptors: the
    features a :class:`LearnedArchive` projects. ``lower``/``upper`` bound the features
    (used for labels only)."""
    example = task.score(jax.random.key(0), jax.tree.map(lambda x: jnp.asarray(x)[None], task.example_genotype))
    if extra not in example.extras:
        raise KeyError(f"task {task.name!r} has no extra {extra!r}; its extras: {', '.join(example.extras) or 'none'}")
    dim = int(np.prod(example.extras[extra].shape[1:]))
    base_score = task.score

    def score(key, genotypes):
        evaluation = base_score(key, genotypes)
        feats = evaluation.extras[extra].reshape(evaluation.fitness.shape[0], dim)
        return Evaluation(evaluation.fitness, feats.astype(jnp.float32), evaluation.extras)

    return dataclasses.replace(
        task,
        name=f"{task.name}:{extra}",
        score=score,
        lower=np.full(dim, lower, np.float32),
        upper=np.full(dim, upper, np.float32),
        descriptor_names=tuple(f"{extra}[{i}]" for i in range(dim)),
    )
