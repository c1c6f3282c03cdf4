"""Interop: QDax as an oracle (the same batches give the same elites); QDax and pyribs
conversions round-trip exactly or are refused; plots draw what came from either."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qdkit

qdax_repertoire = pytest.importorskip("qdax.core.containers.mapelites_repertoire")
from qdkit.interop.qdax import from_qdax, to_qdax  # noqa: E402
from qdkit.interop.ribs import from_ribs, to_ribs  # noqa: E402


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


def filled(archive, n_batches=3, dim=3):
    for genotypes, fitness, descriptors in batches(n_batches, 64, dim):
        archive, _ = archive.add(genotypes, fitness, descriptors * 1.2 - 0.1)  # some out of bounds
    return archive


def same_archive(a, b):
    assert a.kind == b.kind and a.num_cells == b.num_cells and a.soft == b.soft
    np.testing.assert_array_equal(a.fitness, b.fitness)
    np.testing.assert_array_equal(a.occupied, b.occupied)
    occupied = np.asarray(a.occupied)
    np.testing.assert_array_equal(np.asarray(a.genotypes)[occupied], np.asarray(b.genotypes)[occupied])
    np.testing.assert_array_equal(np.asarray(a.descriptors)[occupied], np.asarray(b.descriptors)[occupied])
    np.testing.assert_array_equal(a.cell_centers(), b.cell_centers())
    if a.soft:
        np.testing.assert_array_equal(a.threshold, b.threshold)
        assert (a.learning_rate, a.threshold_min) == (b.learning_rate, b.threshold_min)


def archives():
    g = jnp.zeros(3)
    return {
        "grid": qdkit.GridArchive.create(shape=(6, 5), lower=0, upper=1, example_genotype=g),
        "cvt": qdkit.CVTArchive.create(cells=30, lower=[0, 0], upper=[1, 1], example_genotype=g, samples=4000),
        "grid-thresholds": qdkit.GridArchive.create(shape=(6, 5), lower=0, upper=1, example_genotype=g,
                                                    learning_rate=0.1, threshold_min=-3.0),
        "cvt-thresholds": qdkit.CVTArchive.create(cells=30, lower=[0, 0], upper=[1, 1], example_genotype=g,
                                                  samples=4000, learning_rate=0.1, threshold_min=-3.0),
    }  # fmt: skip


@pytest.mark.parametrize("kind", ["grid", "cvt"])
def test_qdax_round_trip_is_exact_and_qdax_finds_the_same_cells(kind):
    archive = filled(archives()[kind])
    repertoire = to_qdax(archive)
    assert repertoire.fitnesses.shape == (archive.num_cells, 1)
    same_archive(from_qdax(repertoire, like=archive), archive)
    back = from_qdax(repertoire)  # without a template: a CVT over the centroids
    assert back.kind == "cvt"
    np.testing.assert_array_equal(back.fitness, archive.fitness)
    # QDax keeps working on the converted repertoire; inside the bounds it finds qdkit's cells
    g, f, d = next(batches(1, 64, 3))
    d = d * 0.98 + 0.01
    np.testing.assert_array_equal(
        np.asarray(repertoire.add(g, d, f).fitnesses).reshape(-1), archive.add(g, f, d)[0].fitness
    )
    outside = jnp.asarray([[-0.5, 0.55], [1.7, 0.23], [2.0, -1.0]], jnp.float32)  # off the cell boundaries
    if kind == "grid":  # a product grid of centres: the nearest centre is qdkit's clipped cell, outside too
        distances = jnp.sum((outside[:, None, :] - repertoire.centroids[None]) ** 2, axis=-1)
        np.testing.assert_array_equal(jnp.argmin(distances, axis=1), archive.index_of(outside))
    with pytest.raises(ValueError, match="not the cell centres"):
        from_qdax(repertoire, like=archives()["grid" if kind == "cvt" else "cvt"])


def test_qdax_refuses_what_it_cannot_hold():
    with pytest.raises(ValueError, match="thresholds.*archive.results"):
        to_qdax(archives()["grid-thresholds"])
    edges = qdkit.GridArchive.create(edges=[[0, 0.1, 1]], example_genotype=jnp.zeros(2))
    with pytest.raises(ValueError, match="non-uniform edges"):
        to_qdax(edges)
    # the converted result archive of a threshold archive is a plain archive
    soft = filled(archives()["grid-thresholds"])
    same_archive(from_qdax(to_qdax(soft.results()), like=soft.results()), soft.results())


@pytest.mark.parametrize("kind", sorted(archives()))
def test_ribs_round_trip_keeps_cells_elites_and_thresholds(kind):
    ribs_archives = pytest.importorskip("ribs.archives")
    archive = filled(archives()[kind])
    theirs = to_ribs(archive)
    assert isinstance(theirs, ribs_archives.GridArchive if kind.startswith("grid") else ribs_archives.CVTArchive)
    assert len(theirs) == len(archive) and theirs.learning_rate == archive.learning_rate
    back = from_ribs(theirs, example_genotype=jnp.zeros(3))
    same_archive(back, archive)
    # pyribs goes on from there as qdkit does (off the cell boundaries; inside the bounds for a CVT)
    g, f, d = next(batches(1, 64, 3))
    d = np.asarray(d) * 0.98 + 0.01
    info = theirs.add(np.asarray(g), np.asarray(f), d)
    ours, ours_info = archive.add(g, f, jnp.asarray(d))
    np.testing.assert_array_equal(ours_info.rank_status, info["status"])
    same = from_ribs(theirs, example_genotype=jnp.zeros(3))
    np.testing.assert_array_equal(same.fitness, ours.fitness)
    if archive.soft:
        np.testing.assert_allclose(same.threshold, ours.threshold, rtol=1e-6, atol=1e-6)


def test_ribs_pytree_genotypes_and_refusals():
    pytest.importorskip("ribs.archives")
    example = {"w": jnp.zeros((2, 2)), "b": jnp.zeros(3)}
    archive = qdkit.GridArchive.create(shape=(4,), lower=0, upper=1, example_genotype=example)
    genotypes = {"w": jnp.arange(8.0).reshape(2, 2, 2), "b": jnp.ones((2, 3))}
    archive, _ = archive.add(genotypes, jnp.asarray([1.0, 2.0]), jnp.asarray([[0.1], [0.9]]))
    theirs = to_ribs(archive)
    assert theirs.solution_dim == 7
    back = from_ribs(theirs, example_genotype=example)
    np.testing.assert_array_equal(back.genotypes["w"], archive.genotypes["w"])
    np.testing.assert_array_equal(back.genotypes["b"], archive.genotypes["b"])
    flat = from_ribs(theirs)  # no example: pyribs' flat vectors
    assert flat.genotypes.shape == (4, 7)
    with pytest.raises(ValueError, match="has 5 entries"):
        from_ribs(theirs, example_genotype=jnp.zeros(5))
    with pytest.raises(ValueError, match="uniform cells"):
        to_ribs(qdkit.GridArchive.create(edges=[[0, 0.1, 1]], example_genotype=jnp.zeros(2)))


@pytest.mark.parametrize("library", ["qdax", "ribs"])
def test_plots_draw_archives_from_either_library(library):
    pytest.importorskip("ribs.archives")
    import matplotlib.pyplot as plt

    for kind in ("grid", "cvt"):
        archive = filled(archives()[kind])
        foreign = to_qdax(archive) if library == "qdax" else to_ribs(archive)
        fig, ax = plt.subplots()
        qdkit.plot.archive_heatmap(foreign, ax=ax)
        assert ax.images or ax.collections
        plt.close(fig)
    with pytest.raises(TypeError, match="qdkit, pyribs or QDax"):
        qdkit.plot.archive_heatmap(object())
