"""Task registry: ``qdkit.tasks.get(name, **options)``.

Each entry is a name and a factory returning a :class:`Task`, nothing more: whatever
else other parts need to know about a task is on the task itself (its ``features``,
``draw``, ``teacher``, ``descriptor_of``, ...). Other packages (or users) add their own
with :func:`register`. A factory may be given as ``"module:function"``, imported on first
use: the text task lives in ``feedback`` (which imports ``qdkit``, never the reverse), and
``get("text")`` works without importing anything first.

A factory's positional-or-keyword parameters are its options (listed by
:func:`options`, set with ``-t KEY=VALUE`` on the command line); keyword-only
parameters are wiring passed by code (the text task's model ``client``). A factory may
carry a ``default_batch_size`` attribute: the batch a run takes when none is given
(:func:`default_batch_size`; the text task's is a handful, since each candidate is a
model call).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from qdkit.tasks.arm import arm, forward_kinematics
from qdkit.tasks.base import Evaluation, PolicyTask, Task, clip_to, features_from_extra
from qdkit.tasks.functions import rastrigin, rastrigin_proj, sphere, sphere_proj
from qdkit.tasks.locomotion import ant_omni, ant_uni, anttrap_omni, halfcheetah_uni, hopper_uni, walker2d_uni
from qdkit.tasks.maze import maze

_REGISTRY: dict[str, Callable[..., Task] | str] = {}


def register(name: str, factory: Callable[..., Task] | str) -> None:
    """Make ``factory`` (a callable, or ``"module:function"`` imported on first use)
    available as ``get(name, **options)``.

    The first line of the factory's docstring is its one-line description.
    """
    _REGISTRY[name] = factory


def names() -> list[str]:
    """Registered task names, sorted."""
    return sorted(_REGISTRY)


def describe(name: str) -> str:
    """One-line description of a task."""
    doc = inspect.getdoc(_factory(name)) or ""
    return doc.splitlines()[0] if doc else ""


def options(name: str) -> dict[str, object]:
    """The options a task accepts, with their defaults (keyword-only wiring excluded)."""
    sig = inspect.signature(_factory(name))
    return {p.name: p.default for p in sig.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD}


#: The batch size of a run whose task's factory names none.
DEFAULT_BATCH_SIZE = 256


def default_batch_size(name: str) -> int:
    """The batch size a run of task ``name`` takes when none is given."""
    return int(getattr(_factory(name), "default_batch_size", DEFAULT_BATCH_SIZE))


def _factory(name: str) -> Callable[..., Task]:
    if name not in _REGISTRY:
        raise KeyError(f"unknown task {name!r}; valid tasks: {', '.join(names())}")
    factory = _REGISTRY[name]
    if isinstance(factory, str):  # "module:function", imported on first use
        module, _, attribute = factory.partition(":")
        factory = _REGISTRY[name] = getattr(importlib.import_module(module), attribute)
    return factory


def get(name: str, **task_options: object) -> Task:
    """Build the task ``name`` with ``task_options`` (and any keyword-only wiring the
    factory takes).

    Raises:
        KeyError: unknown name (the message lists the valid ones).
        TypeError: unknown option (the message lists the valid ones).
        ValueError: an option with a bad value.
    """
    factory = _factory(name)
    valid = options(name)
    wiring = {p.name for p in inspect.signature(factory).parameters.values() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(task_options) - set(valid) - wiring)
    if unknown:
        raise TypeError(
            f"task {name!r} has no option {', '.join(map(repr, unknown))}; valid options: {', '.join(valid) or 'none'}"
        )
    return factory(**task_options)


for _factory_fn in (
    arm,
    sphere,
    rastrigin,
    sphere_proj,
    rastrigin_proj,
    maze,
    ant_omni,
    ant_uni,
    anttrap_omni,
    walker2d_uni,
    halfcheetah_uni,
    hopper_uni,
):
    register(_factory_fn.__name__, _factory_fn)
register("text", "feedback.text_task:text")

__all__ = [
    "Evaluation",
    "PolicyTask",
    "Task",
    "arm",
    "clip_to",
    "features_from_extra",
    "describe",
    "forward_kinematics",
    "get",
    "maze",
    "names",
    "default_batch_size",
    "DEFAULT_BATCH_SIZE",
    "options",
    "rastrigin",
    "rastrigin_proj",
    "register",
    "sphere",
    "sphere_proj",
]
