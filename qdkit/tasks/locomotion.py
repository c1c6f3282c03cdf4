"""brax locomotion tasks with our own descriptor wrappers (QDax's fail on current JAX).

- ``ant_omni``: descriptor = final (x, y) of the torso; reward = brax's ant reward
  without its forward term (so any direction is as good; what remains rewards staying
  healthy and penalises effort).
- ``ant_uni``, ``walker2d_uni``, ``halfcheetah_uni``, ``hopper_uni``: descriptor = the
  proportion of steps each foot touches the ground; reward = brax's (forward progress,
  health, effort). brax 0.14's pipelines expose no contact list, so a foot touches
  when the lowest point of its collision capsules is within 1 cm of the ground.

Episode length and brax backend (``spring``, ``positional``, ``generalized``, ``mjx``)
are options. Needs the ``brax`` extra (``pip install 'qdkit[brax]'``); brax is imported
when a task is built. Rollouts return every transition (``extras["transitions"]``), so
PGA and DCG run on these tasks as on the maze. Brax on CPU is slow (about 4,000 ant
steps per second here): these tasks are for accelerators; tests use a few steps.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

from qdkit.policy import MLP
from qdkit.rollout import batch_rollout, episode_return, final_state_descriptor
from qdkit.tasks.base import Evaluation, PolicyTask

FEET = {
    "ant": (2, 4, 6, 8),  # the lower leg of each aux_i (unnamed links in brax 0.14's ant)
    "walker2d": ("foot", "foot_left"),
    "halfcheetah": ("bfoot", "ffoot"),
    "hopper": ("foot",),
}
BACKENDS = ("spring", "positional", "generalized", "mjx")
CONTACT = 0.01  # metres between a foot's lowest point and the ground that count as touching


def _rotate(v: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Rotate ``v`` by the unit quaternion ``q = (w, x, y, z)``."""
    w, u = q[0], q[1:]
    return v + 2.0 * np.cross(u, np.cross(u, v) + w * v)


