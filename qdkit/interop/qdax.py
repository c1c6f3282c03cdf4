"""Convert between qdkit archives and QDax ``MapElitesRepertoire`` (needs ``qdax``).

QDax stores fitness as ``(C, 1)`` with ``-inf`` for empty cells, has no thresholds, and
puts a descriptor in the cell of its nearest centroid, without clipping. What that means
for each qdkit archive kind:

- a uniform grid: the cell centres as centroids reproduce qdkit's cells for every
  descriptor, inside the bounds or not (the centres form a product grid, so the nearest
  one is the nearest along each axis, which is what clipping then binning finds), up to
  floating-point rounding within about 1e-6 of a cell boundary;
- a CVT: the same centroids give the same cells inside the bounds; outside them qdkit
  clips the descriptor into the box first, and the nearest centroid of the clipped point
  can differ from the nearest centroid of the point;
- a grid with per-axis ``edges``, an archive over learned descriptors and a threshold
  archive have no QDax counterpart: :func:`to_qdax` refuses them with the reason
  (convert ``archive.results()``, the best elites, for a threshold archive).

A repertoire comes back exactly (same cells, same elites, and the same kind of archive)
with ``from_qdax(repertoire, like=archive)``; without ``like`` it becomes a
:class:`qdkit.CVTArchive` over its centroids.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qdkit.archive import Archive
from qdkit.cvt_archive import CVTArchive


def _repertoire_class():
    try:
        from qdax.core.containers.mapelites_repertoire import MapElitesRepertoire
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("qdkit.interop.qdax needs QDax: pip install 'qdkit[qdax]'") from e
    return MapElitesRepertoire


def check_convertible(archive: Archive, library: str = "QDax") -> None:
    """Refuse an archive the other library cannot hold, with the reason."""
    if archive.soft:
        raise ValueError(
            f"{library} has no archive thresholds: this threshold (CMA-MAE) archive cannot be converted as it is; "
            "convert archive.results() (the best elite of each cell)"
        )
    if archive.learned:
        raise ValueError(
            f"{library} has no learned descriptors: an archive over learned descriptors cannot be converted"
        )
    if archive.edges is not None:
        raise ValueError(
            f"{library} assigns cells by nearest centroid, which cannot reproduce a grid with non-uniform edges"
        )


def to_qdax(archive: Archive) -> Any:
    """A QDax ``MapElitesRepertoire`` holding the same elites, with the archive's cell
    centres (grid cell centres or CVT centroids) as centroids (module docstring for
    what agrees and what is refused)."""
    check_convertible(archive, "QDax")
    repertoire_cls = _repertoire_class()
    return repertoire_cls(
        genotypes=archive.genotypes,
        fitnesses=archive.fitness[:, None],
        descriptors=archive.descriptors,
        centroids=jnp.asarray(archive.cell_centers()),
        extra_scores={},
        keys_extra_scores=(),
    )


def from_qdax(repertoire: Any, *, like: Archive | None = None, lower: Any = None, upper: Any = None) -> Archive:
    """A qdkit archive holding the repertoire's elites.

    Args:
        repertoire: a QDax ``MapElitesRepertoire``.
        like: an archive with the same cells (e.g. the one :func:`to_qdax` converted):
            the elites go into an empty copy of it, so a round trip is exact.
        lower, upper: without ``like``: the descriptor bounds of the CVT archive built
            over the repertoire's centroids (default their bounding box).

    Raises:
        ValueError: ``like`` whose cells are not the repertoire's centroids.
    """
    fitness = jnp.asarray(repertoire.fitnesses, jnp.float32).reshape(-1)
    if like is not None:
        check_convertible(like, "QDax")
        if not np.allclose(np.asarray(like.cell_centers()), np.asarray(repertoire.centroids), atol=1e-6):
            raise ValueError("the repertoire's centroids are not the cell centres of the archive given as like")
        return like.with_elites(repertoire.genotypes, fitness, repertoire.descriptors)
    centroids = jnp.asarray(repertoire.centroids, jnp.float32)
    c = np.asarray(centroids)
    lower = c.min(axis=0) if lower is None else lower
    upper = c.max(axis=0) if upper is None else upper
    first = jax.tree.map(lambda g: g[0], repertoire.genotypes)
    archive = CVTArchive.create(centroids=centroids, lower=lower, upper=upper, example_genotype=first)
    return archive.with_elites(repertoire.genotypes, fitness, repertoire.descriptors)
