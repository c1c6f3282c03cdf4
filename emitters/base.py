"""The emitter protocol: a value made of pure functions, like an optax transformation.

An emitter proposes the candidates of each MAP-Elites iteration and learns from how
they fared. It is a :class:`Emitter`: a ``NamedTuple`` of pure functions built by a
factory that closes over the hyper-parameters (``iso_line(batch_size=256, ...)``),
exactly as ``optax.adam(1e-3)`` builds a ``GradientTransformation``. Its state is a
small pytree of arrays (a ``NamedTuple`` or a frozen dataclass, never a dict), threaded
through the loop by the caller, so the loop can ``jit``, ``scan``, ``vmap`` and
checkpoint it.

One iteration of :func:`qdkit.map_elites.step` calls::

    genotypes, state = emitter.emit(key, archive, state)          # like evosax's ask
    evaluation = task.score(key2, genotypes)                     # fitness, descriptors, extras
    archive, info = archive.add(genotypes, evaluation.fitness, evaluation.descriptors)
    state = emitter.update(state, archive, genotypes, evaluation, info)   # like tell

and a whole run, with an emitter of your own (``from emitters import Emitter, clip``;
``emitters`` is a top-level package beside ``qdkit``)::

    import jax, qdkit
    task = qdkit.tasks.get("arm")
    archive = qdkit.GridArchive.create(shape=(32, 32), lower=task.lower, upper=task.upper,
                                       example_genotype=task.example_genotype)
    state = qdkit.map_elites.init(jax.random.key(0), task, archive, my_emitter)
    state, metrics = qdkit.map_elites.run(state, task, my_emitter, iterations=100)
    state.emitter_state                                          # your state, as update left it

The protocol, in full:

- ``init(key, archive) -> state``: the first state. ``archive`` already holds the
  initial population (e.g. CMA-ME draws its starting means from it).
- ``emit(key, archive, state) -> (genotypes, state)``: ``batch_size`` candidates (a
  pytree with leading axis ``batch_size``, like one genotype otherwise) *and* the state
  after emitting. Anything ``update`` needs to know about this batch (the parents drawn,
  the noise or coefficients sampled, the targets aimed at) goes into that state, not
  into a Python variable: there is no other channel between the two calls.
- ``update(state, archive, genotypes, evaluation, info) -> state``: called with the
  archive *after* insertion, the batch, its :class:`qdkit.tasks.Evaluation` (with the
  descriptors the archive bins: learned ones for an archive over learned descriptors)
  and the :class:`qdkit.AddInfo` of the batch: per row ``status`` (``qdkit.NOT_ADDED``
  0, ``qdkit.IMPROVED`` 1 replaced a cell's elite, ``qdkit.NEW`` 2 filled an empty
  cell), ``value`` (the improvement), ``index`` (the cell) and ``rank_status`` (what
  the row would have done alone, which the CMA rankers use).
- ``batch_size``: the number of rows ``emit`` makes.
- Optional: ``host=True`` for emitters whose functions are host code (a language
  model): the loop calls them eagerly, one iteration at a time, and they must still
  return their state rather than keep it; ``stats(state) -> {name: number}``, counters
  logged with the metrics of a host run (the compiled loop does not call it: read
  ``state.emitter_state`` instead); ``observe_initial(state, archive, genotypes,
  evaluation) -> state``, called once after ``init`` with the evaluated initial
  population (gradient emitters fill their replay buffer with it).

Rules the loop relies on: the functions are pure (no Python-side mutable state; unless
``host``, jittable); the key comes first (``init`` and ``emit``; ``update`` gets none: keep
a key in the state if it needs one) and is split into named subkeys, or drawn from in
distinct :mod:`qdkit.rng` streams, never reused for two purposes; the
state's shapes and dtypes are fixed from ``init`` on. Emitters compare by identity of their functions, so an emitter can be
a static argument of ``jax.jit``: build it once. Combine emitters with
:func:`emitters.mix` rather than subclassing. ``examples/custom_emitter.py`` is a
complete emitter (curiosity-driven parent selection) that uses nothing but this page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from qdkit.archive import AddInfo, Archive
from qdkit.tasks import Evaluation


class Emitter(NamedTuple):
    """A variation operator for the MAP-Elites loop (see the module docstring).

    Attributes:
        init: ``init(key, archive) -> state``.
        emit: ``emit(key, archive, state) -> (genotypes, state)`` with genotypes of
            leading axis ``batch_size``.
        update: ``update(state, archive, genotypes, evaluation, info) -> state``, called
            with the archive *after* insertion and the :class:`qdkit.AddInfo` of the
            batch.
        batch_size: candidates produced by one ``emit``.
        host: the functions are host code (e.g. they call a language model) and the
            loop calls them eagerly; by default they are pure and jittable.
        stats: optional ``stats(state) -> {name: number}``, counters reported in every
            metrics row of a host run (e.g. rejected candidates).
        observe_initial: optional ``observe_initial(state, archive, genotypes,
            evaluation) -> state``, called once right after ``init`` with the evaluated
            initial population (the archive already holds it); gradient emitters put
            its transitions in their replay buffer.
    """

    init: Callable[[jax.Array, Archive], Any]
    emit: Callable[[jax.Array, Archive, Any], tuple[Any, Any]]
    update: Callable[[Any, Archive, Any, Evaluation, AddInfo], Any]
    batch_size: int
    host: bool = False
    stats: Callable[[Any], Any] | None = None
    observe_initial: Callable[[Any, Archive, Any, Evaluation], Any] | None = None


class EmptyState(NamedTuple):
    """The state of a stateless emitter (as optax's ``EmptyState``)."""


def no_state(key: jax.Array, archive: Archive) -> EmptyState:
    """``init`` for stateless emitters."""
    del key, archive
    return EmptyState()


def keep_state(state: Any, archive: Archive, genotypes: Any, evaluation: Evaluation, info: AddInfo) -> Any:
    """``update`` for stateless emitters."""
    del archive, genotypes, evaluation, info
    return state


def clip(genotypes: Any, lower: Any, upper: Any) -> Any:
    """Clip a batch of genotypes; bounds are scalars, pytrees like one genotype, or None."""
    if lower is None and upper is None:
        return genotypes
    lo = -jnp.inf if lower is None else lower
    hi = jnp.inf if upper is None else upper

    def per_leaf(bound: Any) -> Any:
        if jax.tree.structure(bound) == jax.tree.structure(genotypes):
            return bound
        return jax.tree.map(lambda _: bound, genotypes)

    return jax.tree.map(jnp.clip, genotypes, per_leaf(lo), per_leaf(hi))


def check_batch_size(batch_size: int) -> int:
    batch_size = int(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size}")
    return batch_size


def check_positive(name: str, value: float, *, allow_zero: bool = True) -> float:
    value = float(value)
    if not (value > 0 or (allow_zero and value == 0)) or value != value:
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'}; got {value}")
    return value
