"""QDax as an oracle: the same batches give the same elites; conversions round-trip."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qdkit

qdax_repertoire = pytest.importorskip("qdax.core.containers.mapelites_repertoire")
from qdkit.interop.qdax import from_qdax, to_qdax  # noqa: E402


@pytest.fixture(autouse=True)
def _qdax_promotion_rules():
    """QDax's own code relies on implicit rank promotion; qdkit's does not."""
    with jax.numpy_rank_promotion("allow"), jax.numpy_dtype_promotion("standard"):
        yield


def batches(n_batches=6, batch=128, dim=5):
    key = jax.random.key(11)
    for _ in range(n_batches):
        key, kg, kf, kd = jax.random.split(key, 4)
        yield (
            jax.random.normal(kg, (batch, dim)),
            jax.random.normal(kf, (batch,)),
            jax.random.uniform(kd, (batch, 2)),
        )


@pytest.mark.parametrize("lookup", ["table", "brute"])
def test_same_batches_same_elites_as_qdax(lookup):
    archive = qdkit.CVTArchive.create(
        cells=400, lower=[0, 0], upper=[1, 1], example_genotype=jnp.zeros(5), samples=8000, lookup=lookup
    )
    repertoire = qdax_repertoire.MapElitesRepertoire.init_default(genotype=jnp.zeros(5), centroids=archive.centroids)
    for genotypes, fitness, descriptors in batches():
        archive, _ = archive.add(genotypes, fitness, descriptors)
        repertoire = repertoire.add(genotypes, descriptors, fitness)
    q_fitness = np.asarray(repertoire.fitnesses).reshape(-1)
    np.testing.assert_array_equal(np.isfinite(q_fitness), np.asarray(archive.occupied))
    occupied = np.asarray(archive.occupied)
    assert occupied.sum() > 250
    np.testing.assert_array_equal(q_fitness[occupied], np.asarray(archive.fitness)[occupied])
    np.testing.assert_array_equal(np.asarray(repertoire.genotypes)[occupied], np.asarray(archive.genotypes)[occupied])
    np.testing.assert_array_equal(
        np.asarray(repertoire.descriptors)[occupied], np.asarray(archive.descriptors)[occupied]
    )


def test_round_trip_grid_through_qdax():
    archive = qdkit.GridArchive.create(shape=(6, 6), lower=0, upper=1, example_genotype=jnp.zeros(3))
    for genotypes, fitness, descriptors in batches(2, 64, 3):
        archive, _ = archive.add(genotypes, fitness, descriptors)
    repertoire = to_qdax(archive)
    assert repertoire.fitnesses.shape == (36, 1)
    back = from_qdax(repertoire, lower=0, upper=1)
    assert isinstance(back, qdkit.CVTArchive)
    np.testing.assert_array_equal(back.fitness, archive.fitness)
    np.testing.assert_array_equal(back.genotypes, archive.genotypes)
    # cell centres as centroids: the nearest-centroid rule finds the same cells
    probe = jax.random.uniform(jax.random.key(0), (500, 2)) * 0.98 + 0.01
    np.testing.assert_array_equal(back.index_of(probe), archive.index_of(probe))
    # QDax keeps working on the converted repertoire
    g, f, d = next(batches(1, 64, 3))
    repertoire = repertoire.add(g, d, f)
    back2, _ = back.add(g, f, d)
    np.testing.assert_array_equal(np.asarray(repertoire.fitnesses).reshape(-1), back2.fitness)
