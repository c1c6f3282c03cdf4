"""Iso+LineDD variation (Vassiliades & Mouret, GECCO 2018)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from emitters.base import Emitter, check_batch_size, check_positive, clip, keep_state, no_state
from qdkit import rng, xla


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
            (``jax.random.normal``) for the isotropic and the line noise.

    One key makes an iteration's offspring: the parents are :mod:`qdkit.rng`'s stream 0
    of it (:meth:`qdkit.Archive.sample_indices`), the line noise stream 1 and the
    isotropic noise of genotype leaf ``i`` stream ``2 + i``; nothing splits the key.
    """
    batch_size = check_batch_size(batch_size)
    iso_sigma = check_positive("iso_sigma", iso_sigma)
    line_sigma = check_positive("line_sigma", line_sigma)
    normal = rng.normal_fn(noise)

    def emit(key, archive, state):
        index = archive.sample_indices(key, 2 * batch_size)
        line = line_sigma * normal(key, (batch_size,), jnp.float32, stream=1)
        leaves, treedef = jax.tree.flatten(archive.genotypes)
        noises = [normal(key, (batch_size,) + s.shape[1:], s.dtype, stream=2 + i) for i, s in enumerate(leaves)]

        def vary(leaves, noises, line, index):
            x_index, y_index = index[:batch_size], index[batch_size:]
            children = []
            for store, z in zip(leaves, noises):
                x, y = store[x_index], store[y_index]
                t = line.astype(x.dtype).reshape((batch_size,) + (1,) * (x.ndim - 1))
                children.append(x + iso_sigma * z + t * (y - x))
            return clip(jax.tree.unflatten(treedef, children), lower, upper)

        return xla.own_kernels(vary, (leaves, noises, line, index), archive.size()), state

    return Emitter(init=no_state, emit=emit, update=keep_state, batch_size=batch_size)
