"""Gaussian mutation of uniformly sampled elites (the original MAP-Elites variation)."""

from __future__ import annotations

from typing import Any

import jax

from emitters.base import Emitter, check_batch_size, check_positive, clip, keep_state, no_state
from qdkit import rng, xla


def gaussian(
    batch_size: int, sigma: float = 0.1, *, lower: Any = None, upper: Any = None, noise: str = "fast"
) -> Emitter:
    """Offspring ``x + sigma * N(0, I)`` of elites drawn uniformly from the archive.

    Args:
        batch_size: offspring per iteration.
        sigma: standard deviation of the mutation, in genotype units.
        lower, upper: genotype bounds to clip offspring into (scalars or pytrees
            like one genotype); ``None`` for no clipping.
        noise: ``"fast"`` (:mod:`qdkit.rng`, the default) or ``"threefry"``
            (``jax.random.normal``).

    One key makes an iteration's offspring: the parents are :mod:`qdkit.rng`'s stream 0
    of it, the noise of genotype leaf ``i`` stream ``1 + i``.
    """
    batch_size = check_batch_size(batch_size)
    sigma = check_positive("sigma", sigma)
    normal = rng.normal_fn(noise)

    def emit(key, archive, state):
        index = archive.sample_indices(key, batch_size)
        leaves, treedef = jax.tree.flatten(archive.genotypes)
        noises = [normal(key, (batch_size,) + s.shape[1:], s.dtype, stream=1 + i) for i, s in enumerate(leaves)]

        def mutate(leaves, noises, index):
            mutated = [store[index] + sigma * z for store, z in zip(leaves, noises)]
            return clip(jax.tree.unflatten(treedef, mutated), lower, upper)

        return xla.own_kernels(mutate, (leaves, noises, index), archive.size()), state

    return Emitter(init=no_state, emit=emit, update=keep_state, batch_size=batch_size)
