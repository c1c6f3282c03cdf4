"""Judges (simulated, human, language model), learned descriptors and the QDHF schedule;
AI feedback on text (QDAIF): the model client, domains, ratings and the text task.

This package is part of the qdkit distribution. It imports ``qdkit``, never the reverse.
"""

from feedback import domains
from feedback.ai_feedback import AIFeedback, parse_rating, pole_probability
from feedback.client import BudgetExhausted, ModelClient, Reply
from feedback.domains import Axis, Domain, DomainError
from feedback.embedding_judge import EmbeddingJudge
from feedback.human import HumanJudge, JudgingStopped, read_answers
from feedback.judges import CANT_TELL, A, B, Judge, SimulatedJudge
from feedback.learned import Projection, fit_autoencoder, fit_triplets, latent_bounds, triplet_loss
from feedback.learned_archive import LearnedArchive, redescribe
from feedback.llm_judge import LLMJudge
from feedback.local_server import LocalServer
from feedback.qdhf import Refitter
from feedback.text_task import TextTask, text_task

__all__ = [
    "A",
    "AIFeedback",
    "Axis",
    "Domain",
    "DomainError",
    "EmbeddingJudge",
    "LocalServer",
    "TextTask",
    "domains",
    "parse_rating",
    "pole_probability",
    "text_task",
    "B",
    "BudgetExhausted",
    "CANT_TELL",
    "HumanJudge",
    "Judge",
    "JudgingStopped",
    "LLMJudge",
    "LearnedArchive",
    "ModelClient",
    "Projection",
    "Refitter",
    "Reply",
    "SimulatedJudge",
    "fit_autoencoder",
    "fit_triplets",
    "latent_bounds",
    "read_answers",
    "redescribe",
    "triplet_loss",
]
