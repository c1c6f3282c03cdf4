"""Learned descriptors: a small projection from task features to ``M`` latent
descriptors, trained from similarity judgments (QDHF) or as an autoencoder (AURORA).

- :class:`Projection` is a static, hashable description (feature size, latent size,
  hidden layers); its parameters are a plain pytree. ``apply(params, features)`` is pure.
- :func:`fit_triplets` trains it with the triplet margin loss of QDHF,
  ``max(0, |z_0 - z_+|^2 - |z_0 - z_-|^2 + margin)`` averaged over the answered
  triplets, with Adam (optax), as one jitted ``lax.scan``.
- :func:`fit_autoencoder` trains it as the encoder of an autoencoder on the features
  (the AURORA baseline), with a decoder mirroring it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from feedback.judges import CANT_TELL, A


@dataclasses.dataclass(frozen=True)
class Projection:
    """An MLP (a linear map when ``hidden == ()``) from ``feature_dim`` features to
    ``dims`` latent descriptors; hidden layers use ``tanh``."""

    feature_dim: int
    dims: int = 2
    hidden: tuple[int, ...] = ()

    def __post_init__(self):
        if self.feature_dim < 1 or self.dims < 1 or any(h < 1 for h in self.hidden):
            raise ValueError(f"layer sizes must be positive; got {self.feature_dim}, {self.hidden}, {self.dims}")

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.feature_dim, *self.hidden, self.dims)

    def init(self, key: jax.Array) -> list[dict[str, jax.Array]]:
        """Glorot-uniform weights, zero biases."""
        params = []
        for k, (fan_in, fan_out) in zip(jax.random.split(key, len(self.sizes) - 1), zip(self.sizes, self.sizes[1:])):
            limit = (6.0 / (fan_in + fan_out)) ** 0.5
            params.append(
                {
                    "w": jax.random.uniform(k, (fan_in, fan_out), jnp.float32, -limit, limit),
                    "b": jnp.zeros((fan_out,), jnp.float32),
                }
            )
        return params

    def apply(self, params: list[dict[str, jax.Array]], features: jax.Array) -> jax.Array:
        """``(B, feature_dim) -> (B, dims)``."""
        x = jnp.asarray(features, jnp.float32)
        for i, layer in enumerate(params):
            x = x @ layer["w"] + layer["b"][None, :]
            if i < len(params) - 1:
                x = jnp.tanh(x)
        return x

    def decoder(self) -> Projection:
        """The mirrored projection ``dims -> feature_dim`` (AURORA's decoder)."""
        return Projection(self.dims, self.feature_dim, tuple(reversed(self.hidden)))


def triplet_loss(projection: Projection, params, anchor, a, b, choice, margin: float = 1.0) -> jax.Array:
    """Mean triplet margin loss over answered triplets (``choice != CANT_TELL``).

    ``anchor``, ``a``, ``b``: ``(N, feature_dim)`` features; ``choice``: ``(N,)`` with
    :data:`feedback.judges.A` when ``a`` is the more similar item, ``B`` when ``b`` is.
    """
    z0, z1, z2 = (projection.apply(params, x) for x in (anchor, a, b))
    first = (choice == A)[:, None]
    pos = jnp.where(first, z1, z2)
    neg = jnp.where(first, z2, z1)
    loss = jnp.maximum(0.0, jnp.sum((z0 - pos) ** 2, axis=1) - jnp.sum((z0 - neg) ** 2, axis=1) + margin)
    answered = (choice != CANT_TELL).astype(jnp.float32)
    return jnp.sum(loss * answered) / jnp.maximum(jnp.sum(answered), 1.0)


def fit_triplets(projection: Projection, params, anchor, a, b, choice, *, steps=500, lr=1e-2, margin=1.0):
    """Adam on :func:`triplet_loss` (full batch), jitted; returns ``(params, final_loss)``."""
    with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32 counts
        return _fit_triplets(projection, params, anchor, a, b, choice, steps=steps, lr=lr, margin=margin)


@functools.partial(jax.jit, static_argnames=("projection", "steps", "lr", "margin"))
def _fit_triplets(projection, params, anchor, a, b, choice, *, steps, lr, margin):
    opt = optax.adam(lr)
    choice = jnp.asarray(choice, jnp.int32)

    def loss_fn(p):
        return triplet_loss(projection, p, anchor, a, b, choice, margin)

    def step(carry, _):
        p, s = carry
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, s = opt.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), loss

    (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params, loss_fn(params) if steps == 0 else losses[-1]


def fit_autoencoder(projection: Projection, params, decoder_params, features, *, steps=500, lr=1e-2):
    """Adam on the reconstruction error of ``decoder(encoder(features))``, jitted;
    returns ``(params, decoder_params, final_loss)`` (AURORA's unsupervised descriptors)."""
    with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32 counts
        return _fit_autoencoder(projection, params, decoder_params, features, steps=steps, lr=lr)


@functools.partial(jax.jit, static_argnames=("projection", "steps", "lr"))
def _fit_autoencoder(projection, params, decoder_params, features, *, steps, lr):
    decoder = projection.decoder()
    opt = optax.adam(lr)

    def loss_fn(both):
        enc, dec = both
        return jnp.mean((decoder.apply(dec, projection.apply(enc, features)) - features) ** 2)

    def step(carry, _):
        p, s = carry
        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, s = opt.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), loss

    both = (params, decoder_params)
    (both, _), losses = jax.lax.scan(step, (both, opt.init(both)), None, length=steps)
    return both[0], both[1], losses[-1]


def align_axes(projection: Projection, params, features: jax.Array) -> list[dict[str, jax.Array]]:
    """The same projection rotated so that the latent descriptors of ``features`` have
    uncorrelated coordinates (their principal axes along the grid's axes).

    A rotation keeps every distance, so the triplet loss is unchanged; it lets an
    axis-aligned grid cover an elongated, tilted latent cloud with fewer empty cells.
    """
    z = projection.apply(params, features)
    z = z - jnp.mean(z, axis=0, keepdims=True)
    _, rotation = jnp.linalg.eigh(z.T @ z)
    rotation = rotation[:, ::-1]  # largest variance first
    last = dict(params[-1])
    last["w"] = last["w"] @ rotation
    last["b"] = last["b"] @ rotation
    return [*params[:-1], last]


def latent_bounds(projection: Projection, params, features: jax.Array, pad: float = 0.05) -> tuple[Any, Any]:
    """Bounds of the latent descriptors of ``features`` (``(N, F)``, N >= 1): their
    range padded by ``pad`` of its width on each side (a minimum width of ``1e-6``)."""
    z = projection.apply(params, features)
    lo, hi = jnp.min(z, axis=0), jnp.max(z, axis=0)
    width = jnp.maximum(hi - lo, 1e-6)
    return lo - pad * width, hi + pad * width
