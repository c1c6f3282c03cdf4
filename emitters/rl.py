"""The reinforcement-learning parts of the gradient emitters (PGA-ME, DCG-ME): a replay
buffer, TD3 (twin critics, target smoothing, delayed actor updates) and the
policy-gradient variation of a batch of policies -- jitted, scanned and vmapped.

Everything is optionally *descriptor-conditioned*: with ``desc_dim > 0`` the critic is
``Q(s, a | d)`` and the actor ``pi(s | d)`` (``d`` concatenated to their inputs), each
sampled transition is replayed for a target descriptor ``d'`` and its reward becomes
``S(d, d') * (r - r_min)`` with ``S(d, d') = exp(-||d - d'|| / l)`` (DCG-MAP-Elites;
``d`` the episode's descriptor, ``r_min`` a lower bound of the per-step reward so the
scaled reward is never negative). Descriptors are normalised to [-1, 1] by the task's
bounds first.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from qdkit import rng
from qdkit.policy import MLP


class TD3Config(NamedTuple):
    """TD3 and policy-gradient settings. The defaults are the official DCG-MAP-Elites
    code's, for DCG-ME and for its PGA-ME baseline alike (``configs/algo/dcg_me.yaml``
    and ``pga_me.yaml`` of the DCRL-MAP-Elites repository; GECCO 2023 Table 3): critic
    256x256, 3,000 critic steps per iteration, 150 PG steps per PG offspring,
    minibatches of 100, learning rates 3e-4 (critic, actor) and 5e-3 (PG variation).
    qdkit 0.4.0 used minibatches of 256 and a PG learning rate of 1e-3; a run directory
    records the defaults it started with, and one of 0.4.0 resumes with those
    (:data:`qdkit.registry.TD3_BEFORE_RECORDING`).

    Attributes:
        critic_hidden: widths of each critic's hidden layers (the actor has the task
            policy's shape, see :func:`make_networks`).
        critic_steps: critic updates per iteration.
        batch_size: transitions per critic/actor update.
        pg_steps: policy-gradient steps per PG offspring.
        pg_batch_size: transitions per PG step.
        buffer_size: replay-buffer capacity (transitions).
        discount, tau: TD3 discount and soft target update.
        policy_delay: critic updates per actor update.
        policy_noise, noise_clip: target policy smoothing.
        critic_lr, actor_lr, pg_lr: Adam learning rates.
        reward_scale: multiplies rewards.
    """

    critic_hidden: tuple[int, ...] = (256, 256)
    critic_steps: int = 3000
    batch_size: int = 100
    pg_steps: int = 150
    pg_batch_size: int = 100
    buffer_size: int = 1_000_000
    discount: float = 0.99
    tau: float = 0.005
    policy_delay: int = 2
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    critic_lr: float = 3e-4
    actor_lr: float = 3e-4
    pg_lr: float = 5e-3
    reward_scale: float = 1.0


DEFAULT_CONFIG = TD3Config()


def check_config(config: TD3Config) -> TD3Config:
    """Refuse settings that cannot work, naming the setting."""
    for name in ("critic_steps", "batch_size", "pg_steps", "pg_batch_size", "buffer_size", "policy_delay"):
        value = getattr(config, name)
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if not all(int(w) >= 1 for w in config.critic_hidden) or not config.critic_hidden:
        raise ValueError(f"critic_hidden must be positive widths; got {config.critic_hidden}")
    if not 0.0 <= config.discount <= 1.0:
        raise ValueError(f"discount must be in [0, 1]; got {config.discount}")
    if not 0.0 < config.tau <= 1.0:
        raise ValueError(f"tau must be in (0, 1]; got {config.tau}")
    for name in ("critic_lr", "actor_lr", "pg_lr", "reward_scale"):
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive; got {getattr(config, name)!r}")
    if config.policy_noise < 0 or config.noise_clip < 0:
        raise ValueError("policy_noise and noise_clip must be >= 0")
    return config


# ------------------------------------------------------------------ replay buffer


class Replay(NamedTuple):
    """The columns of a replay buffer, one row per transition (``(N, ...)`` float32).

    Attributes:
        obs, action, reward, next_obs, done: the transition.
        desc: what the episode achieved, as the emitter conditions on it: its
            descriptor, or the features a learned descriptor is computed from (so that
            a refit re-describes the buffer at training time); width 1 (zeros) without
            descriptor conditioning.
        aim: what the policy that collected the episode was aimed at, in the same form.
        state_desc: the (normalised) state descriptor after each step, or ``None`` when
            not kept (``similarity_on="state"`` only).
        aim_return: each step's return for its aim (:func:`aimed_returns`), or ``None``
            when not kept (``return_bound`` only).
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    done: jax.Array
    desc: jax.Array
    aim: jax.Array
    state_desc: jax.Array | None = None
    aim_return: jax.Array | None = None


