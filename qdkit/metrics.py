"""Per-iteration metrics of a MAP-Elites run."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from qdkit.archive import NEW, NOT_ADDED, AddInfo, Archive

#: Metric names, in the order they are logged.
NAMES = (
    "qd_score",
    "coverage",
    "max_fitness",
    "mean_fitness",
    "num_elites",
    "num_added",
    "num_new",
    "num_invalid",
)

INT_METRICS = frozenset({"num_elites", "num_added", "num_new", "num_invalid"})


def compute(archive: Archive, info: AddInfo, qd_offset: float) -> dict[str, jax.Array]:
    """Metrics after one insertion; jittable.

    Args:
        archive: the archive after insertion; its :meth:`qdkit.Archive.results` are
            reported (a threshold archive's result archive).
        info: the :class:`AddInfo` of the inserted batch.
        qd_offset: lower bound on the fitness; QD-score sums ``max(f - offset, 0)``.

    Returns:
        dict of scalars: ``qd_score``, ``coverage`` (in ``[0, 1]``), ``max_fitness`` and
        ``mean_fitness`` over elites (``-inf`` / ``nan`` when empty), ``num_elites``,
        ``num_added`` (rows with status 1 or 2), ``num_new`` (status 2) and
        ``num_invalid`` (rows dropped for a NaN or infinite fitness, descriptor or
        feature).

    Nothing here reads every cell when the archive keeps its running QD-score for
    ``qd_offset`` (:meth:`qdkit.Archive.with_qd_offset`, which
    :func:`qdkit.map_elites.init` sets): the count and the totals are kept up to date by
    every insertion, so an iteration's metrics cost the batch, not the archive. Otherwise
    the QD-score is a sum over the cells (:meth:`qdkit.Archive.qd_score`).
    """
    archive = archive.results()
    count = archive.size()
    totals = archive.store.totals
    if _same_offset(archive.qd_offset, qd_offset):
        qd_score = totals.qd_score
    else:
        qd_score = archive.qd_score(qd_offset)
    return {
        "qd_score": qd_score,
        "coverage": (count / archive.num_cells).astype(jnp.float32),
        "max_fitness": totals.max_fitness,
        "mean_fitness": totals.fitness_sum / count.astype(jnp.float32),
        "num_elites": count,
        "num_added": jnp.sum(info.status != NOT_ADDED, dtype=jnp.int32),
        "num_new": jnp.sum(info.status == NEW, dtype=jnp.int32),
        "num_invalid": jnp.sum(info.index >= archive.num_cells, dtype=jnp.int32),
    }


def _same_offset(kept: float | None, asked) -> bool:
    """Whether the archive's running QD-score is the one asked for (``asked`` a
    concrete number equal to the offset it is kept for)."""
    if kept is None:
        return False
    try:
        return float(asked) == kept
    except (TypeError, jax.errors.ConcretizationTypeError):  # a traced offset
        return False
