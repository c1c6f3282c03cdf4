"""Variation operators for qdkit: values made of pure functions (see :mod:`emitters.base`
for the protocol). Archive distillation lives in :mod:`emitters.distill`."""

from emitters import distill, rl
from emitters.base import Emitter, EmptyState, clip
from emitters.cma import evolution_strategy
from emitters.dcg import dcg
from emitters.distill import (
    DistilledPolicy,
    distilled_policy,
    evaluate_distilled,
    evaluate_elites,
    imitate_distilled,
    paper_measures,
    plot_distilled,
    refine_distilled,
)
from emitters.dqd import cma_mega, omg_mega
from emitters.gaussian import gaussian
from emitters.iso_line import iso_line
from emitters.lmx import lmx
from emitters.mix import mix
from emitters.pga import pga
from emitters.rl import TD3Config

__all__ = [
    "DistilledPolicy",
    "Emitter",
    "EmptyState",
    "TD3Config",
    "clip",
    "cma_mega",
    "dcg",
    "distill",
    "distilled_policy",
    "evaluate_distilled",
    "evaluate_elites",
    "evolution_strategy",
    "gaussian",
    "imitate_distilled",
    "iso_line",
    "lmx",
    "mix",
    "omg_mega",
    "paper_measures",
    "pga",
    "plot_distilled",
    "refine_distilled",
    "rl",
]
