"""Maze navigation in pure JAX, in the spirit of Kheperax (which fails on current JAX).

A two-wheeled robot (radius 0.015) starts at (0.15, 0.15) facing up in the unit square
with walls. Each step its MLP policy reads three laser range-finders (at -45, 0 and
+45 degrees, range 0.2, given as a fraction of the range) and two bumpers (+1 when a
wall touches the left or right front quarter, else -1), and outputs two wheel speeds in
[-1, 1] (scaled by 0.025). A move that would touch a wall is not made. The reward of a
step is minus the distance to the goal, and episodes have a fixed length (no early
end, so shifting rewards by a constant changes no ranking). Fitness is the return (so
reaching the goal early and staying is best), the descriptor the final (x, y)
position. Every transition is returned in ``extras["transitions"]`` for gradient
emitters, and the path sampled at ``TRAJECTORY_POINTS`` evenly spaced steps (ending
with the last), in [-1, 1], in ``extras["trajectory"]``: the features that learned
descriptors (QDHF, AURORA) are built from.

With ``observe_position=True`` the observation also holds the robot's (x, y) and
heading (cos, sin), rescaled to [-1, 1]: Kheperax's robot does not see where it is, but
a descriptor-conditioned critic (DCG) needs to, as QDax's omnidirectional tasks show
their policies the position.

Maps: ``standard`` (Kheperax's standard maze; goal at the top left, behind walls),
``empty`` (only the borders).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from qdkit.policy import MLP
from qdkit.rollout import batch_rollout, episode_return, final_state_descriptor
from qdkit.tasks.base import Evaluation, PolicyTask, Task

BORDERS = ((0.0, 0.0, 1.0, 0.0), (1.0, 0.0, 1.0, 1.0), (1.0, 1.0, 0.0, 1.0), (0.0, 1.0, 0.0, 0.0))
MAPS = {
    "standard": {
        "walls": (
            (0.25, 0.25, 0.25, 0.75),
            (0.14, 0.45, 0.0, 0.65),
            (0.25, 0.75, 0.0, 0.8),
            (0.25, 0.75, 0.66, 0.875),
            (0.355, 0.0, 0.525, 0.185),
            (0.25, 0.5, 0.75, 0.215),
            (1.0, 0.25, 0.435, 0.55),
        ),  # fmt: skip
        "goal": (0.15, 0.9),
    },
    "empty": {"walls": (), "goal": (0.85, 0.85)},
}
START = (0.15, 0.15, np.pi / 2)
RADIUS = 0.015
LASER_ANGLES = (-np.pi / 4, 0.0, np.pi / 4)
LASER_RANGE = 0.2
GOAL_RADIUS = 0.05
SPEED = 0.025


class MazeState(NamedTuple):
    """The robot's state (brax-style fields ``obs``, ``reward``, ``done``, ``info``)."""

    pos: jax.Array  # (2,)
    angle: jax.Array  # ()
    obs: jax.Array  # (5,)
    reward: jax.Array
    done: jax.Array
    info: dict[str, jax.Array]


def _segment_distance(p: jax.Array, walls: jax.Array) -> jax.Array:
    """Distance from point ``p`` to each wall segment ``(W, 4)``."""
    a, b = walls[:, :2], walls[:, 2:]
    ab = b - a
    t = jnp.clip(jnp.sum((p[None, :] - a) * ab, axis=1) / jnp.maximum(jnp.sum(ab * ab, axis=1), 1e-12), 0.0, 1.0)
    closest = a + t[:, None] * ab
    return jnp.linalg.norm(p[None, :] - closest, axis=1), closest


def _cross(u: jax.Array, v: jax.Array) -> jax.Array:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


class MazeEnv:
    """The maze as an environment (``reset``/``step``; see the module docstring)."""

    action_size = 2

    def __init__(self, map_name: str = "standard", observe_position: bool = False):
        if map_name not in MAPS:
            raise KeyError(f"unknown maze map {map_name!r}; valid maps: {', '.join(sorted(MAPS))}")
        self.map_name = map_name
        self.observe_position = bool(observe_position)
        self.observation_size = 5 + (4 if self.observe_position else 0)
        self.walls = jnp.asarray(BORDERS + MAPS[map_name]["walls"], jnp.float32)
        self.goal = jnp.asarray(MAPS[map_name]["goal"], jnp.float32)

    def lasers(self, pos: jax.Array, angle: jax.Array) -> jax.Array:
        """Distance to the nearest wall along each laser, as a fraction of the range."""
        angles = angle[None] + jnp.asarray(LASER_ANGLES, jnp.float32)
        d = jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=1)  # (L, 2)
        a, e = self.walls[:, :2], self.walls[:, 2:] - self.walls[:, :2]  # (W, 2)
        denom = _cross(d[:, None, :], e[None, :, :])  # (L, W)
        ap = a[None, :, :] - pos[None, None, :]
        safe = jnp.where(jnp.abs(denom) < 1e-9, 1.0, denom)
        t = _cross(ap, e[None, :, :]) / safe
        u = _cross(ap, d[:, None, :]) / safe
        hit = (jnp.abs(denom) >= 1e-9) & (t >= 0.0) & (u >= 0.0) & (u <= 1.0)
        dist = jnp.min(jnp.where(hit, t, LASER_RANGE), axis=1)
        return jnp.minimum(dist, LASER_RANGE) / LASER_RANGE

    def bumpers(self, pos: jax.Array, angle: jax.Array) -> jax.Array:
        """+1 for a wall within reach at the left / right front quarter, else -1."""
        dist, closest = _segment_distance(pos, self.walls)
        v = closest - pos[None, :]
        rel = jnp.mod(jnp.arctan2(v[:, 1], v[:, 0]) - angle[None] + jnp.pi, 2 * jnp.pi) - jnp.pi
        near = dist < RADIUS + SPEED
        left = jnp.any(near & (rel >= 0.0) & (rel < jnp.pi / 2))
        right = jnp.any(near & (rel <= 0.0) & (rel > -jnp.pi / 2))
        return jnp.where(jnp.stack([left, right]), 1.0, -1.0).astype(jnp.float32)

    def _obs(self, pos, angle):
        parts = [self.lasers(pos, angle), self.bumpers(pos, angle)]
        if self.observe_position:  # (x, y, cos, sin) rescaled to [-1, 1]
            parts.append(jnp.concatenate([2.0 * pos - 1.0, jnp.stack([jnp.cos(angle), jnp.sin(angle)])]))
        return jnp.concatenate(parts)

    def _reward(self, pos):
        return -jnp.linalg.norm(pos - self.goal)

    def reset(self, key: jax.Array) -> MazeState:
        del key  # deterministic start
        pos, angle = jnp.asarray(START[:2], jnp.float32), jnp.asarray(START[2], jnp.float32)
        zero = jnp.zeros((), jnp.float32)
        return MazeState(pos, angle, self._obs(pos, angle), zero, zero, {"state_descriptor": pos})

    def step(self, state: MazeState, action: jax.Array) -> MazeState:
        v = jnp.clip(action, -1.0, 1.0) * SPEED
        angle = state.angle + (v[1] - v[0]) / (2 * RADIUS)
        forward = (v[0] + v[1]) / 2
        target = state.pos + forward * jnp.stack([jnp.cos(angle), jnp.sin(angle)])
        blocked = jnp.min(_segment_distance(target, self.walls)[0]) < RADIUS
        pos = jnp.where(blocked, state.pos, target)
        reward = self._reward(pos)
        done = jnp.zeros((), jnp.float32)  # fixed-length episodes
        return MazeState(pos, angle, self._obs(pos, angle), reward, done, {"state_descriptor": pos})


