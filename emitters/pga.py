"""PGA-MAP-Elites' variation (Nilsson & Cully, GECCO 2021) for policy tasks.

Part of each batch is Iso+LineDD offspring; the rest are elites improved by
policy-gradient steps on a TD3 critic (:func:`emitters.rl.pg_variation`), plus,
optionally, TD3's greedy actor itself. The critic and the actor are trained on a replay
buffer of every evaluated transition after each batch (``critic_steps`` updates).

The state (buffer, networks, optimiser states, its own key) is a pytree of arrays, so
checkpoints hold it and a resumed run is bit-identical. A host of settings: see
:class:`emitters.rl.TD3Config`; the defaults are those of DCG-MAP-Elites' official code
for its PGA-ME baseline (the PGA-ME paper's own differ: pass them to reproduce it). The
initial population's transitions go into the buffer (``observe_initial``), but the
first batch is varied with an untrained critic: learning starts with the first update.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from emitters import rl
from emitters.base import Emitter, EmptyState, check_batch_size
from emitters.iso_line import iso_line
from qdkit import rng


def check_policy_task(task: Any, name: str) -> None:
    if getattr(task, "policy", None) is None or getattr(task, "env", None) is None:
        raise ValueError(f"emitter {name!r} needs a policy task (e.g. maze); {getattr(task, 'name', task)!r} is not")


def split_batch(batch_size: int, pg_fraction: float, extra: int = 0) -> tuple[int, int]:
    """``(ga, pg)`` sizes: ``pg = round(batch * pg_fraction)``, ``ga`` the rest after
    ``extra`` injected actors."""
    batch_size = check_batch_size(batch_size)
    if not 0.0 <= float(pg_fraction) <= 1.0:
        raise ValueError(f"pg_fraction must be in [0, 1]; got {pg_fraction}")
    pg = int(round(batch_size * float(pg_fraction)))
    ga = batch_size - pg - extra
    if ga < 0 or pg < 0:
        raise ValueError(f"batch_size {batch_size} is too small for {pg} PG offspring and {extra} injected actor(s)")
    return ga, pg


def pga(
    task: Any,
    batch_size: int,
    *,
    pg_fraction: float = 0.5,
    greedy: bool = True,
    iso_sigma: float = 0.005,
    line_sigma: float = 0.05,
    config: rl.TD3Config = rl.DEFAULT_CONFIG,
) -> Emitter:
    """The PGA-ME emitter for a policy task (``task.policy``, ``task.env``).

    Args:
        batch_size: offspring per iteration.
        pg_fraction: share of the batch varied by policy gradient (the greedy actor
            counts in it when ``greedy``).
        greedy: inject TD3's greedy actor as one offspring.
        iso_sigma, line_sigma: the Iso+LineDD part.
        config: TD3 and PG settings.
    """
    check_policy_task(task, "pga")
    ga_size, pg_size = split_batch(batch_size, pg_fraction)
    greedy = bool(greedy) and pg_size > 0
    n_var = pg_size - int(greedy)
    config = rl.check_config(config)
    policy = task.policy
    nets = rl.make_networks(policy, 0, config)
    ga = iso_line(ga_size, iso_sigma, line_sigma) if ga_size else None

    def init(key, archive):
        return rl.emitter_state(key, nets, config)

    def emit(key, archive, state):
        k_ga, k_parents, k_pg = rng.split(key, 3)
        parts = []
        if ga is not None:
            parts.append(ga.emit(k_ga, archive, EmptyState())[0])
        if n_var:
            parents = archive.sample(k_parents, n_var)
            parts.append(rl.pg_variation(parents, policy, state.learner.critic, state.buffer, k_pg, nets, config))
        if greedy:
            parts.append(jax.tree.map(lambda x: x[None], state.learner.actor))
        return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *parts), state

    def no_descriptor(transitions):
        return jnp.zeros((transitions.reward.shape[0], 1), jnp.float32)

    def observe_initial(state, archive, genotypes, evaluation):
        transitions = evaluation.extras["transitions"]
        return rl.remember(state, transitions, no_descriptor(transitions))

    def update(state, archive, genotypes, evaluation, info):
        transitions = evaluation.extras["transitions"]
        return rl.learn(state, transitions, no_descriptor(transitions), nets, config)

    return Emitter(init=init, emit=emit, update=update, batch_size=batch_size, observe_initial=observe_initial)
