"""Neural-network policies whose parameters are genotypes: a small MLP in plain JAX.

Parameters are a tuple of ``{"w": (in, out), "b": (out,)}`` layers, so a batch of
policies is the same pytree with a leading axis and an archive stores it like any
genotype. ``MLP(sizes)`` is a value (hashable, usable as a static argument).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from qdkit import rng

ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu, "identity": lambda x: x}


@functools.partial(jax.jit, static_argnums=0)
def _init_layers(mlp: MLP, key: jax.Array) -> tuple[dict[str, jax.Array], ...]:
    # one program, which the compilation cache keeps (eagerly, each operation compiled
    # one of its own, about ten for the maze's policy at every start); the same weights,
    # bit for bit
    keys = rng.split(key, len(mlp.sizes) - 1)
    layers = []
    for k, n_in, n_out in zip(keys, mlp.sizes[:-1], mlp.sizes[1:]):
        limit = jnp.sqrt(3.0 / n_in)
        w = jax.random.uniform(k, (n_in, n_out), jnp.float32, -limit, limit)
        layers.append({"w": w, "b": jnp.zeros((n_out,), jnp.float32)})
    return tuple(layers)


class MLP(NamedTuple):
    """A multilayer perceptron ``sizes[0] -> ... -> sizes[-1]``.

    Attributes:
        sizes: layer widths, input first, output last.
        activation: hidden activation (``tanh``, ``relu``).
        final: output activation (``tanh`` bounds actions to [-1, 1]; ``identity``).
    """

    sizes: tuple[int, ...]
    activation: str = "tanh"
    final: str = "tanh"

    def init(self, key: jax.Array) -> tuple[dict[str, jax.Array], ...]:
        """LeCun-uniform weights, zero biases."""
        if len(self.sizes) < 2 or any(int(s) < 1 for s in self.sizes):
            raise ValueError(f"MLP sizes must be at least two positive widths; got {self.sizes}")
        for name in (self.activation, self.final):
            if name not in ACTIVATIONS:
                raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
        return _init_layers(self, key)

    def init_batch(self, key: jax.Array, n: int) -> Any:
        """``n`` independently initialised policies (leading axis ``n``)."""
        return jax.vmap(self.init)(rng.split(key, n))

    def apply(self, params: Any, x: jax.Array) -> jax.Array:
        """Outputs for inputs ``x`` (``(..., sizes[0])``)."""
        hidden, final = ACTIVATIONS[self.activation], ACTIVATIONS[self.final]
        for i, layer in enumerate(params):
            x = x @ layer["w"] + layer["b"].reshape((1,) * (x.ndim - 1) + (-1,))
            x = final(x) if i == len(params) - 1 else hidden(x)
        return x

    @property
    def num_params(self) -> int:
        return sum(i * o + o for i, o in zip(self.sizes[:-1], self.sizes[1:]))
