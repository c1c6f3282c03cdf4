"""A language model as the judge, through :class:`feedback.client.ModelClient`.

Each triplet becomes one chat request showing the anchor and the two candidates as text
and asking for one letter, ``A`` or ``B``. The answer is read from the log-probabilities
of the first generated token when the server gives them (the likelier of ``A`` and
``B`` among the top tokens), else from the text (the first standalone ``A`` or ``B``).
An unparseable answer, a failed request or an exhausted budget gives "can't tell" for
that triplet and is counted in ``judge.stats``; it never stops the run.

With a ``draw`` function the items are shown to a vision model as images: each is drawn
on its own matplotlib axis, and the request carries the three PNGs as ``image_url``
parts (base64 ``data:`` URLs, the OpenAI chat format for images) next to their labels.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from feedback.client import BudgetExhausted, ModelClient
from feedback.human import describe_item
from feedback.judges import CANT_TELL, A, B

INSTRUCTION = (
    "You compare items. Given an anchor and two candidates A and B, answer with one letter: "
    "A if candidate A is more similar to the anchor, B if candidate B is."
)
LETTER = re.compile(r"(?<![A-Za-z])([AB])(?![A-Za-z])")


def parse_letter(text: str) -> int:
    """:data:`A`, :data:`B` or :data:`CANT_TELL` from an answer's text."""
    match = LETTER.search(text.strip())
    if match is None:
        return CANT_TELL
    return A if match.group(1) == "A" else B


def parse_logprobs(top: list[dict[str, float]] | None) -> int:
    """The likelier of ``A`` and ``B`` among the first token's top log-probabilities."""
    if not top:
        return CANT_TELL
    scores = {"A": -np.inf, "B": -np.inf}
    for token, logprob in top[0].items():
        letter = token.strip().upper()
        if letter in scores:
            scores[letter] = max(scores[letter], logprob)
    if scores["A"] == scores["B"]:
        return CANT_TELL
    return A if scores["A"] > scores["B"] else B


class LLMJudge:
    """Asks a language model (see the module docstring).

    Args:
        client: a :class:`feedback.client.ModelClient`.
        describe: ``describe(item) -> str``, the text of an item.
        instruction: the system message.
        top_logprobs: how many alternatives to ask log-probabilities for (0: text only).
        draw: optional ``draw(ax, item)``; items are then sent as images (a vision
            model is needed) instead of text.
        image_size: width and height of each image in pixels.
    """

    def __init__(
        self,
        client: ModelClient,
        *,
        describe: Callable[[Any], str] = describe_item,
        instruction: str = INSTRUCTION,
        top_logprobs: int = 5,
        draw: Callable[[Any, Any], None] | None = None,
        image_size: int = 256,
    ):
        self.client, self.describe, self.instruction = client, describe, instruction
        self.top_logprobs = int(top_logprobs)
        self.draw, self.image_size = draw, int(image_size)
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16 pixels; got {image_size}")
        self.stats = {"asked": 0, "from_logprobs": 0, "from_text": 0, "unparseable": 0, "failed": 0}

    def image_url(self, item: Any) -> str:
        """One item drawn as a PNG ``data:`` URL."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        dpi = 64
        fig, ax = plt.subplots(figsize=(self.image_size / dpi, self.image_size / dpi), dpi=dpi)
        try:
            self.draw(ax, item)
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=dpi)
        finally:
            plt.close(fig)
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

    def conversation(self, anchor: Any, a: Any, b: Any) -> list[dict]:
        question = "Which candidate is more similar to the anchor? Answer A or B."
        if self.draw is not None:
            parts: list[dict] = []
            for label, item in (("Anchor:", anchor), ("Candidate A:", a), ("Candidate B:", b)):
                parts.append({"type": "text", "text": label})
                parts.append({"type": "image_url", "image_url": {"url": self.image_url(item)}})
            parts.append({"type": "text", "text": question})
            return [{"role": "system", "content": self.instruction}, {"role": "user", "content": parts}]
        text = (
            f"Anchor: {self.describe(anchor)}\nCandidate A: {self.describe(a)}\nCandidate B: {self.describe(b)}\n"
            + question
        )
        return [{"role": "system", "content": self.instruction}, {"role": "user", "content": text}]

    def __call__(self, anchor: Any, a: Any, b: Any) -> np.ndarray:
        n = jax.tree.leaves(anchor)[0].shape[0]
        rows = [[jax.tree.map(lambda x, i=i: np.asarray(x)[i], t) for t in (anchor, a, b)] for i in range(n)]
        params: dict[str, Any] = {"temperature": 0.0, "max_tokens": 4}
        if self.top_logprobs:
            params.update(logprobs=True, top_logprobs=self.top_logprobs)
        try:
            replies = self.client.chat_many([self.conversation(*r) for r in rows], **params)
        except BudgetExhausted as e:  # answer what was paid for; the rest is "can't tell"
            replies = e.partial
            self.stats["budget_exhausted"] = 1
        choices = []
        for reply in replies:
            self.stats["asked"] += 1
            if reply is None:
                self.stats["failed"] += 1
                choices.append(CANT_TELL)
                continue
            choice = parse_logprobs(reply.top_logprobs)
            if choice != CANT_TELL:
                self.stats["from_logprobs"] += 1
            else:
                choice = parse_letter(reply.text)
                self.stats["from_text" if choice != CANT_TELL else "unparseable"] += 1
            choices.append(choice)
        return np.asarray(choices, np.int8)
