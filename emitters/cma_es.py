"""CMA-ES as pure functions on a state value, written to be ``vmap``-ed over instances.

The update follows Hansen's reference implementation (``purecma``, and "The CMA
Evolution Strategy: A Tutorial", 2016) with positive recombination weights only:

- weights ``w_i ∝ ln(mu + 1/2) - ln i`` for the ``mu`` selected parents, summing to 1,
  ``mu_eff = 1 / sum w_i^2``; ``mu`` may change every iteration (CMA-ME's "filter"
  selection keeps exactly the candidates the archive accepted);
- ``c_c = (4 + mu_eff/n) / (n + 4 + 2 mu_eff/n)``,
  ``c_s = (mu_eff + 2) / (n + mu_eff + 5)``, ``c_1 = 2 / ((n + 1.3)^2 + mu_eff)``,
  ``c_mu = min(1 - c_1, 2 (mu_eff - 2 + 1/mu_eff) / ((n + 2)^2 + mu_eff))``,
  ``d_s = 1 + 2 max(0, sqrt((mu_eff - 1)/(n + 1)) - 1) + c_s``;
- ``m' = sum w_i x_i``, ``y = m' - m``;
  ``p_s <- (1 - c_s) p_s + sqrt(c_s (2 - c_s) mu_eff) C^{-1/2} y / sigma``;
  ``h_s = [|p_s|^2 / n / (1 - (1 - c_s)^(2 evals / lambda)) < 2 + 4/(n + 1)]``;
  ``p_c <- (1 - c_c) p_c + h_s sqrt(c_c (2 - c_c) mu_eff) y / sigma``;
  ``C <- (1 - c_1a - c_mu) C + c_1 p_c p_c^T + c_mu sum w_i (x_i - m)(x_i - m)^T / sigma^2``
  with ``c_1a = c_1 (1 - (1 - h_s^2) c_c (2 - c_c))``;
  ``sigma <- sigma exp(min(1, (c_s / d_s) (|p_s|^2 / n - 1) / 2))``.

The eigendecomposition behind ``C^{1/2}`` and ``C^{-1/2}`` is refreshed lazily, every
:func:`lazy_gap` iterations, as in pycma and pyribs: it is the only ``O(n^3)`` step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


class CMAState(NamedTuple):
    """One CMA-ES instance (stack the leaves to hold several).

    Attributes:
        mean: ``(n,)`` distribution mean.
        sigma: ``()`` step size.
        cov: ``(n, n)`` covariance matrix ``C``.
        basis: ``(n, n)`` eigenvectors of ``C`` (columns), as of the last decomposition.
        eigvals: ``(n,)`` eigenvalues of ``C``, as of the last decomposition.
        invsqrt: ``(n, n)`` ``C^{-1/2}``, as of the last decomposition.
        pc, ps: ``(n,)`` evolution paths.
        evals: ``()`` solutions told since the last reset.
    """

    mean: jax.Array
    sigma: jax.Array
    cov: jax.Array
    basis: jax.Array
    eigvals: jax.Array
    invsqrt: jax.Array
    pc: jax.Array
    ps: jax.Array
    evals: jax.Array


def reset(mean: jax.Array, sigma0: float) -> CMAState:
    """A fresh instance centred on ``mean`` with step size ``sigma0`` and ``C = I``."""
    mean = jnp.asarray(mean, jnp.float32)
    n = mean.shape[-1]
    eye = jnp.eye(n, dtype=jnp.float32)
    zeros = jnp.zeros((n,), jnp.float32)
    return CMAState(
        mean=mean,
        sigma=jnp.asarray(sigma0, jnp.float32),
        cov=eye,
        basis=eye,
        eigvals=jnp.ones((n,), jnp.float32),
        invsqrt=eye,
        pc=zeros,
        ps=zeros,
        evals=jnp.zeros((), jnp.float32),
    )


def weights(num_parents: jax.Array, population: int) -> jax.Array:
    """``(population,)`` recombination weights for the first ``num_parents`` ranked rows
    (zeros after them; all zeros when ``num_parents == 0``)."""
    i = jnp.arange(1, population + 1, dtype=jnp.float32)
    count = jnp.asarray(num_parents).astype(jnp.float32)
    mu = jnp.maximum(count, 1.0)
    raw = jnp.where(i <= count, jnp.log(mu + 0.5) - jnp.log(i), 0.0)
    return raw / jnp.maximum(jnp.sum(raw), 1e-30)


def rates(mueff: jax.Array, n: int) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(c_c, c_s, c_1, c_mu, d_s)`` for a given ``mu_eff`` in dimension ``n``."""
    cc = (4 + mueff / n) / (n + 4 + 2 * mueff / n)
    cs = (mueff + 2) / (n + mueff + 5)
    c1 = 2 / ((n + 1.3) ** 2 + mueff)
    cmu = jnp.minimum(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((n + 2) ** 2 + mueff))
    damps = 1 + 2 * jnp.maximum(0.0, jnp.sqrt((mueff - 1) / (n + 1)) - 1) + cs
    return cc, cs, c1, cmu, damps


