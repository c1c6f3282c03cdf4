"""Training a distilled policy beyond DCG (not in the papers): refinement by gradient
through a differentiable task (:func:`refine_distilled`) and imitation of a teacher on
the states the policy visits (:func:`imitate_distilled`, DAgger)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from emitters import rl
from emitters.base import check_positive
from emitters.distill.policy import DistilledPolicy
from qdkit import rng
from qdkit.rollout import rollout


def _start_actor(policy, task, archive, hidden, key, *, last_scale=1.0):
    """The actor to train, its parameters and the descriptor bounds: ``policy``'s, or a
    fresh actor with ``hidden`` widths (the task's policy with the target as extra
    inputs, normalised by the archive's bounds; its last layer scaled by
    ``last_scale``) when ``hidden`` is given."""
    if policy is None:
        lower, upper = np.asarray(archive.lower, np.float32), np.asarray(archive.upper, np.float32)
        base = task.policy._replace(sizes=(task.policy.sizes[0] + task.descriptor_dim, task.policy.sizes[-1]))
    else:
        lower, upper, base = policy.lower, policy.upper, policy.actor
    if hidden is None:
        return policy.actor, policy.params, lower, upper
    actor = base._replace(sizes=(base.sizes[0], *(int(h) for h in hidden), base.sizes[-1]))
    params = actor.init(key)
    if last_scale != 1.0:
        params = (*params[:-1], {**params[-1], "w": params[-1]["w"] * last_scale})
    return actor, params, lower, upper


def _train_in_chunks(train, params, optimiser, key, steps, chunk, callback):
    """Run ``train(params, opt_state, key, first_step, n) -> (params, opt_state, value)``
    over ``steps`` in chunks of ``chunk``; returns the parameters and the value per chunk
    (``callback(step, value)`` after each)."""
    history = []
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes int32 and float (strict mode refuses)
        opt_state = optimiser.init(params)
        for done in range(0, steps, chunk):
            n = min(chunk, steps - done)
            key, k = rng.split(key)
            params, opt_state, value = train(params, opt_state, k, float(done), n)
            history.append(float(value))
            if callback is not None:
                callback(done + n, history[-1])
    return params, np.asarray(history, np.float32)


def refine_distilled(
    policy: DistilledPolicy | None,
    task: Any,
    archive: Any,
    key: jax.Array,
    *,
    steps: int = 1000,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    hidden: tuple[int, ...] | None = None,
    chunk: int = 50,
    callback: Any = None,
) -> tuple[DistilledPolicy, np.ndarray]:
    """Fine-tune a distilled policy so that it reaches the archive's descriptors, by
    gradient descent through the task's differentiable dynamics. Not in the papers.

    Each step draws ``batch_size`` of the archive's elite descriptors as targets, plays
    the policy for them and takes an Adam step on the mean squared distance (in
    normalised units) between target and reached descriptor. The gradient runs through
    the actions and the dynamics but not through the observations: the full gradient of
    a feedback policy through a long rollout explodes and is useless (measured on the
    maze), while this one treats each later observation as given. Updates with a
    non-finite gradient are skipped.

    The task needs ``env``, ``episode_length`` and ``descriptor_of`` (a descriptor that
    is differentiable in the states, such as the maze's final position). Walls give no
    gradient (a blocked move is not made), so targets behind walls are not learned this
    way: see ``benchmarks/RESULTS.md``.

    Args:
        policy: the start (e.g. :func:`distilled_policy` of a dcg run); ``None`` with
            ``hidden``: distil any policy task's archive from scratch.
        hidden: train a fresh actor with these hidden widths instead of starting from
            ``policy``; its last layer starts at a tenth of the usual scale.
        chunk: steps per compiled call; ``callback(step, mean_distance)`` is called
            after each chunk with the mean normalised distance over it.

    Returns ``(refined policy, mean normalised distance per chunk)``.
    """
    if archive.learned:
        raise ValueError("refine_distilled trains toward descriptors in the task's own space (descriptor_of); this "
                         "archive's descriptors are learned")  # fmt: skip
    if getattr(task, "descriptor_of", None) is None or getattr(task, "env", None) is None:
        raise ValueError(f"task {getattr(task, 'name', task)!r} has no differentiable descriptor (descriptor_of); "
                         "refine_distilled needs one, as the maze has")  # fmt: skip
    steps, batch_size, chunk = int(steps), int(batch_size), int(chunk)
    if steps < 1 or batch_size < 1 or chunk < 1:
        raise ValueError(f"steps, batch_size and chunk must be positive; got {steps}, {batch_size}, {chunk}")
    learning_rate = check_positive("learning_rate", learning_rate, allow_zero=False)
    occupied = np.asarray(archive.occupied)
    if not occupied.any():
        raise ValueError("the archive is empty: there is nothing to reach")
    if policy is None and hidden is None:
        raise ValueError("refine_distilled needs a policy to start from, or hidden widths for a fresh one")
    k_init, key = rng.split(key)
    # small first actions: a fresh actor that drives into a wall at once gets no gradient
    actor, params, lower, upper = _start_actor(policy, task, archive, hidden, k_init, last_scale=0.1)
    targets = rl.normalise(jnp.asarray(np.asarray(archive.descriptors)[occupied]), lower, upper)
    env, episode_length, descriptor_of = task.env, int(task.episode_length), task.descriptor_of
    optimiser = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate))

    def reach(p, d, k):
        def act(p, obs):
            return actor.apply(p, jnp.concatenate([jax.lax.stop_gradient(obs), d]))

        reached = rl.normalise(descriptor_of(rollout(env, act, p, k, episode_length)), lower, upper)
        return jnp.sum(((reached - d) / 2.0) ** 2)  # in units of the descriptor range

    def loss(p, k):
        k_pick, k_play = rng.split(k)
        d = targets[jax.random.randint(k_pick, (batch_size,), 0, targets.shape[0])]
        squared = jax.vmap(reach, (None, 0, 0))(p, d, rng.split(k_play, batch_size))
        return jnp.mean(squared), jnp.mean(jnp.sqrt(squared))

    @functools.partial(jax.jit, static_argnums=4)
    def train(p, opt_state, k, first, n):  # n steps, scanned
        def step(carry, k):
            p, opt_state = carry
            (_, distance), grads = jax.value_and_grad(loss, has_aux=True)(p, k)
            updates, new_state = optimiser.update(grads, opt_state, p)
            finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
            keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
            return (keep(optax.apply_updates(p, updates), p), keep(new_state, opt_state)), distance

        (p, opt_state), distances = jax.lax.scan(step, (p, opt_state), rng.split(k, n))
        return p, opt_state, jnp.mean(distances)

    params, history = _train_in_chunks(train, params, optimiser, key, steps, chunk, callback)
    return DistilledPolicy(params, actor, lower, upper), history


TEACHERS = ("task", "elites")


def imitate_distilled(
    policy: DistilledPolicy | None,
    task: Any,
    archive: Any,
    key: jax.Array,
    *,
    teacher: str = "task",
    steps: int = 3000,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    hidden: tuple[int, ...] | None = None,
    mix: float = 0.3,
    chunk: int = 100,
    callback: Any = None,
) -> tuple[DistilledPolicy, np.ndarray]:
    """Train a descriptor-conditioned policy to reach the archive's descriptors by
    imitating a teacher on the states it visits itself (DAgger, Ross et al. 2011). Not
    in the DCG papers.

    Each step draws ``batch_size`` of the archive's elite descriptors as targets and
    plays the policy for them; at each step of the episode the teacher's action takes
    over with probability ``beta`` (1 at first, falling to 0 over the first ``mix``
    of the steps), and the policy takes an Adam step toward the teacher's action at
    every state visited (mean squared error).

    Teachers:
        ``"task"``: the task's own ``teacher`` (a controller that knows how to reach a
            descriptor: the maze's drives along shortest paths on its map, so this
            uses the map, which DCG-MAP-Elites does not see);
        ``"elites"``: for each target, the archive's elite that reached it (any policy
            task): distillation of the archive's behaviours themselves. It cannot do
            better than the elites reproduce their own descriptors when played a
            little differently (:func:`evaluate_elites`).

    Args:
        policy: the start (e.g. :func:`distilled_policy` of a dcg run), or ``None`` for
            a fresh actor.
        hidden: a fresh actor's hidden widths, default ``(256, 256)`` when ``policy``
            is ``None``; given with a policy, it replaces it by a fresh one.
        chunk: steps per compiled call; ``callback(step, loss)`` is called after each
            chunk with the mean imitation loss over it.

    Returns ``(policy, mean imitation loss per chunk)``.
    """
    if teacher not in TEACHERS:
        raise ValueError(f"unknown teacher {teacher!r}; valid teachers: {', '.join(TEACHERS)}")
    name = getattr(task, "name", task)
    if getattr(task, "env", None) is None or getattr(task, "policy", None) is None:
        raise ValueError(f"task {name!r} is not a policy task (it needs env and policy)")
    if teacher == "task" and archive.learned:
        raise ValueError("the task's teacher drives to descriptors in the task's own space; this archive's descriptors "
                         "are learned: use teacher='elites'")  # fmt: skip
    if teacher == "task" and getattr(task, "teacher", None) is None:
        raise ValueError(f"task {name!r} has no teacher of its own; use teacher='elites' (its archive's elites)")
    steps, batch_size, chunk = int(steps), int(batch_size), int(chunk)
    if steps < 1 or batch_size < 1 or chunk < 1:
        raise ValueError(f"steps, batch_size and chunk must be positive; got {steps}, {batch_size}, {chunk}")
    learning_rate = check_positive("learning_rate", learning_rate, allow_zero=False)
    mix = float(mix)
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1]; got {mix}")
    occupied = np.asarray(archive.occupied)
    if not occupied.any():
        raise ValueError("the archive is empty: there is nothing to imitate")
    if policy is None and hidden is None:
        hidden = (256, 256)
    k_init, key = rng.split(key)
    actor, params, lower, upper = _start_actor(policy, task, archive, hidden, k_init)
    cells = np.nonzero(occupied)[0]
    raw = jnp.asarray(np.asarray(archive.descriptors)[cells], jnp.float32)
    targets = rl.normalise(raw, lower, upper)
    if teacher == "task":
        data, teach = task.teacher(raw)
    else:
        data = jax.tree.map(lambda g: g[jnp.asarray(cells)], archive.genotypes)
        apply = task.policy.apply

        def teach(state, params_k, target_k):
            return apply(params_k, state.obs)

    env, episode_length = task.env, int(task.episode_length)
    optimiser = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate))

    def episode(p, data_k, raw_k, d, k, beta):
        k_reset, k_mix = rng.split(k)

        def body(carry, k):
            state, alive = carry
            ours = actor.apply(p, jnp.concatenate([state.obs, d]))
            theirs = teach(state, data_k, raw_k)
            nxt = env.step(state, jnp.where(jax.random.uniform(k) < beta, theirs, ours))
            return (nxt, alive * (1.0 - jnp.asarray(nxt.done, jnp.float32))), (state.obs, theirs, alive)

        start = (env.reset(k_reset), jnp.ones((), jnp.float32))
        return jax.lax.scan(body, start, rng.split(k_mix, episode_length))[1]

    def loss(p, obs, labels, alive, d):
        x = jnp.concatenate([obs, jnp.broadcast_to(d[:, None, :], (*obs.shape[:2], d.shape[-1]))], axis=-1)
        squared = jnp.sum((actor.apply(p, x) - labels) ** 2, axis=-1)
        return jnp.sum(squared * alive) / jnp.maximum(jnp.sum(alive), 1.0)

    @functools.partial(jax.jit, static_argnums=4)
    def train(p, opt_state, k, first, n):  # n steps, scanned
        def step(carry, inputs):
            p, opt_state = carry
            k, t = inputs
            beta = jnp.clip(1.0 - t / jnp.maximum(mix * steps, 1e-9), 0.0, 1.0) if mix > 0 else jnp.zeros(())
            k_pick, k_play = rng.split(k)
            i = jax.random.randint(k_pick, (batch_size,), 0, targets.shape[0])
            data_i = jax.tree.map(lambda a: a[i], data)
            obs, labels, alive = jax.vmap(episode, (None, 0, 0, 0, 0, None))(
                jax.lax.stop_gradient(p), data_i, raw[i], targets[i], rng.split(k_play, batch_size), beta
            )
            value, grads = jax.value_and_grad(loss)(p, obs, jax.lax.stop_gradient(labels), alive, targets[i])
            updates, opt_state = optimiser.update(grads, opt_state, p)
            return (optax.apply_updates(p, updates), opt_state), value

        inputs = (rng.split(k, n), first + jnp.arange(n, dtype=jnp.float32))
        (p, opt_state), values = jax.lax.scan(step, (p, opt_state), inputs)
        return p, opt_state, jnp.mean(values)

    params, history = _train_in_chunks(train, params, optimiser, key, steps, chunk, callback)
    return DistilledPolicy(params, actor, lower, upper), history
