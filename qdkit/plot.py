"""Archive and metric plots: free functions in the matplotlib style (``ax=None``).

Every function draws on the axes it is given (or the current ones) and returns
them; cosmetics are keyword-only. The archive functions also draw a pyribs archive or a
QDax repertoire, converted with :func:`qdkit.interop.as_archive`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from qdkit.archive import Archive


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _archive(archive: Any) -> Archive:
    """A qdkit archive, converting a pyribs archive or a QDax repertoire."""
    if isinstance(archive, Archive):
        return archive
    from qdkit import interop

    return interop.as_archive(archive)


def _labels(archive: Archive, names: Sequence[str] | None) -> list[str]:
    m = archive.descriptor_dim
    return list(names) if names else [f"descriptor {i}" for i in range(m)]


def _masked_fitness(fitness) -> np.ma.MaskedArray:
    """Fitness as floats with empty cells (``-inf``) masked."""
    values = np.asarray(fitness, dtype=float)
    return np.ma.masked_invalid(np.where(np.isfinite(values), values, np.nan))


def _show_fitness(ax, image, extent, *, cmap, vmin, vmax, colorbar: bool) -> None:
    """Draw a fitness image on ``ax`` (empty cells blank) with an optional colorbar."""
    mesh = ax.imshow(
        image, origin="lower", extent=extent, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest"
    )
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label="fitness")


def grid_heatmap(
    archive: Archive,
    *,
    ax=None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
    descriptor_names: Sequence[str] | None = None,
):
    """Fitness of each cell of a 1-D or 2-D grid archive; empty cells blank."""
    archive = _archive(archive)
    if archive.kind != "grid":
        raise ValueError("grid_heatmap draws grid archives; use cvt_heatmap for a CVT")
    if archive.descriptor_dim not in (1, 2):
        raise ValueError("grid_heatmap draws 1-D or 2-D grids; use archive_pairs for more dimensions")
    ax = ax or _plt().gca()
    values = _masked_fitness(archive.fitness)
    lo, hi = np.asarray(archive.lower), np.asarray(archive.upper)
    labels = _labels(archive, descriptor_names)
    if archive.edges is not None:  # non-uniform cells
        edges = archive.cell_edges()
        if archive.descriptor_dim == 1:
            image, ys = values.reshape(1, -1), np.array([0.0, 1.0])
            ax.set_yticks([])
        else:
            image, ys = values.reshape(archive.shape).T, edges[1]
            ax.set_ylabel(labels[1])
        mesh = ax.pcolormesh(edges[0], ys, image, cmap=cmap, vmin=vmin, vmax=vmax)
        if colorbar:
            ax.figure.colorbar(mesh, ax=ax, label="fitness")
        ax.set_xlabel(labels[0])
        return ax
    if archive.descriptor_dim == 1:
        image = values.reshape(1, -1)
        extent = (lo[0], hi[0], 0.0, 1.0)
        ax.set_yticks([])
    else:
        image = values.reshape(archive.shape).T  # rows: descriptor 1, columns: descriptor 0
        extent = (lo[0], hi[0], lo[1], hi[1])
        ax.set_ylabel(labels[1])
    _show_fitness(ax, image, extent, cmap=cmap, vmin=vmin, vmax=vmax, colorbar=colorbar)
    ax.set_xlabel(labels[0])
    return ax


def cvt_heatmap(
    archive: Archive,
    *,
    ax=None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
    resolution: int = 400,
    show_centroids: bool = False,
    descriptor_names: Sequence[str] | None = None,
):
    """Voronoi heatmap of a 2-D CVT archive, rasterised at ``resolution`` pixels a side.

    Each pixel takes the fitness of the cell its centre belongs to (using the archive's
    own exact lookup), so cell borders are the true Voronoi borders at pixel accuracy.
    """
    archive = _archive(archive)
    if archive.descriptor_dim != 2:
        raise ValueError("cvt_heatmap draws 2-D archives; use archive_pairs for other dimensions")
    ax = ax or _plt().gca()
    lo, hi = np.asarray(archive.lower, float), np.asarray(archive.upper, float)
    xs = lo[0] + (np.arange(resolution) + 0.5) / resolution * (hi[0] - lo[0])
    ys = lo[1] + (np.arange(resolution) + 0.5) / resolution * (hi[1] - lo[1])
    gx, gy = np.meshgrid(xs, ys)
    points = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)
    index = np.asarray(_index_of(archive, points))
    image = _masked_fitness(np.asarray(archive.fitness)[index]).reshape(resolution, resolution)
    extent = (lo[0], hi[0], lo[1], hi[1])
    _show_fitness(ax, image, extent, cmap=cmap, vmin=vmin, vmax=vmax, colorbar=colorbar)
    if show_centroids:
        c = np.asarray(archive.cell_centers())
        ax.scatter(c[:, 0], c[:, 1], s=1, c="k", alpha=0.3)
    labels = _labels(archive, descriptor_names)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    return ax


def _index_of(archive: Archive, points: np.ndarray) -> np.ndarray:
    import jax

    lookup = jax.jit(lambda a, p: a.index_of(p))
    block = 65536
    return np.concatenate([np.asarray(lookup(archive, points[i : i + block])) for i in range(0, len(points), block)])


def archive_pairs(
    archive: Archive,
    *,
    fig=None,
    bins: int = 20,
    cmap: str = "viridis",
    descriptor_names: Sequence[str] | None = None,
):
    """A readable view of an archive with any number of descriptor dimensions.

    A lower-triangular grid of panels: panel ``(i, j)`` shows, for each 2-D bin of
    descriptors ``j`` (x) and ``i`` (y), the best fitness among elites projected there;
    the diagonal shows the best fitness along each single descriptor.

    Returns:
        the figure.
    """
    plt = _plt()
    archive = _archive(archive)
    m = archive.descriptor_dim
    fig = fig or plt.figure(figsize=(2.6 * m, 2.6 * m))
    elites = archive.elites()
    d, f = elites["descriptors"], elites["fitness"]
    lo, hi = np.asarray(archive.lower, float), np.asarray(archive.upper, float)
    labels = _labels(archive, descriptor_names)
    finite = f[np.isfinite(f)]
    vmin, vmax = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    coords = np.clip(((d - lo) / (hi - lo) * bins).astype(int), 0, bins - 1) if len(d) else np.zeros((0, m), int)
    axes = fig.subplots(m, m, squeeze=False, gridspec_kw={"wspace": 0.45, "hspace": 0.35})
    image = None
    for i in range(m):
        for j in range(m):
            ax = axes[i, j]
            if j > i:
                ax.axis("off")
                continue
            if i == j:
                best = np.full(bins, np.nan)
                np.fmax.at(best, coords[:, i], f)
                centers = lo[i] + (np.arange(bins) + 0.5) / bins * (hi[i] - lo[i])
                ax.plot(centers, best, drawstyle="steps-mid")
                ax.set_xlim(lo[i], hi[i])
            else:
                best = np.full((bins, bins), np.nan)
                np.fmax.at(best, (coords[:, i], coords[:, j]), f)
                image = ax.imshow(
                    np.ma.masked_invalid(best),
                    origin="lower",
                    extent=(lo[j], hi[j], lo[i], hi[i]),
                    aspect="auto",
                    cmap=cmap,
                    vmin=vmin,
                    vmax=vmax,
                    interpolation="nearest",
                )
            if i == m - 1:
                ax.set_xlabel(labels[j])
            if j == 0 and i > 0:
                ax.set_ylabel(labels[i])
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), label="best fitness", shrink=0.6)
    return fig


def archive_heatmap(archive: Archive, *, ax=None, **kwargs: Any):
    """Pick the right view: grid heatmap, CVT Voronoi heatmap, or pairwise panels.

    Returns the axes (1-D/2-D archives) or the figure (``archive_pairs``).
    """
    archive = _archive(archive)
    m = archive.descriptor_dim
    if archive.kind == "grid" and m <= 2:
        return grid_heatmap(archive, ax=ax, **kwargs)
    if m == 2:
        return cvt_heatmap(archive, ax=ax, **kwargs)
    fig = ax.figure if ax is not None else None
    return archive_pairs(
        archive, fig=fig, **{k: v for k, v in kwargs.items() if k in ("bins", "cmap", "descriptor_names")}
    )


def archive_figure(archive: Archive, *, descriptor_names: Sequence[str] | None = None, title: str | None = None):
    """A new figure of the archive: its heatmap (one or two descriptors) or the pairs of
    descriptors (more); ``title`` on top. What ``heatmap.png`` and the experiment
    trackers show."""
    plt = _plt()
    if archive.descriptor_dim > 2:
        figure = archive_pairs(archive, descriptor_names=descriptor_names)
    else:
        figure, ax = plt.subplots(figsize=(6, 5))
        archive_heatmap(archive, ax=ax, descriptor_names=descriptor_names)
    if title:
        figure.suptitle(title)
    return figure


def figure_rgb(figure, dpi: int = 80) -> np.ndarray:
    """The figure rendered as an ``(H, W, 3)`` uint8 image (Agg)."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    buffer.seek(0)
    image = _plt().imread(buffer, format="png")
    return (np.asarray(image)[..., :3] * 255).round().astype(np.uint8)


