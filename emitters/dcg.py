"""DCG-MAP-Elites (Faldor et al., GECCO 2023) and DCRL-MAP-Elites' actor injection, for
policy tasks; and archive distillation: one descriptor-conditioned policy.

Each batch is split three ways:

- Iso+LineDD offspring;
- policy-gradient offspring: an elite improved by ``pg_steps`` Adam steps up
  ``Q(s, pi(s) | d_parent)`` -- the critic conditioned on *that parent's* descriptor,
  so the gradient improves fitness within the parent's niche instead of pulling every
  offspring toward one behaviour;
- injected actors (DCRL): the descriptor-conditioned actor ``pi(s | d')`` specialised
  to a descriptor ``d'`` drawn from the archive's elites (the descriptor folded into its
  first layer's bias), ``num_injected`` per batch.

The initial population's transitions go into the replay buffer (aimed at their own
descriptors). After each batch every transition goes into the replay buffer with its episode's
descriptor ``d`` and the descriptor its policy was aimed at (the parent's for a PG
offspring, the target of an injected actor, its own for an Iso+LineDD offspring); the
critic ``Q(s, a | d')`` and the actor ``pi(s | d')`` are trained with TD3 on
transitions replayed for targets ``d'`` -- a share ``archive_replay`` drawn from the
archive's elites (DCG-ME), the rest the aimed-at descriptors (DCRL-ME) -- with reward
``exp(-||d - d'|| / length_scale) * (r - r_min)`` (:mod:`emitters.rl`; descriptors
normalised to [-1, 1]). The PG parents and injected targets of the next batch are
drawn in ``update`` (the archive they come from is the one the next ``emit`` sees) and
kept in the state, so ``update`` knows what each offspring was aimed at.

:func:`distilled_policy` returns the actor: given a target descriptor it behaves like
the archive's elite there (archive distillation). :func:`refine_distilled` (not in the
papers) fine-tunes it, or a fresh actor, toward the archive's descriptors by gradient
through a differentiable task (the maze). :func:`imitate_distilled` (not in the papers)
trains one by imitating a teacher on the states it visits (DAgger): the task's own
controller (the maze's shortest paths on its map) or the archive's elites.
:func:`evaluate_elites` replays the elites themselves with a little action noise: the
reference for what a copy of them can reach. The state is a pytree of arrays:
checkpoints hold it and resumed runs are bit-identical.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from emitters import rl
from emitters.base import Emitter, check_positive
from emitters.iso_line import iso_line
from emitters.pga import check_policy_task, split_batch
from qdkit.policy import MLP


def dcg(
    task: Any,
    batch_size: int,
    *,
    pg_fraction: float = 0.5,
    num_injected: int = 0,
    length_scale: float = 0.1,
    archive_replay: float = 0.5,
    similarity_on: str = "episode",
    return_bound: bool = False,
    iso_sigma: float = 0.005,
    line_sigma: float = 0.05,
    config: rl.TD3Config = rl.DEFAULT_CONFIG,
) -> Emitter:
    """The DCG-ME emitter (DCRL-ME with ``num_injected > 0``) for a policy task.

    Args:
        batch_size: offspring per iteration.
        pg_fraction: share of the batch varied by descriptor-conditioned policy gradient.
        num_injected: specialised actors added per batch (DCRL); taken from the
            Iso+LineDD share.
        length_scale: ``l`` of the similarity ``exp(-||d - d'|| / l)``, in normalised
            descriptor units ([-1, 1] per axis).
        archive_replay: share of replayed transitions whose target ``d'`` is drawn from
            the archive's elites (DCG-ME); the rest are replayed for the descriptor their
            policy was aimed at when collected (DCRL-ME: the parent's for PG offspring,
            the injected actor's target, the achieved one for Iso+LineDD offspring).
        similarity_on: ``"episode"`` (the papers': ``d`` is the episode's descriptor)
            or ``"state"`` (``d`` is the state descriptor each step reaches, e.g. the
            position for the maze: a dense signal).
        return_bound: raise the critic's target for a transition replayed for its aim
            to at least the return its episode got for that aim (a lower bound of the
            optimal value in a deterministic task; :func:`emitters.rl.aimed_returns`):
            the value of reaching a descriptor travels back along the whole path at
            once instead of one step per update. Not in the papers.
        iso_sigma, line_sigma: the Iso+LineDD part.
        config: TD3 and PG settings (:class:`emitters.rl.TD3Config`).
    """
    check_policy_task(task, "dcg")
    num_injected = int(num_injected)
    if num_injected < 0:
        raise ValueError(f"num_injected must be >= 0; got {num_injected}")
    length_scale = check_positive("length_scale", length_scale, allow_zero=False)
    archive_replay = float(archive_replay)
    if not 0.0 <= archive_replay <= 1.0:
        raise ValueError(f"archive_replay must be in [0, 1]; got {archive_replay}")
    if similarity_on not in ("episode", "state"):
        raise ValueError(f"similarity_on must be 'episode' or 'state'; got {similarity_on!r}")
    return_bound = bool(return_bound)
    ga_size, pg_size = split_batch(batch_size, pg_fraction, num_injected)
    config = rl.check_config(config)
    policy = task.policy
    desc_dim = task.descriptor_dim
    lower, upper = np.asarray(task.lower, np.float32), np.asarray(task.upper, np.float32)
    nets = rl.make_networks(policy, desc_dim, config)
    ga = iso_line(ga_size, iso_sigma, line_sigma) if ga_size else None
    reward_min = float(getattr(task, "reward_min", 0.0))

    def normalised(descriptors):
        return rl.normalise(descriptors, lower, upper)

    def archive_targets(archive):  # normalised elite descriptors; NaN rows for empty cells
        return jnp.where(archive.occupied[:, None], normalised(archive.descriptors), jnp.nan)

    def plan(key, archive):
        # The next batch's PG parents and injected targets, drawn when the archive they
        # come from is known (it is the one the next emit sees), so that ``update`` knows
        # what each offspring was aimed at.
        k_parents, k_inject = jax.random.split(key)
        parents = archive.sample_indices(k_parents, pg_size)
        inject = archive.sample_indices(k_inject, num_injected)
        aims = normalised(archive.descriptors[jnp.concatenate([parents, inject])])
        return {"parents": parents, "aims": aims}

    def init(key, archive):
        k_state, k_plan = jax.random.split(key)
        state = rl.emitter_state(k_state, nets, config, state_descs=similarity_on == "state", aim_returns=return_bound)
        return {**state, "plan": plan(k_plan, archive)}

    def emit(key, archive, state):
        k_ga, k_pg = jax.random.split(key)
        parts = []
        if ga is not None:
            parts.append(ga.emit(k_ga, archive, ()))
        if pg_size:
            index = state["plan"]["parents"]
            parents = jax.tree.map(lambda g: g[index], archive.genotypes)
            targets = state["plan"]["aims"][:pg_size]
            critic = state["learner"]["critic"]
            parts.append(rl.pg_variation(parents, policy, critic, state["buffer"], k_pg, nets, config, targets))
        if num_injected:
            targets = state["plan"]["aims"][pg_size:]
            parts.append(rl.specialise(state["learner"]["actor"], policy.sizes[0], targets))
        return jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *parts)

    def columns(transitions, achieved, aims):
        # the buffer's optional columns: each step's state descriptor, each step's aimed return
        state_descs = normalised(transitions.next_state_desc) if similarity_on == "state" else None
        if not return_bound:
            return state_descs, None
        per_step = achieved if state_descs is None else state_descs
        return state_descs, rl.aimed_returns(transitions, per_step, aims, config, length_scale, reward_min)

    def observe_initial(state, archive, genotypes, evaluation):
        # the initial population's transitions, each aimed at its own descriptor
        achieved = normalised(evaluation.descriptors)
        transitions = evaluation.extras["transitions"]
        return rl.remember(state, transitions, achieved, achieved, *columns(transitions, achieved, achieved))

    def update(state, archive, genotypes, evaluation, info):
        achieved = normalised(evaluation.descriptors)
        aims = jnp.concatenate([achieved[:ga_size], state["plan"]["aims"]])  # Iso+LineDD offspring: their own
        k_plan, k_state = jax.random.split(state["key"])
        transitions = evaluation.extras["transitions"]
        state = rl.learn(
            {**state, "key": k_state}, transitions, achieved, nets, config, aims, *columns(transitions, achieved, aims),
            target_descs=archive_targets(archive), length_scale=length_scale, reward_min=reward_min,
            archive_replay=archive_replay, similarity_on=similarity_on, return_bound=return_bound,
        )  # fmt: skip
        return {**state, "plan": plan(k_plan, archive)}

    return Emitter(init=init, emit=emit, update=update, batch_size=batch_size, observe_initial=observe_initial)


# ----------------------------------------------------------------- distillation


class DistilledPolicy(NamedTuple):
    """The descriptor-conditioned actor of a DCG run: one policy for any target.

    Attributes:
        params: the actor's parameters (an :class:`qdkit.policy.MLP` pytree).
        actor: the MLP whose inputs are the observation then the normalised target.
        lower, upper: the descriptor bounds used for normalisation.
    """

    params: Any
    actor: MLP
    lower: np.ndarray
    upper: np.ndarray

    @property
    def obs_size(self) -> int:
        return self.actor.sizes[0] - len(self.lower)

    def act(self, obs: jax.Array, target: jax.Array) -> jax.Array:
        """Actions for observations ``obs`` aiming at descriptor ``target`` (raw units)."""
        d = rl.normalise(jnp.asarray(target, jnp.float32), self.lower, self.upper)
        d = jnp.broadcast_to(d, (*obs.shape[:-1], d.shape[-1]))
        return self.actor.apply(self.params, jnp.concatenate([obs, d], axis=-1))

    def specialise(self, targets: jax.Array) -> Any:
        """Plain task policies (genotypes) for ``(N, M)`` targets (or one ``(M,)``)."""
        d = rl.normalise(jnp.asarray(targets, jnp.float32), self.lower, self.upper)
        return rl.specialise(self.params, self.obs_size, d)

    def save(self, path: str | os.PathLike) -> None:
        """One ``.npz`` with the parameters and what is needed to rebuild the policy."""
        leaves = {f"layer{i}_{k}": np.asarray(v) for i, layer in enumerate(self.params) for k, v in layer.items()}
        meta = {"sizes": list(self.actor.sizes), "activation": self.actor.activation, "final": self.actor.final}
        tmp = f"{os.fspath(path)}.tmp.npz"
        np.savez(tmp, meta=json.dumps(meta), lower=self.lower, upper=self.upper, **leaves)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DistilledPolicy:
        try:
            with np.load(path) as f:
                meta = json.loads(str(f["meta"]))
                actor = MLP(tuple(meta["sizes"]), meta["activation"], meta["final"])
                params = tuple(
                    {"w": jnp.asarray(f[f"layer{i}_w"]), "b": jnp.asarray(f[f"layer{i}_b"])}
                    for i in range(len(actor.sizes) - 1)
                )
                return cls(params, actor, np.asarray(f["lower"]), np.asarray(f["upper"]))
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"{path} is not a distilled policy file: {e}") from e


def distilled_policy(state: Any, task: Any) -> DistilledPolicy:
    """The descriptor-conditioned actor of a DCG emitter state (``run_state.emitter_state``)
    for ``task``."""
    if not (isinstance(state, dict) and "learner" in state and "actor" in state["learner"]):
        raise ValueError("not the state of a dcg emitter")
    params = state["learner"]["actor"]
    sizes = (int(params[0]["w"].shape[0]), *(int(layer["w"].shape[1]) for layer in params))
    actor = MLP(sizes, task.policy.activation, task.policy.final)
    if sizes[0] != task.policy.sizes[0] + task.descriptor_dim:
        raise ValueError("this actor is not descriptor-conditioned (a pga state?)")
    return DistilledPolicy(params, actor, np.asarray(task.lower, np.float32), np.asarray(task.upper, np.float32))


def evaluate_distilled(policy: DistilledPolicy, task: Any, archive: Any, key: jax.Array, *, chunk: int = 256):
    """Run the distilled policy for every cell's target (grid centres or CVT centroids).

    Returns ``(report, arrays)``: the report (JSON-able) has, over all cells and over
    the archive's filled cells, the mean distance between target and reached
    descriptor, the fraction of targets reached within their own cell
    (``reached_fraction``), the fraction reached within one cell's size of the target
    (``within_one_cell_fraction``: closer to it than its nearest neighbouring cell
    centre is; near misses count) and the mean fitness, with the archive's own mean
    fitness for comparison, and the fraction of the archive's filled cells that the
    policy reaches for some target; ``arrays`` holds ``targets``, ``reached``,
    ``fitness`` and ``filled`` per cell."""
    targets = np.asarray(archive.cell_centers(), np.float32)
    score = jax.jit(task.score)
    reached, fitness = [], []
    for start in range(0, len(targets), chunk):
        key, k = jax.random.split(key)
        evaluation = score(k, policy.specialise(jnp.asarray(targets[start : start + chunk])))
        reached.append(np.asarray(evaluation.descriptors))
        fitness.append(np.asarray(evaluation.fitness))
    reached, fitness = np.concatenate(reached), np.concatenate(fitness)
    cells = np.asarray(archive.index_of(jnp.asarray(reached)))
    filled = np.asarray(archive.occupied)
    summary = functools.partial(_reach_summary, targets, reached, fitness, cells, _cell_size(targets))

    # the archive's filled cells that the policy reaches for some target (its own coverage of the archive)
    covered = np.zeros_like(filled)
    covered[cells[(cells >= 0) & (cells < len(filled))]] = True
    report = {"all_cells": summary(np.ones_like(filled)), "filled_cells": summary(filled),
              "archive_mean_fitness": float(np.asarray(archive.fitness)[filled].mean()) if filled.any() else None,
              "filled_cells_reached_by_some_target": float((covered & filled).sum() / max(filled.sum(), 1))}  # fmt: skip
    return report, {"targets": targets, "reached": reached, "fitness": fitness, "filled": filled}


def _reach_summary(targets, reached, fitness, cells, cell_size, mask):
    """Over the cells in ``mask``: mean distance between target and reached descriptor,
    the fractions reached in their own cell and within one cell's size, mean fitness."""
    if not mask.any():
        return {"cells": 0}
    distance = np.linalg.norm(reached - targets, axis=1)[mask]
    return {"cells": int(mask.sum()), "mean_distance": float(distance.mean()),
            "reached_fraction": float((cells == np.arange(len(targets)))[mask].mean()),
            "within_one_cell_fraction": float((distance <= cell_size[mask]).mean()),
            "mean_fitness": float(fitness[mask].mean())}  # fmt: skip


def evaluate_elites(task: Any, archive: Any, key: jax.Array, *, action_noise: float = 0.001, chunk: int = 256):
    """How reproducible the archive's own elites are: each filled cell's elite is played
    again with Gaussian noise of standard deviation ``action_noise`` on its actions, and
    scored as :func:`evaluate_distilled` scores the distilled policy (target = the cell's
    centre), so the two reports compare directly. A distilled policy is never the
    elites' exact function, so this is the reference for what imitating them can
    reach: where the elites themselves scatter under a tiny perturbation (a chaotic
    task), no faithful copy of them reaches their cells.

    The task needs ``env``, ``policy``, ``episode_length`` and ``descriptor_of`` (the
    maze has them). ``action_noise=0`` replays the elites as they were evaluated.

    Returns ``(report, arrays)``: the report has ``action_noise``, ``filled_cells``
    (as in :func:`evaluate_distilled`) and ``archive_mean_fitness``; ``arrays`` holds
    ``targets``, ``reached`` and ``fitness`` for the filled cells (in cell order)."""
    from qdkit.rollout import episode_return, rollout

    if any(getattr(task, name, None) is None for name in ("env", "policy", "descriptor_of")):
        raise ValueError(f"task {getattr(task, 'name', task)!r} cannot replay its elites: it needs env, policy and "
                         "descriptor_of, as the maze has")  # fmt: skip
    action_noise = check_positive("action_noise", action_noise)
    occupied = np.asarray(archive.occupied)
    if not occupied.any():
        raise ValueError("the archive is empty: there are no elites to replay")
    cells = np.nonzero(occupied)[0]
    centres = np.asarray(archive.cell_centers(), np.float32)
    env, apply, episode_length, descriptor_of = (
        task.env,
        task.policy.apply,
        int(task.episode_length),
        task.descriptor_of,
    )

    @jax.jit
    def play(k, params):
        keys = jax.random.split(k, jax.tree.leaves(params)[0].shape[0])
        t = jax.vmap(lambda p, k: rollout(env, apply, p, k, episode_length, action_noise))(params, keys)
        return descriptor_of(t), episode_return(t)

    reached, fitness = [], []
    for start in range(0, len(cells), int(chunk)):
        key, k = jax.random.split(key)
        part = jnp.asarray(cells[start : start + int(chunk)])
        d, f = play(k, jax.tree.map(lambda g: g[part], archive.genotypes))
        reached.append(np.asarray(d))
        fitness.append(np.asarray(f))
    reached, fitness = np.concatenate(reached), np.concatenate(fitness)
    landed = np.asarray(archive.index_of(jnp.asarray(reached)))
    # in the filled cells' own numbering: a replay lands in its own cell when it lands in cells[i]
    own = np.where(landed == cells, np.arange(len(cells)), -1)
    summary = _reach_summary(
        centres[cells], reached, fitness, own, _cell_size(centres)[cells], np.ones(len(cells), bool)
    )
    report = {"action_noise": action_noise, "filled_cells": summary,
              "archive_mean_fitness": float(np.asarray(archive.fitness)[occupied].mean())}  # fmt: skip
    return report, {"targets": centres[cells], "reached": reached, "fitness": fitness}


def _start_actor(policy, task, hidden, key, *, last_scale=1.0):
    """The actor to train, its parameters and the descriptor bounds: ``policy``'s, or a
    fresh actor with ``hidden`` widths (the task's policy with the target as extra
    inputs; its last layer scaled by ``last_scale``) when ``hidden`` is given."""
    if policy is None:
        lower, upper = np.asarray(task.lower, np.float32), np.asarray(task.upper, np.float32)
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
            key, k = jax.random.split(key)
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
    import optax

    from qdkit.rollout import rollout

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
    k_init, key = jax.random.split(key)
    # small first actions: a fresh actor that drives into a wall at once gets no gradient
    actor, params, lower, upper = _start_actor(policy, task, hidden, k_init, last_scale=0.1)
    targets = rl.normalise(jnp.asarray(np.asarray(archive.descriptors)[occupied]), lower, upper)
    env, episode_length, descriptor_of = task.env, int(task.episode_length), task.descriptor_of
    optimiser = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate))

    def reach(p, d, k):
        def act(p, obs):
            return actor.apply(p, jnp.concatenate([jax.lax.stop_gradient(obs), d]))

        reached = rl.normalise(descriptor_of(rollout(env, act, p, k, episode_length)), lower, upper)
        return jnp.sum(((reached - d) / 2.0) ** 2)  # in units of the descriptor range

    def loss(p, k):
        k_pick, k_play = jax.random.split(k)
        d = targets[jax.random.randint(k_pick, (batch_size,), 0, targets.shape[0])]
        squared = jax.vmap(reach, (None, 0, 0))(p, d, jax.random.split(k_play, batch_size))
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

        (p, opt_state), distances = jax.lax.scan(step, (p, opt_state), jax.random.split(k, n))
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
    import optax

    if teacher not in TEACHERS:
        raise ValueError(f"unknown teacher {teacher!r}; valid teachers: {', '.join(TEACHERS)}")
    name = getattr(task, "name", task)
    if getattr(task, "env", None) is None or getattr(task, "policy", None) is None:
        raise ValueError(f"task {name!r} is not a policy task (it needs env and policy)")
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
    k_init, key = jax.random.split(key)
    actor, params, lower, upper = _start_actor(policy, task, hidden, k_init)
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
        k_reset, k_mix = jax.random.split(k)

        def body(carry, k):
            state, alive = carry
            ours = actor.apply(p, jnp.concatenate([state.obs, d]))
            theirs = teach(state, data_k, raw_k)
            nxt = env.step(state, jnp.where(jax.random.uniform(k) < beta, theirs, ours))
            return (nxt, alive * (1.0 - jnp.asarray(nxt.done, jnp.float32))), (state.obs, theirs, alive)

        start = (env.reset(k_reset), jnp.ones((), jnp.float32))
        return jax.lax.scan(body, start, jax.random.split(k_mix, episode_length))[1]

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
            k_pick, k_play = jax.random.split(k)
            i = jax.random.randint(k_pick, (batch_size,), 0, targets.shape[0])
            data_i = jax.tree.map(lambda a: a[i], data)
            obs, labels, alive = jax.vmap(episode, (None, 0, 0, 0, 0, None))(
                jax.lax.stop_gradient(p), data_i, raw[i], targets[i], jax.random.split(k_play, batch_size), beta
            )
            value, grads = jax.value_and_grad(loss)(p, obs, jax.lax.stop_gradient(labels), alive, targets[i])
            updates, opt_state = optimiser.update(grads, opt_state, p)
            return (optax.apply_updates(p, updates), opt_state), value

        inputs = (jax.random.split(k, n), first + jnp.arange(n, dtype=jnp.float32))
        (p, opt_state), values = jax.lax.scan(step, (p, opt_state), inputs)
        return p, opt_state, jnp.mean(values)

    params, history = _train_in_chunks(train, params, optimiser, key, steps, chunk, callback)
    return DistilledPolicy(params, actor, lower, upper), history


