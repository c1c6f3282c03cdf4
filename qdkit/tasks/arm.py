"""The planar robotic arm of the QD literature (Cully et al. 2015; pyribs; QDHF)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from qdkit.tasks.base import Evaluation, Task, features_from_extra


def forward_kinematics(angles):
    """Joint positions of planar arms. ``angles: (B, n)`` -> ``(B, n, 2)``.

    Links have length ``1 / n``, so the end effector stays in the unit disc. Each
    angle is relative to the previous link; the base is at the origin facing +x.
    """
    n = angles.shape[1]
    absolute = jnp.cumsum(angles, axis=1)
    steps = jnp.stack([jnp.cos(absolute), jnp.sin(absolute)], axis=-1) / n
    return jnp.cumsum(steps, axis=1)


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


def arm(dof: int = 8) -> Task:
    """Planar arm with ``dof`` joints.

    Genotype: ``(dof,)`` joint angles in ``[-pi, pi]``. Fitness: minus the variance of
    the angles (``0`` is best: all joints bent alike). Descriptor: the end-effector
    position ``(x, y)`` in ``[-1, 1]^2``. Extras: ``joint_positions (B, dof, 2)``,
    the position of every joint: the features that learned descriptors use
    (``features``, flattened to ``2 * dof`` values). ``draw`` shows one arm.
    """
    dof = int(dof)
    if dof < 1:
        raise ValueError(f"dof must be at least 1; got {dof}")

    def score(key, genotypes):
        del key
        joints = forward_kinematics(genotypes)
        fitness = -jnp.var(genotypes, axis=1)
        return Evaluation(fitness, joints[:, -1, :], {"joint_positions": joints})

    return Task(
        name="arm",
        score=score,
        example_genotype=jnp.zeros((dof,), jnp.float32),
        genotype_lower=-np.pi,
        genotype_upper=np.pi,
        lower=np.array([-1.0, -1.0], np.float32),
        upper=np.array([1.0, 1.0], np.float32),
        qd_offset=-float(np.pi**2),
        descriptor_names=("end-effector x", "end-effector y"),
        options={"dof": dof},
        differentiable=True,
        features=features_from_extra("joint_positions"),
        draw=draw_arm,
    )
