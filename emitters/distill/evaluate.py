"""Measuring a distilled policy: run it for every cell's target and see where it gets
(:func:`evaluate_distilled`), against the archive's own elites replayed with a little
action noise (:func:`evaluate_elites`); :func:`plot_distilled` draws the result."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from emitters.base import check_positive
from emitters.distill.policy import DistilledPolicy
from qdkit import rng
from qdkit.map_elites import describe
from qdkit.rollout import episode_return, rollout


def evaluate_distilled(policy: DistilledPolicy, task: Any, archive: Any, key: jax.Array, *, chunk: int = 256):
    """Run the distilled policy for every cell's target (grid centres or CVT centroids).

    Returns ``(report, arrays)``: the report (JSON-able) has, over all cells and over
    the archive's filled cells, the mean distance between target and reached
    descriptor, the fraction of targets reached within their own cell
    (``reached_fraction``), the fraction reached within one cell's size of the target
    (``within_one_cell_fraction``: closer to it than its nearest neighbouring cell
    centre is; near misses count) and the mean fitness, with the archive's own mean
    fitness for comparison, and the fraction of the archive's filled cells that the
    policy reaches for some target; ``arrays`` holds ``targets``, ``reached``,
    ``fitness`` and ``filled`` per cell."""
    targets = np.asarray(archive.cell_centers(), np.float32)
    chunk = min(int(chunk), len(targets))
    reached, fitness = [], []
    for start in range(0, len(targets), chunk):
        key, k = rng.split(key)
        part, n = _padded(np.arange(start, min(start + chunk, len(targets))), chunk)
        f, d = _score(k, policy.specialise(jnp.asarray(targets[part])), archive, task)
        reached.append(np.asarray(d)[:n])
        fitness.append(np.asarray(f)[:n])
    reached, fitness = np.concatenate(reached), np.concatenate(fitness)
    cells = np.asarray(archive.index_of(jnp.asarray(reached)))
    filled = np.asarray(archive.occupied)
    summary = functools.partial(_reach_summary, targets, reached, fitness, cells, _cell_size(targets))

    # the archive's filled cells that the policy reaches for some target (its own coverage of the archive)
    covered = np.zeros_like(filled)
    covered[cells[(cells >= 0) & (cells < len(filled))]] = True
    report = {"all_cells": summary(np.ones_like(filled)), "filled_cells": summary(filled),
              "archive_mean_fitness": float(np.asarray(archive.fitness)[filled].mean()) if filled.any() else None,
              "filled_cells_reached_by_some_target": float((covered & filled).sum() / max(filled.sum(), 1))}  # fmt: skip
    return report, {"targets": targets, "reached": reached, "fitness": fitness, "filled": filled}


def _reach_summary(targets, reached, fitness, cells, cell_size, mask):
    """Over the cells in ``mask``: mean distance between target and reached descriptor,
    the fractions reached in their own cell and within one cell's size, mean fitness."""
    if not mask.any():
        return {"cells": 0}
    distance = np.linalg.norm(reached - targets, axis=1)[mask]
    return {"cells": int(mask.sum()), "mean_distance": float(distance.mean()),
            "reached_fraction": float((cells == np.arange(len(targets)))[mask].mean()),
            "within_one_cell_fraction": float((distance <= cell_size[mask]).mean()),
            "mean_fitness": float(fitness[mask].mean())}  # fmt: skip


