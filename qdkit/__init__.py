"""qdkit: quality-diversity search in JAX.

The flat public API::

    import jax, qdkit
    from emitters import iso_line

    task = qdkit.tasks.get("arm")
    archive = qdkit.GridArchive.create(shape=(32, 32), lower=task.lower, upper=task.upper,
                                       example_genotype=task.example_genotype)
    emitter = iso_line(batch_size=256, iso_sigma=0.01, line_sigma=0.1)
    state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter)
    state, metrics = qdkit.map_elites.run(state, task, emitter, iterations=1000)
"""

from qdkit import xla

xla.apply_defaults()  # before JAX starts a backend: XLA reads its flags then (see qdkit.xla)

from qdkit import (  # noqa: E402
    callbacks,
    checkpoint,
    cvt,
    distributed,
    export,
    indexers,
    map_elites,
    metrics,
    plot,
    sharding,
    tasks,
    text,
)
from qdkit.archive import IMPROVED, NEW, NOT_ADDED, AddInfo, Archive, Elites, Thresholds  # noqa: E402
from qdkit.ask_tell import Scheduler  # noqa: E402
from qdkit.cvt_archive import CVTArchive  # noqa: E402
from qdkit.grid_archive import GridArchive  # noqa: E402
from qdkit.indexers import CVTIndexer, GridIndexer, LearnedIndexer  # noqa: E402
from qdkit.map_elites import Interrupted, RunState, Stopped, StopRun  # noqa: E402
from qdkit.tasks import Evaluation, Task  # noqa: E402

__version__ = "0.5.0"

__all__ = [
    "IMPROVED",
    "NEW",
    "NOT_ADDED",
    "AddInfo",
    "Archive",
    "CVTArchive",
    "CVTIndexer",
    "Elites",
    "Evaluation",
    "GridArchive",
    "GridIndexer",
    "LearnedIndexer",
    "Interrupted",
    "RunState",
    "Scheduler",
    "StopRun",
    "Stopped",
    "Task",
    "Thresholds",
    "callbacks",
    "checkpoint",
    "cvt",
    "distributed",
    "export",
    "indexers",
    "map_elites",
    "metrics",
    "plot",
    "sharding",
    "tasks",
    "text",
    "xla",
]