class BraxEnv:
    """A brax environment whose states carry ``info["state_descriptor"]``: the torso's
    (x, y) (``omni``) or the feet-contact booleans (``uni``)."""

    def __init__(self, name: str, kind: str, backend: str):
        try:
            from brax import envs
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("the brax tasks need brax: pip install 'qdkit[brax]'") from e
        if backend not in BACKENDS:
            raise ValueError(f"unknown brax backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
        with _brax_rules():
            self.env = envs.get_environment(name, backend=backend)
            self.observation_size = int(self.env.observation_size)
            self.action_size = int(self.env.action_size)
        self.kind = kind
        links = list(self.env.sys.link_names)
        feet = [f if isinstance(f, int) else links.index(f) for f in FEET[name]]
        # brax 0.14's pipelines do not expose contacts, so a foot touches the ground when
        # the lowest point of one of its capsules or spheres is within CONTACT of it
        sys = self.env.sys
        body = np.asarray(sys.geom_bodyid)
        kinds, sizes = np.asarray(sys.geom_type), np.asarray(sys.geom_size)
        pos, quat = np.asarray(sys.geom_pos), np.asarray(sys.geom_quat)
        self.points = []  # per foot: (link, local points (P, 3), radius (P,))
        for link in feet:
            pts, radii = [], []
            for g in np.nonzero(body == link + 1)[0]:  # MuJoCo body ids count the world first
                if kinds[g] == 3:  # capsule: both ends of its axis
                    axis = _rotate(np.array([0.0, 0.0, sizes[g, 1]]), quat[g])
                    pts += [pos[g] + axis, pos[g] - axis]
                    radii += [sizes[g, 0]] * 2
                elif kinds[g] == 2:  # sphere
                    pts.append(pos[g])
                    radii.append(sizes[g, 0])
            if not pts:
                raise ValueError(f"{name}: foot link {link} has no capsule or sphere to detect contact with")
            self.points.append((link, jnp.asarray(np.array(pts), jnp.float32), jnp.asarray(radii, jnp.float32)))

    def contacts(self, pipeline_state) -> jax.Array:
        """1 for each foot whose lowest point is within ``CONTACT`` of the ground."""
        from brax import math

        out = []
        for link, pts, radii in self.points:
            world = jax.vmap(lambda p, link=link: math.rotate(p, pipeline_state.x.rot[link]))(pts)
            lowest = jnp.min(world[:, 2] + pipeline_state.x.pos[link, 2] - radii)
            out.append(lowest <= CONTACT)
        return jnp.stack(out).astype(jnp.float32)

    def _descriptor(self, state) -> jax.Array:
        if self.kind == "omni":
            return state.pipeline_state.x.pos[0, :2]
        return self.contacts(state.pipeline_state)

    def _wrap(self, state):
        reward = state.reward
        if self.kind == "omni":
            reward = reward - state.metrics["forward_reward"]
        return state.replace(reward=reward, info={**state.info, "state_descriptor": self._descriptor(state)})

    def reset(self, key):
        with _brax_rules():
            return self._wrap(self.env.reset(key))

    def step(self, state, action):
        with _brax_rules():
            return self._wrap(self.env.step(state, action))


@contextlib.contextmanager
def _brax_rules():
    """brax relies on JAX's default promotion rules; run it under them even when the
    caller chose strict ones."""
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        yield


def _locomotion(name: str, kind: str, episode_length: int, backend: str, hidden: int, omni_bound: float):
    episode_length, hidden = int(episode_length), int(hidden)
    if episode_length < 1 or hidden < 1:
        raise ValueError("episode_length and hidden must be positive")
    env = BraxEnv(name, kind, backend)
    policy = MLP((env.observation_size, hidden, hidden, env.action_size))

    def score(key, params):
        t = batch_rollout(env, policy.apply, params, key, episode_length)
        if kind == "omni":
            descriptors = final_state_descriptor(t)
        else:
            live = jnp.maximum(jnp.sum(t.mask, axis=-1, keepdims=True), 1.0)
            descriptors = jnp.sum(t.next_state_desc * t.mask[..., None], axis=-2) / live
        return Evaluation(episode_return(t), descriptors, {"transitions": t})

    dims = 2 if kind == "omni" else len(FEET[name])
    bound = float(omni_bound) if kind == "omni" else 1.0
    names = ("final x", "final y") if kind == "omni" else tuple(f"foot {i} contact" for i in range(dims))
    return PolicyTask(
        name=f"{name}_{kind}",
        score=score,
        example_genotype=policy.init(jax.random.key(0)),
        genotype_lower=None,
        genotype_upper=None,
        lower=np.full(dims, -bound if kind == "omni" else 0.0, np.float32),
        upper=np.full(dims, bound, np.float32),
        qd_offset=-float(episode_length) * 10.0,  # a loose lower bound: |per-step reward| stays below 10
        descriptor_names=names,
        options={"episode_length": episode_length, "backend": backend, "hidden": hidden},
        init=policy.init_batch,
        env=env,
        policy=policy,
        episode_length=episode_length,
        reward_min=-10.0,
    )


def ant_omni(episode_length: int = 250, backend: str = "spring", hidden: int = 64, bound: float = 30.0):
    """brax ant, omnidirectional: descriptor = final (x, y); no forward reward."""
    return _locomotion("ant", "omni", episode_length, backend, hidden, bound)


def ant_uni(episode_length: int = 250, backend: str = "spring", hidden: int = 64):
    """brax ant, forward: descriptor = proportion of steps each of the 4 feet touches the ground."""
    return _locomotion("ant", "uni", episode_length, backend, hidden, 1.0)


def walker2d_uni(episode_length: int = 250, backend: str = "spring", hidden: int = 64):
    """brax walker2d, forward: descriptor = feet-contact proportions (2 feet)."""
    return _locomotion("walker2d", "uni", episode_length, backend, hidden, 1.0)


def halfcheetah_uni(episode_length: int = 250, backend: str = "spring", hidden: int = 64):
    """brax halfcheetah, forward: descriptor = feet-contact proportions (2 feet)."""
    return _locomotion("halfcheetah", "uni", episode_length, backend, hidden, 1.0)


def hopper_uni(episode_length: int = 250, backend: str = "spring", hidden: int = 64):
    """brax hopper, forward: descriptor = foot-contact proportion (1 foot)."""
    return _locomotion("hopper", "uni", episode_length, backend, hidden, 1.0)