_TITLES = {
    "qd_score": "QD-score",
    "coverage": "coverage",
    "max_fitness": "max fitness",
    "mean_fitness": "mean fitness",
    "num_elites": "elites",
    "num_added": "added per iteration",
    "num_new": "new cells per iteration",
    "num_invalid": "invalid rows per iteration",
}


def metric_curves(
    metrics: Mapping[str, np.ndarray],
    *,
    keys: Sequence[str] = ("qd_score", "coverage", "max_fitness"),
    axes=None,
    label: str | None = None,
    x: str = "iteration",
):
    """One panel per metric against iterations; returns the axes array."""
    plt = _plt()
    if axes is None:
        _, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
        axes = axes[0]
    xs = np.asarray(metrics[x]) if x in metrics else np.arange(1, len(metrics[keys[0]]) + 1)
    for ax, key in zip(axes, keys):
        ax.plot(xs, np.asarray(metrics[key], float), label=label)
        ax.set_title(_TITLES.get(key, key))
        ax.set_xlabel(x)
    return axes


def compare_runs(
    runs: Mapping[str, Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]]],
    *,
    key: str = "qd_score",
    ax=None,
    band: bool = True,
    x: str = "iteration",
):
    """Overlay a metric for several runs.

    ``runs`` maps a label to one run's metrics or to several (e.g. seeds). With several
    runs per label the line is their mean and, with ``band``, a shaded 95% confidence
    interval of the mean (normal approximation, over the common iteration range).
    """
    ax = ax or _plt().gca()
    for label, value in runs.items():
        group = [value] if isinstance(value, Mapping) else list(value)
        n = min(len(np.asarray(r[key])) for r in group)
        ys = np.stack([np.asarray(r[key], float)[:n] for r in group])
        xs = np.asarray(group[0][x])[:n] if x in group[0] else np.arange(1, n + 1)
        mean = ys.mean(axis=0)
        (line,) = ax.plot(xs, mean, label=f"{label} (n={len(group)})" if len(group) > 1 else label)
        if band and len(group) > 1:
            half = 1.96 * ys.std(axis=0, ddof=1) / np.sqrt(len(group))
            ax.fill_between(xs, mean - half, mean + half, color=line.get_color(), alpha=0.25)
    ax.set_xlabel(x)
    ax.set_ylabel(_TITLES.get(key, key))
    ax.legend()
    return ax
