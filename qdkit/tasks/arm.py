"""The planar robotic arm of the QD literature (Cully et al. 2015; pyribs; QDHF)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from qdkit.fastmath import cos_2pi
from qdkit.tasks.base import Evaluation, Task, features_from_extra

#: The arm's cosine and sine: qdkit's vectorised ones (the default) or XLA's.
COS = ("fast", "xla")


def _prefix_sums(x):
    """Prefix sums along axis 1, with the additions of ``lax.associative_scan``'s tree
    (the same sums, bit for bit) made on the columns: one elementwise loop that XLA
    vectorises over the rows. (``jnp.cumsum`` becomes a reduce-window, which XLA's CPU
    backend runs one element at a time; the associative scan itself becomes a dozen
    kernels of slices, pads and concatenations.)"""
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


def _end_effector(angles, cos: str = "fast"):
    """The end effector ``(B, 2)``: the links' directions summed in order, on columns
    (elementwise loops over the rows, which XLA vectorises; a sum along the rows of a
    ``(B, n)`` array is a reduction it runs row by row). For up to 8 joints the sums are
    made in XLA's order; the last bit can still differ where XLA contracts a multiply-add
    differently (tests/test_xla.py)."""
    angles = jnp.asarray(angles, jnp.float32)
    absolute = _tree_prefix_sums([angles[:, k] for k in range(angles.shape[1])])
    if cos == "xla":
        dx, dy = [jnp.cos(a) for a in absolute], [jnp.sin(a) for a in absolute]
    else:
        turns = [a * np.float32(1 / (2 * np.pi)) for a in absolute]
        dx, dy = [cos_2pi(t) for t in turns], [cos_2pi(t - 0.25) for t in turns]

    def total(columns):
        out = columns[0]
        for c in columns[1:]:
            out = out + c
        return out

    return jnp.stack([total(dx), total(dy)]).T / len(absolute)


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
        # the joints are only needed for the extras, which XLA drops from programs
        # that do not read them
        joints = _joints(*_link_directions(genotypes, cos))
        fitness = -jnp.var(genotypes, axis=1)
        return Evaluation(fitness, _end_effector(genotypes, cos), {"joint_positions": joints})

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
