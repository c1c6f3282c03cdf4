"""Conversions to and from other QD libraries (optional dependencies, imported lazily):
QDax repertoires (:mod:`qdkit.interop.qdax`) and pyribs archives
(:mod:`qdkit.interop.ribs`). Each conversion keeps the cells, the elites and, where the
other library has them, the thresholds, or refuses with the reason."""

from __future__ import annotations

from typing import Any


def as_archive(obj: Any, **options: Any):
    """A :class:`qdkit.Archive` for ``obj``: a qdkit archive as it is, a pyribs archive
    through :func:`qdkit.interop.ribs.from_ribs`, a QDax repertoire through
    :func:`qdkit.interop.qdax.from_qdax` (``options`` go to the conversion)."""
    from qdkit.archive import Archive

    if isinstance(obj, Archive):
        return obj
    module = type(obj).__module__ or ""
    if module.startswith("ribs."):
        from qdkit.interop.ribs import from_ribs

        return from_ribs(obj, **options)
    if hasattr(obj, "centroids") and hasattr(obj, "fitnesses"):
        from qdkit.interop.qdax import from_qdax

        return from_qdax(obj, **options)
    raise TypeError(f"not an archive qdkit knows: {type(obj).__module__}.{type(obj).__name__} (qdkit, pyribs or QDax)")
