"""The archive storage shared by every archive type, and vectorised insertion.

An archive is a frozen pytree dataclass holding one elite per cell:

- ``genotypes``: any pytree whose leaves have a leading ``(C, ...)`` cell axis,
- ``fitness``: ``(C,)`` float32, ``-inf`` where the cell is empty,
- ``descriptors``: ``(C, M)`` float32, the elite's own (unclipped) descriptor,
- ``lower`` / ``upper``: ``(M,)`` descriptor bounds,
- ``order``: ``(C,)`` int32, the occupied cells' indices in its first ``len(archive)``
  entries (in order of first occupation; the rest is unused). It makes uniform parent
  sampling cost ``O(n)`` per draw of ``n`` instead of a prefix sum over all ``C`` cells
  every iteration. :meth:`Archive.add` keeps it up to date; code that sets the storage
  directly goes through :meth:`Archive.with_elites`, which rebuilds it.
- ``threshold``: ``(C,)`` float32 acceptance thresholds of a *soft* archive (CMA-MAE,
  Fontaine & Nikolaidis 2023), or ``None`` for the usual archive. With an archive
  learning rate ``learning_rate`` (alpha) and a floor ``threshold_min``, a candidate is
  accepted when its fitness beats its cell's threshold, and the threshold then moves
  towards the accepted fitness: ``t <- (1 - alpha) t + alpha f``. For ``k`` accepted
  candidates of one cell in one batch, with mean fitness ``f_bar``, the batch rule is
  ``t <- (1 - alpha)^k t + (1 - (1 - alpha)^k) f_bar`` (for ``alpha = 1``, the best
  accepted fitness, so that the threshold stays the elite's fitness as in MAP-Elites).
  ``alpha = 1`` with ``threshold_min = -inf`` is the usual archive, stored as
  ``threshold=None`` so it costs nothing.

Concrete archives (:class:`qdkit.GridArchive`, :class:`qdkit.CVTArchive`) differ only
in :meth:`Archive.index_of`, the map from a descriptor to a cell. Everything else —
insertion, sampling, statistics — lives here and is written once.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from qdkit import rng

# Status codes returned per row by ``Archive.add`` (same convention as pyribs).
NOT_ADDED = 0
IMPROVED = 1
NEW = 2


class AddInfo(NamedTuple):
    """What happened to each row of a batch passed to :meth:`Archive.add`.

    Attributes:
        status: ``(B,)`` int32, what the row did to the stored elites: 0 not stored, 1
            replaced the elite of an occupied cell, 2 filled an empty cell. At most one
            row per cell is stored (the batch's best; first row on ties).
        value: ``(B,)`` float32. The improvement over the cell *before* this batch:
            ``fitness - old_fitness`` for an occupied cell (may be negative, or positive
            for a row that lost to a better row of the same batch), ``fitness`` itself
            for an empty cell, and ``0`` for rejected (non-finite) rows. In a threshold
            archive, ``fitness - threshold`` (the threshold is ``threshold_min`` in an
            empty cell).
        index: ``(B,)`` int32. The cell of each row (``C`` for non-finite rows).
        rank_status: ``(B,)`` int32, the status each row would have had alone against
            the archive before the batch: 2 if its cell was empty (and, in a threshold
            archive, it beats ``threshold_min``), 1 if it beats the cell's elite (its
            threshold, in a threshold archive), else 0. Several rows of one cell can be
            accepted this way (pyribs' convention); the CMA emitters rank with it.
    """

    status: jax.Array
    value: jax.Array
    index: jax.Array
    rank_status: jax.Array


def _leading(tree: Any) -> int:
    return jax.tree.leaves(tree)[0].shape[0]


@dataclasses.dataclass(frozen=True)
class Archive:
    """Abstract base of all archives: storage plus insertion and statistics.

    Do not instantiate directly; use ``GridArchive.create`` or ``CVTArchive.create``.
    """

    genotypes: Any
    fitness: jax.Array
    descriptors: jax.Array
    lower: jax.Array
    upper: jax.Array
    order: jax.Array
    threshold: jax.Array | None = None
    learning_rate: float = 1.0
    threshold_min: float = -math.inf

    # ----------------------------------------------------------------- mapping
    def index_of(self, descriptors: jax.Array) -> jax.Array:
        """Cell index of each descriptor. ``descriptors: (B, M)`` -> ``(B,)`` int32.

        Descriptors outside ``[lower, upper]`` are clipped into the bounds first, so
        they land in the nearest edge cell. Implemented by each archive type.
        """
        raise NotImplementedError

    def cell_centers(self) -> jax.Array:
        """``(C, M)`` representative point of each cell (grid centre or centroid)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shapes
    @property
    def num_cells(self) -> int:
        return self.fitness.shape[0]

    @property
    def descriptor_dim(self) -> int:
        return self.descriptors.shape[1]

    @property
    def occupied(self) -> jax.Array:
        """``(C,)`` bool: which cells hold an elite."""
        return jnp.isfinite(self.fitness)

    def replace(self, **changes: Any) -> Archive:
        return dataclasses.replace(self, **changes)

    @property
    def soft(self) -> bool:
        """Whether this is a threshold (CMA-MAE) archive."""
        return self.threshold is not None

    def with_elites(self, genotypes: Any, fitness: jax.Array, descriptors: jax.Array) -> Archive:
        """The same archive holding the given per-cell storage (``-inf`` fitness marks
        an empty cell); rebuilds the occupied-cell list. Jittable."""
        fitness = jnp.asarray(fitness, jnp.float32)
        occupied = jnp.isfinite(fitness)
        order = jnp.nonzero(occupied, size=self.num_cells, fill_value=0)[0].astype(jnp.int32)
        return self.replace(
            genotypes=genotypes,
            fitness=jnp.where(occupied, fitness, -jnp.inf),
            descriptors=jnp.asarray(descriptors, jnp.float32),
            order=order,
        )

    # --------------------------------------------------------------- insertion
    def add(self, genotypes: Any, fitness: jax.Array, descriptors: jax.Array) -> tuple[Archive, AddInfo]:
        """Insert a batch of candidates; pure and jittable.

        A candidate enters its cell when its fitness is strictly greater than the
        cell's elite (any finite fitness enters an empty cell). Inside one batch, the
        best candidate per cell competes; among equal fitness the *first row in the
        batch* wins. Rows whose fitness or any descriptor is NaN or infinite are never
        added (status 0). Descriptors outside the bounds are assigned to the nearest
        edge cell and stored as given.

        In a threshold archive (``learning_rate < 1`` or a finite ``threshold_min``),
        a candidate is *accepted* when its fitness beats the cell's threshold; accepted
        candidates move the threshold (batch rule in the module docstring), and the
        stored elite is the best candidate ever accepted in the cell, so the archive
        also serves as CMA-MAE's result archive.

        Args:
            genotypes: pytree with leading batch axis ``(B, ...)``, matching the
                archive's genotype structure.
            fitness: ``(B,)`` float.
            descriptors: ``(B, M)`` float.

        Returns:
            ``(archive, info)``: the new archive and an :class:`AddInfo`.
        """
        num_cells = self.num_cells
        fitness = jnp.asarray(fitness, self.fitness.dtype)
        descriptors = jnp.asarray(descriptors, self.descriptors.dtype)
        if fitness.ndim != 1 or descriptors.shape != (fitness.shape[0], self.descriptor_dim):
            raise ValueError(
                f"expected fitness (B,) and descriptors (B, {self.descriptor_dim}); "
                f"got {fitness.shape} and {descriptors.shape}"
            )
        batch = fitness.shape[0]
        valid = jnp.isfinite(fitness) & jnp.all(jnp.isfinite(descriptors), axis=1)
        safe_desc = jnp.where(valid[:, None], descriptors, self.lower[None, :])
        index = self.index_of(safe_desc)
        cell = jnp.where(valid, index, num_cells)  # out of range: dropped below
        fit = jnp.where(valid, fitness, -jnp.inf)
        old = self.fitness[index]
        was_empty = ~jnp.isfinite(old)

        if self.threshold is None:
            accepted = valid & (was_empty | (fit > old))
            value = jnp.where(valid, jnp.where(was_empty, fit, fit - old), 0.0)
            ranked, ranked_cell = fit, cell  # every valid row competes for its cell
            threshold = None
        else:
            t_old = self.threshold[index]
            accepted = valid & (fit > t_old)
            value = jnp.where(valid, fit - t_old, 0.0)
            ranked = jnp.where(accepted, fit, -jnp.inf)  # only accepted rows compete
            ranked_cell = jnp.where(accepted, index, num_cells)
            # batch threshold rule over the accepted rows of each cell
            if self.learning_rate == 1.0:  # the limit of the rule: the best accepted fitness
                t_new = jax.ops.segment_max(ranked, ranked_cell, num_segments=num_cells)[index]
            else:
                count = jax.ops.segment_sum(accepted.astype(jnp.float32), ranked_cell, num_segments=num_cells)[index]
                total = jax.ops.segment_sum(jnp.where(accepted, fit, 0.0), ranked_cell, num_segments=num_cells)[index]
                keep = (1.0 - self.learning_rate) ** count
                t_new = keep * t_old + (1.0 - keep) * total / jnp.maximum(count, 1.0)
            threshold = self.threshold.at[ranked_cell].set(t_new, mode="drop")
        rank_status = jnp.where(accepted, jnp.where(was_empty, NEW, IMPROVED), NOT_ADDED)

        # Best competing fitness per cell within the batch, then the first row reaching it.
        best = jax.ops.segment_max(ranked, ranked_cell, num_segments=num_cells)
        rows = jnp.arange(batch, dtype=jnp.int32)
        is_best = (ranked_cell < num_cells) & (ranked == best[index])
        first = jax.ops.segment_min(jnp.where(is_best, rows, batch), ranked_cell, num_segments=num_cells)
        winner = is_best & (first[index] == rows)

        added = winner & (fit > old)
        status = jnp.where(added, jnp.where(was_empty, NEW, IMPROVED), NOT_ADDED)

        target = jnp.where(added, index, num_cells)
        # append newly filled cells to the occupied-cell list (one winner per cell)
        is_new = status == NEW
        slot = self.size() + lax.associative_scan(jnp.add, is_new.astype(jnp.int32)) - 1
        new = self.replace(
            order=self.order.at[jnp.where(is_new, slot, num_cells)].set(index, mode="drop"),
            genotypes=jax.tree.map(
                lambda store, g: store.at[target].set(g.astype(store.dtype), mode="drop"),
                self.genotypes,
                genotypes,
            ),
            fitness=self.fitness.at[target].set(fit, mode="drop"),
            descriptors=self.descriptors.at[target].set(descriptors, mode="drop"),
            threshold=threshold,
        )
        info = AddInfo(
            status=status.astype(jnp.int32),
            value=value.astype(self.fitness.dtype),
            index=cell.astype(jnp.int32),
            rank_status=rank_status.astype(jnp.int32),
        )
        return new, info

    # ----------------------------------------------------------------- queries
    def sample(self, key: jax.Array, n: int) -> Any:
        """Draw ``n`` elites uniformly (with replacement) among occupied cells.

        Jittable. On an empty archive the rows come from cell 0 (its zero genotype);
        the MAP-Elites loop always fills the archive before sampling.

        Returns:
            genotypes pytree with leading axis ``(n, ...)``.
        """
        return jax.tree.map(lambda g: g[self.sample_indices(key, n)], self.genotypes)

    def sample_indices(self, key: jax.Array, n: int) -> jax.Array:
        """``(n,)`` int32 cell indices drawn uniformly among occupied cells.

        Positions in the occupied-cell list come from 23-bit uniforms
        (:func:`qdkit.rng.uniform`), exact for archives of up to ``2**23`` elites.
        """
        count = self.size()
        u = jnp.floor(rng.uniform(key, (n,)) * count.astype(jnp.float32)).astype(jnp.int32)
        return self.order[jnp.clip(u, 0, jnp.maximum(count - 1, 0))]

    def size(self) -> jax.Array:
        """Number of occupied cells, as a jittable scalar."""
        return jnp.sum(self.occupied, dtype=jnp.int32)

    def __len__(self) -> int:
        return int(self.size())

    def coverage(self) -> jax.Array:
        """Fraction of cells occupied, in ``[0, 1]``."""
        return self.size() / self.num_cells

    def qd_score(self, offset: float = 0.0) -> jax.Array:
        """Sum over occupied cells of ``max(fitness - offset, 0)``.

        ``offset`` should be a lower bound on the task's fitness (each task states its
        ``qd_offset``) so that every elite contributes positively; the clip at zero
        keeps the score non-negative even when it is not.
        """
        contrib = jnp.where(self.occupied, jnp.maximum(self.fitness - offset, 0.0), 0.0)
        return jnp.sum(contrib)

    def best(self) -> tuple[Any, jax.Array, jax.Array]:
        """The elite with the highest fitness: ``(genotype, fitness, descriptor)``.

        The genotype has no batch axis. On an empty archive, fitness is ``-inf``.
        """
        i = jnp.argmax(self.fitness)
        genotype = jax.tree.map(lambda g: g[i], self.genotypes)
        return genotype, self.fitness[i], self.descriptors[i]

    def elites(self) -> dict[str, np.ndarray]:
        """Occupied cells as host NumPy arrays (not jittable).

        Returns:
            ``{"index": (N,), "fitness": (N,), "descriptors": (N, M), "centers": (N, M),
            "genotypes": (N, D)}`` where genotype leaves are flattened and concatenated
            (``D`` = total genotype size).
        """
        occupied = np.asarray(self.occupied)
        index = np.nonzero(occupied)[0]
        leaves = [np.asarray(g)[index].reshape(len(index), -1) for g in jax.tree.leaves(self.genotypes)]
        flat = np.concatenate(leaves, axis=1) if leaves else np.zeros((len(index), 0))
        return {
            "index": index.astype(np.int64),
            "fitness": np.asarray(self.fitness)[index],
            "descriptors": np.asarray(self.descriptors)[index],
            "centers": np.asarray(self.cell_centers())[index],
            "genotypes": flat,
        }


def empty_storage(num_cells: int, descriptor_dim: int, example_genotype: Any) -> dict[str, Any]:
    """Storage fields of an empty archive: zero genotypes ``(C, ...)``, ``-inf``
    fitness ``(C,)``, zero descriptors ``(C, M)`` and an empty occupied-cell list."""
    return {
        "genotypes": jax.tree.map(
            lambda x: jnp.zeros((num_cells, *jnp.shape(x)), jnp.asarray(x).dtype), example_genotype
        ),
        "fitness": jnp.full((num_cells,), -jnp.inf, jnp.float32),
        "descriptors": jnp.zeros((num_cells, descriptor_dim), jnp.float32),
        "order": jnp.zeros((num_cells,), jnp.int32),
    }


def threshold_fields(num_cells: int, learning_rate: float, threshold_min: float) -> dict[str, Any]:
    """Validated threshold fields for ``create``: ``threshold`` is ``None`` for the
    usual archive (``learning_rate = 1``, ``threshold_min = -inf``), else ``(C,)`` filled
    with ``threshold_min``."""
    learning_rate = float(learning_rate)
    threshold_min = float(threshold_min)
    if not 0.0 <= learning_rate <= 1.0:
        raise ValueError(f"learning_rate must be in [0, 1]; got {learning_rate}")
    if math.isnan(threshold_min) or threshold_min == math.inf:
        raise ValueError(f"threshold_min must be a number or -inf; got {threshold_min}")
    if threshold_min == -math.inf and learning_rate != 1.0:
        raise ValueError(
            "a learning_rate below 1 needs a finite threshold_min (a lower bound on the fitness, "
            f"e.g. the task's qd_offset); got learning_rate={learning_rate}, threshold_min=-inf"
        )
    soft = learning_rate != 1.0 or threshold_min != -math.inf
    threshold = jnp.full((num_cells,), threshold_min, jnp.float32) if soft else None
    return {"threshold": threshold, "learning_rate": learning_rate, "threshold_min": threshold_min}


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
    return jnp.asarray(lo), jnp.asarray(hi)
