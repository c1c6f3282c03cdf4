"""The planar robotic arm of the QD literature (Cully et al. 2015; pyribs; QDHF)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from qdkit.fastmath import cos_2pi
from qdkit.tasks.base import Evaluation, Task, features_from_extra

#: The arm's cosine and sine: qdkit's vectorised ones (the default) or XLA's.
COS = ("fast", "xla")


def _prefix_sums(x):
    """Prefix sums along axis 1, as an associative scan: elementwise slices and adds
    that XLA fuses and vectorises (``jnp.cumsum`` becomes a reduce-window, which XLA's
    CPU backend runs one element at a time)."""
    return lax.associative_scan(jnp.add, x, axis=1)


def _link_directions(angles, cos: str = "fast"):
    """``(cos, sin)`` of each link's absolute angle, two ``(B, n)`` arrays. ``"fast"``
    evaluates them as :func:`qdkit.fastmath.cos_2pi` of the angle in turns (float32
    accuracy; XLA's CPU backend calls libm one element at a time for ``jnp.cos``);
    ``"xla"`` with ``jnp.cos`` and ``jnp.sin``."""
    absolute = _prefix_sums(jnp.asarray(angles, jnp.float32))
    if cos == "xla":
        return jnp.cos(absolute), jnp.sin(absolute)
    turns = absolute * np.float32(1 / (2 * np.pi))
    return cos_2pi(turns), cos_2pi(turns - 0.25)


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
        dx, dy = _link_directions(genotypes, cos)
        # the end effector as a plain sum (the prefix sums are only needed for the
        # extras, which XLA drops from programs that do not read them)
        end = jnp.stack([jnp.sum(dx, axis=1), jnp.sum(dy, axis=1)], axis=-1) / dof
        fitness = -jnp.var(genotypes, axis=1)
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
