"""The archive: one storage value, a cell indexer, and optional thresholds.

An :class:`Archive` is a frozen pytree dataclass made of three parts, composed rather
than subclassed:

- ``store`` (:class:`Elites`), one elite per cell:

  - ``genotypes``: any pytree whose leaves have a leading ``(C, ...)`` cell axis,
  - ``fitness``: ``(C,)`` float32, ``-inf`` where the cell is empty,
  - ``descriptors``: ``(C, M)`` float32, the elite's own (unclipped) descriptor,
  - ``order``: ``(C,)`` int32, the occupied cells in order of first occupation in its
    first ``len(archive)`` entries (uniform parent sampling costs ``O(n)`` per draw of
    ``n`` instead of a prefix sum over all ``C`` cells),
  - ``count``: ``()`` int32, the number of occupied cells (kept up to date by every
    insertion, so that nothing in an iteration costs a pass over the ``C`` cells to
    count them),
  - ``totals`` (:class:`Totals`): running sums over the elites, for the same reason
    (the per-iteration metrics read them instead of a pass over the cells): the
    fitness sum, the QD-score for the archive's ``qd_offset`` (each compensated,
    Kahan) and the highest fitness ever stored,
  - ``features``: ``(C, F)`` float32 for archives over learned descriptors (each
    elite's features, to re-describe it after a refit), else ``None``;

- ``indexer`` (:mod:`qdkit.indexers`): the map from a descriptor to a cell (uniform grid,
  grid with edges, CVT, or a learned projection onto a grid or a CVT);

- ``thresholds`` (:class:`Thresholds`), or ``None`` for the usual archive: per-cell
  acceptance thresholds of a *soft* archive (CMA-MAE, Fontaine & Nikolaidis 2023). With
  an archive learning rate ``alpha`` and a floor ``threshold_min``, a candidate is
  accepted when its fitness beats its cell's threshold, and the threshold then moves
  towards the accepted fitness: for ``k`` accepted candidates of one cell in one batch,
  with mean fitness ``f_bar``, ``t <- (1 - alpha)^k t + (1 - (1 - alpha)^k) f_bar`` (for
  ``alpha = 1``, the best accepted fitness). What an accepted candidate does to the
  stored elite is the ``replacement`` rule:

  - ``"threshold"`` (the paper's and pyribs', the default): the best accepted candidate
    of a cell *replaces* its occupant, better or not; a separate **result archive**
    (``result``, an :class:`Elites`) keeps the best elite ever found per cell;
  - ``"best"`` (qdkit's earlier rule, an option): the stored elite is the best
    candidate ever accepted, so the archive is its own result archive.

An insertion reduces the batch per cell (the best row of each cell; a threshold
archive's batch rule): segment operations over the ``C`` cells, each of which fills a
buffer of ``C`` values. Inside qdkit's loop (:func:`qdkit.map_elites.run`), for archives
of :data:`CARRY_FROM_CELLS` cells or more, those buffers are carried from one iteration
to the next instead (:class:`CellBuffers`), and only the batch's cells are written and
put back, so that no reduction costs the number of cells.

:meth:`Archive.add` means the same for every archive: insert ``(genotypes, fitness,
descriptors)``; an archive over learned descriptors also keeps ``features`` (its own
argument). What a run reports (metrics, plots, exports) is :meth:`Archive.results`: the
result archive of a threshold archive, the archive itself otherwise.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import threading
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.extend.core import get_opaque_trace_state

from qdkit import rng
from qdkit.indexers import GridIndexer, Indexer, as_bounds  # noqa: F401  (as_bounds re-exported)

# Status codes returned per row by ``Archive.add`` (same convention as pyribs).
NOT_ADDED = 0
IMPROVED = 1
NEW = 2

#: Replacement rules of a threshold archive (see the module docstring).
REPLACEMENTS = ("threshold", "best")


def _tracing() -> bool:
    """Whether JAX is tracing (under ``jit``, ``vmap``, ...). Asks JAX's private
    ``trace_state_clean``; where that is gone, answers yes (the always-correct path)."""
    try:
        from jax._src.core import trace_state_clean
    except ImportError:  # pragma: no cover - a JAX without it
        return True
    return not trace_state_clean()


def _filled(shape: tuple[int, ...], dtype: Any, value: float | int = 0) -> jax.Array:
    """A new ``shape`` array of ``value``. Eagerly, it is transferred from a NumPy
    broadcast of one element: an eager ``jnp.full`` or ``jnp.zeros`` compiles a program
    for each shape and dtype (5-20 ms each on a CPU, and ``qdkit run`` made about a
    dozen before its first step), and a whole NumPy array would double the memory: its
    transfer keeps it alive beside the device copy until Python's garbage collector
    runs (800 MB for a 400 MB archive of 10^6 cells). Under a trace
    (``Archive.reindex`` is jittable), it is ``jnp.full``, so no constant of the
    archive's size enters the program."""
    if jnp.issubdtype(dtype, jax.dtypes.extended):  # e.g. key genotypes: NumPy has none
        return jnp.zeros(shape, dtype)
    if _tracing():
        return jnp.full(shape, value, dtype)
    return jax.device_put(np.broadcast_to(np.asarray(value, dtype), shape))


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


