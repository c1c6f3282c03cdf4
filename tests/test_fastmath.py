"""Vectorised elementwise functions against NumPy in float64."""

import jax.numpy as jnp
import numpy as np

from qdkit.fastmath import cos_2pi


def test_cos_2pi_accuracy():
    x = np.linspace(-50.0, 50.0, 1_000_003, dtype=np.float32)
    got = np.asarray(cos_2pi(jnp.asarray(x)), np.float64)
    want = np.cos(2 * np.pi * x.astype(np.float64))
    assert np.max(np.abs(got - want)) < 3e-7


def test_cos_2pi_exact_points():
    x = jnp.asarray([0.0, 0.25, 0.5, 0.75, 1.0, -0.5, 3.0], jnp.float32)
    np.testing.assert_allclose(cos_2pi(x), [1, 0, -1, 0, 1, -1, 1], atol=1e-7)
