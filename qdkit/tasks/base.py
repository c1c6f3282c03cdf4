"""The Task value: what is evaluated, how, and within which bounds."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from qdkit import rng


class Evaluation(NamedTuple):
    """Result of scoring a batch.

    Attributes:
        fitness: ``(B,)`` float32, higher is better.
        descriptors: ``(B, M)`` float32.
        extras: dict of per-row arrays with leading ``(B, ...)`` axis (task-specific,
            e.g. the arm's joint positions).
    """

    fitness: jax.Array
    descriptors: jax.Array
    extras: Mapping[str, jax.Array]


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """A quality-diversity problem.

    Tasks compare and hash by identity, so a task can be a static argument of
    ``jax.jit``: build it once and reuse it.

    Attributes:
        name: registry name.
        score: ``score(key, genotypes) -> Evaluation``; pure and jittable; genotypes
            have a leading batch axis.
        example_genotype: one genotype without batch axis (any pytree of arrays).
        genotype_lower, genotype_upper: bounds of the genotype, scalars or pytrees
            matching ``example_genotype``; ``None`` for unbounded.
        lower, upper: ``(M,)`` descriptor bounds.
        qd_offset: a lower bound on the fitness; QD-score counts
            ``fitness - qd_offset`` per elite.
        descriptor_names: one name per descriptor dimension (axis labels).
        options: the options the task was built with (recorded in run configs).
        init: optional ``init(key, n) -> genotypes``; default uniform in the genotype
            bounds.
        differentiable: whether ``score`` can be differentiated by JAX with respect to
            the genotype; :meth:`jacobian` and the DQD emitters (CMA-MEGA, OMG-MEGA)
            need it.
        host: ``score`` and ``init`` are host code, not jittable (they call a language
            model, a person, a simulator process): the loop runs them eagerly, one
            iteration at a time, and only archive insertion is compiled.
        decode: optional ``decode(genotypes) -> list[str]``, the readable form of a
            batch of genotypes (texts), used by reports.
        stats: optional host ``stats() -> {name: number}``, counters reported in every
            metrics row of a host run (e.g. language-model usage).
        edges: optional per-descriptor cell boundaries that a grid archive for this task
            should use by default (non-uniform cells).
        features: optional ``features(evaluation) -> (B, F)``: what learned descriptors
            (QDHF, AURORA) are fitted on, computed from a batch's
            :class:`Evaluation` (e.g. the arm's joint positions, flattened). Tasks
            without it cannot learn their descriptors.
        draw: optional ``draw(ax, genotype)`` drawing one item on a matplotlib axis, to
            show it to a person or a vision model (the arm's links, the maze's path).
    """

    name: str
    score: Callable[[jax.Array, Any], Evaluation]
    example_genotype: Any
    genotype_lower: Any
    genotype_upper: Any
    lower: np.ndarray
    upper: np.ndarray
    qd_offset: float
    descriptor_names: tuple[str, ...]
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    init: Callable[[jax.Array, int], Any] | None = None
    differentiable: bool = False
    host: bool = False
    decode: Callable[[Any], list[str]] | None = None
    stats: Callable[[], Mapping[str, float]] | None = None
    edges: tuple[tuple[float, ...], ...] | None = None
    features: Callable[[Evaluation], jax.Array] | None = None
    draw: Callable[[Any, Any], None] | None = None

    @property
    def descriptor_dim(self) -> int:
        return int(np.shape(self.lower)[0])

    @property
    def feature_dim(self) -> int | None:
        """The number of features per row (``None`` without ``features``); traced
        with ``jax.eval_shape``, nothing is run or compiled. Not for host tasks."""
        if self.features is None:
            return None
        batch = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct((1, *jnp.shape(x)), jnp.asarray(x).dtype), self.example_genotype
        )
        shape = jax.eval_shape(lambda k, g: self.features(self.score(k, g)), rng.key(0), batch).shape
        return int(np.prod(shape[1:]))

    def initial_genotypes(self, key: jax.Array, n: int) -> Any:
        """``n`` starting genotypes: ``init`` if given, else uniform in the bounds."""
        if self.init is not None:
            return self.init(key, n)
        if self.genotype_lower is None or self.genotype_upper is None:
            raise ValueError(f"task {self.name!r} has no genotype bounds and no init function")
        leaves, treedef = jax.tree.flatten(self.example_genotype)
        keys = rng.split(key, len(leaves))
        lows = _broadcast_like(self.genotype_lower, self.example_genotype)
        highs = _broadcast_like(self.genotype_upper, self.example_genotype)
        out = [
            jax.random.uniform(k, (n, *jnp.shape(x)), jnp.asarray(x).dtype, lo, hi)
            for k, x, lo, hi in zip(keys, leaves, jax.tree.leaves(lows), jax.tree.leaves(highs))
        ]
        return jax.tree.unflatten(treedef, out)

    def jacobian(self, key: jax.Array, genotypes: Any) -> tuple[Evaluation, jax.Array]:
        """Scores and their derivatives: ``(evaluation, jac)`` with ``jac`` of shape
        ``(B, 1 + M, D)``: row 0 the fitness gradient, rows ``1..M`` the descriptor
        gradients, with respect to the flattened genotype (``D`` entries, in
        ``jax.flatten_util.ravel_pytree`` order). Reverse mode, one row at a time
        under ``vmap`` (each row gets its own key). Jittable.
        """
        if not self.differentiable:
            raise ValueError(
                f"task {self.name!r} does not provide gradients (differentiable=False); the built-in "
                "arm, sphere, rastrigin, sphere_proj and rastrigin_proj tasks do, and a Task whose score "
                "JAX can differentiate may set differentiable=True"
            )
        _, unravel = ravel_pytree(self.example_genotype)

        def row(key, flat):
            evaluation = self.score(key, jax.tree.map(lambda a: a[None], unravel(flat)))
            out = jnp.concatenate([evaluation.fitness.reshape(1), evaluation.descriptors.reshape(-1)])
            return out, jax.tree.map(lambda a: a[0], evaluation)

        flat = jax.vmap(lambda g: ravel_pytree(g)[0])(genotypes)
        keys = rng.split(key, flat.shape[0])
        jac, evaluation = jax.vmap(jax.jacrev(row, argnums=1, has_aux=True))(keys, flat)
        return evaluation, jac

    def clip(self, genotypes: Any) -> Any:
        """Clip genotypes into the bounds (identity for unbounded tasks)."""
        return clip_to(genotypes, self.genotype_lower, self.genotype_upper, self.example_genotype)


@dataclasses.dataclass(frozen=True, eq=False)
class PolicyTask(Task):
    """A task whose genotypes are policy parameters played in an environment.

    Attributes (besides :class:`Task`'s):
        env: the environment (``reset``/``step``, see :mod:`qdkit.rollout`).
        policy: the :class:`qdkit.policy.MLP` that the genotypes parameterise.
        episode_length: steps per rollout.
        reward_min: a lower bound of the per-step reward (DCG-MAP-Elites scales
            ``reward - reward_min`` by descriptor similarity, which needs it >= 0).
        render: optional ``render(task, params, path)`` writing a PNG of the rollout of
            one policy or a batch.
        descriptor_of: optional ``descriptor_of(transitions) -> descriptors``, how
            ``score`` computes the descriptors from the rollouts, for tasks whose
            descriptor is differentiable in the states (a final position):
            :func:`emitters.refine_distilled` trains through it.
        teacher: optional ``teacher(targets) -> (data, act)``: a controller that knows
            how to reach descriptors, for :func:`emitters.imitate_distilled`.
            ``targets`` is ``(K, M)``; ``data`` a pytree with a leading ``K`` axis;
            ``act(state, data_k, target_k) -> action`` a good action toward
            ``target_k`` from an environment state. The maze's plans shortest paths on
            its map.

    ``score`` returns the rollouts in ``extras["transitions"]``
    (:class:`qdkit.rollout.Transitions`), which gradient emitters learn from.
    """

    env: Any = None
    policy: Any = None
    episode_length: int = 0
    reward_min: float = 0.0
    render: Callable[..., Any] | None = None
    descriptor_of: Callable[..., Any] | None = None
    teacher: Callable[..., Any] | None = None


def features_from_extra(name: str) -> Callable[[Evaluation], jax.Array]:
    """``Task.features`` that reads ``extras[name]`` and flattens it per row to
    ``(B, F)`` float32."""

    def features(evaluation: Evaluation) -> jax.Array:
        value = jnp.asarray(evaluation.extras[name], jnp.float32)
        return value.reshape(value.shape[0], -1)

    features.__qualname__ = f"features_from_extra({name!r})"
    return features


def _broadcast_like(bound: Any, example: Any) -> Any:
    if jax.tree.structure(bound) == jax.tree.structure(example):
        return bound
    return jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(bound, jnp.asarray(x).dtype), jnp.shape(x)), example)


def clip_to(genotypes: Any, lower: Any, upper: Any, example: Any) -> Any:
    """Clip a batch of genotypes to per-leaf bounds (``None`` bounds: no clipping)."""
    if lower is None and upper is None:
        return genotypes
    lows = _broadcast_like(-jnp.inf if lower is None else lower, example)
    highs = _broadcast_like(jnp.inf if upper is None else upper, example)
    return jax.tree.map(lambda g, lo, hi: jnp.clip(g, lo, hi), genotypes, lows, highs)
