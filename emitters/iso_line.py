"""Iso+LineDD variation (Vassiliades & Mouret, GECCO 2018)."""

from __future__ import annotations

from typing import Any

import jax

from emitters.base import Emitter, check_batch_size, check_positive, clip, keep_state, no_state
from qdkit import rng


def iso_line(
    batch_size: int,
    iso_sigma: float = 0.01,
    line_sigma: float = 0.1,
    *,
    lower: Any = None,
    upper: Any = None,
    noise: str = "fast",
) -> Emitter:
    """Offspring ``x + iso_sigma * N(0, I) + line_sigma * N(0, 1) * (y - x)``.

    ``x`` and ``y`` are two elites drawn independently and uniformly from the archive:
    the isotropic term explores around ``x``, the line term moves along the direction
    between elites, exploiting the correlation between good solutions ("elite
    hypervolume").

    Args:
        batch_size: offspring per iteration.
        iso_sigma: isotropic noise, in genotype units.
        line_sigma: spread along the line between the two parents.
        lower, upper: genotype bounds to clip offspring into; ``None`` for none.
        noise: ``"fast"`` (:mod:`qdkit.rng`, the default) or ``"threefry"``
            (``jax.random.normal``) for the isotropic noise.
    """
    batch_size = check_batch_size(batch_size)
    iso_sigma = check_positive("iso_sigma", iso_sigma)
    line_sigma = check_positive("line_sigma", line_sigma)
    normal = rng.normal_fn(noise)

    def emit(key, archive, state):
        k_parents, k_iso, k_line = jax.random.split(key, 3)
        index = archive.sample_indices(k_parents, 2 * batch_size)
        x_index, y_index = index[:batch_size], index[batch_size:]
        line = line_sigma * jax.random.normal(k_line, (batch_size,))
        leaves, treedef = jax.tree.flatten(archive.genotypes)
        keys = jax.random.split(k_iso, len(leaves))

        def vary(k, store):
            x, y = store[x_index], store[y_index]
            t = line.astype(x.dtype).reshape((batch_size,) + (1,) * (x.ndim - 1))
            return x + iso_sigma * normal(k, x.shape, x.dtype) + t * (y - x)

        children = [vary(k, store) for k, store in zip(keys, leaves)]
        return clip(jax.tree.unflatten(treedef, children), lower, upper), state

    return Emitter(init=no_state, emit=emit, update=keep_state, batch_size=batch_size)
