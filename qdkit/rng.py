"""Fast Gaussian noise for variation operators, and key splitting without a loop.

``jax.random.normal`` with the default threefry generator spends most of a MAP-Elites
iteration on a CPU making mutation noise (0.7 ms for 1,024 x 100 normals, against
0.05 ms for archive insertion). Mutation noise does not need a cryptographic-strength
stream, so emitters draw it here instead:

1. two 32-bit seed words come from the key's data and a *stream* number (a small
   integer: one key gives independent streams, e.g. parents, line and isotropic
   noise of one emitter, without splitting it), through the integer hash of step 2. No
   threefry is called: in a compiled loop each threefry call is an XLA while loop of
   5 rounds (on CPU), which costs far more than its arithmetic for a handful of
   words, most of all under ``vmap`` (many seeds);
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

Where a key must be split, :func:`split` gives exactly ``jax.random.split``'s keys in
straight-line code: JAX compiles its Threefry to an XLA while loop on CPU.
"""

from __future__ import annotations

import functools
import math
import operator

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


def _key_words(key: jax.Array) -> list[jax.Array]:
    """The ``uint32`` words of one key (typed, e.g. ``jax.random.key``, or raw)."""
    if jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    words = jnp.asarray(key).astype(jnp.uint32).reshape(-1)
    return [words[i] for i in range(words.shape[0])]


def seed(key: jax.Array, stream: int = 0) -> tuple[jax.Array, jax.Array]:
    """Two ``uint32`` seed words for ``key`` and ``stream`` (a non-negative Python
    int): two differently started hash chains over the key's words, so the pair
    carries the key's 64 bits (a threefry key) rather than 32."""
    stream = int(stream)
    if stream < 0:
        raise ValueError(f"stream must be a non-negative integer; got {stream}")
    a = jnp.uint32((0x6A09E667 + stream * 0x9E3779B9) & 0xFFFFFFFF)
    b = jnp.uint32((0xBB67AE85 + stream * 0x85EBCA6B) & 0xFFFFFFFF)
    for word in _key_words(key):
        a = _lowbias32(a ^ word)
        b = _lowbias32(b + word)
    return a, b


def _hash(counter: jax.Array, s0: jax.Array, s1: jax.Array) -> jax.Array:
    return _lowbias32(_lowbias32(counter ^ s0) + s1)


def _unit(word: jax.Array) -> jax.Array:
    return ((word >> 9).astype(jnp.float32) + 0.5) * np.float32(2.0**-23)


def bits(key: jax.Array, shape: tuple[int, ...], stream: int = 0) -> jax.Array:
    """``uint32`` array of ``shape`` from a keyed counter hash (see module docstring)."""
    s0, s1 = seed(key, stream)
    counter = lax.iota(jnp.uint32, max(1, math.prod(shape)))[: math.prod(shape)]
    return _hash(counter, s0, s1).reshape(shape)


def uniform(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32, stream: int = 0) -> jax.Array:
    """Uniform floats in the open interval ``(0, 1)`` (23 random bits, centred)."""
    return _unit(bits(key, shape, stream)).astype(dtype)


# On a CPU backend, a draw of at least twice this many elements is made in two pieces
# (see normal).
PIECE_ELEMENTS = 1 << 9


def normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32, stream: int = 0) -> jax.Array:
    """Standard normal samples (Box-Muller on :func:`uniform` pairs).

    Of the ``n`` flat elements, element ``i < h = ceil(n / 2)`` is
    ``r_i cos(2 pi t_i)`` and element ``h + i`` is ``r_i sin(2 pi t_i)``, with
    ``r_i = sqrt(-2 log u_i)``, ``t_i = u_{h + i}`` and ``u`` :func:`uniform`'s ``2h``
    values. Each element is computed from its index alone, so a draw can be made in
    pieces, the values the same whichever way. On a CPU backend a draw of ``n >= 2 *
    PIECE_ELEMENTS`` is made as two pieces kept apart by an optimisation barrier (see
    :func:`pieces`): XLA's CPU compiler makes faster code of them than of the
    concatenated halves. In qdkit's loop with Iso+LineDD, from 64 x 100 to 1,024 x 1,000
    normals an iteration, each normal cost about 1.2 ns less on two CPUs and 1.8 ns less
    on one (``benchmarks/noise_pieces.py``: 120 ns per evaluation at 100 genes); why
    XLA's code differs so much was not established. Elsewhere (other backends, smaller
    draws) the draw is one loop.
    """
    n = math.prod(shape)
    bounds = pieces(n)
    if len(bounds) == 2:  # one loop, as a concatenation (faster than _normal_range over all n)
        half = (n + 1) // 2
        u = uniform(key, (2 * half,), jnp.float32, stream)
        radius = jnp.sqrt(-2.0 * jnp.log(u[:half]))
        turns = u[half:]
        z = jnp.concatenate([radius * cos_2pi(turns), radius * cos_2pi(turns - 0.25)])[:n]
    else:
        s0, s1 = seed(key, stream)
        parts = [_normal_range(s0, s1, n, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]
        z = jnp.concatenate(lax.optimization_barrier(parts))  # kept apart: XLA would fuse them into one loop
    return z.reshape(shape).astype(dtype)


def pieces(n: int) -> list[int]:
    """The bounds of the pieces :func:`normal` makes ``n`` elements in: two halves on a
    CPU backend for ``n >= 2 * PIECE_ELEMENTS``, otherwise one piece."""
    count = 2 if jax.default_backend() == "cpu" and n >= 2 * PIECE_ELEMENTS else 1
    return [n * p // count for p in range(count + 1)]


def _normal_range(s0: jax.Array, s1: jax.Array, n: int, lo: int, hi: int) -> jax.Array:
    """Elements ``lo .. hi - 1`` of :func:`normal`'s flat output of ``n``."""
    half = (n + 1) // 2
    i = lax.iota(jnp.uint32, max(1, hi - lo))[: hi - lo] + jnp.uint32(lo)
    first = i < half
    pair = jnp.where(first, i, i - jnp.uint32(half))  # r and t of element i: u[pair], u[half + pair]
    radius = jnp.sqrt(-2.0 * jnp.log(_unit(_hash(pair, s0, s1))))
    turns = _unit(_hash(pair + jnp.uint32(half), s0, s1))
    return radius * cos_2pi(jnp.where(first, turns, turns - 0.25))


_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _rotl(x: jax.Array, d: int) -> jax.Array:
    return (x << jnp.uint32(d)) | (x >> jnp.uint32(32 - d))


def threefry2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 block cipher (20 rounds; Salmon et al. 2011), as JAX computes
    it, written out round by round. JAX lowers its own to an XLA while loop of 5 steps
    on CPU (to compile faster), whose per-step cost dominates for the handful of words
    of a key split; this one is straight-line code that XLA fuses into one kernel."""
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for group in range(5):
        for r in _ROTATIONS[group % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(group + 1) % 3]
        x1 = x1 + ks[(group + 2) % 3] + jnp.uint32(group + 1)
    return x0, x1


def split(key: jax.Array, num: int = 2) -> jax.Array:
    """``jax.random.split(key, num)``, bit for bit, without XLA's while loop on CPU.

    For a Threefry key (JAX's default) under ``jax_threefry_partitionable`` (the
    default since JAX 0.5), the ``num`` new keys are Threefry-2x32 of the key and the
    counters ``(0, i)``, computed here by :func:`threefry2x32` in straight-line code;
    any other key, setting or ``num`` (a shape) is handed to ``jax.random.split``.
    Typed keys (``jax.random.key``) give typed keys, raw ``uint32[2]`` keys raw ones.
    """
    try:
        count = operator.index(num)
    except TypeError:
        return jax.random.split(key, num)
    if not jax.config.jax_threefry_partitionable:
        return jax.random.split(key, count)
    typed = jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key)
    if typed:
        impl = jax.random.key_impl(key)
        if str(impl) != "threefry2x32":
            return jax.random.split(key, count)
        data = jax.random.key_data(key)
    else:
        data = jnp.asarray(key)
        if data.shape != (2,) or data.dtype != jnp.uint32 or jax.config.jax_default_prng_impl != "threefry2x32":
            return jax.random.split(key, count)
    if data.shape != (2,):
        raise ValueError(f"split takes one key; got key data of shape {data.shape} (vmap over keys instead)")
    words = _split_words(data, count)
    return jax.random.wrap_key_data(words, impl=impl) if typed else words


def key(seed) -> jax.Array:
    """``jax.random.key(seed)`` for an int seed, or the stacked keys of a sequence of
    seeds; the same keys, made without compiling a program where that is simple (JAX's
    default Threefry implementation and seeds in ``[0, 2**31)``: the key is the words
    ``(0, seed)``). An eager ``jax.random.key`` compiles its seeding, and stacking keys
    compiles too: about 30 ms before the first step of ``qdkit run``. Anything else is
    handed to ``jax.random.key``."""
    many = np.ndim(seed) > 0
    seeds = list(seed) if many else [seed]
    simple = (
        jax.config.jax_default_prng_impl == "threefry2x32"
        and bool(seeds)
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and 0 <= s < 2**31 for s in seeds)
    )
    if not simple:  # (a traced seed, another implementation, a seed outside [0, 2**31))
        made = [jax.random.key(s) for s in seeds]
        return (jnp.stack(made) if made else jax.random.split(jax.random.key(0), 0)) if many else made[0]
    words = np.array([[0, int(s)] for s in seeds], np.uint32).reshape(-1, 2)
    return jax.random.wrap_key_data(jax.device_put(words if many else words[0]))


@functools.partial(jax.jit, static_argnums=1)
def _split_words(data: jax.Array, num: int) -> jax.Array:
    # jitted: eagerly, the rounds would be a hundred dispatches; inside a trace it inlines
    counters = lax.iota(jnp.uint32, num)
    hi, lo = threefry2x32(data[0], data[1], jnp.zeros_like(counters), counters)
    # a barrier, so that XLA computes the keys once rather than fusing the cipher into
    # every element of whatever consumes them (without it the arm's loop ran 4x slower)
    return lax.optimization_barrier(jnp.stack([hi, lo], axis=1))


NOISE = ("fast", "threefry")


def threefry_normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32, stream: int = 0) -> jax.Array:
    """``jax.random.normal`` with :func:`normal`'s signature: stream ``s > 0`` draws
    from ``jax.random.fold_in(key, s)``."""
    return jax.random.normal(jax.random.fold_in(key, stream) if stream else key, shape, dtype)


def normal_fn(noise: str):
    """The normal sampler named ``noise``, ``f(key, shape, dtype, stream=0)``:
    ``"fast"`` (:func:`normal`) or ``"threefry"`` (:func:`threefry_normal`)."""
    if noise == "fast":
        return normal
    if noise == "threefry":
        return threefry_normal
    raise ValueError(f"unknown noise generator {noise!r}; valid: {', '.join(NOISE)}")
