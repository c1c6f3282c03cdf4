"""DCG-MAP-Elites (Faldor et al., GECCO 2023) and DCRL-MAP-Elites' actor injection, for
policy tasks.

Each batch is split three ways:

- Iso+LineDD offspring;
- policy-gradient offspring: an elite improved by ``pg_steps`` Adam steps up
  ``Q(s, pi(s) | d_parent)`` -- the critic conditioned on *that parent's* descriptor,
  so the gradient improves fitness within the parent's niche instead of pulling every
  offspring toward one behaviour;
- injected actors (DCRL): the descriptor-conditioned actor ``pi(s | d')`` specialised
  to a descriptor ``d'`` drawn from the archive's elites (the descriptor folded into its
  first layer's bias), ``num_injected`` per batch.

Each iteration the actor is also played for ``actor_rollouts`` descriptors drawn from
the archive's elites (plus Gaussian noise of ``actor_rollout_noise``): its transitions go
into the replay buffer aimed at those descriptors, DCG-MAP-Elites' "negative samples"
that show the critic what the actor does when it misses its target (they count where
transitions are replayed for their aim: a share ``1 - archive_replay``). These
episodes are not offspring and do not count as evaluations (as in the paper's text).
By default a quarter of the batch for DCG-ME (the official code's 64 of 256) and none
with actor injection (DCRL-ME, whose injected actors take their place).

``emit`` draws the PG parents and injected targets from the archive it is given and
keeps what each offspring was aimed at in the state, for ``update``. The initial
population's transitions go into the replay buffer (aimed at their own descriptors).
After each batch every transition goes into the replay buffer with its episode's
descriptor ``d`` and the descriptor its policy was aimed at (the parent's for a PG
offspring, the target of an injected actor, its own for an Iso+LineDD offspring); the
critic ``Q(s, a | d')`` and the actor ``pi(s | d')`` are trained with TD3 on transitions
replayed for targets ``d'`` -- a share ``archive_replay`` drawn from the archive's elites
(DCG-ME), the rest the aimed-at descriptors (DCRL-ME) -- with reward
``exp(-||d - d'|| / length_scale) * (r - r_min)`` (:mod:`emitters.rl`; descriptors
normalised to [-1, 1] by the archive's bounds).

With an archive over learned descriptors (QDHF, AURORA; no paper has tried this) the
critic and the actor are conditioned on the learned latent. The buffer keeps each
episode's *features* instead of its descriptor, and training re-describes them with the
archive's current projection, so a refit that moves the latent re-labels the whole
buffer at once; the networks then adapt to the new latent as training goes on.

The actor is the distilled policy: see :mod:`emitters.distill`. The state
(:class:`emitters.rl.GradientState`) is a pytree of arrays: checkpoints hold it and
resumed runs are bit-identical.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from emitters import rl
from emitters.base import Emitter, EmptyState, check_positive
from emitters.iso_line import iso_line
from emitters.pga import check_policy_task, split_batch
from qdkit import rng


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
    actor_rollouts: int | None = None,
    actor_rollout_noise: float = 0.0008,
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
            position for the maze: a dense signal; not with learned descriptors).
        return_bound: raise the critic's target for a transition replayed for its aim
            to at least the return its episode got for that aim (a lower bound of the
            optimal value in a deterministic task; :func:`emitters.rl.aimed_returns`):
            the value of reaching a descriptor travels back along the whole path at
            once instead of one step per update. Not in the papers; not with learned
            descriptors.
        iso_sigma, line_sigma: the Iso+LineDD part.
        actor_rollouts: episodes of the descriptor-conditioned actor per iteration, for
            descriptors drawn from the archive's elites, added to the replay buffer
            (DCG-MAP-Elites' negative samples; not counted as evaluations). ``None``:
            ``batch_size // 4`` without injected actors (the official DCG-ME
            configuration: 64 with a batch of 256), 0 with them (DCRL-ME's); 0 leaves
            them out.
        actor_rollout_noise: standard deviation of the Gaussian noise added to those
            descriptors, in normalised units (DCG-MAP-Elites: 0.0004 times the
            descriptor range, i.e. 0.0008 here; DCRL-MAP-Elites: 0). Not applied to
            learned descriptors.
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
    if actor_rollouts is None:
        actor_rollouts = 0 if num_injected else int(batch_size) // 4
    rollouts = int(actor_rollouts)
    if rollouts < 0:
        raise ValueError(f"actor_rollouts must be >= 0; got {actor_rollouts}")
    rollout_noise = check_positive("actor_rollout_noise", actor_rollout_noise)
    ga_size, pg_size = split_batch(batch_size, pg_fraction, num_injected)
    config = rl.check_config(config)
    policy = task.policy
    nets = rl.make_networks(policy, task.descriptor_dim, config)
    ga = iso_line(ga_size, iso_sigma, line_sigma) if ga_size else None
    reward_min = float(getattr(task, "reward_min", 0.0))

    def normalised(archive, descriptors):
        return rl.normalise(descriptors, archive.lower, archive.upper)

    def achieved(archive, evaluation):
        """What the buffer keeps of what each episode achieved: its features for an
        archive over learned descriptors (re-described at training time), else its
        descriptor."""
        return jnp.asarray(task.features(evaluation), jnp.float32) if archive.learned else evaluation.descriptors

    def of_elites(archive, index):
        """The same, for elites of the archive (PG parents, injection targets)."""
        return archive.features[index] if archive.learned else archive.descriptors[index]

    def condition(archive):
        """Buffer ``desc``/``aim`` columns -> normalised descriptors in the archive's
        current descriptor space."""
        if archive.learned:
            return lambda x: normalised(archive, archive.describe(x))
        return lambda x: normalised(archive, x)

    def init(key, archive):
        if archive.learned and (similarity_on == "state" or return_bound):
            raise ValueError(
                "dcg with learned descriptors: similarity_on='state' and return_bound compare each step's state with "
                "the target, which needs the task's own descriptor space; use similarity_on='episode' without "
                "return_bound"
            )
        width = archive.features.shape[1] if archive.learned else task.descriptor_dim
        return rl.emitter_state(
            key, nets, config, desc_width=width, state_descs=similarity_on == "state", aim_returns=return_bound,
            aims=jnp.zeros((pg_size + num_injected, width), jnp.float32),
        )  # fmt: skip

    def emit(key, archive, state):
        k_ga, k_parents, k_inject, k_pg = rng.split(key, 4)
        chosen = jnp.concatenate(
            [archive.sample_indices(k_parents, pg_size), archive.sample_indices(k_inject, num_injected)]
        )
        targets = normalised(archive, archive.descriptors[chosen])
        parts = []
        if ga is not None:
            parts.append(ga.emit(k_ga, archive, EmptyState())[0])
        if pg_size:
            parents = jax.tree.map(lambda g: g[chosen[:pg_size]], archive.genotypes)
            parts.append(rl.pg_variation(parents, policy, state.learner.critic, state.buffer, k_pg, nets, config,
                                         targets[:pg_size]))  # fmt: skip
        if num_injected:
            parts.append(rl.specialise(state.learner.actor, policy.sizes[0], targets[pg_size:]))
        genotypes = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *parts)
        return genotypes, state._replace(aims=of_elites(archive, chosen))

    def columns(archive, transitions, reached, aims):
        # the buffer's optional columns: each step's state descriptor, each step's aimed return
        state_descs = normalised(archive, transitions.next_state_desc) if similarity_on == "state" else None
        if not return_bound:
            return state_descs, None
        per_step = normalised(archive, reached) if state_descs is None else state_descs
        returns = rl.aimed_returns(transitions, per_step, normalised(archive, aims), config, length_scale, reward_min)
        return state_descs, returns

    def observe_initial(state, archive, genotypes, evaluation):
        # the initial population's transitions, each aimed at its own descriptor
        reached = achieved(archive, evaluation)
        transitions = evaluation.extras["transitions"]
        return rl.remember(state, transitions, reached, reached, *columns(archive, transitions, reached, reached))

    def actor_episodes(state, archive):
        """The papers' negative samples: the actor played for descriptors drawn from
        the elites (plus noise), its transitions aimed at them."""
        key, k_pick, k_noise, k_score = rng.split(state.key, 4)
        chosen = archive.sample_indices(k_pick, rollouts)
        wanted = archive.descriptors[chosen]
        if rollout_noise > 0 and not archive.learned:  # normalised units -> the descriptors' own
            scale = (jnp.asarray(archive.upper) - jnp.asarray(archive.lower)) / 2.0
            wanted = wanted + rollout_noise * scale[None, :] * jax.random.normal(k_noise, wanted.shape, wanted.dtype)
        aims = of_elites(archive, chosen) if archive.learned else wanted
        evaluation = task.score(
            k_score, rl.specialise(state.learner.actor, policy.sizes[0], normalised(archive, wanted))
        )
        reached, transitions = achieved(archive, evaluation), evaluation.extras["transitions"]
        state = state._replace(key=key)
        return rl.remember(state, transitions, reached, aims, *columns(archive, transitions, reached, aims))

    def update(state, archive, genotypes, evaluation, info):
        if rollouts:
            state = actor_episodes(state, archive)
        reached = achieved(archive, evaluation)
        aims = jnp.concatenate([reached[:ga_size], state.aims])  # Iso+LineDD offspring: their own
        transitions = evaluation.extras["transitions"]
        targets = jnp.where(archive.occupied[:, None], normalised(archive, archive.descriptors), jnp.nan)
        return rl.learn(
            state, transitions, reached, nets, config, aims, *columns(archive, transitions, reached, aims),
            target_descs=targets, condition=condition(archive), length_scale=length_scale, reward_min=reward_min,
            archive_replay=archive_replay, similarity_on=similarity_on, return_bound=return_bound,
        )  # fmt: skip

    return Emitter(init=init, emit=emit, update=update, batch_size=batch_size, observe_initial=observe_initial)
