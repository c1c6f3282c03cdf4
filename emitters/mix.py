"""Split one batch between several emitters."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from emitters.base import Emitter
from qdkit import rng


def mix(*emitters: Emitter) -> Emitter:
    """One emitter whose batch is the concatenation of ``emitters``' batches.

    Each sub-emitter keeps its own state (the mixed state is a tuple of theirs, threaded
    through ``emit`` and ``update``) and receives its own key; ``update`` hands each one
    back exactly the rows it emitted.
    """
    if not emitters:
        raise ValueError("mix needs at least one emitter")
    sizes = [e.batch_size for e in emitters]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]

    def rows(tree, i):
        return jax.tree.map(lambda x: x[starts[i] : starts[i] + sizes[i]], tree)

    def init(key, archive):
        keys = rng.split(key, len(emitters))
        return tuple(e.init(k, archive) for e, k in zip(emitters, keys))

    def emit(key, archive, state):
        keys = rng.split(key, len(emitters))
        parts, states = zip(*(e.emit(k, archive, s) for e, k, s in zip(emitters, keys, state)))
        return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *parts), tuple(states)

    def update(state, archive, genotypes, evaluation, info):
        return tuple(
            e.update(s, archive, rows(genotypes, i), rows(evaluation, i), rows(info, i))
            for i, (e, s) in enumerate(zip(emitters, state))
        )

    def observe_initial(state, archive, genotypes, evaluation):
        # the initial population goes whole to each sub-emitter that observes it
        return tuple(
            s if e.observe_initial is None else e.observe_initial(s, archive, genotypes, evaluation)
            for e, s in zip(emitters, state)
        )

    def stats(state):
        out = {}
        for e, s in zip(emitters, state):
            out.update(e.stats(s) if e.stats is not None else {})
        return out

    host = any(e.host for e in emitters)
    counted = any(e.stats is not None for e in emitters)
    observes = any(e.observe_initial is not None for e in emitters)
    return Emitter(
        init=init, emit=emit, update=update, batch_size=sum(sizes), host=host, stats=stats if counted else None,
        observe_initial=observe_initial if observes else None,
    )  # fmt: skip