class Totals(NamedTuple):
    """Running sums over a storage's elites, updated by every insertion.

    Attributes:
        qd_score: ``()`` float32, the sum over elites of ``max(fitness - qd_offset, 0)``
            for the archive's ``qd_offset`` (``0`` when the archive has none).
        qd_error: its Kahan compensation (what the rounding of the sum has lost).
        fitness_sum: ``()`` float32, the sum of the elites' fitness.
        fitness_error: its Kahan compensation.
        max_fitness: ``()`` float32, the highest fitness ever stored (``-inf`` while
            empty): the highest stored fitness for every archive whose elites only get
            better (all but the storage of a threshold archive with the published
            replacement rule, whose reported result archive does only get better).
    """

    qd_score: jax.Array
    qd_error: jax.Array
    fitness_sum: jax.Array
    fitness_error: jax.Array
    max_fitness: jax.Array

    @classmethod
    def zero(cls) -> Totals:
        # one array per field: a state whose leaves share a buffer cannot be donated
        return cls(*(_filled((), jnp.float32) for _ in range(4)), _filled((), jnp.float32, -np.inf))

    @classmethod
    def of(cls, fitness: jax.Array, qd_offset: float | None) -> Totals:
        """Totals of a whole ``(C,)`` fitness array (``-inf`` = empty): one pass."""
        occupied = jnp.isfinite(fitness)
        zero = lambda: jnp.zeros((), jnp.float32)  # noqa: E731  (one array per field, as in zero())
        return cls(
            qd_score=zero()
            if qd_offset is None
            else jnp.sum(jnp.where(occupied, jnp.maximum(fitness - qd_offset, 0.0), 0.0)),
            qd_error=zero(),
            fitness_sum=jnp.sum(jnp.where(occupied, fitness, 0.0)),
            fitness_error=zero(),
            max_fitness=jnp.max(fitness, initial=-jnp.inf),
        )

    def changed(self, added, old, new, qd_offset: float | None) -> Totals:
        """The totals after the ``added`` rows replaced ``old`` fitness (``-inf``:
        empty) by ``new`` in their cells (at most one row per cell)."""

        def kahan(total, error, terms):  # compensated summation of a batch of terms
            y = _pairwise_sum(_whole_batch(terms)) - error
            t = total + y
            return t, (t - total) - y

        old_fitness = jnp.where(jnp.isfinite(old), old, 0.0)
        fitness_sum, fitness_error = kahan(
            self.fitness_sum, self.fitness_error, jnp.where(added, new - old_fitness, 0.0)
        )
        qd_score, qd_error = self.qd_score, self.qd_error
        if qd_offset is not None:
            gain = jnp.maximum(new - qd_offset, 0.0) - jnp.where(
                jnp.isfinite(old), jnp.maximum(old - qd_offset, 0.0), 0.0
            )
            qd_score, qd_error = kahan(qd_score, qd_error, jnp.where(added, gain, 0.0))
        best = jnp.max(jnp.where(added, new, -jnp.inf), initial=-jnp.inf)
        return Totals(qd_score, qd_error, fitness_sum, fitness_error, jnp.maximum(self.max_fitness, best))


def kept_offset(qd_offset) -> float | None:
    """The offset an archive keeps its running QD-score for, given a task's
    ``qd_offset``: the number as a float, ``None`` for ``None`` or a non-finite value."""
    if qd_offset is None or not math.isfinite(float(qd_offset)):
        return None
    return float(qd_offset)


_SUMMING = threading.local()


@contextlib.contextmanager
def summing_whole_batches(mesh):
    """While tracing inside this context, a batch whose rows are split over the devices
    of ``mesh`` is gathered whole on every device before the running totals sum it
    (then :func:`_pairwise_sum` fixes the order), so that the totals, and the metrics,
    of a run on several devices are those of the same run on one."""
    stack = _SUMMING.__dict__.setdefault("meshes", [None])
    stack.append(mesh)
    try:
        yield
    finally:
        stack.pop()


def _whole_batch(terms: jax.Array) -> jax.Array:
    from qdkit import sharding

    return sharding.replicated(terms, _SUMMING.__dict__.setdefault("meshes", [None])[-1])


