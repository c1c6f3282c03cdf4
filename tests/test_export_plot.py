"""Export (CSV, npz, pandas) and plots (pixels checked against the archive)."""

import csv

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest

import qdkit
from qdkit import export, plot

matplotlib.use("Agg")


def small_grid():
    archive = qdkit.GridArchive.create(shape=(4, 3), lower=(0, 0), upper=(1, 1), example_genotype=jnp.zeros(2))
    archive, _ = archive.add(
        jnp.asarray([[1.0, 2.0], [3.0, 4.0]]), jnp.asarray([1.5, -2.0]), jnp.asarray([[0.1, 0.1], [0.9, 0.5]])
    )
    return archive


def test_csv_round_trip(tmp_path):
    archive = small_grid()
    path = tmp_path / "a.csv"
    export.save_csv(archive, path, descriptor_names=["x", "y"])
    with open(path) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["index", "fitness", "x", "y", "center_0", "center_1", "genotype_0", "genotype_1"]
    assert len(rows) == 3
    assert int(rows[1][0]) == 0 and float(rows[1][1]) == 1.5
    assert [float(v) for v in rows[2][6:]] == [3.0, 4.0]
    assert float(rows[2][2]) == pytest.approx(0.9)


def test_npz_and_dataframe(tmp_path):
    archive = small_grid()
    export.save_npz(archive, tmp_path / "a.npz")
    data = np.load(tmp_path / "a.npz")
    np.testing.assert_array_equal(data["index"], [0, 10])
    assert data["cell_centers"].shape == (12, 2) and int(data["num_cells"]) == 12
    frame = export.to_dataframe(archive)
    assert list(frame["index"]) == [0, 10]
    assert frame["fitness"].tolist() == [1.5, -2.0]


def test_grid_heatmap_pixels_match_archive():
    archive = small_grid()
    ax = plot.grid_heatmap(archive)
    image = ax.images[0].get_array()
    assert image.shape == (3, 4)  # rows: descriptor 1
    assert image[0, 0] == 1.5 and image[1, 3] == -2.0
    assert image.mask.sum() == 10


def test_cvt_heatmap_pixels_match_cells():
    centroids = jnp.asarray([[0.25, 0.5], [0.75, 0.5]], jnp.float32)
    archive = qdkit.CVTArchive.create(centroids=centroids, lower=0, upper=1, example_genotype=jnp.zeros(1))
    archive, _ = archive.add(jnp.zeros((1, 1)), jnp.asarray([3.0]), jnp.asarray([[0.1, 0.2]]))
    ax = plot.cvt_heatmap(archive, resolution=20, show_centroids=True)
    image = ax.images[0].get_array()
    assert image.shape == (20, 20)
    assert np.all(image[:, :10] == 3.0)  # left half: cell 0
    assert image.mask[:, 10:].all()  # right half: empty cell 1


def test_archive_heatmap_dispatch_and_pairs():
    assert plot.archive_heatmap(small_grid()).images
    archive = qdkit.GridArchive.create(shape=(4, 4, 4), lower=0, upper=1, example_genotype=jnp.zeros(3))
    g = jax.random.uniform(jax.random.key(0), (50, 3))
    archive, _ = archive.add(g, -jnp.sum(g, axis=1), g)
    fig = plot.archive_heatmap(archive, bins=4)
    panels = [a for a in fig.axes if a.images]
    assert len(panels) == 3  # lower triangle of a 3x3 grid
    # the best fitness in a projected bin is the max over elites there
    d, f = np.asarray(archive.elites()["descriptors"]), np.asarray(archive.elites()["fitness"])
    sel = (np.floor(d[:, 1] * 4) == 0) & (np.floor(d[:, 0] * 4) == 0)
    if sel.any():
        panel = fig.axes[1 * 3 + 0]
        assert panel.images[0].get_array()[0, 0] == pytest.approx(f[sel].max())


def test_metric_curves_and_compare_runs():
    m1 = {
        "iteration": np.arange(1, 11),
        "qd_score": np.arange(10.0),
        "coverage": np.linspace(0, 1, 10),
        "max_fitness": np.zeros(10),
    }
    m2 = {**m1, "qd_score": np.arange(10.0) + 2}
    axes = plot.metric_curves(m1)
    assert len(axes) == 3 and axes[0].get_title() == "QD-score"
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    assert plot.compare_runs({"a": [m1, m2], "b": m1}, key="qd_score", ax=ax) is ax
    assert len(ax.lines) == 2
    np.testing.assert_allclose(ax.lines[0].get_ydata(), np.arange(10.0) + 1)
    assert len(ax.collections) == 1  # one confidence band, for the group of two


def test_plot_errors():
    archive = qdkit.GridArchive.create(shape=(2, 2, 2), lower=0, upper=1, example_genotype=jnp.zeros(1))
    with pytest.raises(ValueError, match="archive_pairs"):
        plot.grid_heatmap(archive)
