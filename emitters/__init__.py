"""Variation operators for qdkit: values made of pure functions (see :class:`Emitter`)."""

from emitters.base import Emitter, clip
from emitters.cma import evolution_strategy
from emitters.dqd import cma_mega, omg_mega
from emitters.gaussian import gaussian
from emitters.iso_line import iso_line
from emitters.lmx import lmx
from emitters.mix import mix

__all__ = ["Emitter", "clip", "cma_mega", "evolution_strategy", "gaussian", "iso_line", "lmx", "mix", "omg_mega"]