def _pairwise_sum(x: jax.Array) -> jax.Array:
    """The sum of a ``(B,)`` vector as a fixed tree of elementwise additions (pairs,
    then pairs of pairs): its rounding does not depend on how XLA lays out or splits a
    reduction (threads, ``vmap``, devices), so vmapped seeds and runs on several devices
    keep the totals of the same run alone on one device."""
    while x.shape[0] > 1:
        if x.shape[0] % 2:
            x = jnp.concatenate([x, jnp.zeros((1,), x.dtype)])
        x = x[0::2] + x[1::2]
    return x.reshape(()) if x.shape[0] == 1 else jnp.zeros((), x.dtype)


def _leading(tree: Any) -> int:
    return jax.tree.leaves(tree)[0].shape[0]


@dataclasses.dataclass(frozen=True)
class Elites:
    """Per-cell storage: one elite per cell (see the module docstring)."""

    genotypes: Any
    fitness: jax.Array
    descriptors: jax.Array
    order: jax.Array
    features: jax.Array | None = None
    count: jax.Array = dataclasses.field(kw_only=True)
    totals: Totals = dataclasses.field(kw_only=True)

    @classmethod
    def empty(
        cls, num_cells: int, descriptor_dim: int, example_genotype: Any, feature_dim: int | None = None
    ) -> Elites:
        """Zero genotypes ``(C, ...)``, ``-inf`` fitness, zero descriptors (and
        features), an empty occupied-cell list, a zero count and zero totals."""
        return cls(
            genotypes=jax.tree.map(lambda x: _filled((num_cells, *jnp.shape(x)), jnp.result_type(x)), example_genotype),
            fitness=_filled((num_cells,), jnp.float32, -np.inf),
            descriptors=_filled((num_cells, descriptor_dim), jnp.float32),
            order=_filled((num_cells,), jnp.int32),
            count=_filled((), jnp.int32),
            totals=Totals.zero(),
            features=None if feature_dim is None else _filled((num_cells, feature_dim), jnp.float32),
        )

    @property
    def occupied(self) -> jax.Array:
        return jnp.isfinite(self.fitness)

    def size(self) -> jax.Array:
        return self.count

    def write(self, added, index, was_empty, genotypes, fitness, descriptors, features, qd_offset) -> Elites:
        """Store the ``added`` rows (at most one per cell) in their cells; cells filled
        for the first time join the occupied-cell list, and the totals follow (the
        QD-score's for ``qd_offset``)."""
        num_cells = self.fitness.shape[0]
        old = self.fitness[index]
        target = jnp.where(added, index, num_cells)  # out of range: dropped
        is_new = added & was_empty
        new_rows = is_new.astype(jnp.int32)
        slot = self.count + lax.associative_scan(jnp.add, new_rows) - 1
        return Elites(
            genotypes=jax.tree.map(
                lambda store, g: store.at[target].set(g.astype(store.dtype), mode="drop"), self.genotypes, genotypes
            ),
            fitness=self.fitness.at[target].set(fitness, mode="drop"),
            descriptors=self.descriptors.at[target].set(descriptors, mode="drop"),
            order=self.order.at[jnp.where(is_new, slot, num_cells)].set(index, mode="drop"),
            count=self.count + jnp.sum(new_rows, dtype=jnp.int32),
            totals=self.totals.changed(added, old, fitness, qd_offset),
            features=None if self.features is None else self.features.at[target].set(features, mode="drop"),
        )

    def insert_best(
        self, valid, index, genotypes, fitness, descriptors, features, qd_offset
    ) -> tuple[Elites, jax.Array]:
        """MAP-Elites insertion of the ``valid`` rows: the best row of each cell enters
        when it beats the elite (first row on ties). Returns the storage and the
        ``(B,)`` mask of stored rows."""
        num_cells = self.fitness.shape[0]
        fit = jnp.where(valid, fitness, -jnp.inf)
        cell = jnp.where(valid, index, num_cells)
        old = self.fitness[index]
        winner = _first_best(fit, cell, index, num_cells)
        added = winner & (fit > old)
        store = self.write(added, index, ~jnp.isfinite(old), genotypes, fit, descriptors, features, qd_offset)
        return store, added


jax.tree_util.register_dataclass(
    Elites,
    data_fields=["genotypes", "fitness", "descriptors", "order", "count", "totals", "features"],
    meta_fields=[],
)


# ---------------------------------------------------------- per-cell reductions

