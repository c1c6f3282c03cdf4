"""Judges and learned metrics (QDHF); AI feedback for text (QDAIF) comes with its issue.

This package is part of the qdkit distribution. It imports ``qdkit``, never the reverse.
"""

from feedback.judges import CANT_TELL, A, B, Judge, SimulatedJudge
from feedback.learned import Projection, fit_autoencoder, fit_triplets, latent_bounds, triplet_loss
from feedback.learned_archive import LearnedArchive, features_task
from feedback.qdhf import Refitter

__all__ = [
    "A",
    "B",
    "CANT_TELL",
    "Judge",
    "LearnedArchive",
    "Projection",
    "Refitter",
    "SimulatedJudge",
    "features_task",
    "fit_autoencoder",
    "fit_triplets",
    "latent_bounds",
    "triplet_loss",
]
