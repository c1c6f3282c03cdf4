"""Archive distillation: DCG's descriptor-conditioned actor as one policy that
reproduces the archive (:func:`distilled_policy`), measured on every cell
(:func:`evaluate_distilled`, against the elites themselves: :func:`evaluate_elites`;
and as DCG-MAP-Elites measures it: :func:`paper_measures`),
optionally trained further (:func:`refine_distilled`, :func:`imitate_distilled`), and
the whole pipeline as one call (:func:`distill`)."""

from emitters.distill.evaluate import (
    evaluate_distilled,
    evaluate_elites,
    paper_measures,
    plot_distilled,
    reevaluate_elites,
)
from emitters.distill.pipeline import Distilled, distill, summary
from emitters.distill.policy import DistilledPolicy, distilled_policy
from emitters.distill.train import TEACHERS, imitate_distilled, refine_distilled

__all__ = [
    "TEACHERS",
    "Distilled",
    "DistilledPolicy",
    "distill",
    "distilled_policy",
    "evaluate_distilled",
    "evaluate_elites",
    "imitate_distilled",
    "paper_measures",
    "plot_distilled",
    "reevaluate_elites",
    "refine_distilled",
    "summary",
]
