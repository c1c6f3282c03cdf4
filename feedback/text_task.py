"""The QDAIF text task: texts as genotypes, rated by a language model.

Genotypes are ``(max_bytes,)`` uint8 UTF-8 buffers (:mod:`qdkit.text`). Fitness is the
model's quality rating in [0, 1] (QD offset 0); descriptors are the domain's axis
ratings in [0, 1], binned finer near the poles unless the domain says otherwise. The
initial population is the domain's seed texts. An empty text (a candidate the emitter
rejected) and a text the model could not rate score NaN, so they never enter the
archive. The task is a host task: scoring calls the model, outside the compiler.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from feedback.ai_feedback import AIFeedback
from feedback.client import EnvironmentClient, ModelClient
from feedback.domains import Domain
from feedback.domains import get as get_domain
from qdkit import text as text_codec
from qdkit.tasks import Evaluation, Task


@dataclasses.dataclass(frozen=True, eq=False)
class TextTask(Task):
    """A :class:`qdkit.Task` over texts, with the domain, client and rater it uses."""

    domain: Domain | None = None
    client: ModelClient | None = None
    rater: AIFeedback | None = None

    @property
    def max_bytes(self) -> int:
        return int(np.shape(self.example_genotype)[0])


def text(domain: str = "opinions", *, client: ModelClient | None = None) -> TextTask:
    """QDAIF text: texts of a domain (opinions, stories or a .toml file) rated by a language model."""
    return text_task(domain, client)


#: Each candidate is a model call (0.5-0.7 candidates/s with the bundled local model):
#: a run without --batch-size asks for a handful per iteration, not 256.
text.default_batch_size = 8  # type: ignore[attr-defined]


def text_task(domain: str | Domain = "opinions", client: ModelClient | None = None, *, top_logprobs: int = 10):
    """QDAIF text: texts of a domain, quality and diversity rated by a language model.

    Args:
        domain: a built-in domain name (``opinions``, ``stories``), a ``.toml`` domain
            file, or a :class:`feedback.domains.Domain`.
        client: the :class:`feedback.ModelClient` to rate with (default: one from the
            ``OPENAI_*`` environment variables, made when the task first rates a text).
        top_logprobs: log-probability alternatives asked for (0: 1-10 ratings only).
    """
    domain = get_domain(domain)
    client = client if client is not None else EnvironmentClient()
    rater = AIFeedback(client, domain, top_logprobs=top_logprobs)
    length = int(domain.max_bytes)
    num_axes = len(domain.axes)

    def score(key: jax.Array, genotypes: Any) -> Evaluation:
        del key  # ratings use temperature 0
        texts = text_codec.decode(genotypes)
        fitness = np.full((len(texts),), np.nan, np.float32)
        descriptors = np.full((len(texts), num_axes), np.nan, np.float32)
        rows = [i for i, t in enumerate(texts) if t.strip()]
        if rows:
            quality, axes = rater([texts[i] for i in rows])
            fitness[rows], descriptors[rows] = quality, axes
        return Evaluation(fitness, descriptors, {})

    def init(key: jax.Array, n: int) -> np.ndarray:
        del key
        seeds = list(domain.seeds)
        return text_codec.encode([seeds[i % len(seeds)] for i in range(n)], length)

    def stats() -> dict[str, float]:
        out = {f"llm_{k}": v for k, v in client.usage.items()}
        out.update({f"rate_{k}": v for k, v in rater.stats.items()})
        return out

    return TextTask(
        name="text",
        score=score,
        example_genotype=np.zeros((length,), np.uint8),
        genotype_lower=None,
        genotype_upper=None,
        lower=np.zeros((num_axes,), np.float32),
        upper=np.ones((num_axes,), np.float32),
        qd_offset=0.0,
        descriptor_names=tuple(f"{a.name} ({a.low} to {a.high})" for a in domain.axes),
        options={"domain": domain.name},
        init=init,
        host=True,
        decode=text_codec.decode,
        stats=stats,
        edges=domain.edges(),
        domain=domain,
        client=client,
        rater=rater,
    )