#: The per-cell reductions of an insertion: each one's dtype and identity (the value of
#: a cell no row reduces into, and of a :class:`CellBuffers` buffer between insertions).
REDUCTIONS = {"max": (jnp.float32, -np.inf), "min": (jnp.int32, np.iinfo(np.int32).max), "sum": (jnp.float32, 0.0)}

#: Read while tracing: ``False`` makes qdkit's loop reduce with segment operations as an
#: insertion outside it does (for benchmarks/cell_buffers.py and the tests). A loop
#: already compiled for a task and emitter keeps the way it was traced with.
CARRY_CELL_BUFFERS = True

#: qdkit's loop carries the buffers for archives of at least this many cells. Below it,
#: filling a buffer costs about what putting the batch's cells back does. Time with
#: segment operations over time with the buffers (benchmarks/cell_buffers.py; the same
#: code against itself: 0.91-1.09x): at batch 1,024, grids of 10^4 to 3 x 10^4 cells
#: 0.97-1.01x, of 10^5 0.92-1.10x, of 10^6 1.07-1.30x; threshold grids, whose insertion
#: makes three times the reductions, 0.98-1.02x at 10^4, 0.99-1.07x from 1.6 x 10^4 to
#: 5 x 10^4, 1.04-1.12x at 10^5. The smaller the batch, the more the C cells weigh: at
#: batch 64 threshold grids of 1.6 x 10^4 cells 1.00-1.09x, 3 x 10^4 1.23-1.24x, 5 x 10^4
#: 1.37-1.63x (grids and a CVT 1.02x). No archive of 1.6 x 10^4 cells or more was
#: slower with the buffers beyond that noise.
CARRY_FROM_CELLS = 1 << 14

_CELL_BUFFERS = contextvars.ContextVar("qdkit_cell_buffers", default=None)


class CellBuffers:
    """Per-cell buffers that a loop carries from one insertion to the next, one per
    reduction kind (:data:`REDUCTIONS`), each ``(C,)`` and at the kind's identity in
    every cell between insertions.

    A per-cell reduction of a batch (``jax.ops.segment_max(values, cells, C)[index]``)
    fills a buffer of ``C`` values, reduces the ``B`` rows into it and reads ``B`` of
    them back. With a carried buffer, the ``B`` rows are reduced into it, read back, and
    their cells set back to the identity: the same values, for ``O(B)``. At ``10**6``
    cells and a batch of 1,024 (``benchmarks/cell_buffers.py``, CPU), an iteration was
    1.07-1.30x faster on a grid, 1.10-1.19x on a CVT, 1.68-1.95x on a threshold grid
    (six reductions an insertion: its own two, its batch rule's two, and its result
    archive's two).

    :func:`qdkit.map_elites.run`'s loop makes the buffers once per chunk
    (:meth:`fresh_arrays`) and carries them: in each iteration the step runs inside
    :meth:`using`, and each reduction of an insertion (:func:`_reduced`) takes its
    buffer from ``arrays`` and puts the updated one back there, while it is traced; the
    loop carries ``arrays`` on. They do so only in the trace that made this object (the
    loop's body; told apart by ``jax.extend.core.get_opaque_trace_state``): an insertion
    traced inside a nested transformation (a ``cond`` branch, a ``vmap`` or ``scan`` of
    its own) keeps the segment operations, so no tracer leaves its trace.
    """

    def __init__(self, arrays: dict[str, jax.Array]):
        self.arrays = dict(arrays)
        self._trace = get_opaque_trace_state()

    @staticmethod
    def fresh_arrays(archive: Archive) -> dict[str, jax.Array] | None:
        """New buffers for the insertions into ``archive``: ``max`` and ``min`` for
        every archive, and ``sum`` for a threshold archive with a learning rate below 1
        (4 bytes a cell each). ``None`` (no buffers) when :data:`CARRY_CELL_BUFFERS` is
        off or the archive has fewer than :data:`CARRY_FROM_CELLS` cells."""
        if not CARRY_CELL_BUFFERS or archive.num_cells < CARRY_FROM_CELLS:
            return None
        t = archive.thresholds
        kinds = ("max", "min") + (("sum",) if t is not None and t.learning_rate != 1.0 else ())
        return {k: _filled((archive.num_cells,), REDUCTIONS[k][0], REDUCTIONS[k][1]) for k in kinds}

    @contextlib.contextmanager
    def using(self):
        """The insertions traced inside this context reduce into these buffers."""
        token = _CELL_BUFFERS.set(self)
        try:
            yield self
        finally:
            _CELL_BUFFERS.reset(token)

    def _usable(self, kind: str, values: jax.Array, num_cells: int) -> bool:
        buffer = self.arrays.get(kind)
        return (
            buffer is not None
            and buffer.shape == (num_cells,)
            and values.dtype == buffer.dtype
            and get_opaque_trace_state() == self._trace
        )


