"""Small builders shared by several test modules."""

import qdkit


def small_archive(task: qdkit.Task, kind: str) -> qdkit.Archive:
    """A 12x12 grid or a 300-cell CVT archive over the task's descriptor bounds."""
    if kind == "grid":
        return qdkit.GridArchive.create(
            shape=(12, 12), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
        )
    return qdkit.CVTArchive.create(
        cells=300, lower=task.lower, upper=task.upper, example_genotype=task.example_genotype, samples=5000
    )
