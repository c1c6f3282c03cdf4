"""Differentiable quality diversity (Fontaine & Nikolaidis, NeurIPS 2021).

For tasks whose fitness ``f`` and descriptors ``m_1..m_M`` have gradients
(:meth:`qdkit.tasks.Task.jacobian`), new candidates branch from a solution along a
random combination of its (normalised) gradients:
``theta' = theta + c_0 grad f + sum_j c_j grad m_j``.

- :func:`cma_mega` (CMA-MEGA): each instance keeps a solution point ``theta`` and a
  CMA-ES over the ``1 + M`` coefficients. Its rows in a batch are ``theta`` itself
  (so the archive sees it) followed by ``population`` branches. The branches are ranked
  by archive improvement as in CMA-ME; CMA-ES adapts the coefficient distribution, and
  ``theta`` takes an optimiser step (optax: gradient ascent or Adam) along the
  recombined branch direction. Restarts move ``theta`` to a random elite.
- :func:`omg_mega` (OMG-MEGA): stateless; parents drawn uniformly from the archive
  branch once each with ``c_0 = |N(0, sigma_g^2)|`` and ``c_j ~ N(0, sigma_g^2)``.

Gradients are taken with respect to the flattened genotype. CMA-MEGA's ``emit`` keeps
the coefficients it sampled in the state, and ``update`` ranks them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from emitters import cma_es
from emitters.base import Emitter, check_batch_size, check_positive, clip, keep_state, no_state
from emitters.cma import (
    RANKERS,
    check_choice,
    check_group,
    draw_means,
    flattener,
    restart_mask,
    select,
    select_parents,
)
from qdkit import rng

Jacobian = Callable[[jax.Array, Any], tuple[Any, jax.Array]]
OPTIMIZERS = ("sgd", "adam")
MEGA_RANKERS = tuple(r for r in RANKERS if r not in ("rd", "2rd"))  # coefficients climb f and m


def normalise(jac: jax.Array, epsilon: float = 1e-8) -> jax.Array:
    """Scale each gradient (the last axis) to unit norm (``epsilon`` avoids 0/0)."""
    return jac / (jnp.linalg.norm(jac, axis=-1, keepdims=True) + epsilon)


class MEGAState(NamedTuple):
    """State of a group of CMA-MEGA instances (leading ``(E,)`` axis except ``key`` and
    ``iteration``).

    Attributes:
        theta: ``(E, n)`` solution points.
        grads: ``(E, 1 + M, n)`` their (normalised) fitness and descriptor gradients.
        opt: optax state of the ``theta`` optimiser.
        cma: :class:`emitters.cma_es.CMAState` over the ``1 + M`` coefficients.
        coefficients: ``(E, population, 1 + M)`` the coefficients of the branches of
            the last ``emit``, for ``update``.
        key: the emitter's own PRNG key (``update``'s restarts and gradients).
        iteration: ``()`` int32, updates done.
        age: ``(E,)`` int32, updates since each instance's last restart.
        restarts: ``(E,)`` int32.
    """

    theta: jax.Array
    grads: jax.Array
    opt: Any
    cma: cma_es.CMAState
    coefficients: jax.Array
    key: jax.Array
    iteration: jax.Array
    age: jax.Array
    restarts: jax.Array


def _optimizer(name: str, lr: float) -> optax.GradientTransformation:
    check_choice("optimizer", name, OPTIMIZERS)
    return optax.sgd(lr) if name == "sgd" else optax.adam(lr, b1=0.9, b2=0.999, eps=1e-8)


def cma_mega(
    jacobian: Jacobian,
    example_genotype: Any,
    population: int,
    *,
    num_emitters: int = 15,
    sigma0: float = 10.0,
    lr: float = 1.0,
    optimizer: str = "sgd",
    ranker: str = "2imp",
    selection: str = "mu",
    restart: str | int = "no_improvement",
    normalize: bool = True,
    x0: Any = None,
    lower: Any = None,
    upper: Any = None,
) -> Emitter:
    """CMA-MEGA (see the module docstring); defaults are the paper's linear-projection
    settings as pyribs' ``sphere.py`` runs them (``sigma_g = 10``, gradient ascent with
    ``lr = 1``, mu selection).

    Args:
        jacobian: ``jacobian(key, genotypes) -> (evaluation, jac)`` with ``jac`` of
            shape ``(B, 1 + M, n)``; usually ``task.jacobian``.
        example_genotype: one genotype.
        population: branches per instance per iteration (each instance also emits its
            ``theta``, so the batch is ``num_emitters * (population + 1)``).
        num_emitters: instances run side by side.
        sigma0: initial step size of the coefficient CMA-ES (``sigma_g``).
        lr: learning rate of the ``theta`` optimiser.
        optimizer: ``"sgd"`` (plain gradient ascent) or ``"adam"``.
        ranker, selection, restart: as for :func:`emitters.evolution_strategy`.
        normalize: scale each gradient to unit norm before branching.
        x0: starting ``theta`` for all instances; default a random elite each.
        lower, upper: genotype bounds: branches and ``theta`` are clipped into them.
    """
    population, num_emitters, sigma0, ranker, selection, restart = check_group(
        population, num_emitters, sigma0, ranker, selection, restart, MEGA_RANKERS
    )
    lr = check_positive("lr", lr, allow_zero=False)
    opt = _optimizer(optimizer, lr)
    n, flatten, unflatten = flattener(example_genotype)
    start = None if x0 is None else flatten(jax.tree.map(lambda a: jnp.asarray(a)[None], x0))[0]
    rows = population + 1

    def clip_flat(x):
        return flatten(clip(unflatten(x), lower, upper))

    def gradients(key, theta):
        _, jac = jacobian(key, unflatten(theta))
        jac = jnp.nan_to_num(jac.astype(jnp.float32), nan=0.0, posinf=0.0, neginf=0.0)
        return normalise(jac) if normalize else jac

    def fresh(theta, num_coefficients):
        """New optimiser and coefficient CMA-ES (mean 0, ``sigma0``) at ``theta``."""
        zeros = jnp.zeros((theta.shape[0], num_coefficients), jnp.float32)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes Python floats and int32 counts
            opt_state = jax.vmap(opt.init)(theta)
        return theta, opt_state, jax.vmap(cma_es.reset, in_axes=(0, None))(zeros, sigma0)

    def init(key, archive):
        k_theta, k_grad, k_state = rng.split(key, 3)
        if start is None:
            theta = draw_means(k_theta, archive, num_emitters, flatten)
        else:
            theta = jnp.broadcast_to(start, (num_emitters, n))
        theta = clip_flat(theta)
        grads = gradients(k_grad, theta)
        theta, opt_state, cma = fresh(theta, grads.shape[1])
        zeros = jnp.zeros((num_emitters,), jnp.int32)
        c = jnp.zeros((num_emitters, population, grads.shape[1]), jnp.float32)
        return MEGAState(theta, grads, opt_state, cma, c, k_state, jnp.zeros((), jnp.int32), zeros, zeros)

    def emit(key, archive, state):
        del archive
        z = jax.random.normal(key, (num_emitters, population, state.grads.shape[1]))
        c = jax.vmap(cma_es.sample)(state.cma, z)  # (E, population, 1 + M)
        branches = state.theta[:, None, :] + jnp.einsum("epk,ekn->epn", c, state.grads)
        batch = jnp.concatenate([state.theta[:, None, :], branches], axis=1).reshape(num_emitters * rows, n)
        return clip(unflatten(batch), lower, upper), state._replace(coefficients=c)

    def update(state, archive, genotypes, evaluation, info):
        del genotypes  # the branches are known by their coefficients
        c = state.coefficients
        per_instance = jax.tree.map(lambda a: a.reshape(num_emitters, rows, *a.shape[1:])[:, 1:], info)
        fitness = evaluation.fitness.reshape(num_emitters, rows)[:, 1:]
        ranked, accepted, num_parents, spread = select_parents(ranker, selection, per_instance, fitness, c)

        # theta moves along the recombined branch direction (pyribs: new mean - theta)
        w = jax.vmap(cma_es.weights, in_axes=(0, None))(num_parents, population)
        step = jnp.einsum("ek,ekn->en", jnp.einsum("ep,epk->ek", w, ranked), state.grads)
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = jax.vmap(opt.update)(-step, state.opt, state.theta)
            theta = clip_flat(optax.apply_updates(state.theta, updates))

        cma = jax.vmap(cma_es.tell)(state.cma, ranked, num_parents)
        cma = jax.vmap(cma_es.decompose)(cma)  # 1 + M dimensions: cheap every time
        age = state.age + 1
        stop = jax.vmap(cma_es.should_stop)(cma, spread) | restart_mask(restart, accepted, age)
        key, k_theta, k_grad = rng.split(state.key, 3)

        def restart_some(parts):
            theta, opt_state, cma = parts
            new = fresh(clip_flat(draw_means(k_theta, archive, num_emitters, flatten)), state.grads.shape[1])
            return select(stop, new, (theta, opt_state, cma))

        theta, opt_state, cma = lax.cond(jnp.any(stop), restart_some, lambda p: p, (theta, opt_state, cma))
        return MEGAState(
            theta=theta,
            grads=gradients(k_grad, theta),
            opt=opt_state,
            cma=cma,
            coefficients=c,
            key=key,
            iteration=state.iteration + 1,
            age=jnp.where(stop, 0, age),
            restarts=state.restarts + stop.astype(jnp.int32),
        )

    return Emitter(init=init, emit=emit, update=update, batch_size=num_emitters * rows)


def omg_mega(
    jacobian: Jacobian,
    example_genotype: Any,
    batch_size: int,
    *,
    sigma_g: float = 10.0,
    normalize: bool = True,
    lower: Any = None,
    upper: Any = None,
    noise: str = "fast",
) -> Emitter:
    """OMG-MEGA: one gradient branch per uniformly drawn elite (module docstring).

    Each iteration differentiates ``batch_size`` parents (a Jacobian evaluation each)
    and emits ``batch_size`` offspring: the evaluation budget per iteration is twice
    the batch, as in pyribs (where the parents are re-evaluated by ``ask_dqd``).

    Args:
        jacobian: ``jacobian(key, genotypes) -> (evaluation, jac)``, usually
            ``task.jacobian``.
        example_genotype: one genotype.
        batch_size: offspring per iteration.
        sigma_g: standard deviation of the branching coefficients.
        normalize: scale each gradient to unit norm first.
        lower, upper: genotype bounds to clip offspring into.
        noise: ``"fast"`` or ``"threefry"`` coefficient noise.
    """
    batch_size = check_batch_size(batch_size)
    sigma_g = check_positive("sigma_g", sigma_g, allow_zero=False)
    normal = rng.normal_fn(noise)
    n, flatten, unflatten = flattener(example_genotype)

    def emit(key, archive, state):
        k_parents, k_grad, k_coef = rng.split(key, 3)
        index = archive.sample_indices(k_parents, batch_size)
        parents = flatten(jax.tree.map(lambda g: g[index], archive.genotypes))
        _, jac = jacobian(k_grad, unflatten(parents))
        jac = jnp.nan_to_num(jac.astype(jnp.float32), nan=0.0, posinf=0.0, neginf=0.0)
        jac = normalise(jac) if normalize else jac
        c = sigma_g * normal(k_coef, jac.shape[:2], jnp.float32)
        c = c.at[:, 0].set(jnp.abs(c[:, 0]))  # always climb the fitness
        return clip(unflatten(parents + jnp.einsum("bk,bkn->bn", c, jac)), lower, upper), state

    return Emitter(init=no_state, emit=emit, update=keep_state, batch_size=batch_size)