def _reduced(kind: str, values: jax.Array, cells: jax.Array, index: jax.Array, num_cells: int) -> jax.Array:
    """``jax.ops.segment_<kind>(values, cells, num_cells)[index]``: per-cell reduction
    of the ``(B,)`` ``values`` (rows whose ``cells`` is ``num_cells`` are dropped), read
    at each row's ``index``. In a :class:`CellBuffers` context, the same values from
    the carried buffer."""
    buffers = _CELL_BUFFERS.get()
    if buffers is None or not buffers._usable(kind, values, num_cells):
        return getattr(jax.ops, f"segment_{kind}")(values, cells, num_segments=num_cells)[index]
    into = buffers.arrays[kind].at[cells]
    reduced = {"max": into.max, "min": into.min, "sum": into.add}[kind](values, mode="drop")
    out = reduced[index]
    # The identity is computed from the rows read back (it is the identity whatever
    # they hold, NaN included), so that the buffer is put back only after the read and
    # XLA writes it in place: with a constant (or through an optimisation barrier), XLA
    # copied the buffer, C values, to keep it for the read (tests/test_archive.py
    # checks the compiled loop for such copies).
    if kind == "max":
        identity = jnp.where(out == out, jnp.minimum(out, -jnp.inf), -jnp.inf)
    elif kind == "min":
        identity = jnp.maximum(out, REDUCTIONS["min"][1])
    else:
        identity = jnp.where(jnp.isfinite(out), jnp.abs(out) * 0.0, 0.0)
    buffers.arrays[kind] = reduced.at[cells].set(identity, mode="drop")
    return out


def _first_best(ranked: jax.Array, ranked_cell: jax.Array, index: jax.Array, num_cells: int) -> jax.Array:
    """``(B,)`` mask: the row with the highest ``ranked`` value of each cell (first row
    on ties); rows with ``ranked_cell == num_cells`` never win."""
    rows = jnp.arange(ranked.shape[0], dtype=jnp.int32)
    is_best = (ranked_cell < num_cells) & (ranked == _reduced("max", ranked, ranked_cell, index, num_cells))
    first = _reduced("min", jnp.where(is_best, rows, REDUCTIONS["min"][1]), ranked_cell, index, num_cells)
    return is_best & (first == rows)


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """The acceptance thresholds of a soft (CMA-MAE) archive.

    Attributes:
        value: ``(C,)`` float32 threshold per cell (``threshold_min`` while empty).
        learning_rate: the archive learning rate ``alpha`` in ``[0, 1]`` (static).
        threshold_min: the initial threshold, a lower bound on the fitness (static).
        replacement: ``"threshold"`` or ``"best"`` (module docstring; static).
    """

    value: jax.Array
    learning_rate: float = 1.0
    threshold_min: float = -math.inf
    replacement: str = "threshold"

    @classmethod
    def create(
        cls, num_cells: int, learning_rate: float, threshold_min: float, replacement: str = "threshold"
    ) -> Thresholds | None:
        """Validated thresholds, or ``None`` for the usual archive (``learning_rate =
        1`` and ``threshold_min = -inf``)."""
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
        if replacement not in REPLACEMENTS:
            raise ValueError(f"unknown replacement rule {replacement!r}; valid: {', '.join(REPLACEMENTS)}")
        if learning_rate == 1.0 and threshold_min == -math.inf:
            return None
        return cls(_filled((num_cells,), jnp.float32, threshold_min), learning_rate, threshold_min, replacement)

    def moved(self, accepted, fitness, index, ranked, ranked_cell) -> Thresholds:
        """Thresholds after a batch (the batch rule over each cell's accepted rows)."""
        num_cells = self.value.shape[0]
        t_old = self.value[index]
        if self.learning_rate == 1.0:  # the limit of the rule: the best accepted fitness
            t_new = _reduced("max", ranked, ranked_cell, index, num_cells)
        else:
            count = _reduced("sum", accepted.astype(jnp.float32), ranked_cell, index, num_cells)
            total = _reduced("sum", jnp.where(accepted, fitness, 0.0), ranked_cell, index, num_cells)
            keep = (1.0 - self.learning_rate) ** count
            t_new = keep * t_old + (1.0 - keep) * total / jnp.maximum(count, 1.0)
        return dataclasses.replace(self, value=self.value.at[ranked_cell].set(t_new, mode="drop"))


jax.tree_util.register_dataclass(
    Thresholds, data_fields=["value"], meta_fields=["learning_rate", "threshold_min", "replacement"]
)