def _cell_size(centres: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Each cell centre's distance to the nearest other centre (a grid's cell width, a
    CVT cell's size); infinite for a single cell."""
    out = np.empty(len(centres), np.float32)
    for start in range(0, len(centres), chunk):
        d = np.linalg.norm(centres[start : start + chunk, None, :] - centres[None, :, :], axis=-1)
        d[np.arange(len(d)), start + np.arange(len(d))] = np.inf
        out[start : start + chunk] = d.min(axis=1)
    return out


def plot_distilled(arrays: dict[str, np.ndarray], *, ax=None, descriptor_names=("descriptor 0", "descriptor 1")):
    """Targets (grey) and where the distilled policy got (coloured by fitness), with a
    line from each filled cell's target to its reached descriptor (2-D descriptors)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    t, r, filled = arrays["targets"], arrays["reached"], arrays["filled"]
    for (x0, y0), (x1, y1) in zip(t[filled], r[filled]):
        ax.plot([x0, x1], [y0, y1], color="0.7", lw=0.5)
    ax.scatter(t[:, 0], t[:, 1], s=4, color="0.6", label="targets")
    points = ax.scatter(r[:, 0], r[:, 1], s=6, c=arrays["fitness"], cmap="viridis", label="reached")
    ax.figure.colorbar(points, ax=ax, label="fitness")
    ax.set_xlabel(descriptor_names[0])
    ax.set_ylabel(descriptor_names[1])
    ax.legend(loc="upper right", fontsize=8)
    return ax
