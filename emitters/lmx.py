"""LMX: language-model crossover (QDAIF's variation operator) for text genotypes.

Each candidate is one chat request to a language model:

- ``fewshot`` (LMX): ``num_examples`` elites drawn uniformly from the archive (the seed
  texts while it is empty) are shown as the model's own earlier answers to "Write a
  <item> about <topic>", and the model writes one more;
- ``instruct``: one elite is shown and the model is asked to rewrite it into a new,
  different one (instruction-style mutation);
- ``fixed``: the few-shot prompt with examples drawn from the seed texts only, never
  from the archive (QDAIF's baseline: sampling from the model without the archive in
  the loop).

Every request carries its own sampling ``seed`` drawn from the JAX key, so a run is
repeatable and a resumed run replays its requests from the client's cache.

Candidates that come back empty, truncated or longer than the genotype buffer, that
duplicate an elite or an earlier candidate of the batch, or whose request failed are
rejected: their row is the empty text, which the text task scores NaN (never inserted).
``emit`` returns the counts in the emitter state (:class:`LMXState`, checkpointed); they
join the run's metrics.

A host emitter (``host=True``): it calls the model, so the loop runs it eagerly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from emitters.base import Emitter, check_batch_size, check_positive, keep_state
from qdkit import text as text_codec

STYLES = ("fewshot", "instruct", "fixed")


class LMXState(NamedTuple):
    """Running counts of the candidates written (int32 scalars): all of them, those
    accepted, and those rejected as empty, too long (or cut off), duplicate, or failed."""

    generated: jax.Array
    accepted: jax.Array
    empty: jax.Array
    too_long: jax.Array
    duplicate: jax.Array
    failed: jax.Array


COUNTERS = LMXState._fields


def clean(text: str) -> str:
    """Strip whitespace and one pair of surrounding quotes from a model's answer."""
    text = text.strip()
    for quote in ('"', "'", '"""', "\u201c"):
        close = "\u201d" if quote == "\u201c" else quote
        if len(text) >= 2 * len(quote) and text.startswith(quote) and text.endswith(close):
            text = text[len(quote) : len(text) - len(close)].strip()
    return text


def lmx(
    client,
    *,
    item: str,
    topic: str,
    seeds: Sequence[str],
    batch_size: int,
    max_bytes: int,
    num_examples: int = 3,
    temperature: float = 0.8,
    style: str = "fewshot",
    max_tokens: int = 120,
) -> Emitter:
    """The LMX emitter (see the module docstring).

    Args:
        client: a :class:`feedback.ModelClient` (anything with its ``chat_many``).
        item, topic: what the texts are ("opinion piece") and what about.
        seeds: example texts used while the archive is empty.
        batch_size: candidates per iteration (one request each).
        max_bytes: the genotype buffer length (UTF-8 bytes).
        num_examples: elites per few-shot prompt.
        temperature: sampling temperature of the writer.
        style: ``fewshot``, ``instruct`` or ``fixed``.
        max_tokens: generation limit; an answer cut at the limit is rejected.
    """
    batch_size = check_batch_size(batch_size)
    if style not in STYLES:
        raise ValueError(f"unknown LMX style {style!r}; valid styles: {', '.join(STYLES)}")
    num_examples = int(num_examples)
    if num_examples < 1:
        raise ValueError(f"num_examples must be positive; got {num_examples}")
    temperature = check_positive("temperature", temperature)
    max_tokens = int(max_tokens)
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive; got {max_tokens}")
    seeds = [s for s in seeds if s.strip()]
    if not seeds:
        raise ValueError("lmx needs at least one seed text")
    ask = f"Write {text_codec.article(item)} {item} about {topic}. Reply with the {item} only."
    again = f"Write another {item} about {topic}, different from the previous ones. Reply with the {item} only."

    def conversation(examples: list[str]) -> list[dict]:
        if style == "instruct":
            prompt = (
                f"Here is {text_codec.article(item)} {item} about {topic}:\n\n{examples[0]}\n\nRewrite it into a new "
                f"{item} about {topic} that is clearly different from this one. Reply with the new {item} only."
            )
            return [{"role": "user", "content": prompt}]
        messages = [{"role": "system", "content": f"You write {item}s about {topic}."}]
        for n, example in enumerate(examples):
            messages += [
                {"role": "user", "content": ask if n == 0 else again},
                {"role": "assistant", "content": example},
            ]
        return messages + [{"role": "user", "content": again}]

    def init(key, archive):
        del key, archive
        return LMXState(*(jnp.zeros((), jnp.int32) for _ in COUNTERS))

    def emit(key, archive, state):
        # host-side draws from the key's bits (no device computation to compile in host code)
        rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
        occupied = np.nonzero(np.asarray(archive.occupied))[0]
        elites = text_codec.decode(np.asarray(archive.genotypes)[occupied]) if len(occupied) else []
        pool = seeds if style == "fixed" or not elites else elites
        picks = rng.integers(0, len(pool), (batch_size, num_examples))
        request_seeds = rng.integers(0, 2**31 - 1, batch_size)
        conversations = [conversation([pool[j] for j in row]) for row in picks]
        each = [{"seed": int(s)} for s in request_seeds]
        replies = client.chat_many(conversations, each=each, temperature=temperature, max_tokens=max_tokens)
        counts = dict.fromkeys(COUNTERS, 0)
        seen = set(elites)
        texts = []
        for reply in replies:
            counts["generated"] += 1
            text = "" if reply is None else clean(reply.text)
            if reply is None:
                reason = "failed"
            elif not text:
                reason = "empty"
            elif reply.finish_reason == "length" or not text_codec.fits(text, max_bytes):
                reason = "too_long"
            elif text in seen:
                reason = "duplicate"
            else:
                reason = "accepted"
                seen.add(text)
            counts[reason] += 1
            texts.append(text if reason == "accepted" else "")
        state = LMXState(*(getattr(state, name) + jnp.int32(counts[name]) for name in COUNTERS))
        return text_codec.encode(texts, max_bytes), state

    def stats(state):
        return {f"lmx_{name}": int(getattr(state, name)) for name in COUNTERS}

    return Emitter(init=init, emit=emit, update=keep_state, batch_size=batch_size, host=True, stats=stats)


__all__ = ["COUNTERS", "STYLES", "LMXState", "clean", "lmx"]