@dataclasses.dataclass(frozen=True)
class Archive:
    """A MAP-Elites archive: storage, a cell indexer and optional thresholds (see the
    module docstring). Build one with :meth:`create`, ``qdkit.GridArchive.create``,
    ``qdkit.CVTArchive.create`` or ``feedback.LearnedArchive.create``.

    ``qd_offset`` (static) is the offset its running QD-score is kept for (see
    :meth:`with_qd_offset`); ``None`` keeps none, and the metrics then sum over the
    cells."""

    store: Elites
    indexer: Indexer
    thresholds: Thresholds | None = None
    result: Elites | None = None
    qd_offset: float | None = None

    @classmethod
    def create(
        cls,
        indexer: Indexer,
        example_genotype: Any,
        *,
        learning_rate: float = 1.0,
        threshold_min: float = -math.inf,
        replacement: str = "threshold",
    ) -> Archive:
        """An empty archive over ``indexer`` for genotypes like ``example_genotype`` (one
        genotype, any pytree of arrays). ``learning_rate``, ``threshold_min`` and
        ``replacement`` make it a threshold archive (module docstring); the defaults
        give the usual MAP-Elites archive."""
        num_cells, dim = indexer.num_cells, indexer.dim
        feature_dim = indexer.feature_dim if indexer.learned else None
        thresholds = Thresholds.create(num_cells, learning_rate, threshold_min, replacement)
        store = Elites.empty(num_cells, dim, example_genotype, feature_dim)
        published = thresholds is not None and thresholds.replacement == "threshold"
        return cls(store=store, indexer=indexer, thresholds=thresholds, result=store if published else None)

    # ------------------------------------------------------------------- views
    @property
    def genotypes(self) -> Any:
        return self.store.genotypes

    @property
    def fitness(self) -> jax.Array:
        return self.store.fitness

    @property
    def descriptors(self) -> jax.Array:
        return self.store.descriptors

    @property
    def order(self) -> jax.Array:
        return self.store.order

    @property
    def features(self) -> jax.Array | None:
        return self.store.features

    @property
    def lower(self) -> jax.Array:
        return self.indexer.lower

    @property
    def upper(self) -> jax.Array:
        return self.indexer.upper

    @property
    def kind(self) -> str:
        """``"grid"`` or ``"cvt"`` (also for learned descriptors binned on one)."""
        return self.indexer.kind

    @property
    def learned(self) -> bool:
        """Whether the descriptors are learned from features (``add`` needs them)."""
        return self.indexer.learned

    @property
    def num_cells(self) -> int:
        return self.fitness.shape[0]

    @property
    def descriptor_dim(self) -> int:
        return self.descriptors.shape[1]

    @property
    def occupied(self) -> jax.Array:
        """``(C,)`` bool: which cells hold an elite."""
        return self.store.occupied

    @property
    def soft(self) -> bool:
        """Whether this is a threshold (CMA-MAE) archive."""
        return self.thresholds is not None

    @property
    def threshold(self) -> jax.Array | None:
        """``(C,)`` thresholds of a threshold archive, else ``None``."""
        return None if self.thresholds is None else self.thresholds.value

    @property
    def learning_rate(self) -> float:
        return 1.0 if self.thresholds is None else self.thresholds.learning_rate

    @property
    def threshold_min(self) -> float:
        return -math.inf if self.thresholds is None else self.thresholds.threshold_min

    @property
    def shape(self) -> tuple[int, ...]:
        """Cells per axis of a grid (plain or learned); ``()`` for a CVT."""
        base = self.indexer.base if self.learned else self.indexer
        return getattr(base, "shape", ())

    @property
    def edges(self):
        return getattr(self.indexer, "edges", None)

    @property
    def centroids(self) -> jax.Array | None:
        """The centroids of a (non-learned) CVT archive, else ``None``."""
        return getattr(self.indexer, "centroids", None)

    def index_of(self, descriptors: jax.Array) -> jax.Array:
        """Cell index of each descriptor: ``(B, M) -> (B,)`` int32 (see the indexer)."""
        return self.indexer.index_of(descriptors)

    def cell_centers(self) -> jax.Array:
        """``(C, M)`` representative point of each cell (grid centre or centroid)."""
        return self.indexer.cell_centers()

    def cell_edges(self) -> list[np.ndarray]:
        """The cell boundaries of each axis of a (non-learned) grid archive."""
        if not isinstance(self.indexer, GridIndexer):
            raise ValueError("cell_edges is defined for grid archives")
        return self.indexer.cell_edges()

    def describe(self, features: jax.Array) -> jax.Array:
        """Descriptors ``(B, M)`` of features ``(B, F)`` (archives over learned
        descriptors only)."""
        if not self.learned:
            raise ValueError("this archive does not learn its descriptors; it has no describe()")
        return self.indexer.describe(features)

    def replace(self, **changes: Any) -> Archive:
        return dataclasses.replace(self, **changes)

    def results(self) -> Archive:
        """What the run found: for a threshold archive with the published replacement
        rule, the result archive (the best elite ever found per cell) as a plain
        archive over the same cells; otherwise the archive itself."""
        if self.result is None:
            return self
        return Archive(store=self.result, indexer=self.indexer, qd_offset=self.qd_offset)

    def with_qd_offset(self, qd_offset: float | None) -> Archive:
        """The same archive keeping its running QD-score (:class:`Totals`) for
        ``qd_offset`` (a Python number, static; ``None`` or a non-finite value for
        none): the per-iteration metrics then read it instead of summing over the
        cells. :func:`qdkit.map_elites.init` sets the task's ``qd_offset``. One pass
        over the cells when the offset changes. Jittable."""
        offset = kept_offset(qd_offset)
        if offset == self.qd_offset:
            return self

        def retotal(store: Elites | None) -> Elites | None:
            return None if store is None else dataclasses.replace(store, totals=Totals.of(store.fitness, offset))

        return self.replace(store=retotal(self.store), result=retotal(self.result), qd_offset=offset)

    def with_elites(self, genotypes: Any, fitness: jax.Array, descriptors: jax.Array, features: Any = None) -> Archive:
        """The same archive holding the given per-cell storage (``-inf`` fitness marks
        an empty cell); rebuilds the occupied-cell list. A threshold archive gets its
        thresholds at ``threshold_min`` and its result archive equal to the storage.
        Jittable."""
        fitness = jnp.asarray(fitness, jnp.float32)
        occupied = jnp.isfinite(fitness)
        order = jnp.nonzero(occupied, size=self.num_cells, fill_value=0)[0].astype(jnp.int32)
        if self.learned and features is None:
            raise ValueError("an archive over learned descriptors needs the elites' features")
        store = Elites(
            genotypes=genotypes,
            fitness=jnp.where(occupied, fitness, -jnp.inf),
            descriptors=jnp.asarray(descriptors, jnp.float32),
            order=order,
            count=jnp.sum(occupied, dtype=jnp.int32),
            totals=Totals.of(jnp.where(occupied, fitness, -jnp.inf), self.qd_offset),
            features=None if not self.learned else jnp.asarray(features, jnp.float32),
        )
        return self.replace(store=store, result=None if self.result is None else store)

    # --------------------------------------------------------------- insertion
    def add(
        self, genotypes: Any, fitness: jax.Array, descriptors: jax.Array, features: jax.Array | None = None
    ) -> tuple[Archive, AddInfo]:
        """Insert a batch of candidates; pure and jittable.

        A candidate enters its cell when its fitness is strictly greater than the
        cell's elite (any finite fitness enters an empty cell). Inside one batch, the
        best candidate per cell competes; among equal fitness the *first row in the
        batch* wins. Rows whose fitness or any descriptor (or feature) is NaN or
        infinite are never added (status 0). Descriptors outside the bounds are
        assigned to the nearest edge cell and stored as given.

        In a threshold archive a candidate is *accepted* when its fitness beats the
        cell's threshold; accepted candidates move the threshold, and the best accepted
        candidate of a cell replaces its occupant (``replacement="threshold"``; the
        result archive receives every valid row as a plain archive would) or enters
        only when it beats the occupant (``"best"``).

        Args:
            genotypes: pytree with leading batch axis ``(B, ...)``, matching the
                archive's genotype structure.
            fitness: ``(B,)`` float.
            descriptors: ``(B, M)`` float.
            features: ``(B, F)`` float, the features the descriptors were computed
                from; required by archives over learned descriptors (kept to
                re-describe the elites after a refit), refused by the others.

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
        valid = jnp.isfinite(fitness) & jnp.all(jnp.isfinite(descriptors), axis=1)
        if self.learned:
            if features is None:
                raise ValueError("this archive learns its descriptors: add(..., features=) needs the rows' features")
            features = jnp.asarray(features, jnp.float32)
            if features.shape != (fitness.shape[0], self.features.shape[1]):
                raise ValueError(f"expected features (B, {self.features.shape[1]}); got {features.shape}")
            valid = valid & jnp.all(jnp.isfinite(features), axis=1)
        elif features is not None:
            raise ValueError("features are kept by archives over learned descriptors only; this one does not take them")
        safe_desc = jnp.where(valid[:, None], descriptors, self.lower[None, :])
        index = self.index_of(safe_desc)
        cell = jnp.where(valid, index, num_cells)  # out of range: dropped
        fit = jnp.where(valid, fitness, -jnp.inf)
        old = self.fitness[index]
        was_empty = ~jnp.isfinite(old)

        thresholds = self.thresholds
        if thresholds is None:
            accepted = valid & (was_empty | (fit > old))
            value = jnp.where(valid, jnp.where(was_empty, fit, fit - old), 0.0)
            ranked, ranked_cell = fit, cell  # every valid row competes for its cell
        else:
            t_old = thresholds.value[index]
            accepted = valid & (fit > t_old)
            value = jnp.where(valid, fit - t_old, 0.0)
            ranked = jnp.where(accepted, fit, -jnp.inf)  # only accepted rows compete
            ranked_cell = jnp.where(accepted, index, num_cells)
            thresholds = thresholds.moved(accepted, fit, index, ranked, ranked_cell)
        rank_status = jnp.where(accepted, jnp.where(was_empty, NEW, IMPROVED), NOT_ADDED)

        winner = _first_best(ranked, ranked_cell, index, num_cells)
        if thresholds is not None and thresholds.replacement == "threshold":
            # the best accepted candidate replaces the occupant. (The term is always
            # true; it orders the read of the old fitness before the write, so that XLA
            # writes the fitness in place: without it, the write did not depend on the
            # read, and XLA copied all C cells twice an iteration to keep them for it.
            # tests/test_archive.py checks the compiled loop for such copies.)
            added = winner & ~(old > jnp.inf)
        else:
            added = winner & (fit > old)
        status = jnp.where(added, jnp.where(was_empty, NEW, IMPROVED), NOT_ADDED)
        store = self.store.write(added, index, was_empty, genotypes, fit, descriptors, features, self.qd_offset)
        result = self.result
        if result is not None:
            result, _ = result.insert_best(valid, index, genotypes, fitness, descriptors, features, self.qd_offset)
        info = AddInfo(
            status=status.astype(jnp.int32),
            value=value.astype(self.fitness.dtype),
            index=cell.astype(jnp.int32),
            rank_status=rank_status.astype(jnp.int32),
        )
        return self.replace(store=store, thresholds=thresholds, result=result), info

    def reindex(self, indexer: Indexer) -> Archive:
        """A fresh archive over ``indexer`` (same number of cells and descriptor size;
        for a learned indexer, e.g. ``archive.indexer.refit(params, lower, upper)``)
        holding every current elite, re-described from its features when the indexer
        is learned, and re-inserted (the best per new cell survives). A threshold
        archive starts from fresh thresholds; its result archive is re-indexed the same
        way. Jittable."""
        if indexer.num_cells != self.num_cells or indexer.dim != self.descriptor_dim or indexer.learned != self.learned:
            raise ValueError("reindex needs an indexer of the same kind, number of cells and descriptor size")
        t = self.thresholds
        fresh = Archive.create(
            indexer, jax.tree.map(lambda g: g[0], self.genotypes),
            learning_rate=1.0 if t is None else t.learning_rate, threshold_min=-math.inf if t is None else t.threshold_min,
            replacement="threshold" if t is None else t.replacement,
        ).replace(qd_offset=self.qd_offset)  # fmt: skip
        # (empty: its zero totals hold for any offset)

        def rows(store: Elites):
            fitness = jnp.where(store.occupied, store.fitness, jnp.nan)  # empty cells are rejected rows
            descriptors = store.descriptors if not self.learned else indexer.describe(store.features)
            return store.genotypes, fitness, descriptors, store.features

        new, _ = fresh.add(*rows(self.store))
        if self.result is not None:
            genotypes, fitness, descriptors, features = rows(self.result)
            valid = jnp.isfinite(fitness)
            index = indexer.index_of(jnp.where(valid[:, None], descriptors, indexer.lower[None, :]))
            result, _ = new.result.insert_best(valid, index, genotypes, fitness, descriptors, features, self.qd_offset)
            new = new.replace(result=result)
        return new

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

        Positions in the occupied-cell list come from 23-bit uniforms (stream 0 of
        ``key`` in :func:`qdkit.rng.uniform`), exact for archives of up to ``2**23``
        elites.
        """
        count = self.size()
        u = jnp.floor(rng.uniform(key, (n,)) * count.astype(jnp.float32)).astype(jnp.int32)
        return self.order[jnp.clip(u, 0, jnp.maximum(count - 1, 0))]

    def size(self) -> jax.Array:
        """Number of occupied cells, as a jittable scalar."""
        return self.store.size()

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


jax.tree_util.register_dataclass(
    Archive, data_fields=["store", "indexer", "thresholds", "result"], meta_fields=["qd_offset"]
)
