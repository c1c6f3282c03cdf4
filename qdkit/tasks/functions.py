"""Benchmark functions: sphere and rastrigin, with two descriptor schemes.

- ``sphere`` / ``rastrigin`` (the QDax convention): genotype in ``[0, 1]^n`` mapped to
  ``x = 10 g - 5``; descriptors are the first two genes, in ``[0, 1]^2``.
- ``sphere_proj`` / ``rastrigin_proj`` (the CMA-ME paper's linear-projection
  benchmark, Fontaine et al. 2020, as the DQD and CMA-MAE papers and pyribs run it):
  an unbounded genotype, initialised uniformly in ``[-5.12, 5.12]^n``, optimum shifted
  to ``0.4 * 5.12``; descriptors are the sums of the first and second halves of the
  genes (genes beyond ``±5.12`` folded to ``5.12 / x``, which keeps the descriptors
  bounded); fitness normalised to ``[0, 100]`` inside ``[-5.12, 5.12]^n`` (lower
  outside it).

All five tasks are differentiable (``Task.jacobian``), for the DQD emitters.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from qdkit.fastmath import cos_2pi
from qdkit.tasks.base import Evaluation, Task

_BOUND = 5.12
_SHIFT = 0.4 * _BOUND


def _rastrigin_terms(x):
    return x * x - 10.0 * cos_2pi(x)


def _check_dims(dims: int, minimum: int) -> int:
    dims = int(dims)
    if dims < minimum:
        raise ValueError(f"dims must be at least {minimum}; got {dims}")
    return dims


def _first_two_genes_task(name: str, dims: int, raw, offset: float) -> Task:
    def score(key, genotypes):
        del key
        x = genotypes * 10.0 - 5.0
        return Evaluation(-raw(x), genotypes[:, :2], {})

    return Task(
        name=name,
        score=score,
        example_genotype=jax.device_put(np.zeros((dims,), np.float32)),
        genotype_lower=0.0,
        genotype_upper=1.0,
        lower=np.zeros(2, np.float32),
        upper=np.ones(2, np.float32),
        qd_offset=offset,
        descriptor_names=("gene 0", "gene 1"),
        options={"dims": dims},
        differentiable=True,
    )


def sphere(dims: int = 10) -> Task:
    """Sphere, ``-sum(x^2)`` with ``x = 10 g - 5``; descriptors = first two genes."""
    dims = _check_dims(dims, 2)
    return _first_two_genes_task("sphere", dims, lambda x: jnp.sum(x * x, axis=1), -25.0 * dims)


def rastrigin(dims: int = 10) -> Task:
    """Rastrigin, ``-(10 n + sum(x^2 - 10 cos 2 pi x))``; descriptors = first two genes."""
    dims = _check_dims(dims, 2)

    def raw(x):
        return 10.0 * dims + jnp.sum(_rastrigin_terms(x), axis=1)

    # max over [-5, 5] of x^2 - 10 cos(2 pi x) is below 30.5
    return _first_two_genes_task("rastrigin", dims, raw, -40.5 * dims)


def _projection_descriptors(genotypes):
    folded = jnp.where(jnp.abs(genotypes) > _BOUND, _BOUND / genotypes, genotypes)
    half = genotypes.shape[1] // 2
    return jnp.stack([jnp.sum(folded[:, :half], axis=1), jnp.sum(folded[:, half:], axis=1)], axis=1)


def _uniform_box(key, n, *, dims):
    return jax.random.uniform(key, (n, dims), jnp.float32, -_BOUND, _BOUND)


def _projection_task(name: str, dims: int, raw, worst: float) -> Task:
    def score(key, genotypes):
        del key
        x = genotypes - _SHIFT
        fitness = 100.0 * (1.0 - raw(x) / worst)
        return Evaluation(fitness, _projection_descriptors(genotypes), {})

    half = dims // 2
    return Task(
        name=name,
        score=score,
        example_genotype=jax.device_put(np.zeros((dims,), np.float32)),
        genotype_lower=None,
        genotype_upper=None,
        init=functools.partial(_uniform_box, dims=dims),
        lower=np.array([-_BOUND * half, -_BOUND * (dims - half)], np.float32),
        upper=np.array([_BOUND * half, _BOUND * (dims - half)], np.float32),
        qd_offset=0.0,
        descriptor_names=("sum of first half", "sum of second half"),
        options={"dims": dims},
        differentiable=True,
    )


def sphere_proj(dims: int = 20) -> Task:
    """Shifted sphere with linear-projection descriptors (CMA-ME benchmark)."""
    dims = _check_dims(dims, 2)
    worst = dims * (_BOUND + _SHIFT) ** 2
    return _projection_task("sphere_proj", dims, lambda x: jnp.sum(x * x, axis=1), worst)


def rastrigin_proj(dims: int = 20) -> Task:
    """Shifted rastrigin with linear-projection descriptors (CMA-ME benchmark)."""
    dims = _check_dims(dims, 2)
    worst = dims * (10.0 + (_BOUND + _SHIFT) ** 2 + 10.0)

    def raw(x):
        return 10.0 * dims + jnp.sum(_rastrigin_terms(x), axis=1)

    return _projection_task("rastrigin_proj", dims, raw, worst)
