"""A readable report of an archive whose genotypes are texts: one HTML page listing
each elite's cell, descriptors, fitness and text (host-side)."""

from __future__ import annotations

import html
import os
from collections.abc import Callable, Sequence

import numpy as np

from qdkit.archive import Archive


def elites_html(
    archive: Archive,
    decode: Callable[[np.ndarray], list[str]],
    path: str | os.PathLike,
    *,
    descriptor_names: Sequence[str],
    title: str = "Elites",
    qd_offset: float = 0.0,
) -> None:
    """Write ``path``: the summary (elites, coverage, QD-score) and one row per
    occupied cell, ordered by cell, with its descriptors, fitness and decoded text."""
    occupied = np.nonzero(np.asarray(archive.occupied))[0]
    genotypes = np.asarray(archive.genotypes)[occupied]
    texts = decode(genotypes) if len(occupied) else []
    fitness = np.asarray(archive.fitness)[occupied]
    descriptors = np.asarray(archive.descriptors)[occupied]
    names = list(descriptor_names)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in ["cell", *names, "fitness", "text"])
    rows = []
    for i, cell in enumerate(occupied):
        values = "".join(f"<td>{v:.3f}</td>" for v in descriptors[i])
        rows.append(
            f"<tr><td>{int(cell)}</td>{values}<td>{fitness[i]:.3f}</td>"
            f'<td class="text">{html.escape(texts[i])}</td></tr>'
        )
    summary = (
        f"{len(occupied)} elites in {archive.num_cells} cells (coverage {float(archive.coverage()):.1%}), "
        f"QD-score {float(archive.qd_score(qd_offset)):.4g}"
        + (f", mean fitness {float(fitness.mean()):.3f}" if len(occupied) else "")
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; }}
td.text {{ white-space: pre-wrap; max-width: 60em; }}
</style></head>
<body><h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>
<table><thead><tr>{head}</tr></thead><tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)
