"""Convert between qdkit archives and pyribs archives (needs ``ribs``).

pyribs stores each elite's solution as a flat vector, its objective, measures and
threshold, in a ``GridArchive`` (uniform cells) or a ``CVTArchive`` (nearest centroid).
:func:`to_ribs` and :func:`from_ribs` keep the cells, the elites and the thresholds:

- a uniform grid becomes a ``ribs.archives.GridArchive`` with the same ``dims`` and
  ranges (``epsilon=0``, so a descriptor is binned as qdkit bins it, up to
  floating-point rounding at a cell boundary), a CVT a ``ribs.archives.CVTArchive`` with
  the same centroids. pyribs does not clip a CVT descriptor into the bounds before
  looking up its nearest centroid, as qdkit does: outside the bounds the cells can
  differ;
- a threshold (CMA-MAE) archive keeps its learning rate, ``threshold_min`` and every
  cell's threshold. pyribs keeps the best-ever elites in a separate result archive, as
  qdkit does: convert ``archive.results()`` for that one. An archive from pyribs comes
  back with its current elites as its result archive too;
- genotypes are flattened to pyribs' solution vectors (``jax.flatten_util``) and
  unflattened with ``example_genotype`` on the way back;
- a grid with non-uniform ``edges`` and an archive over learned descriptors have no
  pyribs counterpart and are refused with the reason.

The thresholds are written through pyribs' array store (``archive._store``), which
pyribs 0.12 uses itself but does not document; another layout is refused with a message.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from qdkit.archive import Archive
from qdkit.cvt_archive import CVTArchive
from qdkit.grid_archive import GridArchive


def _ribs_archives():
    try:
        import ribs.archives
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("qdkit.interop.ribs needs pyribs: pip install ribs") from e
    return ribs.archives


def _store(ribs_archive: Any) -> Any:
    store = getattr(ribs_archive, "_store", None)
    if store is None or not hasattr(store, "add"):
        raise RuntimeError("this pyribs version keeps its elites in another way; qdkit.interop.ribs knows pyribs 0.12")
    return store


def to_ribs(archive: Archive, *, seed: int | None = None) -> Any:
    """A pyribs archive with the same cells, elites and thresholds (module docstring).

    Args:
        archive: a grid (uniform) or CVT archive, plain or with thresholds.
        seed: pyribs' own random seed (its ``sample_elites``).
    """
    ribs_archives = _ribs_archives()
    if archive.learned:
        raise ValueError("pyribs has no learned descriptors: an archive over learned descriptors cannot be converted")
    if archive.edges is not None:
        raise ValueError("pyribs' GridArchive has uniform cells: a grid with per-axis edges cannot be converted")
    flat = jax.vmap(lambda g: ravel_pytree(g)[0])(archive.genotypes)
    solution_dim = int(flat.shape[1])
    lo, hi = np.asarray(archive.lower, np.float64), np.asarray(archive.upper, np.float64)
    common = {
        "solution_dim": solution_dim,
        "ranges": list(zip(lo.tolist(), hi.tolist())),
        "learning_rate": archive.learning_rate,
        "threshold_min": archive.threshold_min,
        "seed": seed,
        "solution_dtype": np.asarray(flat).dtype,
        "objective_dtype": np.float32,
        "measures_dtype": np.float32,
    }
    if archive.kind == "grid":
        out = ribs_archives.GridArchive(dims=list(archive.shape), epsilon=0.0, **common)
    else:
        out = ribs_archives.CVTArchive(centroids=np.asarray(archive.centroids), **common)
    occupied = np.asarray(archive.occupied)
    index = np.nonzero(occupied)[0]
    if index.size:
        fitness = np.asarray(archive.fitness)[index]
        threshold = fitness if archive.threshold is None else np.asarray(archive.threshold)[index]
        _store(out).add(
            index,
            {
                "solution": np.asarray(flat)[index],
                "objective": fitness,
                "measures": np.asarray(archive.descriptors)[index],
                "threshold": threshold.astype(np.float32),
            },
        )
        out._stats_update(float(np.sum(fitness, dtype=np.float64)), int(index[np.argmax(fitness)]))
    return out


def _shortest(value: Any) -> float:
    """The shortest decimal that reads back as the same float32 (``-inf`` stays)."""
    value = np.float32(value)
    return float(value) if not np.isfinite(value) else float(np.format_float_positional(value, unique=True))


def from_ribs(ribs_archive: Any, *, example_genotype: Any = None) -> Archive:
    """A qdkit archive with the pyribs archive's cells, elites and thresholds.

    Args:
        ribs_archive: a ``ribs.archives.GridArchive`` or ``CVTArchive``.
        example_genotype: one genotype, to unflatten pyribs' solution vectors into
            (default: the vectors themselves).

    Raises:
        TypeError: another kind of pyribs archive.
    """
    ribs_archives = _ribs_archives()
    solution_dim = ribs_archive.solution_dim
    dim = int(np.prod(solution_dim))
    data = ribs_archive.data()
    flat_example = jnp.zeros((dim,), jnp.asarray(data["solution"]).dtype if len(data["index"]) else jnp.float32)
    if example_genotype is None:
        example, unravel = flat_example, lambda x: x
    else:
        example = example_genotype
        flat, unravel = ravel_pytree(example_genotype)
        if int(flat.shape[0]) != dim:
            raise ValueError(f"example_genotype has {int(flat.shape[0])} entries; the pyribs solutions have {dim}")
    lr = _shortest(ribs_archive.learning_rate)  # pyribs keeps them as float32: 0.1 comes back as 0.1
    tmin = _shortest(ribs_archive.threshold_min)
    soft = {"learning_rate": lr, "threshold_min": tmin}
    if isinstance(ribs_archive, ribs_archives.GridArchive):
        archive = GridArchive.create(
            shape=tuple(int(d) for d in ribs_archive.dims), lower=ribs_archive.lower_bounds,
            upper=ribs_archive.upper_bounds, example_genotype=example, **soft,
        )  # fmt: skip
    elif isinstance(ribs_archive, ribs_archives.CVTArchive):
        archive = CVTArchive.create(
            centroids=np.asarray(ribs_archive.centroids, np.float32), lower=ribs_archive.lower_bounds,
            upper=ribs_archive.upper_bounds, example_genotype=example, **soft,
        )  # fmt: skip
    else:
        raise TypeError(f"qdkit converts pyribs GridArchive and CVTArchive, not {type(ribs_archive).__name__}")
    cells = archive.num_cells
    index = np.asarray(data["index"], np.int64)
    fitness = np.full((cells,), -np.inf, np.float32)
    fitness[index] = data["objective"]
    descriptors = np.zeros((cells, archive.descriptor_dim), np.float32)
    descriptors[index] = data["measures"]
    solutions = np.zeros((cells, dim), np.asarray(flat_example).dtype)
    solutions[index] = np.asarray(data["solution"]).reshape(len(index), dim)
    genotypes = jax.vmap(unravel)(jnp.asarray(solutions))
    archive = archive.with_elites(genotypes, fitness, descriptors)
    if archive.thresholds is not None:
        threshold = np.full((cells,), tmin if math.isfinite(tmin) else -np.inf, np.float32)
        threshold[index] = data["threshold"]
        archive = archive.replace(thresholds=dataclasses.replace(archive.thresholds, value=jnp.asarray(threshold)))
    return archive
