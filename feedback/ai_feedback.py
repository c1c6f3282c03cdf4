"""AI feedback on text (QDAIF): a language model rates quality and diversity.

- **Quality** is the model's probability of "yes" to the domain's question ("Is this a
  good opinion piece about ...?"): ``P(yes) / (P(yes) + P(no))`` from the first
  generated token's top log-probabilities.
- **Each diversity axis** is rated between its two poles the same way:
  ``P(high) / (P(low) + P(high))`` for the question "Is the sentiment of this opinion
  piece negative or positive?". A token counts for a pole when it is a prefix of that
  pole's word and not of the other's (``"pos"`` counts for *positive*).
- **Fallback**, when the server gives no log-probabilities or none of the top tokens
  names an answer: a second request for a rating from 1 to 10 (1 = no / the low pole),
  parsed from the text and mapped to [0, 1] as ``(r - 1) / 9``.
- A text that cannot be rated (failed requests, no parseable rating) gets NaN, so it
  never enters an archive. ``feedback.stats`` counts each route.

All requests of a batch go out together through the client (bounded concurrency,
cache, retries, budget). A spent budget raises :class:`feedback.BudgetExhausted`,
which stops a run cleanly; the replies obtained are cached.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from feedback.client import BudgetExhausted, ModelClient, Reply
from feedback.domains import Axis, Domain
from qdkit import text as text_codec

RATING = re.compile(r"(?<!\d)(10|[1-9])(?!\d)")
YES_NO = Axis("answer", "no", "yes")


def pole_probability(top: list[dict[str, float]] | None, low: str, high: str) -> float | None:
    """``P(high) / (P(low) + P(high))`` from the first token's top log-probabilities;
    ``None`` when no top token names either pole."""
    if not top:
        return None
    low, high = low.lower(), high.lower()
    mass = {low: 0.0, high: 0.0}
    for token, logprob in top[0].items():
        t = token.strip().lower()
        if not t:
            continue
        hits = [p for p in (low, high) if p.startswith(t)]
        if len(hits) == 1 and math.isfinite(logprob):
            mass[hits[0]] += math.exp(logprob)
    total = mass[low] + mass[high]
    if total <= 0.0:
        return None
    return mass[high] / total


def parse_rating(text: str) -> float | None:
    """The first integer from 1 to 10 in ``text``, mapped to [0, 1]; ``None`` if none."""
    match = RATING.search(text or "")
    if match is None:
        return None
    return (int(match.group(1)) - 1) / 9.0


class AIFeedback:
    """Rates texts of a :class:`feedback.domains.Domain` with a language model.

    Args:
        client: a :class:`feedback.ModelClient`.
        domain: what the texts are and which axes to rate.
        top_logprobs: alternatives to ask log-probabilities for (0: ratings only).

    Calling it on a list of texts returns ``(quality (B,), descriptors (B, A))``,
    float32 in [0, 1], NaN where a text could not be rated.
    """

    def __init__(self, client: ModelClient, domain: Domain, *, top_logprobs: int = 10):
        self.client, self.domain = client, domain
        self.top_logprobs = int(top_logprobs)
        self.stats = {"rated": 0, "from_logprobs": 0, "from_rating": 0, "unrated": 0, "failed": 0}

    # ----------------------------------------------------------------- prompts
    def _shown(self, text: str) -> str:
        item = self.domain.item
        return f'Here is {text_codec.article(item)} {item}:\n"""\n{text}\n"""\n\n'

    def question(self, text: str, axis: Axis | None) -> list[dict]:
        """The yes/no (``axis=None``) or two-pole question about ``text``."""
        if axis is None:
            ask = f"{self.domain.quality} Answer with one word: yes or no."
        else:
            ask = (
                f"Is the {axis.name} of this {self.domain.item} {axis.low} or {axis.high}? "
                f"Answer with one word: {axis.low} or {axis.high}."
            )
        return [{"role": "user", "content": self._shown(text) + ask}]

    def rating_question(self, text: str, axis: Axis | None) -> list[dict]:
        """The 1-10 fallback question."""
        if axis is None:
            ask = (
                f"{self.domain.quality} Rate it from 1 to 10, where 1 means no, not at all, and 10 means yes, "
                "completely. Answer with the number only."
            )
        else:
            ask = (
                f"Rate the {axis.name} of this {self.domain.item} from 1 to 10, where 1 means completely "
                f"{axis.low} and 10 means completely {axis.high}. Answer with the number only."
            )
        return [{"role": "user", "content": self._shown(text) + ask}]

    # ------------------------------------------------------------------ rating
    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        axes: list[Axis | None] = [None, *self.domain.axes]
        jobs = [(i, j) for i in range(len(texts)) for j in range(len(axes))]
        values = np.full((len(texts), len(axes)), np.nan, np.float32)
        params: dict[str, Any] = {"temperature": 0.0, "max_tokens": 2}
        if self.top_logprobs:
            params.update(logprobs=True, top_logprobs=self.top_logprobs)
        replies = self._ask([self.question(texts[i], axes[j]) for i, j in jobs], params)
        retry = []
        for (i, j), reply in zip(jobs, replies):
            pole = YES_NO if axes[j] is None else axes[j]
            value = None if reply is None else pole_probability(reply.top_logprobs, pole.low, pole.high)
            if reply is None:
                self.stats["failed"] += 1
            elif value is None:
                retry.append((i, j))
            else:
                values[i, j] = value
                self.stats["from_logprobs"] += 1
        if retry:
            asked = self._ask(
                [self.rating_question(texts[i], axes[j]) for i, j in retry], {"temperature": 0.0, "max_tokens": 4}
            )
            for (i, j), reply in zip(retry, asked):
                value = None if reply is None else parse_rating(reply.text)
                if value is None:
                    self.stats["failed" if reply is None else "unrated"] += 1
                else:
                    values[i, j] = value
                    self.stats["from_rating"] += 1
        self.stats["rated"] += int(np.isfinite(values).all(axis=1).sum())
        return values[:, 0], values[:, 1:]

    def _ask(self, conversations: list[list[dict]], params: dict[str, Any]) -> list[Reply | None]:
        return self.client.chat_many(conversations, **params) if conversations else []


__all__ = ["AIFeedback", "BudgetExhausted", "parse_rating", "pole_probability"]
