"""CVT archives: k-means centroids and the exact bucket-table lookup."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qdkit
from qdkit import cvt


@pytest.fixture(params=["one-at-a-time", "argmin"])
def lookup_form(request, monkeypatch):
    """Both forms of the table lookup: candidates compared one at a time (the default up
    to ``cvt.UNROLL_CANDIDATES``; raised here so that 3-D tables, whose K is often above
    it, take that form too) and one ``argmin`` over the ``(B, K)`` candidates. The
    limit is read while tracing; these tests call ``index_of`` eagerly, op by op, so no
    cached trace of the other form is reused."""
    monkeypatch.setattr(cvt, "UNROLL_CANDIDATES", 10_000 if request.param == "one-at-a-time" else 0)
    return request.param


def assert_form(archive, points, form):
    """The lookup of ``archive`` takes ``form``."""
    uses_argmin = "argmin" in str(jax.make_jaxpr(archive.index_of)(points))
    assert uses_argmin == (form == "argmin"), (form, archive.indexer.table.shape)


@pytest.mark.parametrize("dim, cells", [(1, 300), (2, 2000), (3, 1500)], ids=["1d", "2d", "3d"])
def test_table_lookup_equals_brute_force(dim, cells, lookup_form):
    lower, upper = -np.ones(dim, np.float32), 2 * np.ones(dim, np.float32)
    archive = qdkit.CVTArchive.create(
        cells=cells, lower=lower, upper=upper, example_genotype=jnp.zeros(2), samples=20 * cells, iterations=3
    )
    assert archive.indexer.table is not None
    points = jax.random.uniform(jax.random.key(5), (20_000, dim), minval=-1.5, maxval=2.5)
    assert_form(archive, points, lookup_form)
    got = archive.index_of(points)
    clipped = jnp.clip(points, archive.lower[None, :], archive.upper[None, :])
    expected = cvt.nearest_brute(clipped, archive.centroids)
    np.testing.assert_array_equal(got, expected)


def test_table_is_the_brute_force_definition_on_clustered_centroids():
    """The k-d tree build keeps, per bucket, exactly the centroids within its reach (in
    index order, the row filled with its first), K the widest reach count: checked
    against the all-pairs definition, on clusters (buckets far from every centroid need
    many doublings of k)."""
    rng = np.random.default_rng(0)
    centroids = np.concatenate([rng.normal(0.2, 0.02, (600, 2)), rng.uniform(0, 1, (200, 2))]).astype(np.float32)
    lower, upper, grid = jnp.zeros(2), jnp.ones(2), (29, 29)
    table = np.asarray(cvt.build_table(jnp.asarray(centroids), lower, upper, grid))
    centers = np.asarray(cvt._bucket_centers(lower, upper, grid), np.float32)
    d2 = np.sum((centers[:, None, :] - centroids[None, :, :]) ** 2, axis=-1, dtype=np.float32)
    radius = np.float32(0.5) * np.sqrt(np.float32(2.0) / np.float32(29.0) ** 2)
    reach = np.sqrt(d2.min(axis=1)) + 2 * radius
    counts = np.sum(d2 <= (reach * reach * np.float32(1 + 1e-5))[:, None], axis=1)
    k = -(-int(counts.max()) // 4) * 4
    assert table.shape == (29 * 29, k) and k > 40
    for row, dists, count in zip(table, d2, counts):
        within = np.flatnonzero(dists <= (np.sqrt(dists.min()) + 2 * radius) ** 2 * np.float32(1 + 1e-5))
        np.testing.assert_array_equal(row[:count], within)  # every centroid in reach, in index order
        assert np.all(row[count:] == within[0])  # the rest: the first again


def test_ties_go_to_lowest_index(lookup_form):
    centroids = jnp.asarray([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0]], jnp.float32)
    table = qdkit.CVTArchive.create(
        centroids=centroids, lower=-1, upper=2, example_genotype=jnp.zeros(1), lookup="table"
    )
    brute = qdkit.CVTArchive.create(
        centroids=centroids, lower=-1, upper=2, example_genotype=jnp.zeros(1), lookup="brute"
    )
    points = jnp.asarray([[0.0, 0.0], [0.5, 0.0], [1.0, 1.0], [0.1, 0.9]], jnp.float32)
    assert_form(table, points, lookup_form)
    np.testing.assert_array_equal(table.index_of(points), brute.index_of(points))
    np.testing.assert_array_equal(brute.index_of(points)[:3], [0, 0, 3])


def test_kmeans_deterministic_in_bounds_and_spread():
    lo, hi = jnp.asarray([0.0, -1.0]), jnp.asarray([1.0, 1.0])
    a = cvt.kmeans_centroids(jax.random.key(3), 200, lo, hi, samples=20_000)
    b = cvt.kmeans_centroids(jax.random.key(3), 200, lo, hi, samples=20_000)
    c = cvt.kmeans_centroids(jax.random.key(4), 200, lo, hi, samples=20_000)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    a = np.asarray(a)
    assert a.shape == (200, 2)
    assert np.all(a >= [0, -1]) and np.all(a <= [1, 1])
    # a CVT is spread out: the sample points split evenly between cells
    pts = jax.random.uniform(jax.random.key(9), (40_000, 2)) * jnp.asarray([[1.0, 2.0]]) - jnp.asarray([[0.0, 1.0]])
    counts = np.bincount(np.asarray(cvt.nearest_brute(pts, jnp.asarray(a))), minlength=200)
    assert counts.min() > 0.4 * counts.mean() and counts.max() < 1.8 * counts.mean()


def test_cvt_archive_insertion_and_edges():
    centroids = jnp.asarray([[0.25, 0.5], [0.75, 0.5]], jnp.float32)
    archive = qdkit.CVTArchive.create(centroids=centroids, lower=0, upper=1, example_genotype=jnp.zeros(1))
    archive, info = archive.add(
        jnp.zeros((3, 1)), jnp.asarray([1.0, 2.0, 3.0]), jnp.asarray([[0.1, 0.1], [0.9, 0.2], [5.0, 0.5]])
    )
    np.testing.assert_array_equal(info.index, [0, 1, 1])
    np.testing.assert_array_equal(info.status, [2, 0, 2])
    np.testing.assert_allclose(archive.descriptors[1], [5.0, 0.5])


def test_bad_arguments():
    with pytest.raises(ValueError, match="cells"):
        qdkit.CVTArchive.create(cells=0, lower=[0, 0], upper=[1, 1], example_genotype=jnp.zeros(1))
    with pytest.raises(ValueError, match=r"\(M,\) bounds"):
        qdkit.CVTArchive.create(cells=10, lower=0, upper=1, example_genotype=jnp.zeros(1))
    with pytest.raises(ValueError, match="lookup"):
        qdkit.CVTArchive.create(cells=4, lower=[0], upper=[1], example_genotype=jnp.zeros(1), lookup="kd")
    with pytest.raises(ValueError, match="samples"):
        cvt.kmeans_centroids(jax.random.key(0), 100, jnp.zeros(2), jnp.ones(2), samples=10)


def test_building_a_table_holds_it_on_the_host_once(monkeypatch):
    # the table is filled in place as int32 (not gathered as int64 rows, concatenated,
    # then converted): NumPy's peak is the table and the buckets' reach sets (ragged,
    # about a third of a table, released before the table goes to the device), however
    # many centroids; the code before gave about 5 tables
    import tracemalloc

    import scipy.spatial  # noqa: F401  (imported before the measurement, as by an earlier table)

    monkeypatch.setattr(cvt, "_BLOCK_ELEMENTS", 1 << 14)  # small blocks: the table dominates
    centroids = np.random.default_rng(3).uniform(0.0, 1.0, (20_000, 2)).astype(np.float32)
    lower, upper = jnp.zeros(2), jnp.ones(2)
    grid = cvt.table_shape_for(len(centroids), 2)
    cvt._bucket_centers(lower, upper, grid)  # (its eager programs compile outside the measurement)
    tracemalloc.start()
    try:
        table = cvt.build_table(centroids, lower, upper, grid)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert table.dtype == jnp.int32 and table.shape[0] == int(np.prod(grid))
    assert peak < 1.75 * table.nbytes, (peak, table.nbytes)
    monkeypatch.setattr(cvt, "_BLOCK_ELEMENTS", 1 << 22)  # one block: the same table
    np.testing.assert_array_equal(table, cvt.build_table(centroids, lower, upper, grid))


def test_the_lookup_takes_the_argmin_form_under_the_vmapped_seeds():
    """One candidate at a time for one run; under qdkit's vmapped seeds (whose archives
    each carry a table) one argmin over the candidates, the faster form there
    (benchmarks/cvt_lookup.py); both give brute force's cells."""
    archive = qdkit.CVTArchive.create(
        cells=400, lower=np.zeros(2), upper=np.ones(2), example_genotype=jnp.zeros(1), samples=8000
    )
    tables = jax.tree.map(lambda x: jnp.stack([x, x]), archive.indexer)  # two seeds' indexers
    points = jax.random.uniform(jax.random.key(2), (2, 64, 2))

    def seeds(ix, p):
        with qdkit.xla.kernels_over_axis("s"):
            return jax.vmap(lambda i, q: i.index_of(q), axis_name="s")(ix, p)

    assert "argmin" in str(jax.make_jaxpr(seeds)(tables, points))
    assert "argmin" not in str(jax.make_jaxpr(lambda p: archive.index_of(p))(points[0]))
    expected = [cvt.nearest_brute(p, archive.centroids) for p in points]
    np.testing.assert_array_equal(jax.jit(seeds)(tables, points), np.stack(expected))
    np.testing.assert_array_equal(jax.jit(archive.index_of)(points[0]), expected[0])
