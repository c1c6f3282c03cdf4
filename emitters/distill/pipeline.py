"""The archive-distillation pipeline: optionally train a policy (imitation, then
refinement), evaluate it on every cell's target, and replay the elites for reference.
``qdkit distill`` and ``benchmarks/maze_distill.py`` both call :func:`distill`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from emitters.distill.evaluate import evaluate_distilled, evaluate_elites, paper_measures
from emitters.distill.policy import DistilledPolicy
from emitters.distill.train import TEACHERS, imitate_distilled, refine_distilled
from qdkit import rng


class Distilled(NamedTuple):
    """What :func:`distill` returns.

    Attributes:
        policy: the (trained) distilled policy.
        report: JSON-able: :func:`evaluate_distilled`'s report, plus ``imitate`` and
            ``refine`` blocks for the training done, ``elites_with_action_noise``
            (:func:`evaluate_elites`) when the elites were replayed, and ``paper``
            (:func:`paper_measures`: the distilled and the archive's QD-scores and
            descriptor error means as DCG-MAP-Elites reports them) for a non-empty
            archive.
        arrays: :func:`evaluate_distilled`'s arrays, for :func:`plot_distilled`.
    """

    policy: DistilledPolicy
    report: dict[str, Any]
    arrays: dict[str, np.ndarray]


def distill(
    task: Any,
    archive: Any,
    key: jax.Array,
    *,
    policy: DistilledPolicy | None = None,
    imitate: int | None = None,
    teacher: str | None = None,
    refine: int | None = None,
    hidden: tuple[int, ...] | None = None,
    learning_rate: float = 1e-3,
    elite_noise: float = 0.001,
    qd_offset: float | None = None,
    log: Callable[[str], None] | None = None,
) -> Distilled:
    """Distil ``archive`` into one descriptor-conditioned policy and measure it.

    Args:
        task: the run's policy task.
        archive: the run's archive.
        key: PRNG key for training and evaluation.
        policy: the policy to start from (e.g. :func:`distilled_policy` of a dcg run);
            ``None`` trains a fresh one (needs ``imitate``, or ``refine`` with
            ``hidden``).
        imitate: first train by imitation of ``teacher`` (:func:`imitate_distilled`)
            for this many steps: a fresh actor (``hidden``, default 256-256) unless
            ``policy`` is given.
        teacher: ``"task"`` or ``"elites"`` (default: the task's own teacher where it
            has one, else the elites); only with ``imitate``.
        refine: then fine-tune toward the archive's descriptors
            (:func:`refine_distilled`) for this many steps (from the imitating actor
            when both are given; a fresh actor with ``hidden`` when no policy).
        hidden: hidden widths of a fresh actor; only with ``imitate`` or ``refine``.
        learning_rate: Adam's step size for the training.
        elite_noise: replay the archive's own elites with this much action noise for
            reference (tasks with ``descriptor_of``, non-empty archives over the task's
            own descriptors); 0 skips it.
        qd_offset: the QD offset of the ``"paper"`` block's QD-scores (default: the
            task's).
        log: called with a line of progress during training.

    Raises:
        ValueError: options that do not go together, or a task or archive the steps
            asked for cannot use (the message names the reason).
    """
    if hidden is not None and refine is None and imitate is None:
        raise ValueError("hidden widths are for a fresh actor: they need refine or imitate")
    if teacher is not None and imitate is None:
        raise ValueError("a teacher is for imitation: it needs imitate")
    if teacher is not None and teacher not in TEACHERS:
        raise ValueError(f"unknown teacher {teacher!r}; valid teachers: {', '.join(TEACHERS)}")
    if policy is None and imitate is None and hidden is None:
        raise ValueError("nothing to distil: give a policy (a dcg run's actor), or imitate / refine with hidden "
                         "widths to train a fresh one")  # fmt: skip
    say = log or (lambda line: None)
    blocks: dict[str, Any] = {}
    if imitate is not None:
        teacher = teacher or ("task" if getattr(task, "teacher", None) is not None else "elites")
        key, k_imitate = rng.split(key)
        policy, history = imitate_distilled(
            policy, task, archive, k_imitate, teacher=teacher, steps=imitate, hidden=hidden,
            learning_rate=learning_rate, chunk=min(100, imitate),
            callback=lambda step, value: say(f"imitate step {step}/{imitate}: loss {value:.4f}"),
        )  # fmt: skip
        hidden = None  # refinement goes on from the imitating actor
        blocks["imitate"] = {"steps": imitate, "teacher": teacher, "hidden": [int(h) for h in policy.actor.sizes[1:-1]],
                             "learning_rate": learning_rate, "loss_per_100_steps": [float(v) for v in history]}  # fmt: skip
    if refine is not None:
        key, k_refine = rng.split(key)
        policy, history = refine_distilled(
            policy, task, archive, k_refine, steps=refine, hidden=hidden, learning_rate=learning_rate,
            chunk=min(100, refine),
            callback=lambda step, d: say(f"refine step {step}/{refine}: mean distance {d:.4f}"),
        )  # fmt: skip
        blocks["refine"] = {"steps": refine, "hidden": list(hidden) if hidden else None, "learning_rate": learning_rate,
                            "mean_distance_per_100_steps": [float(d) for d in history]}  # fmt: skip
    report, arrays = evaluate_distilled(policy, task, archive, key)
    report.update(blocks)
    if bool(np.asarray(archive.occupied).any()):
        report["paper"] = paper_measures(arrays, task, archive, jax.random.fold_in(key, 2), qd_offset)
    replayable = getattr(task, "descriptor_of", None) is not None and not archive.learned
    if elite_noise > 0 and replayable and bool(np.asarray(archive.occupied).any()):
        k_elites = jax.random.fold_in(key, 1)
        report["elites_with_action_noise"] = evaluate_elites(task, archive, k_elites, action_noise=elite_noise)[0]
    return Distilled(policy, report, arrays)


def summary(report: dict[str, Any]) -> list[str]:
    """The report of :func:`distill` as lines for a person."""
    filled = report["filled_cells"]
    paper = report.get("paper")
    lines = [
        f"distilled policy on {report['all_cells']['cells']} targets: mean distance "
        f"{report['all_cells']['mean_distance']:.4f}, {report['all_cells']['reached_fraction']:.1%} reached in their "
        f"cell; on the {filled['cells']} filled cells: {filled.get('reached_fraction', 0):.1%} reached "
        f"({filled.get('within_one_cell_fraction', 0):.1%} within one cell's size), mean fitness "
        f"{filled.get('mean_fitness', float('nan')):.4g} (archive {report['archive_mean_fitness']:.4g}); "
        f"{report['filled_cells_reached_by_some_target']:.1%} of the filled cells reached by some target"
    ]
    if paper is not None:
        ratio = paper["policy_over_archive"]
        lines.append(
            f"as DCG-MAP-Elites measures it: QD-score of the policy {paper['qd_score_policy']:.6g} against the "
            f"archive's {paper['qd_score_archive']:.6g} ({'n/a' if ratio is None else f'{ratio:.1%}'}; the elites "
            f"re-scored: {paper['qd_score_archive_reevaluated']:.6g}); descriptor error mean {paper['dem_policy']:.4g} "
            f"(policy) against {paper['dem_archive']:.4g} (the elites re-scored)"
        )
    elites = report.get("elites_with_action_noise")
    if elites is not None:
        f = elites["filled_cells"]
        lines.append(
            f"for reference, the archive's own elites replayed with action noise {elites['action_noise']:g}: "
            f"{f['reached_fraction']:.1%} reached their cell ({f['within_one_cell_fraction']:.1%} within one cell's "
            f"size), mean distance {f['mean_distance']:.4f}"
        )
    return lines
