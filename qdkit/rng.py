"""Fast Gaussian noise for variation operators.

``jax.random.normal`` with the default threefry generator spends most of a MAP-Elites
iteration on a CPU making mutation noise (0.7 ms for 1,024 x 100 normals, against
0.05 ms for archive insertion). Mutation noise does not need a cryptographic-strength
stream, so emitters draw it here instead:

1. two 32-bit seed words come from the key with ``jax.random.bits`` (threefry, so
   keys split and fold exactly as usual);
2. the bits of element ``i`` are a keyed counter hash: ``lowbias32`` (C. Wellons'
   hash-prospector integer hash, a bijection of ``uint32`` with very low avalanche
   bias) applied twice, with a seed word mixed in before each round;
3. the 23 high bits make uniforms in ``(0, 1)``; pairs ``(u1, u2)`` become two
   standard normals by the Box-Muller transform, ``sqrt(-2 log u1)`` times the cosine
   and sine of ``2 pi u2`` (:func:`qdkit.fastmath.cos_2pi`, vectorised).

The stream is deterministic for a key (runs stay reproducible and resumable), and
about 3x faster than threefry normals on CPU (0.23 ms against 0.74 ms for
1,024 x 100 on one core). Tails are cut at ``sqrt(-2 log 2^-24) = 5.8`` sigma. Use ``jax.random.normal`` where a
cryptographic-strength stream matters; the emitters accept ``noise="threefry"``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from qdkit.fastmath import cos_2pi


def _lowbias32(x: jax.Array) -> jax.Array:
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``uint32`` array of ``shape`` from a keyed counter hash (see module docstring)."""
    seed = jax.random.bits(key, (2,), jnp.uint32)
    counter = lax.iota(jnp.uint32, max(1, math.prod(shape)))[: math.prod(shape)]
    mixed = _lowbias32(_lowbias32(counter ^ seed[0]) + seed[1])
    return mixed.reshape(shape)


def uniform(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Uniform floats in the open interval ``(0, 1)`` (23 random bits, centred)."""
    mantissa = (bits(key, shape) >> 9).astype(jnp.float32)
    return ((mantissa + 0.5) * np.float32(2.0**-23)).astype(dtype)


def normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
    """Standard normal samples (Box-Muller on :func:`uniform` pairs)."""
    n = math.prod(shape)
    half = (n + 1) // 2
    u = uniform(key, (2 * half,), jnp.float32)
    radius = jnp.sqrt(-2.0 * jnp.log(u[:half]))
    turns = u[half:]
    z = jnp.concatenate([radius * cos_2pi(turns), radius * cos_2pi(turns - 0.25)])
    return z[:n].reshape(shape).astype(dtype)


NOISE = ("fast", "threefry")


def normal_fn(noise: str):
    """The normal sampler named ``noise``: ``"fast"`` (this module) or ``"threefry"``."""
    if noise == "fast":
        return normal
    if noise == "threefry":
        return jax.random.normal
    raise ValueError(f"unknown noise generator {noise!r}; valid: {', '.join(NOISE)}")
