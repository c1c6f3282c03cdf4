"""Variation operators for qdkit: values made of pure functions (see :class:`Emitter`)."""

from emitters import rl
from emitters.base import Emitter, clip
from emitters.cma import evolution_strategy
from emitters.dcg import (
    DistilledPolicy,
    dcg,
    distilled_policy,
    evaluate_distilled,
    evaluate_elites,
    imitate_distilled,
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
    "TD3Config",
    "clip",
    "cma_mega",
    "dcg",
    "distilled_policy",
    "evaluate_distilled",
    "evaluate_elites",
    "imitate_distilled",
    "refine_distilled",
    "evolution_strategy",
    "gaussian",
    "iso_line",
    "lmx",
    "mix",
    "omg_mega",
    "pga",
    "plot_distilled",
    "rl",
]
