"""Convert between qdkit archives and QDax ``MapElitesRepertoire`` (needs ``qdax``).

QDax stores fitness as ``(C, 1)`` with ``-inf`` for empty cells and maps a descriptor
to the nearest centroid; qdkit stores ``(C,)``. A repertoire comes back as a
:class:`qdkit.CVTArchive` over the repertoire's centroids.
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


def to_qdax(archive: Archive) -> Any:
    """A QDax ``MapElitesRepertoire`` holding the same elites.

    Its centroids are the archive's cell centres (grid cell centres or CVT centroids),
    so QDax's nearest-centroid rule reproduces qdkit's cells.
    """
    repertoire_cls = _repertoire_class()
    return repertoire_cls(
        genotypes=archive.genotypes,
        fitnesses=archive.fitness[:, None],
        descriptors=archive.descriptors,
        centroids=jnp.asarray(archive.cell_centers()),
        extra_scores={},
        keys_extra_scores=(),
    )


def from_qdax(repertoire: Any, *, lower: Any = None, upper: Any = None) -> CVTArchive:
    """A :class:`qdkit.CVTArchive` with the repertoire's centroids and elites.

    Args:
        repertoire: a QDax ``MapElitesRepertoire``.
        lower, upper: descriptor bounds; default the bounding box of the centroids.
    """
    centroids = jnp.asarray(repertoire.centroids, jnp.float32)
    c = np.asarray(centroids)
    lower = c.min(axis=0) if lower is None else lower
    upper = c.max(axis=0) if upper is None else upper
    genotypes = repertoire.genotypes
    first = jax.tree.map(lambda g: g[0], genotypes)
    archive = CVTArchive.create(centroids=centroids, lower=lower, upper=upper, example_genotype=first)
    fitness = jnp.asarray(repertoire.fitnesses, jnp.float32).reshape(-1)
    return archive.with_elites(genotypes, fitness, repertoire.descriptors)
