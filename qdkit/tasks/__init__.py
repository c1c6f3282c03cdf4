"""Task registry: ``qdkit.tasks.get(name, **options)``.

Each entry is a factory returning a :class:`Task`. Other packages (or users) add
their own with :func:`register`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from qdkit.tasks.arm import arm, forward_kinematics
from qdkit.tasks.base import Evaluation, PolicyTask, Task, clip_to
from qdkit.tasks.functions import rastrigin, rastrigin_proj, sphere, sphere_proj
from qdkit.tasks.locomotion import ant_omni, ant_uni, halfcheetah_uni, hopper_uni, walker2d_uni
from qdkit.tasks.maze import maze

_REGISTRY: dict[str, Callable[..., Task]] = {}


def register(name: str, factory: Callable[..., Task]) -> None:
    """Make ``factory`` available as ``get(name, **options)``.

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
    """The options a task accepts, with their defaults."""
    sig = inspect.signature(_factory(name))
    return {p.name: p.default for p in sig.parameters.values()}


def _factory(name: str) -> Callable[..., Task]:
    if name not in _REGISTRY:
        raise KeyError(f"unknown task {name!r}; valid tasks: {', '.join(names())}")
    return _REGISTRY[name]


def get(name: str, **task_options: object) -> Task:
    """Build the task ``name`` with ``task_options``.

    Raises:
        KeyError: unknown name (the message lists the valid ones).
        TypeError: unknown option (the message lists the valid ones).
        ValueError: an option with a bad value.
    """
    factory = _factory(name)
    valid = options(name)
    unknown = sorted(set(task_options) - set(valid))
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
    walker2d_uni,
    halfcheetah_uni,
    hopper_uni,
):
    register(_factory_fn.__name__, _factory_fn)

__all__ = [
    "Evaluation",
    "PolicyTask",
    "Task",
    "arm",
    "clip_to",
    "describe",
    "forward_kinematics",
    "get",
    "maze",
    "names",
    "options",
    "rastrigin",
    "rastrigin_proj",
    "register",
    "sphere",
    "sphere_proj",
]
