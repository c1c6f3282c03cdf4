"""The composition root: names -> factories for tasks, emitters and archives.

This is the only module of ``qdkit`` that imports ``emitters`` (the CLI uses it). A
run is fully described by a plain JSON-able config dict; :func:`build` turns one into
``(task, archive, emitter)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

import emitters
from qdkit import tasks
from qdkit.archive import Archive
from qdkit.cvt_archive import CVTArchive
from qdkit.grid_archive import GridArchive
from qdkit.tasks import Task


def _iso_line(
    task: Task, batch_size: int, iso_sigma: float = 0.01, line_sigma: float = 0.1, noise: str = "fast"
) -> emitters.Emitter:
    """Iso+LineDD: Gaussian noise plus a step along the line between two elites."""
    return emitters.iso_line(
        batch_size, iso_sigma, line_sigma, lower=task.genotype_lower, upper=task.genotype_upper, noise=noise
    )


def _gaussian(task: Task, batch_size: int, sigma: float = 0.1, noise: str = "fast") -> emitters.Emitter:
    """Gaussian mutation of uniformly sampled elites."""
    return emitters.gaussian(batch_size, sigma, lower=task.genotype_lower, upper=task.genotype_upper, noise=noise)


def _iso_line_gaussian(
    task: Task,
    batch_size: int,
    iso_sigma: float = 0.01,
    line_sigma: float = 0.1,
    sigma: float = 0.1,
    noise: str = "fast",
) -> emitters.Emitter:
    """Half the batch Iso+LineDD, half Gaussian mutation (emitters.mix)."""
    if batch_size < 2:
        raise ValueError("the iso-line+gaussian mix needs batch_size >= 2")
    half = batch_size // 2
    return emitters.mix(
        _iso_line(task, half, iso_sigma, line_sigma, noise), _gaussian(task, batch_size - half, sigma, noise)
    )


EMITTERS: dict[str, Callable[..., emitters.Emitter]] = {
    "iso-line": _iso_line,
    "gaussian": _gaussian,
    "iso-line+gaussian": _iso_line_gaussian,
}

ARCHIVES = ("grid", "cvt")


def emitter_names() -> list[str]:
    return sorted(EMITTERS)


def _check_name(kind: str, name: str, valid: list[str]) -> None:
    if name not in valid:
        raise KeyError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}")


def describe_emitter(name: str) -> str:
    _check_name("emitter", name, emitter_names())
    return (inspect.getdoc(EMITTERS[name]) or "").splitlines()[0]


def emitter_options(name: str) -> dict[str, Any]:
    _check_name("emitter", name, emitter_names())
    params = list(inspect.signature(EMITTERS[name]).parameters.values())[2:]
    return {p.name: p.default for p in params}


def build_emitter(name: str, task: Task, batch_size: int, **options: Any) -> emitters.Emitter:
    """Build a named emitter for ``task`` (genotype bounds taken from the task)."""
    valid = emitter_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"emitter {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(valid) or 'none'}"
        )
    return EMITTERS[name](task, batch_size, **options)


def build_archive(config: dict[str, Any], task: Task, centroids: np.ndarray | None = None) -> Archive:
    """An empty archive as the config says (``archive``: grid with ``shape``, or cvt
    with ``cells``; CVT centroids from ``centroids`` when given, else k-means seeded by
    ``seed``)."""
    kind = config.get("archive", "grid")
    _check_name("archive", kind, list(ARCHIVES))
    if kind == "grid":
        shape = config.get("shape") or [32] * task.descriptor_dim
        if len(shape) != task.descriptor_dim:
            raise ValueError(
                f"grid shape {tuple(shape)} has {len(shape)} dimensions but task "
                f"{task.name!r} has {task.descriptor_dim} descriptors"
            )
        return GridArchive.create(
            shape=tuple(shape), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
        )
    return CVTArchive.create(
        cells=int(config.get("cells") or 1024),
        centroids=centroids,
        lower=task.lower,
        upper=task.upper,
        example_genotype=task.example_genotype,
        key=jax.random.key(int(config.get("seed", 0)) + 1_000_003),
    )


def build(config: dict[str, Any], centroids: np.ndarray | None = None) -> tuple[Task, Archive, emitters.Emitter]:
    """``(task, archive, emitter)`` from a run config."""
    task = tasks.get(config["task"], **config.get("task_options", {}))
    emitter = build_emitter(config["emitter"], task, int(config["batch_size"]), **config.get("emitter_options", {}))
    archive = build_archive(config, task, centroids)
    return task, archive, emitter
