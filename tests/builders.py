"""Small builders shared by several test modules."""

import jax
import numpy as np

import qdkit


def small_archive(task: qdkit.Task, kind: str) -> qdkit.Archive:
    """A 12x12 grid or a 300-cell CVT archive over the task's descriptor bounds."""
    if kind == "grid":
        return qdkit.GridArchive.create(
            shape=(12, 12), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
        )
    return qdkit.CVTArchive.create(
        cells=300, lower=task.lower, upper=task.upper, example_genotype=task.example_genotype, samples=5000
    )


def leaves_equal(a, b) -> None:
    """Assert two pytrees (run states) equal leaf by leaf, PRNG keys by their key data."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
