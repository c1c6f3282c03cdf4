"""The planar robotic arm of the QD literature (Cully et al. 2015; pyribs; QDHF)."""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from qdkit.fastmath import cos_2pi
from qdkit.tasks.base import Evaluation, Task, features_from_extra

#: The arm's cosine and sine: qdkit's vectorised ones (the default) or XLA's.
COS = ("fast", "xla")


# Up to this many joints the arm's maths is made on columns (a list of (B,) arrays),
# beyond it on (B, n) arrays: the columns are unrolled, one chain of operations per
# joint, and their compilation grows quickly with the joints.
COLUMNS_UP_TO = 16


def _prefix_sums(x):
    """Prefix sums along axis 1 by ``lax.associative_scan``; up to
    :data:`COLUMNS_UP_TO` columns with the scan's additions made on the columns (the
    same sums, bit for bit): elementwise loops that XLA vectorises over the rows, where
    the scan itself is a dozen kernels of slices, pads and concatenations.
    (``jnp.cumsum`` becomes a reduce-window, which XLA's CPU backend runs one element
    at a time.)"""
    if x.shape[1] > COLUMNS_UP_TO:
        return lax.associative_scan(jnp.add, x, axis=1)
    return jnp.stack(_tree_prefix_sums([x[:, k] for k in range(x.shape[1])]), axis=1)


def _tree_prefix_sums(columns: list) -> list:
    """Prefix sums of a list, in ``lax.associative_scan``'s order: sums of adjacent
    pairs, their prefix sums (recursively) at the odd positions, and each even position
    the sum before it plus its own element."""
    n = len(columns)
    if n < 2:
        return list(columns)
    odd = _tree_prefix_sums([columns[2 * i] + columns[2 * i + 1] for i in range(n // 2)])
    even = [columns[0]] + [odd[i] + columns[2 * i + 2] for i in range((n - 1) // 2)]
    return [even[i // 2] if i % 2 == 0 else odd[i // 2] for i in range(n)]


def _directions(absolute, cos: str):
    """``(cos, sin)`` of absolute angles (arrays of any shape): ``"fast"`` as
    :func:`qdkit.fastmath.cos_2pi` of the angle in turns (float32 accuracy; XLA's CPU
    backend calls libm one element at a time for ``jnp.cos``), ``"xla"`` with ``jnp.cos``
    and ``jnp.sin``."""
    if cos == "xla":
        return jnp.cos(absolute), jnp.sin(absolute)
    turns = absolute * np.float32(1 / (2 * np.pi))
    return cos_2pi(turns), cos_2pi(turns - 0.25)


def _link_directions(angles, cos: str = "fast"):
    """``(cos, sin)`` of each link's absolute angle, two ``(B, n)`` arrays."""
    return _directions(_prefix_sums(jnp.asarray(angles, jnp.float32)), cos)


def _links_and_end(angles, cos: str = "fast"):
    """The links' directions ``(dx, dy)``, two ``(B, n)`` arrays, and the end effector
    ``(B, 2)``, their sums in order over the links, divided by ``n``.

    Up to :data:`COLUMNS_UP_TO` joints all of it is made on columns, and the end
    effector's sums are additions of columns (elementwise loops over the rows, which
    XLA vectorises; a sum along the rows of a ``(B, n)`` array is a reduction it runs
    row by row), stacked as ``(2, B)`` (a ``(B, 2)`` stack is a loop XLA does not
    vectorise). The values are those of the ``(B, n)`` code to float32 rounding: with
    ``cos="xla"`` the same bits; with ``"fast"`` XLA rounds some of the cosine's
    multiply-adds differently in the two programs (tests/test_xla.py)."""
    angles = jnp.asarray(angles, jnp.float32)
    n = angles.shape[1]
    if n > COLUMNS_UP_TO:
        dx, dy = _link_directions(angles, cos)
        return dx, dy, jnp.stack([jnp.sum(dx, axis=1), jnp.sum(dy, axis=1)], axis=-1) / n
    pairs = [_directions(a, cos) for a in _tree_prefix_sums([angles[:, k] for k in range(n)])]
    columns_x, columns_y = [x for x, _ in pairs], [y for _, y in pairs]

    end = jnp.stack([functools.reduce(operator.add, columns_x), functools.reduce(operator.add, columns_y)]).T / n
    return jnp.stack(columns_x, axis=1), jnp.stack(columns_y, axis=1), end


def _joints(dx, dy):
    n = dx.shape[1]
    return jnp.stack([_prefix_sums(dx), _prefix_sums(dy)], axis=-1) / n


def forward_kinematics(angles, cos: str = "fast"):
    """Joint positions of planar arms. ``angles: (B, n)`` -> ``(B, n, 2)``.

    Links have length ``1 / n``, so the end effector stays in the unit disc. Each
    angle is relative to the previous link; the base is at the origin facing +x.
    ``cos`` chooses the cosine (:data:`COS`; see :func:`arm`).
    """
    return _joints(*_link_directions(angles, cos))


def draw_arm(ax, genotype) -> None:
    """Draw a planar arm (joint angles ``(dof,)``) on a matplotlib axis."""
    joints = np.asarray(forward_kinematics(np.asarray(genotype, np.float32)[None, :]))[0]
    points = np.concatenate([np.zeros((1, 2)), joints])
    ax.plot(points[:, 0], points[:, 1], "-o", ms=3)
    ax.plot(*points[-1], "r*", ms=10)
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def arm(dof: int = 8, cos: str = "fast") -> Task:
    """Planar arm with ``dof`` joints.

    Genotype: ``(dof,)`` joint angles in ``[-pi, pi]``. Fitness: minus the variance of
    the angles (``0`` is best: all joints bent alike). Descriptor: the end-effector
    position ``(x, y)`` in ``[-1, 1]^2``. Extras: ``joint_positions (B, dof, 2)``,
    the position of every joint: the features that learned descriptors use
    (``features``, flattened to ``2 * dof`` values). ``draw`` shows one arm.

    ``cos``: ``"fast"`` (the default) evaluates the links' cosines and sines with
    :func:`qdkit.fastmath.cos_2pi`, vectorised (absolute error below 3e-7, plus the
    float32 rounding of the angle in turns); ``"xla"`` with ``jnp.cos`` / ``jnp.sin``,
    which XLA's CPU backend evaluates one element at a time: 1,000 iterations of 16
    vmapped seeds of the arm default took 2.8x as long on a 2-core CPU
    (``benchmarks/seeds.py --arm-cos xla``; RESULTS.md).
    """
    dof = int(dof)
    if dof < 1:
        raise ValueError(f"dof must be at least 1; got {dof}")
    if cos not in COS:
        raise ValueError(f"unknown cos {cos!r}; valid: {', '.join(COS)}")

    def score(key, genotypes):
        del key
        dx, dy, end = _links_and_end(genotypes, cos)
        fitness = -jnp.var(genotypes, axis=1)
        # (the joints are only needed for the extras, which XLA drops from programs
        # that do not read them)
        return Evaluation(fitness, end, {"joint_positions": _joints(dx, dy)})

    return Task(
        name="arm",
        score=score,
        example_genotype=jax.device_put(np.zeros((dof,), np.float32)),
        genotype_lower=-np.pi,
        genotype_upper=np.pi,
        lower=np.array([-1.0, -1.0], np.float32),
        upper=np.array([1.0, 1.0], np.float32),
        qd_offset=-float(np.pi**2),
        descriptor_names=("end-effector x", "end-effector y"),
        options={"dof": dof, "cos": cos},
        differentiable=True,
        features=features_from_extra("joint_positions"),
        draw=draw_arm,
    )
