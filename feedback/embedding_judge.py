"""Embedding similarity as the judge: the candidate whose embedding has the larger cosine
similarity with the anchor's is the more similar one.

The embeddings come from any ``embed(texts) -> vectors`` function: an OpenAI-compatible
``/embeddings`` endpoint through :class:`feedback.client.ModelClient`
(:meth:`EmbeddingJudge.from_client`; cached, retried, budgeted), or a local model (for
example a sentence-transformers model's ``encode``). Items are turned into text by
``describe``. A failed embedding makes its triplets "can't tell" (counted in
``judge.stats``); it never stops the run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from feedback.client import BudgetExhausted, ModelClient
from feedback.human import describe_item
from feedback.judges import CANT_TELL, A, B


class EmbeddingJudge:
    """Answers by cosine similarity of embeddings (see the module docstring).

    Args:
        embed: ``embed(texts) -> vectors``: a sequence with one vector (or ``None`` for
            a failure) per text, or a ``(N, D)`` array.
        describe: ``describe(item) -> str``, the text of an item.
        tie: similarity differences within this are answered "can't tell".
    """

    def __init__(self, embed: Callable[[list[str]], Any], *, describe: Callable[[Any], str] = describe_item,
                 tie: float = 0.0):  # fmt: skip
        tie = float(tie)
        if not tie >= 0:
            raise ValueError(f"tie must be non-negative; got {tie}")
        self.embed, self.describe, self.tie = embed, describe, tie
        self.stats = {"asked": 0, "answered": 0, "ties": 0, "failed": 0}

    @classmethod
    def from_client(cls, client: ModelClient, **kwargs: Any) -> EmbeddingJudge:
        """A judge on the endpoint of ``client`` (its ``/embeddings``, its model)."""

        def embed(texts: list[str]) -> list:
            try:
                return client.embed_many(texts)
            except BudgetExhausted as e:  # use what was paid for; the rest can't be told
                return e.partial

        return cls(embed, **kwargs)

    def _vectors(self, texts: list[str]) -> list[np.ndarray | None]:
        unique = list(dict.fromkeys(texts))  # each distinct text embedded once
        raw = self.embed(unique)
        if hasattr(raw, "shape"):  # an (N, D) array
            raw = list(np.asarray(raw, np.float64))
        if len(raw) != len(unique):
            raise ValueError(f"embed returned {len(raw)} vectors for {len(unique)} texts")
        table = {}
        for text, v in zip(unique, raw):
            v = None if v is None else np.asarray(v, np.float64).ravel()
            norm = 0.0 if v is None else float(np.linalg.norm(v))
            table[text] = v / norm if v is not None and np.isfinite(norm) and norm > 0 else None
        return [table[t] for t in texts]

    def __call__(self, anchor: Any, a: Any, b: Any) -> np.ndarray:
        n = jax.tree.leaves(anchor)[0].shape[0]
        texts = [self.describe(jax.tree.map(lambda x, i=i: np.asarray(x)[i], batch)) for batch in (anchor, a, b)
                 for i in range(n)]  # fmt: skip
        v = self._vectors(texts)
        choices = np.full(n, CANT_TELL, np.int8)
        for i in range(n):
            self.stats["asked"] += 1
            e0, e1, e2 = v[i], v[n + i], v[2 * n + i]
            if e0 is None or e1 is None or e2 is None or not (e0.shape == e1.shape == e2.shape):
                self.stats["failed"] += 1
                continue
            s1, s2 = float(e0 @ e1), float(e0 @ e2)
            if abs(s1 - s2) <= self.tie:
                self.stats["ties"] += 1
                continue
            choices[i] = A if s1 > s2 else B
            self.stats["answered"] += 1
        return choices