def evaluate_elites(task: Any, archive: Any, key: jax.Array, *, action_noise: float = 0.001, chunk: int = 256):
    """How reproducible the archive's own elites are: each filled cell's elite is played
    again with Gaussian noise of standard deviation ``action_noise`` on its actions, and
    scored as :func:`evaluate_distilled` scores the distilled policy (target = the cell's
    centre), so the two reports compare directly. A distilled policy is never the
    elites' exact function, so this is the reference for what imitating them can
    reach: where the elites themselves scatter under a tiny perturbation (a chaotic
    task), no faithful copy of them reaches their cells.

    The task needs ``env``, ``policy``, ``episode_length`` and ``descriptor_of`` (the
    maze has them). ``action_noise=0`` replays the elites as they were evaluated.

    Returns ``(report, arrays)``: the report has ``action_noise``, ``filled_cells``
    (as in :func:`evaluate_distilled`) and ``archive_mean_fitness``; ``arrays`` holds
    ``targets``, ``reached`` and ``fitness`` for the filled cells (in cell order)."""
    if archive.learned:
        raise ValueError("evaluate_elites replays the elites in the task's own descriptor space; this archive's "
                         "descriptors are learned")  # fmt: skip
    if any(getattr(task, name, None) is None for name in ("env", "policy", "descriptor_of")):
        raise ValueError(f"task {getattr(task, 'name', task)!r} cannot replay its elites: it needs env, policy and "
                         "descriptor_of, as the maze has")  # fmt: skip
    action_noise = check_positive("action_noise", action_noise)
    occupied = np.asarray(archive.occupied)
    if not occupied.any():
        raise ValueError("the archive is empty: there are no elites to replay")
    cells = np.nonzero(occupied)[0]
    centres = np.asarray(archive.cell_centers(), np.float32)
    env, apply, episode_length, descriptor_of = (
        task.env,
        task.policy.apply,
        int(task.episode_length),
        task.descriptor_of,
    )

    @jax.jit
    def play(k, params):
        keys = rng.split(k, jax.tree.leaves(params)[0].shape[0])
        t = jax.vmap(lambda p, k: rollout(env, apply, p, k, episode_length, action_noise))(params, keys)
        return descriptor_of(t), episode_return(t)

    reached, fitness = [], []
    for start in range(0, len(cells), int(chunk)):
        key, k = rng.split(key)
        part = jnp.asarray(cells[start : start + int(chunk)])
        d, f = play(k, jax.tree.map(lambda g: g[part], archive.genotypes))
        reached.append(np.asarray(d))
        fitness.append(np.asarray(f))
    reached, fitness = np.concatenate(reached), np.concatenate(fitness)
    landed = np.asarray(archive.index_of(jnp.asarray(reached)))
    # in the filled cells' own numbering: a replay lands in its own cell when it lands in cells[i]
    own = np.where(landed == cells, np.arange(len(cells)), -1)
    summary = _reach_summary(
        centres[cells], reached, fitness, own, _cell_size(centres)[cells], np.ones(len(cells), bool)
    )
    report = {"action_noise": action_noise, "filled_cells": summary,
              "archive_mean_fitness": float(np.asarray(archive.fitness)[occupied].mean())}  # fmt: skip
    return report, {"targets": centres[cells], "reached": reached, "fitness": fitness}


def _padded(indices: np.ndarray, size: int) -> tuple[np.ndarray, int]:
    """``indices`` repeated at its first entry up to ``size`` (one compiled shape for
    every chunk), and how many of them are real."""
    return np.concatenate([indices, np.full(max(size - len(indices), 0), indices[0])]), len(indices)


@functools.partial(jax.jit, static_argnames=("task",))
def _score(key, genotypes, archive, task):
    """Fitness and descriptors (in the archive's space) of a batch: one compiled
    program per task and batch shape, whatever archive and key."""
    evaluation = describe(archive, task, task.score(key, genotypes))[0]
    return evaluation.fitness, evaluation.descriptors


def reevaluate_elites(task: Any, archive: Any, key: jax.Array, *, chunk: int = 256):
    """Score every filled cell's elite again with fresh keys (the task's own scoring:
    brax resets draw a new initial state) and return ``(cells, fitness, descriptors)``
    for the filled cells, in cell order, descriptors in the archive's space."""
    cells = np.nonzero(np.asarray(archive.occupied))[0]
    chunk = max(min(int(chunk), len(cells)), 1)
    fitness, reached = [], []
    for start in range(0, len(cells), chunk):
        key, k = rng.split(key)
        part, n = _padded(cells[start : start + chunk], chunk)
        f, d = _score(k, jax.tree.map(lambda g: g[jnp.asarray(part)], archive.genotypes), archive, task)
        fitness.append(np.asarray(f)[:n])
        reached.append(np.asarray(d)[:n])
    if not len(cells):
        return cells, np.zeros(0, np.float32), np.zeros((0, archive.descriptor_dim), np.float32)
    return cells, np.concatenate(fitness), np.concatenate(reached)


