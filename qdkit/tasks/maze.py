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

from qdkit import rng
from qdkit.policy import MLP
from qdkit.rollout import batch_rollout, episode_return, final_state_descriptor
from qdkit.tasks.base import Evaluation, PolicyTask, Task, features_from_extra

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


def _wall_distance_np(points: np.ndarray, walls: np.ndarray) -> np.ndarray:
    """Distance from each point ``(P, 2)`` to the nearest wall (numpy)."""
    a, ab = walls[None, :, :2], walls[None, :, 2:] - walls[None, :, :2]
    t = np.clip(np.sum((points[:, None, :] - a) * ab, -1) / np.maximum(np.sum(ab * ab, -1), 1e-12), 0.0, 1.0)
    return np.linalg.norm(points[:, None, :] - (a + t[..., None] * ab), axis=-1).min(axis=1)


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
        # device_put: an eager jnp.asarray compiles a program per shape
        self.walls = jax.device_put(np.asarray(BORDERS + MAPS[map_name]["walls"], np.float32))
        self.goal = jax.device_put(np.asarray(MAPS[map_name]["goal"], np.float32))

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

    def teacher(self, targets: Any) -> tuple[jax.Array, Any]:
        """A controller that drives to each of the ``(K, 2)`` targets along a shortest
        path around the walls (the task's ``teacher``, for
        :func:`emitters.imitate_distilled`). Returns ``(fields, act)``: the ``(K, n, n)``
        path-length fields and ``act(state, field_k, target_k) -> action``. Each step
        it heads for the reachable point, one step away in one of ``PLAN_HEADINGS``
        headings, with the shortest path left (the target itself once it is that
        close), turning and driving as far as the wheels allow."""
        if getattr(self, "_paths", None) is None:
            self._paths = ShortestPaths(np.asarray(self.walls))
        paths, walls = self._paths, self.walls
        headings = jnp.arange(PLAN_HEADINGS, dtype=jnp.float32) * float(2 * np.pi / PLAN_HEADINGS)
        unit = jnp.stack([jnp.cos(headings), jnp.sin(headings)], axis=1)

        def act(state: MazeState, field: jax.Array, target: jax.Array) -> jax.Array:
            step = state.pos[None, :] + SPEED * unit
            left = jax.vmap(lambda p: paths.distance(field, p))(step)
            clear = jax.vmap(lambda p: jnp.min(_segment_distance(p, walls)[0]))(step) >= 1.2 * RADIUS
            heading = unit[jnp.argmin(jnp.where(clear, left, jnp.inf))]
            to_target = target - state.pos
            gap = jnp.linalg.norm(to_target)
            heading = jnp.where(gap < 2 * SPEED, to_target / jnp.maximum(gap, 1e-9), heading)
            error = jnp.arctan2(heading[1], heading[0]) - state.angle
            error = jnp.arctan2(jnp.sin(error), jnp.cos(error))
            turn = jnp.clip(error * (2 * RADIUS / SPEED), -1.6, 1.6)  # right minus left wheel
            forward = jnp.clip(jnp.cos(error), 0.0, 1.0) * jnp.minimum(1.0, gap / SPEED)
            forward = jnp.minimum(forward, 1.0 - jnp.abs(turn) / 2)
            return jnp.stack([forward - turn / 2, forward + turn / 2])

        return paths.fields(targets), act

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


#: Nodes per side of the grid on which the teacher plans its shortest paths.
PLAN_NODES = 64
#: Headings the teacher considers each step.
PLAN_HEADINGS = 16
_NEIGHBOURS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1))


