"""CMA-ME and CMA-MAE: CMA-ES instances that climb the archive's improvement.

CMA-ME (Fontaine et al., GECCO 2020) runs several CMA-ES instances; each samples
candidates, ranks them by how much they improve the archive, and adapts towards the
best. CMA-MAE (Fontaine & Nikolaidis, GECCO 2023) is the same emitter ranking by
improvement over a *threshold* archive (``GridArchive.create(learning_rate=...,
threshold_min=...)``); ``learning_rate = 1`` gives back CMA-ME's behaviour.

All instances live in one stacked state and are sampled and updated with ``vmap``; the
batch is ``num_emitters * population`` rows, instance ``e`` owning rows
``e * population`` to ``(e + 1) * population - 1``.

Rankers (pyribs' names): ``"2imp"`` two-stage improvement — candidates that filled a
new cell first, then those that improved a cell, then the rest, each group by
improvement value (CMA-ME); ``"imp"`` improvement value only (CMA-MAE); ``"obj"``
fitness only (CMA-ME's optimizing emitter); ``"rd"`` the projection of the descriptor
on a random direction of descriptor space, drawn per instance at each (re)start and
scaled by the descriptor ranges, and ``"2rd"`` the same after the new/improved/rest
groups (CMA-ME's random-direction emitter). The archive's :attr:`qdkit.AddInfo.rank_status` and ``value`` feed them.

Selection: ``"filter"`` recombines exactly the accepted candidates (CMA-ME);
``"mu"`` the best half (CMA-MAE). Restarts, from a uniformly drawn elite with
``sigma0`` and ``C = I``: ``"no_improvement"`` when an instance had no accepted
candidate, ``"basic"`` only on CMA-ES's own convergence tests
(:func:`emitters.cma_es.should_stop`, which apply under every rule), or an integer
``k`` for every ``k`` iterations.

Bounds: candidates outside ``lower``/``upper`` are clipped and the update uses the
clipped points (a repair, unlike pyribs' resampling).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from emitters import cma_es
from emitters.base import Emitter, check_batch_size, check_positive, clip
from qdkit import rng

RANKERS = ("2imp", "imp", "obj", "2rd", "rd")
SELECTIONS = ("filter", "mu")
RESTARTS = ("no_improvement", "basic")


class ESState(NamedTuple):
    """State of a group of CMA-ES instances.

    Attributes:
        cma: :class:`emitters.cma_es.CMAState` with a leading ``(E,)`` axis.
        key: the emitter's own PRNG key (restarts draw elites with it).
        iteration: ``()`` int32, updates done.
        age: ``(E,)`` int32, updates since each instance's last restart.
        restarts: ``(E,)`` int32, restarts of each instance.
        direction: ``(E, M)`` target descriptor direction of each instance (used by the
            ``rd`` and ``2rd`` rankers).
    """

    cma: cma_es.CMAState
    key: jax.Array
    iteration: jax.Array
    age: jax.Array
    restarts: jax.Array
    direction: jax.Array


def check_choice(name: str, value: str, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")
    return value


def check_restart(restart: str | int) -> str | int:
    if isinstance(restart, str) and not restart.lstrip("-").isdigit():
        return check_choice("restart rule", restart, RESTARTS)
    k = int(restart)
    if k < 1:
        raise ValueError(f"an integer restart rule must be positive; got {k}")
    return k


def flattener(example_genotype: Any):
    """``(n, flatten, unflatten)``: batch maps between genotype pytrees and ``(B, n)``."""
    flat, unravel = ravel_pytree(example_genotype)
    n = int(flat.shape[0])
    if n < 1:
        raise ValueError("the genotype has no entries")

    def flatten(genotypes):
        return jax.vmap(lambda g: ravel_pytree(g)[0])(genotypes).astype(jnp.float32)

    def unflatten(x):
        return jax.vmap(unravel)(x.astype(flat.dtype))

    return n, flatten, unflatten


def random_directions(key: jax.Array, archive, count: int) -> jax.Array:
    """``(count, M)`` directions ``N(0, I) * (upper - lower)`` (pyribs' rule)."""
    return jax.random.normal(key, (count, archive.descriptor_dim)) * (archive.upper - archive.lower)[None, :]


def rank(
    ranker: str, info, fitness: jax.Array, descriptors: jax.Array | None = None, direction: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """Order of one instance's rows, best first, and the spread of ranking values
    between the best and the worst valid row (``inf`` with fewer than two valid rows).

    Rows with non-finite fitness (``index == C``-style rejects: ``value == 0`` and no
    finite fitness) always rank last.
    """
    valid = jnp.isfinite(fitness)
    value = jnp.where(valid, info.value, -jnp.inf)
    status = info.rank_status.astype(jnp.float32)
    if ranker == "2imp":
        order = jnp.lexsort((-value, -status, ~valid))
        keys = jnp.stack([status, value], axis=1)
    elif ranker == "imp":
        order = jnp.lexsort((-value, ~valid))
        keys = value[:, None]
    elif ranker in ("rd", "2rd"):
        projection = jnp.where(valid, jnp.nan_to_num(descriptors) @ direction, -jnp.inf)
        if ranker == "rd":
            order = jnp.lexsort((-projection, ~valid))
            keys = projection[:, None]
        else:
            order = jnp.lexsort((-projection, -status, ~valid))
            keys = jnp.stack([status, projection], axis=1)
    else:
        score = jnp.where(valid, fitness, -jnp.inf)
        order = jnp.lexsort((-score, ~valid))
        keys = score[:, None]
    num_valid = jnp.sum(valid)
    best = keys[order[0]]
    worst = keys[order[jnp.maximum(num_valid - 1, 0)]]
    spread = jnp.where(num_valid >= 2, jnp.sqrt(jnp.sum((best - worst) ** 2)), jnp.inf)
    return order, spread


def check_group(population, num_emitters, sigma0, ranker, selection, restart, rankers=RANKERS):
    """Validated ``(population, num_emitters, sigma0, ranker, selection, restart)`` of a
    group of CMA-ES instances."""
    population = check_batch_size(population)
    if population < 2:
        raise ValueError(f"population must be at least 2; got {population}")
    return (
        population,
        check_batch_size(num_emitters),
        check_positive("sigma0", sigma0, allow_zero=False),
        check_choice("ranker", ranker, rankers),
        check_choice("selection rule", selection, SELECTIONS),
        check_restart(restart),
    )


def select_parents(ranker, selection, info, fitness, candidates, descriptors=None, direction=None):
    """Per instance (leading ``(E,)`` axis everywhere): the candidates ``(E, lambda, d)``
    ranked best first, the number each instance had accepted, the number of parents to
    recombine (``filter``: the accepted ones; ``mu``: half), and the ranking spread."""
    if descriptors is None:
        order, spread = jax.vmap(lambda i, f: rank(ranker, i, f))(info, fitness)
    else:
        order, spread = jax.vmap(lambda i, f, d, u: rank(ranker, i, f, d, u))(info, fitness, descriptors, direction)
    ranked = jnp.take_along_axis(candidates, order[:, :, None], axis=1)
    accepted = jnp.sum(info.rank_status > 0, axis=1, dtype=jnp.int32)
    half = candidates.shape[1] // 2
    num_parents = accepted if selection == "filter" else jnp.full_like(accepted, half)
    return ranked, accepted, num_parents, spread


def restart_mask(restart: str | int, accepted: jax.Array, age: jax.Array) -> jax.Array:
    """Emitter-side restart rule per instance (CMA-ES's own stop tests come on top)."""
    if restart == "no_improvement":
        return accepted == 0
    if restart == "basic":
        return jnp.zeros_like(accepted, dtype=bool)
    return age % restart == 0


def select(mask: jax.Array, new: Any, old: Any) -> Any:
    """Per-instance choice between two stacked pytrees: ``new`` where ``mask``."""
    return jax.tree.map(lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


def draw_means(key: jax.Array, archive, count: int, flatten) -> jax.Array:
    """``(count, n)`` elites drawn uniformly from the archive, flattened."""
    index = archive.sample_indices(key, count)
    return flatten(jax.tree.map(lambda g: g[index], archive.genotypes))


def evolution_strategy(
    example_genotype: Any,
    population: int,
    *,
    num_emitters: int = 15,
    sigma0: float = 0.5,
    ranker: str = "2imp",
    selection: str = "filter",
    restart: str | int = "no_improvement",
    x0: Any = None,
    lower: Any = None,
    upper: Any = None,
    noise: str = "fast",
) -> Emitter:
    """A group of CMA-ES emitters (CMA-ME by default; see the module docstring).

    Args:
        example_genotype: one genotype (any pytree of float arrays); CMA-ES works on
            its flattened entries.
        population: candidates per instance per iteration (``lambda``; pyribs' examples
            use 36).
        num_emitters: CMA-ES instances run side by side (15 in the papers).
        sigma0: initial (and restart) step size.
        ranker: ``"2imp"``, ``"imp"``, ``"obj"``, ``"2rd"`` or ``"rd"``.
        selection: ``"filter"`` or ``"mu"``.
        restart: ``"no_improvement"``, ``"basic"`` or a positive integer.
        x0: starting mean for every instance (a genotype); default: a uniformly drawn
            elite per instance, taken when the emitter is initialised.
        lower, upper: genotype bounds to clip candidates into; ``None`` for none.
        noise: ``"fast"`` (:mod:`qdkit.rng`) or ``"threefry"`` sampling noise.

    The emitter's batch size is ``num_emitters * population``.
    """
    population, num_emitters, sigma0, ranker, selection, restart = check_group(
        population, num_emitters, sigma0, ranker, selection, restart
    )
    normal = rng.normal_fn(noise)
    n, flatten, unflatten = flattener(example_genotype)
    gap = cma_es.lazy_gap(n, population)
    start = None if x0 is None else flatten(jax.tree.map(lambda a: jnp.asarray(a)[None], x0))[0]

    def init(key, archive):
        k_means, k_state = rng.split(key)
        if start is None:
            means = draw_means(k_means, archive, num_emitters, flatten)
        else:
            means = jnp.broadcast_to(start, (num_emitters, n))
        zeros = jnp.zeros((num_emitters,), jnp.int32)
        k_state, k_dir = rng.split(k_state)
        return ESState(
            cma=jax.vmap(cma_es.reset, in_axes=(0, None))(means, sigma0),
            key=k_state,
            iteration=jnp.zeros((), jnp.int32),
            age=zeros,
            restarts=zeros,
            direction=random_directions(k_dir, archive, num_emitters),
        )

    def emit(key, archive, state):
        del archive
        z = normal(key, (num_emitters, population, n), jnp.float32)
        x = jax.vmap(cma_es.sample)(state.cma, z).reshape(num_emitters * population, n)
        return clip(unflatten(x), lower, upper), state

    def update(state, archive, genotypes, evaluation, info):
        x = flatten(genotypes).reshape(num_emitters, population, n)
        per_instance = jax.tree.map(lambda a: a.reshape(num_emitters, population, *a.shape[1:]), info)
        fitness = evaluation.fitness.reshape(num_emitters, population)
        descriptors = evaluation.descriptors.reshape(num_emitters, population, -1)
        ranked, accepted, num_parents, spread = select_parents(
            ranker, selection, per_instance, fitness, x, descriptors, state.direction
        )

        cma = jax.vmap(cma_es.tell)(state.cma, ranked, num_parents)
        iteration = state.iteration + 1
        cma = lax.cond(iteration % gap == 0, jax.vmap(cma_es.decompose), lambda c: c, cma)

        age = state.age + 1
        stop = jax.vmap(cma_es.should_stop)(cma, spread) | restart_mask(restart, accepted, age)
        key, k_means, k_dir = rng.split(state.key, 3)

        def restart_some(parts):
            c, direction = parts
            means = draw_means(k_means, archive, num_emitters, flatten)
            fresh = (
                jax.vmap(cma_es.reset, in_axes=(0, None))(means, sigma0),
                random_directions(k_dir, archive, num_emitters),
            )
            return select(stop, fresh, (c, direction))

        cma, direction = lax.cond(jnp.any(stop), restart_some, lambda p: p, (cma, state.direction))
        return ESState(
            cma=cma,
            key=key,
            iteration=iteration,
            age=jnp.where(stop, 0, age),
            restarts=state.restarts + stop.astype(jnp.int32),
            direction=direction,
        )

    return Emitter(init=init, emit=emit, update=update, batch_size=num_emitters * population)