def lazy_gap(n: int, population: int) -> int:
    """Iterations between eigendecompositions: the first iteration count whose
    evaluations exceed pyribs' (pycma's) lazy gap of
    ``0.5 n lambda / (c_1 + c_mu) / n^2`` evaluations, computed at ``mu = lambda / 2``."""
    w = weights(jnp.asarray(max(population // 2, 1)), population)
    mueff = float(1.0 / jnp.sum(w**2))
    _, _, c1, cmu, _ = rates(jnp.asarray(mueff), n)
    gap_evals = 0.5 * n * population / float(c1 + cmu) / n**2
    # pyribs decomposes once more than ``gap_evals`` evaluations have passed
    return math.floor(gap_evals / population) + 1


def sample(state: CMAState, z: jax.Array) -> jax.Array:
    """Candidates ``mean + sigma * B diag(sqrt(eigvals)) z`` for ``z: (lambda, n)``."""
    transform = state.basis * jnp.sqrt(state.eigvals)[None, :]
    return state.mean[None, :] + state.sigma * z @ transform.T


def tell(state: CMAState, ranked: jax.Array, num_parents: jax.Array) -> CMAState:
    """One CMA-ES update from ``ranked: (lambda, n)``, the candidates best first.

    The first ``num_parents`` rows are recombined; with ``num_parents == 0`` only the
    evaluation count moves.
    """
    population, n = ranked.shape
    evals = state.evals + population
    w = weights(num_parents, population)
    mueff = 1.0 / jnp.maximum(jnp.sum(w**2), 1e-30)
    cc, cs, c1, cmu, damps = rates(mueff, n)

    old = state.mean
    mean = w @ ranked
    y = mean - old
    ps = (1 - cs) * state.ps + jnp.sqrt(cs * (2 - cs) * mueff) / state.sigma * (state.invsqrt @ y)
    norm_ps = jnp.sum(ps**2) / n / (1 - (1 - cs) ** (2 * evals / population))
    hsig = (norm_ps < 2 + 4.0 / (n + 1)).astype(jnp.float32)
    pc = (1 - cc) * state.pc + hsig * jnp.sqrt(cc * (2 - cc) * mueff) / state.sigma * y

    dx = ranked - old[None, :]
    rank_mu = (dx * w[:, None]).T @ dx / state.sigma**2
    c1a = c1 * (1 - (1 - hsig**2) * cc * (2 - cc))
    cov = (1 - c1a - cmu * jnp.sum(w)) * state.cov + c1 * jnp.outer(pc, pc) + cmu * rank_mu
    sigma = state.sigma * jnp.exp(jnp.minimum(1.0, cs / damps * (jnp.sum(ps**2) / n - 1) / 2))

    updated = state._replace(mean=mean, sigma=sigma, cov=cov, pc=pc, ps=ps, evals=evals)
    unchanged = state._replace(evals=evals)
    return jax.tree.map(lambda a, b: jnp.where(num_parents > 0, a, b), updated, unchanged)


def decompose(state: CMAState) -> CMAState:
    """Refresh ``basis``, ``eigvals`` and ``C^{-1/2}`` from ``cov`` (symmetrised)."""
    cov = (state.cov + state.cov.T) / 2
    eigvals, basis = jnp.linalg.eigh(cov)
    eigvals = jnp.maximum(jnp.abs(eigvals), 1e-30)
    invsqrt = (basis * (1 / jnp.sqrt(eigvals))[None, :]) @ basis.T
    return state._replace(cov=cov, basis=basis, eigvals=eigvals, invsqrt=(invsqrt + invsqrt.T) / 2)


def should_stop(state: CMAState, spread: jax.Array) -> jax.Array:
    """pycma's tolerances: condition number above ``1e14``, distribution area below
    ``1e-11``, or ``spread`` (best minus worst ranking value) below ``1e-12``."""
    condition = jnp.max(state.eigvals) / jnp.min(state.eigvals)
    area = state.sigma * jnp.sqrt(jnp.max(state.eigvals))
    return (condition > 1e14) | (area < 1e-11) | (spread < 1e-12) | ~jnp.isfinite(state.sigma)