class ShortestPaths:
    """Shortest-path lengths on a maze map, for the teacher (:meth:`MazeEnv.teacher`).

    Free space is a ``PLAN_NODES`` x ``PLAN_NODES`` grid of nodes at least the robot's
    radius from every wall, linked to their 8 neighbours where the robot fits along
    the link. :meth:`fields` gives, for each target, the path length from every node
    (a geodesic distance field; ``UNREACHABLE`` where no path exists), and
    :meth:`distance` the length from any point: the best over the 2 x 2 surrounding
    nodes of the node's length plus the straight line to it.
    """

    UNREACHABLE = 1e3

    def __init__(self, walls: np.ndarray, nodes: int = PLAN_NODES):
        n = self.n = int(nodes)
        walls = np.asarray(walls, np.float64)
        c = (np.arange(n) + 0.5) / n
        centres = np.stack(np.meshgrid(c, c, indexing="ij"), axis=-1)  # (n, n, 2): node (i, j) at (c_i, c_j)
        self.centres = centres.astype(np.float32)
        self.free = (_wall_distance_np(centres.reshape(-1, 2), walls) >= RADIUS).reshape(n, n)
        links, lengths = [], []
        for di, dj in _NEIGHBOURS:
            nb = np.roll(centres, (-di, -dj), axis=(0, 1))
            inside = np.zeros((n, n), bool)
            inside[max(0, -di) : n - max(0, di), max(0, -dj) : n - max(0, dj)] = True
            ok = inside & self.free & np.roll(self.free, (-di, -dj), axis=(0, 1))
            for s in (0.25, 0.5, 0.75):
                ok &= (_wall_distance_np((centres + s * (nb - centres)).reshape(-1, 2), walls) >= RADIUS).reshape(n, n)
            links.append(ok)
            lengths.append(np.hypot(di, dj) / n)
        self.links = np.stack(links)  # (8, n, n): node (i, j) links to (i + di, j + dj)
        self.lengths = np.asarray(lengths, np.float32)

    def fields(self, targets: Any) -> jax.Array:
        """``(K, n, n)`` path lengths from every node to each of the ``(K, 2)`` targets
        (from the free node nearest each target)."""
        targets = np.asarray(targets, np.float32).reshape(-1, 2)
        gap = np.linalg.norm(self.centres.reshape(1, -1, 2) - targets[:, None, :], axis=-1)
        gap[:, ~self.free.reshape(-1)] = np.inf
        start = np.full((len(targets), self.n * self.n), np.inf, np.float32)
        nearest = gap.argmin(axis=1)
        start[np.arange(len(targets)), nearest] = gap[np.arange(len(targets)), nearest]
        field = _relax(
            jnp.asarray(start.reshape(-1, self.n, self.n)), jnp.asarray(self.links), jnp.asarray(self.lengths)
        )
        return jnp.where(jnp.isfinite(field), field, self.UNREACHABLE)

    def distance(self, field: jax.Array, point: jax.Array) -> jax.Array:
        """Path length from ``point`` (2,) to the target of ``field`` (n, n)."""
        q = jnp.clip(jnp.floor(point * self.n - 0.5).astype(jnp.int32), 0, self.n - 2)
        best = []
        for di in (0, 1):
            for dj in (0, 1):
                i, j = q[0] + di, q[1] + dj
                centre = (jnp.stack([i, j]).astype(jnp.float32) + 0.5) / self.n
                best.append(field[i, j] + jnp.linalg.norm(point - centre))
        return jnp.min(jnp.stack(best))


@jax.jit
def _relax(field: jax.Array, links: jax.Array, lengths: jax.Array) -> jax.Array:
    """Bellman-Ford on the node grid until no length changes (all targets at once)."""

    def sweep(f):
        best = f
        for k, (di, dj) in enumerate(_NEIGHBOURS):
            neighbour = jnp.roll(f, (-di, -dj), axis=(1, 2))  # neighbour[i, j] = f[i + di, j + dj]
            best = jnp.minimum(best, jnp.where(links[k][None], neighbour + lengths[k], jnp.inf))
        return best

    def body(carry):
        f, _ = carry
        g = sweep(f)
        return g, jnp.any(g < f)

    field, _ = jax.lax.while_loop(lambda c: c[1], body, (field, jnp.asarray(True)))
    return field


#: Points of the path in ``extras["trajectory"]``.
TRAJECTORY_POINTS = 10


def maze(
    episode_length: int = 250, hidden: int = 8, map: str = "standard", observe_position: bool = False
) -> PolicyTask:
    """Maze navigation (Kheperax-like): an MLP drives a robot; descriptor = final (x, y).

    Features for learned descriptors: the path at 10 evenly spaced steps
    (``extras["trajectory"]``, 20 values in [-1, 1]); ``draw`` shows one robot's path.
    """
    episode_length, hidden = int(episode_length), int(hidden)
    if episode_length < 1 or hidden < 1:
        raise ValueError("episode_length and hidden must be positive")
    env = MazeEnv(map, observe_position)
    policy = MLP((env.observation_size, hidden, env.action_size))

    steps = np.linspace(0, episode_length - 1, min(TRAJECTORY_POINTS, episode_length) + 1)[1:]
    sample_at = np.round(steps).astype(np.int32)

    def score(key: jax.Array, params: Any) -> Evaluation:
        transitions = batch_rollout(env, policy.apply, params, key, episode_length)
        path = transitions.next_state_desc[:, sample_at, :] * 2.0 - 1.0  # (B, points, 2) in [-1, 1]
        trajectory = path.reshape(path.shape[0], -1)
        return Evaluation(episode_return(transitions), final_state_descriptor(transitions),
                          {"transitions": transitions, "trajectory": trajectory})  # fmt: skip

    return PolicyTask(
        name="maze",
        score=score,
        example_genotype=policy.init(rng.key(0)),
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
        teacher=env.teacher,
        features=features_from_extra("trajectory"),
        draw=lambda ax, genotype: _draw(env, policy, episode_length, genotype, ax=ax),
    )


@functools.partial(jax.jit, static_argnames=("env", "policy", "episode_length"))
def _trajectory(env, policy, params, episode_length):
    from qdkit.rollout import rollout

    t = rollout(env, policy.apply, params, jax.random.key(0), episode_length)
    return t.next_state_desc, t.mask


def draw(task: Task, params: Any = None, *, ax=None, trajectories: bool = True):
    """Draw the maze (walls, start, goal) and, for ``params`` (one policy or a batch),
    the robot's path(s); returns the axes."""
    return _draw(task.env, task.policy, task.episode_length, params, ax=ax, trajectories=trajectories)


def _draw(env, policy, episode_length: int, params: Any = None, *, ax=None, trajectories: bool = True):
    import matplotlib.pyplot as plt

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
            path, mask = (np.asarray(a) for a in _trajectory(env, policy, one, episode_length))
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
