"""Judges: who answers "which of ``a``, ``b`` is more like ``anchor``?".

A judge is any callable ``judge(anchor, a, b) -> choices``: the three arguments are
batches of items (genotype pytrees with a leading ``(B,)`` axis) and ``choices`` is a
``(B,)`` int8 NumPy array with :data:`A` (``a`` is more similar), :data:`B` (``b``
is) or :data:`CANT_TELL` (skipped when training). Judges run on the host: they may be
people, language models or simulators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax
import numpy as np

A, B, CANT_TELL = 0, 1, -1


class Judge(Protocol):
    def __call__(self, anchor: Any, a: Any, b: Any) -> np.ndarray: ...


class SimulatedJudge:
    """Answers from a ground-truth descriptor function (the QDHF paper's benchmark
    protocol): the item whose ground truth is nearer to the anchor's (Euclidean) wins.

    Args:
        truth: ``truth(items) -> (B, K)`` ground-truth descriptors of a batch of items
            (e.g. the arm's end-effector position).
        flip: probability of answering the wrong item (judge noise).
        tie: squared distances within this of each other are answered "can't tell"
            (exact ties always are).
        seed: seed of the noise.
    """

    def __init__(self, truth: Callable[[Any], Any], *, flip: float = 0.0, tie: float = 0.0, seed: int = 0):
        flip, tie = float(flip), float(tie)
        if not 0.0 <= flip <= 1.0:
            raise ValueError(f"flip must be a probability in [0, 1]; got {flip}")
        if tie < 0:
            raise ValueError(f"tie must be non-negative; got {tie}")
        self.truth, self.flip, self.tie = truth, flip, tie
        self.rng = np.random.default_rng(seed)
        self.asked = 0

    @classmethod
    def from_task(cls, task, **kwargs) -> SimulatedJudge:
        """A judge whose ground truth is ``task``'s own descriptors (scored with a fixed
        key: the ground truth of a deterministic task)."""
        return cls(lambda items: task.score(jax.random.key(0), items).descriptors, **kwargs)

    def __call__(self, anchor: Any, a: Any, b: Any) -> np.ndarray:
        t0, t1, t2 = (np.asarray(self.truth(x), np.float64) for x in (anchor, a, b))
        d1 = np.sum((t0 - t1) ** 2, axis=1)
        d2 = np.sum((t0 - t2) ** 2, axis=1)
        choice = np.where(d1 <= d2, A, B)
        flipped = self.rng.random(choice.shape[0]) < self.flip
        choice = np.where(flipped, 1 - choice, choice)
        choice = np.where(np.abs(d1 - d2) <= self.tie, CANT_TELL, choice)
        self.asked += int(choice.shape[0])
        return choice.astype(np.int8)
