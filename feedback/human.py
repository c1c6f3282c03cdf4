"""A person as the judge: an interactive, resumable terminal session.

:class:`HumanJudge` shows each triplet (the anchor and the two candidates, as text and,
when a ``draw`` function is given, as a PNG file whose path is printed) and reads one
key: ``a`` or ``b`` (the candidate more like the anchor), ``s`` (can't tell), ``u``
(undo the previous answer) or ``q`` (quit). Anything else re-prompts.

Every answer is appended to a JSON-lines judgments file the moment it is given, keyed
by a hash of the triplet's items, so quitting (``q``, Ctrl-C, the end of the input)
raises :class:`JudgingStopped` and loses nothing: asked the same triplets again, the judge answers the known ones from the file
and resumes at the first unanswered one. Undo appends an ``undo`` record.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

import click
import jax
import numpy as np

from feedback.judges import CANT_TELL, A, B

KEYS = {"a": A, "b": B, "s": CANT_TELL}


class JudgingStopped(Exception):
    """The person quit the session; the answers given so far are saved."""


def triplet_id(anchor: Any, a: Any, b: Any) -> str:
    """A stable id for one triplet: a hash of its three items' bytes."""
    digest = hashlib.sha1()
    for item in (anchor, a, b):
        for leaf in jax.tree.leaves(item):
            digest.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
    return digest.hexdigest()[:16]


def read_answers(path: str) -> dict[str, int]:
    """The current answer of every triplet in a judgments file (undo applied)."""
    answers: dict[str, int] = {}
    if not os.path.exists(path):
        return answers
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if record.get("undo"):
                    answers.pop(record["id"], None)
                else:
                    answers[record["id"]] = int(record["choice"])
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}, line {number}: not a judgment record ({e})") from e
    return answers


def describe_item(item: Any) -> str:
    """Default text for an item: its entries, rounded."""
    return np.array2string(np.asarray(jax.tree.leaves(item)[0]), precision=2, suppress_small=True, max_line_width=100)


class HumanJudge:
    """Asks a person in the terminal (see the module docstring).

    Args:
        path: the judgments file (JSON lines; created on the first answer).
        describe: ``describe(item) -> str``, the text shown for each item.
        draw: optional ``draw(ax, item)`` that draws one item on a matplotlib axis;
            each triplet is then also rendered to ``<image_dir>/triplet-<id>.png``.
        image_dir: where the PNG files go (default: beside the judgments file).
    """

    def __init__(
        self,
        path: str,
        *,
        describe: Callable[[Any], str] = describe_item,
        draw: Callable[[Any, Any], None] | None = None,
        image_dir: str | None = None,
    ):
        self.path = path
        self.describe, self.draw = describe, draw
        self.image_dir = image_dir or os.path.dirname(os.path.abspath(path))

    def _append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _render(self, tid: str, items: list[Any]) -> str:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
        for ax, item, title in zip(axes, items, ("anchor", "a", "b")):
            self.draw(ax, item)
            ax.set_title(title)
        os.makedirs(self.image_dir, exist_ok=True)
        out = os.path.join(self.image_dir, f"triplet-{tid}.png")
        fig.savefig(out, dpi=80)
        plt.close(fig)
        return out

    def __call__(self, anchor: Any, a: Any, b: Any) -> np.ndarray:
        n = jax.tree.leaves(anchor)[0].shape[0]
        rows = [[jax.tree.map(lambda x, i=i: np.asarray(x)[i], t) for t in (anchor, a, b)] for i in range(n)]
        ids = [triplet_id(*r) for r in rows]
        answers = read_answers(self.path)
        i = 0
        while i < n:
            if ids[i] in answers:
                i += 1
                continue
            done = sum(t in answers for t in ids)
            click.echo(f"\n[{done + 1}/{n}] Which is more like the anchor?")
            for label, item in zip(("anchor", "a", "b"), rows[i]):
                click.echo(f"  {label:>6}: {self.describe(item)}")
            if self.draw is not None:
                click.echo(f"  image: {self._render(ids[i], rows[i])}")
            try:
                key = click.prompt("  a / b / s (can't tell) / u (undo) / q (quit)", default="", show_default=False)
            except (click.Abort, EOFError) as e:  # Ctrl-C, or no more input: as q
                click.echo(f"\n  stopped; {done} of {n} answered, saved in {self.path}")
                raise JudgingStopped(f"{n - done} judgments still to give") from e
            key = key.strip().lower()
            if key in KEYS:
                answers[ids[i]] = KEYS[key]
                self._append({"id": ids[i], "choice": KEYS[key]})
                i += 1
            elif key == "u":
                previous = [j for j in range(i) if ids[j] in answers]
                if not previous:
                    click.echo("  nothing to undo in this session")
                    continue
                j = previous[-1]
                answers.pop(ids[j])
                self._append({"id": ids[j], "undo": True})
                i = j
            elif key == "q":
                click.echo(f"  stopped; {done} of {n} answered, saved in {self.path}")
                raise JudgingStopped(f"{n - done} judgments still to give")
            else:
                click.echo(f"  {key!r} is not one of a, b, s, u, q")
        return np.asarray([answers[t] for t in ids], np.int8)
