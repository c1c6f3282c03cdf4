"""Variation operators for qdkit: values made of pure functions (see :class:`Emitter`)."""

from emitters.base import Emitter, clip
from emitters.gaussian import gaussian
from emitters.iso_line import iso_line
from emitters.mix import mix

__all__ = ["Emitter", "clip", "gaussian", "iso_line", "mix"]
