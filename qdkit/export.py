"""Export an archive's elites to NumPy, CSV or pandas (host-side)."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence

import numpy as np

from qdkit.archive import Archive


def to_numpy(archive: Archive) -> dict[str, np.ndarray]:
    """Occupied cells as NumPy arrays; see :meth:`qdkit.Archive.elites`."""
    return archive.elites()


def _columns(archive: Archive, descriptor_names: Sequence[str] | None) -> tuple[list[str], np.ndarray]:
    e = archive.elites()
    m = e["descriptors"].shape[1]
    names = list(descriptor_names) if descriptor_names else [f"descriptor_{i}" for i in range(m)]
    if len(names) != m:
        raise ValueError(f"need {m} descriptor names; got {len(names)}")
    header = (
        ["index", "fitness"]
        + names
        + [f"center_{i}" for i in range(m)]
        + [f"genotype_{i}" for i in range(e["genotypes"].shape[1])]
    )
    table = np.concatenate(
        [e["index"][:, None].astype(np.float64), e["fitness"][:, None], e["descriptors"], e["centers"], e["genotypes"]],
        axis=1,
    )
    return header, table


def save_csv(
    archive: Archive,
    path: str | os.PathLike,
    *,
    descriptor_names: Sequence[str] | None = None,
    decode: Callable[[np.ndarray], list[str]] | None = None,
) -> None:
    """One row per elite: cell index, fitness, descriptors, cell centre, flattened
    genotype -- or, with ``decode`` (text genotypes, e.g. ``task.decode``), a ``text``
    column in place of the genotype."""
    header, table = _columns(archive, descriptor_names)
    texts = None
    if decode is not None:
        m = archive.descriptor_dim
        texts = decode(archive.elites()["genotypes"])
        header, table = header[: 2 + 2 * m] + ["text"], table[:, : 2 + 2 * m]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, row in enumerate(table):
            writer.writerow([int(row[0]), *(repr(float(v)) for v in row[1:]), *([texts[i]] if texts else [])])


def save_npz(archive: Archive, path: str | os.PathLike) -> None:
    """Elites plus the archive's bounds and all cell centres in a ``.npz`` file."""
    np.savez(
        path,
        **archive.elites(),
        lower=np.asarray(archive.lower),
        upper=np.asarray(archive.upper),
        cell_centers=np.asarray(archive.cell_centers()),
        num_cells=np.int64(archive.num_cells),
    )


def to_dataframe(archive: Archive, *, descriptor_names: Sequence[str] | None = None):
    """Elites as a pandas DataFrame (requires pandas: ``pip install pandas``)."""
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("to_dataframe needs pandas: pip install pandas") from e
    header, table = _columns(archive, descriptor_names)
    frame = pd.DataFrame(table, columns=header)
    frame["index"] = frame["index"].astype(np.int64)
    return frame