class Buffer(NamedTuple):
    """A ring buffer of transitions: the columns, the next write position and the number
    of valid rows."""

    data: Replay
    position: jax.Array
    size: jax.Array


def buffer_init(
    capacity: int, obs_size: int, action_size: int, desc_dim: int, *, state_descs: bool = False,
    aim_returns: bool = False, state_desc_dim: int | None = None,
) -> Buffer:  # fmt: skip
    """An empty buffer of ``capacity`` transitions whose ``desc``/``aim`` columns are
    ``desc_dim`` wide (at least 1); with ``state_descs`` it also keeps each step's state
    descriptor (``state_desc_dim`` wide, default ``desc_dim``), with ``aim_returns`` each
    step's return for its aim (:func:`aimed_returns`)."""
    z = lambda *shape: jnp.zeros((capacity, *shape), jnp.float32)  # noqa: E731
    width = max(desc_dim, 1)
    data = Replay(
        obs=z(obs_size), action=z(action_size), reward=z(), next_obs=z(obs_size), done=z(), desc=z(width),
        aim=z(width), state_desc=z(width if state_desc_dim is None else state_desc_dim) if state_descs else None,
        aim_return=z() if aim_returns else None,
    )  # fmt: skip
    return Buffer(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def buffer_add(buffer: Buffer, rows: Replay, valid: jax.Array) -> Buffer:
    """Append the ``valid`` rows (ring buffer; the oldest are overwritten)."""
    if jax.tree.structure(rows) != jax.tree.structure(buffer.data):
        kept = [name for name in ("state_desc", "aim_return") if getattr(buffer.data, name) is not None]
        raise ValueError(f"the rows must have the buffer's columns; this buffer keeps {', '.join(kept) or 'no'} "
                         "optional columns")  # fmt: skip
    capacity = buffer.data.reward.shape[0]
    valid = valid.astype(jnp.int32)
    offset = jnp.cumsum(valid) - 1
    index = jnp.where(valid > 0, (buffer.position + offset) % capacity, capacity)  # invalid rows: dropped
    data = jax.tree.map(lambda column, new: column.at[index].set(new.astype(jnp.float32), mode="drop"), buffer.data,
                        rows)  # fmt: skip
    count = jnp.sum(valid)
    return Buffer(data, (buffer.position + count) % capacity, jnp.minimum(buffer.size + count, capacity))


def buffer_sample(buffer: Buffer, key: jax.Array, n: int) -> Replay:
    index = jax.random.randint(key, (n,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda column: column[index], buffer.data)


def transitions_to_rows(
    transitions, descriptors: jax.Array, aims: jax.Array | None = None, state_descs: jax.Array | None = None,
    aim_returns: jax.Array | None = None,
) -> tuple[Replay, jax.Array]:  # fmt: skip
    """Flatten ``(B, T)`` rollouts into buffer rows; each row carries its episode's
    achieved descriptor (or features: ``descriptors`` ``(B, C)``), what its policy was
    *aimed* at (``aims``; default: the episode's own) and, when given, the
    (normalised) state descriptor after the step (``state_descs`` ``(B, T, M)``) and
    its aimed return (``(B, T)``); returns ``(rows, valid)``."""
    b, t = transitions.reward.shape
    flat = lambda x: x.reshape(b * t, *x.shape[2:])  # noqa: E731
    aims = descriptors if aims is None else aims
    rows = Replay(
        obs=flat(transitions.obs), action=flat(transitions.action), reward=flat(transitions.reward),
        next_obs=flat(transitions.next_obs), done=flat(transitions.done), desc=jnp.repeat(descriptors, t, axis=0),
        aim=jnp.repeat(aims, t, axis=0), state_desc=None if state_descs is None else flat(state_descs),
        aim_return=None if aim_returns is None else flat(aim_returns),
    )  # fmt: skip
    valid = flat(transitions.mask) > 0
    finite = jnp.all(jnp.isfinite(rows.desc), axis=1) & jnp.all(jnp.isfinite(rows.aim), axis=1)
    return rows, valid & finite


# ------------------------------------------------------------------------ networks


class Networks(NamedTuple):
    """The critic (two Q networks) and the actor, as MLP values."""

    q: MLP
    actor: MLP
    desc_dim: int

    def q_values(self, critic: Any, obs, action, desc) -> tuple[jax.Array, jax.Array]:
        x = jnp.concatenate([obs, action] + ([desc] if self.desc_dim else []), axis=-1)
        return self.q.apply(critic[0], x)[..., 0], self.q.apply(critic[1], x)[..., 0]

    def act(self, actor: Any, obs, desc) -> jax.Array:
        return self.actor.apply(actor, jnp.concatenate([obs] + ([desc] if self.desc_dim else []), axis=-1))


def make_networks(policy: MLP, desc_dim: int, config: TD3Config) -> Networks:
    """Critic networks of ``config.critic_hidden`` (ReLU) and an actor shaped like
    ``policy`` (same hidden widths and activations; ``desc_dim`` more inputs), so the
    actor can be turned into a policy of the task (:func:`specialise`)."""
    obs_size, action_size = policy.sizes[0], policy.sizes[-1]
    q = MLP((obs_size + action_size + desc_dim, *config.critic_hidden, 1), activation="relu", final="identity")
    actor = MLP((obs_size + desc_dim, *policy.sizes[1:-1], action_size), activation=policy.activation,
                final=policy.final)  # fmt: skip
    return Networks(q, actor, desc_dim)


def specialise(actor: Any, obs_size: int, desc: jax.Array) -> Any:
    """The descriptor-conditioned actor ``pi(s | d)`` as a plain policy ``pi_d(s)``:
    the descriptor's contribution to the first layer is folded into its bias (DCRL's
    actor injection). ``desc``: ``(M,)``, or ``(N, M)`` for ``N`` policies."""

    def one(d):
        first = actor[0]
        folded = {"w": first["w"][:obs_size], "b": first["b"] + d @ first["w"][obs_size:]}
        return (folded, *actor[1:])

    return one(desc) if desc.ndim == 1 else jax.vmap(one)(desc)


def similarity(d: jax.Array, d_prime: jax.Array, length_scale: float) -> jax.Array:
    """``exp(-||d - d'|| / l)`` row-wise (DCG-MAP-Elites' reward scaling)."""
    return jnp.exp(-jnp.linalg.norm(d - d_prime, axis=-1) / length_scale)


def conditioned_reward(reward, d, d_prime, length_scale: float, reward_min: float = 0.0):
    """The reward of a transition of an episode with descriptor ``d`` replayed for the
    target ``d'``: ``S(d, d') * (r - r_min)``."""
    return similarity(d, d_prime, length_scale) * (reward - reward_min)


def aimed_returns(transitions, achieved: jax.Array, aims: jax.Array, config: TD3Config, length_scale: float,
                  reward_min: float = 0.0) -> jax.Array:  # fmt: skip
    """``(B, T)`` discounted returns from each step to the episode's end of the rewards
    conditioned on each episode's aim (``aims`` ``(B, M)``), the similarity taken with
    ``achieved``: the episode's descriptor ``(B, M)`` or each step's state descriptor
    ``(B, T, M)``. As the conditioned rewards are never negative, this return of the
    policy that collected the episode is a lower bound of the optimal value (the
    episode is cut at its end): what ``td3_train(..., return_bound=True)`` uses."""
    if achieved.ndim == 2:
        achieved = achieved[:, None, :]
    scale = config.reward_scale
    reward = conditioned_reward(
        transitions.reward * scale, achieved, aims[:, None, :], length_scale, reward_min * scale
    )
    reward = reward * transitions.mask

    def back(g, x):
        r, keep = x
        g = r + config.discount * keep * g
        return g, g

    keep = (1.0 - transitions.done) * transitions.mask
    _, returns = jax.lax.scan(back, jnp.zeros(reward.shape[0], jnp.float32), (reward.T, keep.T), reverse=True)
    return returns.T


# --------------------------------------------------------------------------- TD3


class Learner(NamedTuple):
    """TD3's networks and optimiser states: twin critics and their targets, the actor
    and its target."""

    critic: Any
    critic_target: Any
    critic_opt: Any
    actor: Any
    actor_target: Any
    actor_opt: Any


def td3_init(key: jax.Array, nets: Networks, config: TD3Config) -> Learner:
    with jax.numpy_dtype_promotion("standard"):
        k1, k2, k3 = rng.split(key, 3)
        critic = (nets.q.init(k1), nets.q.init(k2))
        actor = nets.actor.init(k3)
        return Learner(
            critic=critic, critic_target=critic, critic_opt=optax.adam(config.critic_lr).init(critic),
            actor=actor, actor_target=actor, actor_opt=optax.adam(config.actor_lr).init(actor),
        )  # fmt: skip


def _soft(target, online, tau):
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def td3_train(
    learner: Learner,
    buffer: Buffer,
    key: jax.Array,
    nets: Networks,
    config: TD3Config,
    *,
    target_descs: jax.Array | None = None,
    condition: Any = None,
    length_scale: float = 0.1,
    reward_min: float = 0.0,
    archive_replay: float = 1.0,
    similarity_on: str = "episode",
    return_bound: bool = False,
) -> tuple[Learner, dict[str, jax.Array]]:
    """``config.critic_steps`` critic updates (and one actor update per
    ``policy_delay``), scanned. With descriptor conditioning each sampled transition
    is replayed for a target ``d'``: with probability ``archive_replay`` one of
    ``target_descs`` ``(K, M)`` (the archive's normalised elite descriptors; rows that
    are not finite are skipped; DCG-ME), otherwise the descriptor its policy was aimed
    at when it was collected (the row's ``aim``; DCRL-ME). ``condition`` maps the
    buffer's ``desc``/``aim`` columns to normalised descriptors (default: they are
    already; a learned descriptor re-describes stored features with the current
    projection). The similarity compares ``d'`` with the episode's descriptor
    (``similarity_on="episode"``, the papers') or with the state descriptor reached by
    the step (``"state"``: a dense, per-step signal, goal-conditioned-RL style). With
    ``return_bound`` a transition replayed for its aim has its critic target raised to
    at least the return its episode actually got for that aim (``aim_return``; a lower
    bound of the optimal value in a deterministic task), which carries the value of
    reaching a descriptor back along the whole path at once. Returns the learner and
    the mean critic and actor losses."""
    if similarity_on not in ("episode", "state"):
        raise ValueError(f"similarity_on must be 'episode' or 'state'; got {similarity_on!r}")
    if similarity_on == "state" and buffer.data.state_desc is None:
        raise ValueError(
            "similarity_on='state' needs a buffer that keeps state descriptors (buffer_init(state_descs=True))"
        )
    if return_bound and buffer.data.aim_return is None:
        raise ValueError("return_bound needs a buffer that keeps aimed returns (buffer_init(aim_returns=True))")
    condition = (lambda x: x) if condition is None else condition
    critic_opt, actor_opt = optax.adam(config.critic_lr), optax.adam(config.actor_lr)
    delay = max(1, int(config.policy_delay))
    rounds = max(1, int(config.critic_steps) // delay)

    def batch(k) -> tuple[Replay, jax.Array | None]:
        """A minibatch replayed for its targets: ``desc`` holds ``d'``, ``reward`` the
        conditioned reward; and the return bound per row (or ``None``)."""
        k_rows, k_desc = rng.split(k)
        rows = buffer_sample(buffer, k_rows, config.batch_size)
        reward = rows.reward * config.reward_scale
        bound = rows.aim_return if return_bound else None
        if nets.desc_dim:
            d_prime = condition(rows.aim)
            if archive_replay > 0:
                k_pick, k_mix = rng.split(k_desc)
                finite = jnp.all(jnp.isfinite(target_descs), axis=1)
                p = finite / jnp.maximum(jnp.sum(finite), 1)
                pick = jax.random.choice(k_pick, target_descs.shape[0], (config.batch_size,), p=p)
                from_archive = finite[pick] & (jax.random.uniform(k_mix, (config.batch_size,)) < archive_replay)
                d_prime = jnp.where(from_archive[:, None], target_descs[pick], d_prime)
                if return_bound:  # the episode's return holds for its aim only
                    bound = jnp.where(from_archive, -jnp.inf, bound)
            achieved = rows.state_desc if similarity_on == "state" else condition(rows.desc)
            reward = conditioned_reward(reward, achieved, d_prime, length_scale, reward_min * config.reward_scale)
            rows = rows._replace(desc=d_prime)
        return rows._replace(reward=reward), bound

    def critic_loss(critic, learner, rows, bound, k):
        noise = jnp.clip(config.policy_noise * jax.random.normal(k, rows.action.shape), -config.noise_clip,
                         config.noise_clip)  # fmt: skip
        next_action = jnp.clip(nets.act(learner.actor_target, rows.next_obs, rows.desc) + noise, -1, 1)
        q1_t, q2_t = nets.q_values(learner.critic_target, rows.next_obs, next_action, rows.desc)
        y = rows.reward + config.discount * (1.0 - rows.done) * jnp.minimum(q1_t, q2_t)
        if bound is not None:
            y = jnp.maximum(y, bound)
        y = jax.lax.stop_gradient(y)
        q1, q2 = nets.q_values(critic, rows.obs, rows.action, rows.desc)
        return jnp.mean((q1 - y) ** 2) + jnp.mean((q2 - y) ** 2)

    def actor_loss(actor, critic, rows):
        q1, _ = nets.q_values(critic, rows.obs, nets.act(actor, rows.obs, rows.desc), rows.desc)
        return -jnp.mean(q1)

    def round_(learner, k):
        keys = rng.split(k, 2 * delay + 1)
        losses = []
        for i in range(delay):
            rows, bound = batch(keys[2 * i])
            loss, grads = jax.value_and_grad(critic_loss)(learner.critic, learner, rows, bound, keys[2 * i + 1])
            updates, opt = critic_opt.update(grads, learner.critic_opt)
            learner = learner._replace(critic=optax.apply_updates(learner.critic, updates), critic_opt=opt)
            losses.append(loss)
        rows, _ = batch(keys[-1])
        a_loss, grads = jax.value_and_grad(actor_loss)(learner.actor, learner.critic, rows)
        updates, opt = actor_opt.update(grads, learner.actor_opt)
        actor = optax.apply_updates(learner.actor, updates)
        learner = learner._replace(
            actor=actor, actor_opt=opt, actor_target=_soft(learner.actor_target, actor, config.tau),
            critic_target=_soft(learner.critic_target, learner.critic, config.tau),
        )  # fmt: skip
        return learner, (jnp.mean(jnp.stack(losses)), a_loss)

    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes int32 and float (strict mode refuses)
        learner, (c_losses, a_losses) = jax.lax.scan(round_, learner, rng.split(key, rounds))
    return learner, {"critic_loss": jnp.mean(c_losses), "actor_loss": jnp.mean(a_losses)}


# ---------------------------------------------------------- the gradient emitters' state


class GradientState(NamedTuple):
    """The state of a gradient emitter (PGA-ME, DCG-ME).

    Attributes:
        learner: TD3's networks and optimiser states (:class:`Learner`).
        buffer: the replay buffer (:class:`Buffer`).
        key: the emitter's own key (``update`` gets none).
        critic_loss, actor_loss: the mean losses of the last training.
        aims: ``(P, C)`` what the descriptor-conditioned offspring of the last ``emit``
            were aimed at (DCG: the PG parents' and injected actors' targets, in the
            buffer's ``aim`` form), for ``update``; ``None`` for PGA.
    """

    learner: Learner
    buffer: Buffer
    key: jax.Array
    critic_loss: jax.Array
    actor_loss: jax.Array
    aims: jax.Array | None = None


def emitter_state(key: jax.Array, nets: Networks, config: TD3Config, *, desc_width: int | None = None,
                  state_descs: bool = False, aim_returns: bool = False, aims: jax.Array | None = None) -> GradientState:  # fmt: skip
    """The state of a gradient emitter: TD3 learner, empty replay buffer (``desc``/``aim``
    columns ``desc_width`` wide, default the networks' descriptor size; keeping state
    descriptors if ``state_descs``, aimed returns if ``aim_returns``), its own key and
    zero losses."""
    k_learner, k_state = rng.split(key)
    obs_size, action_size = nets.actor.sizes[0] - nets.desc_dim, nets.actor.sizes[-1]
    width = nets.desc_dim if desc_width is None else desc_width
    zero = jnp.zeros((), jnp.float32)
    buffer = buffer_init(config.buffer_size, obs_size, action_size, width, state_descs=state_descs,
                         aim_returns=aim_returns, state_desc_dim=max(nets.desc_dim, 1))  # fmt: skip
    return GradientState(td3_init(k_learner, nets, config), buffer, k_state, zero, zero, aims)


def remember(state: GradientState, transitions, descriptors: jax.Array, aims: jax.Array | None = None,
             state_descs: jax.Array | None = None, aim_returns: jax.Array | None = None) -> GradientState:  # fmt: skip
    """Add a batch's transitions to the buffer without training (the initial population)."""
    rows, valid = transitions_to_rows(transitions, descriptors, aims, state_descs, aim_returns)
    return state._replace(buffer=buffer_add(state.buffer, rows, valid))


def learn(state: GradientState, transitions, descriptors: jax.Array, nets: Networks, config: TD3Config,
          aims: jax.Array | None = None, state_descs: jax.Array | None = None,
          aim_returns: jax.Array | None = None, **train_options: Any) -> GradientState:  # fmt: skip
    """Add a batch's transitions (each with its episode's descriptor, its aim and, for a
    buffer that keeps them, its state descriptor) to the buffer, then train
    (:func:`td3_train`)."""
    buffer = remember(state, transitions, descriptors, aims, state_descs, aim_returns).buffer
    key, k_train = rng.split(state.key)
    learner, losses = td3_train(state.learner, buffer, k_train, nets, config, **train_options)
    return state._replace(learner=learner, buffer=buffer, key=key, **losses)


# ----------------------------------------------------------- policy-gradient variation


def pg_variation(
    policies: Any,
    policy: MLP,
    critic: Any,
    buffer: Buffer,
    key: jax.Array,
    nets: Networks,
    config: TD3Config,
    target_descs: jax.Array | None = None,
) -> Any:
    """``config.pg_steps`` Adam steps of each policy (leading axis) up the critic's
    ``Q1(s, pi(s) | d)``, on minibatches from the buffer; ``d`` is that policy's
    target descriptor (its parent's, in DCG). vmapped over the policies."""
    opt = optax.adam(config.pg_lr)
    n = jax.tree.leaves(policies)[0].shape[0]
    descs = jnp.zeros((n, max(nets.desc_dim, 1))) if target_descs is None else target_descs

    def improve(params, d, k):
        def loss(p, rows):
            cond = jnp.broadcast_to(d, (rows.obs.shape[0], d.shape[0]))
            q1, _ = nets.q_values(critic, rows.obs, policy.apply(p, rows.obs), cond)
            return -jnp.mean(q1)

        def step(carry, k):
            p, state = carry
            rows = buffer_sample(buffer, k, config.pg_batch_size)
            grads = jax.grad(loss)(p, rows)
            updates, state = opt.update(grads, state)
            return (optax.apply_updates(p, updates), state), None

        (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), rng.split(k, config.pg_steps))
        return params

    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes int32 and float (strict mode refuses)
        return jax.vmap(improve)(policies, descs, rng.split(key, n))


def normalise(descriptors: jax.Array, lower, upper) -> jax.Array:
    """Descriptors mapped from ``[lower, upper]`` to ``[-1, 1]``."""
    shape = (1,) * (jnp.ndim(descriptors) - 1) + (-1,)
    lower = jnp.asarray(lower, jnp.float32).reshape(shape)
    upper = jnp.asarray(upper, jnp.float32).reshape(shape)
    return 2.0 * (descriptors - lower) / (upper - lower) - 1.0
