"""Judges (simulated, human), learned descriptors and the QDHF schedule; AI feedback for
text (QDAIF) comes with its issue.

This package is part of the qdkit distribution. It imports ``qdkit``, never the reverse.
"""

from feedback.client import BudgetExhausted, ModelClient, Reply
from feedback.human import HumanJudge, JudgingStopped, draw_arm, read_answers
from feedback.judges import CANT_TELL, A, B, Judge, SimulatedJudge
from feedback.learned import Projection, fit_autoencoder, fit_triplets, latent_bounds, triplet_loss
from feedback.learned_archive import LearnedArchive, features_task
from feedback.llm_judge import LLMJudge
from feedback.qdhf import Refitter

__all__ = [
    "A",
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
    "draw_arm",
    "draw_arm",
    "features_task",
    "fit_autoencoder",
    "fit_triplets",
    "latent_bounds",
    "read_answers",
    "read_answers",
    "triplet_loss",
]
