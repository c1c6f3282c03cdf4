"""Environments in the brax style and batched policy rollouts (``vmap`` + ``lax.scan``).

An environment is any object with ``reset(key) -> state`` and ``step(state, action) ->
state``, where ``state`` is a pytree with fields ``obs``, ``reward``, ``done`` and
``info`` (a dict holding ``"state_descriptor"``: what the agent achieved at that step,
e.g. its position), plus ``observation_size`` and ``action_size``. brax environments
qualify (``brax.envs``), and so does :mod:`qdkit.tasks.maze`.

:func:`rollout` plays a batch of policies for a fixed number of steps and returns every
transition, so gradient emitters can learn from them. Steps after an episode ends are
masked (``mask = 0``): their reward does not count and they are not learned from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from qdkit import rng


class Transitions(NamedTuple):
    """Per-step data of rollouts, each with leading ``(..., T)`` axes.

    Attributes:
        obs, action, reward, next_obs: the step.
        done: 1 where the episode ended at this step.
        mask: 1 for steps inside the episode (the step that ends it included).
        state_desc, next_state_desc: the state descriptors before and after the step.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    done: jax.Array
    mask: jax.Array
    state_desc: jax.Array
    next_state_desc: jax.Array


def rollout(
    env: Any,
    apply_fn: Callable[[Any, jax.Array], jax.Array],
    params: Any,
    key: jax.Array,
    episode_length: int,
    action_noise: float = 0.0,
) -> Transitions:
    """Play one policy (``apply_fn(params, obs) -> action``) for ``episode_length``
    steps from ``env.reset(key)``; returns the ``(T, ...)`` transitions. ``vmap`` it
    over ``params`` (and keys) for a batch, as :func:`batch_rollout` does.

    ``action_noise`` (a Python number) adds Gaussian noise of that standard deviation
    to every action before the step (``transitions.action`` holds the noisy one), e.g.
    to see how reproducible a behaviour is; ``key`` then also draws the noise."""
    action_noise = float(action_noise)
    if not action_noise >= 0.0:
        raise ValueError(f"action_noise must be >= 0; got {action_noise}")

    def body(carry, k):
        state, alive = carry
        action = apply_fn(params, state.obs)
        if action_noise > 0.0:
            action = action + action_noise * jax.random.normal(k, jnp.shape(action), jnp.result_type(action))
        nxt = env.step(state, action)
        done = jnp.asarray(nxt.done, jnp.float32)
        out = Transitions(
            obs=state.obs, action=action, reward=jnp.asarray(nxt.reward, jnp.float32), next_obs=nxt.obs,
            done=done, mask=alive, state_desc=state.info["state_descriptor"],
            next_state_desc=nxt.info["state_descriptor"],
        )  # fmt: skip
        return (nxt, alive * (1.0 - done)), out

    noise_keys = None
    if action_noise > 0.0:
        key, k_noise = rng.split(key)
        noise_keys = rng.split(k_noise, int(episode_length))
    state = env.reset(key)
    _, transitions = lax.scan(body, (state, jnp.ones((), jnp.float32)), noise_keys, length=int(episode_length))
    return transitions


def batch_rollout(env: Any, apply_fn, params_batch: Any, key: jax.Array, episode_length: int) -> Transitions:
    """:func:`rollout` for a batch of policies (leading axis of ``params_batch``), each
    with its own key; returns ``(B, T, ...)`` transitions."""
    n = jax.tree.leaves(params_batch)[0].shape[0]
    keys = rng.split(key, n)
    return jax.vmap(lambda p, k: rollout(env, apply_fn, p, k, episode_length))(params_batch, keys)


def episode_return(transitions: Transitions) -> jax.Array:
    """Sum of the rewards inside each episode (``(..., T)`` -> ``(...)``)."""
    return jnp.sum(transitions.reward * transitions.mask, axis=-1)


def final_state_descriptor(transitions: Transitions) -> jax.Array:
    """The state descriptor at the end of each episode (after its last live step)."""
    last = jnp.sum(transitions.mask, axis=-1).astype(jnp.int32) - 1  # index of the last live step
    last = jnp.maximum(last, 0)
    picked = jnp.take_along_axis(transitions.next_state_desc, last[..., None, None], axis=-2)
    return picked[..., 0, :]
