"""The emitter protocol: a value made of pure functions, like an optax transformation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from qdkit.archive import AddInfo, Archive
from qdkit.tasks import Evaluation


class Emitter(NamedTuple):
    """A variation operator for the MAP-Elites loop.

    Attributes:
        init: ``init(key, archive) -> state``.
        emit: ``emit(key, archive, state) -> genotypes`` with leading axis
            ``batch_size``.
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

    Unless ``host``, all three functions are pure and jittable. Emitters compare by
    identity of their functions, so an emitter can be a static argument of
    ``jax.jit``: build it once.
    """

    init: Callable[[jax.Array, Archive], Any]
    emit: Callable[[jax.Array, Archive, Any], Any]
    update: Callable[[Any, Archive, Any, Evaluation, AddInfo], Any]
    batch_size: int
    host: bool = False
    stats: Callable[[Any], Any] | None = None
    observe_initial: Callable[[Any, Archive, Any, Evaluation], Any] | None = None


def no_state(key: jax.Array, archive: Archive) -> tuple[()]:
    """``init`` for stateless emitters."""
    del key, archive
    return ()


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