def paper_measures(arrays: dict[str, np.ndarray], task: Any, archive: Any, key: jax.Array,
                   qd_offset: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Distillation measured as DCG-MAP-Elites measures it (its Table 2 and its code's
    reproducibility script), from :func:`evaluate_distilled`'s ``arrays``:

    - ``qd_score_policy``: the policy conditioned on each *filled* cell's centre (grid
      centre or CVT centroid), one episode each, its fitnesses summed as the archive's
      QD-score is (``max(f - qd_offset, 0)``);
    - ``qd_score_archive``: the archive's QD-score (its stored fitnesses);
    - ``dem_policy``: the policy's descriptor error mean, the mean distance between each
      filled cell's centre and the descriptor the policy reached for it (clipped to the
      archive's bounds, as the paper's position wrapper clips it);
    - ``dem_archive``: the same for the archive's elites, each scored again with a fresh
      key (:func:`reevaluate_elites`), against its cell's centre;
    - and, beside them, ``qd_score_archive_reevaluated`` (the re-scored elites' QD-score),
      the ratio ``policy_over_archive`` and ``qd_offset``.

    ``qd_offset`` defaults to the task's."""
    offset = float(task.qd_offset if qd_offset is None else qd_offset)
    filled = arrays["filled"]
    if not filled.any():
        raise ValueError("the archive is empty: there is nothing to measure the policy against")
    centres = arrays["targets"][filled]
    policy_fitness = arrays["fitness"][filled]
    cells, fitness, reached = reevaluate_elites(task, archive, key)

    def qd_sum(f):  # as Archive.qd_score sums the elites' fitnesses
        return float(np.maximum(np.asarray(f, np.float64) - offset, 0.0).sum())

    qd_policy = qd_sum(policy_fitness)
    qd_archive = float(archive.qd_score(offset))
    lower, upper = np.asarray(archive.lower), np.asarray(archive.upper)
    policy_reached = np.clip(arrays["reached"][filled], lower, upper)
    reached = np.clip(reached, lower, upper)
    return {
        "qd_score_policy": qd_policy,
        "qd_score_archive": qd_archive,
        "policy_over_archive": qd_policy / qd_archive if qd_archive > 0 else None,
        "dem_policy": float(np.linalg.norm(policy_reached - centres, axis=1).mean()),
        "dem_archive": float(np.linalg.norm(reached - np.asarray(archive.cell_centers())[cells], axis=1).mean()),
        "qd_score_archive_reevaluated": qd_sum(fitness),
        "qd_offset": offset,
        "filled_cells": int(filled.sum()),
    }


def _cell_size(centres: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Each cell centre's distance to the nearest other centre (a grid's cell width, a
    CVT cell's size); infinite for a single cell."""
    out = np.empty(len(centres), np.float32)
    for start in range(0, len(centres), chunk):
        d = np.linalg.norm(centres[start : start + chunk, None, :] - centres[None, :, :], axis=-1)
        d[np.arange(len(d)), start + np.arange(len(d))] = np.inf
        out[start : start + chunk] = d.min(axis=1)
    return out


def plot_distilled(arrays: dict[str, np.ndarray], *, ax=None, descriptor_names=("descriptor 0", "descriptor 1")):
    """Targets (grey) and where the distilled policy got (coloured by fitness), with a
    line from each filled cell's target to its reached descriptor (2-D descriptors)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    t, r, filled = arrays["targets"], arrays["reached"], arrays["filled"]
    for (x0, y0), (x1, y1) in zip(t[filled], r[filled]):
        ax.plot([x0, x1], [y0, y1], color="0.7", lw=0.5)
    ax.scatter(t[:, 0], t[:, 1], s=4, color="0.6", label="targets")
    points = ax.scatter(r[:, 0], r[:, 1], s=6, c=arrays["fitness"], cmap="viridis", label="reached")
    ax.figure.colorbar(points, ax=ax, label="fitness")
    ax.set_xlabel(descriptor_names[0])
    ax.set_ylabel(descriptor_names[1])
    ax.legend(loc="upper right", fontsize=8)
    return ax