#: Points of the path in ``extras["trajectory"]``.
TRAJECTORY_POINTS = 10


def maze(
    episode_length: int = 250, hidden: int = 8, map: str = "standard", observe_position: bool = False
) -> PolicyTask:
    """Maze navigation (Kheperax-like): an MLP drives a robot; descriptor = final (x, y)."""
    episode_length, hidden = int(episode_length), int(hidden)
    if episode_length < 1 or hidden < 1:
        raise ValueError("episode_length and hidden must be positive")
    env = MazeEnv(map, observe_position)
    policy = MLP((env.observation_size, hidden, env.action_size))

    steps = np.linspace(0, episode_length - 1, min(TRAJECTORY_POINTS, episode_length) + 1)[1:]
    sample_at = jnp.asarray(np.round(steps).astype(np.int32))

    def score(key: jax.Array, params: Any) -> Evaluation:
        transitions = batch_rollout(env, policy.apply, params, key, episode_length)
        path = transitions.next_state_desc[:, sample_at, :] * 2.0 - 1.0  # (B, points, 2) in [-1, 1]
        trajectory = path.reshape(path.shape[0], -1)
        return Evaluation(episode_return(transitions), final_state_descriptor(transitions),
                          {"transitions": transitions, "trajectory": trajectory})  # fmt: skip

    return PolicyTask(
        name="maze",
        score=score,
        example_genotype=policy.init(jax.random.key(0)),
        genotype_lower=None,
        genotype_upper=None,
        lower=np.zeros(2, np.float32),
        upper=np.ones(2, np.float32),
        qd_offset=-float(episode_length) * float(np.sqrt(2.0)),
        descriptor_names=("final x", "final y"),
        options={"episode_length": episode_length, "hidden": hidden, "map": map, "observe_position": observe_position},
        init=policy.init_batch,
        env=env,
        policy=policy,
        episode_length=episode_length,
        reward_min=-float(np.sqrt(2.0)),
        render=render,
        descriptor_of=final_state_descriptor,
    )


@functools.partial(jax.jit, static_argnames=("env", "policy", "episode_length"))
def _trajectory(env, policy, params, episode_length):
    from qdkit.rollout import rollout

    t = rollout(env, policy.apply, params, jax.random.key(0), episode_length)
    return t.next_state_desc, t.mask


def draw(task: Task, params: Any = None, *, ax=None, trajectories: bool = True):
    """Draw the maze (walls, start, goal) and, for ``params`` (one policy or a batch),
    the robot's path(s); returns the axes."""
    import matplotlib.pyplot as plt

    env = task.env
    ax = ax or plt.gca()
    for x1, y1, x2, y2 in np.asarray(env.walls):
        ax.plot([x1, x2], [y1, y2], color="black", lw=2)
    ax.add_patch(plt.Circle(tuple(np.asarray(env.goal)), GOAL_RADIUS, color="tab:green", alpha=0.5))
    ax.plot(*START[:2], "o", color="tab:blue")
    if params is not None and trajectories:
        batch = params if params[0]["w"].ndim == 3 else jax.tree.map(lambda x: x[None], params)
        n = jax.tree.leaves(batch)[0].shape[0]
        for i in range(n):
            one = jax.tree.map(lambda x, i=i: x[i], batch)
            path, mask = (np.asarray(a) for a in _trajectory(env, task.policy, one, task.episode_length))
            path = path[mask > 0]
            ax.plot(path[:, 0], path[:, 1], lw=1, alpha=0.8)
            ax.plot(path[-1, 0], path[-1, 1], "x", color="tab:red")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def render(task: Task, params: Any, path: str) -> str:
    """Write a PNG of the maze with the path(s) of ``params``; returns ``path``."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    draw(task, params, ax=ax)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
