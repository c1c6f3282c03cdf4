"""brax locomotion tasks with our own descriptor wrappers (QDax's fail on current JAX).

- ``ant_omni``: descriptor = final (x, y) of the torso; reward = brax's ant reward
  without its forward term (so any direction is as good; what remains rewards staying
  healthy and penalises effort).
- ``anttrap_omni``: the same, with QD-PG's trap in front of the ant: a U of three
  capsule walls (radius 0.5) open towards the start, its back wall across x = 12 for
  |y| <= 2.5 and its sides along y = +-3 from x = 6.5 to 12.5 (the geometry of the
  DCG-MAP-Elites code). The torso and the lower legs collide with it.
- ``ant_uni``, ``walker2d_uni``, ``halfcheetah_uni``, ``hopper_uni``: descriptor = the
  proportion of steps each foot touches the ground; reward = brax's (forward progress,
  health, effort). brax 0.14's pipelines expose no contact list, so a foot touches
  when the lowest point of its collision capsules is within 1 cm of the ground.

Episode length and brax backend (``spring``, ``positional``, ``generalized``, ``mjx``)
are options. ``preset="paper"`` gives the settings of DCG-MAP-Elites (Faldor et al.,
GECCO 2023; :data:`PAPER`): 250-step episodes for the ants and 1,000 for the walker,
policies of two hidden layers of 128, descriptor bounds [-30, 30]² for the ants, and a
QD offset of the paper's per-step reward offset times the episode length (its code's
``reward_offset``: 3.03 for both ants, 1.413 for the walker), so that QD-scores are on
the scale of the paper's raw sums (the same offset is the critic's lower bound of a
step's reward, ``reward_min``, instead of qdkit's loose -10). Options given explicitly
override the preset's.
Hexapod-Omni, the paper's fourth task, is not in brax and not here.

Needs the ``brax`` extra (``pip install 'qdkit[brax]'``); brax is imported when a task
is built. Rollouts return every transition (``extras["transitions"]``), so PGA and DCG
run on these tasks as on the maze. Brax on a CPU is slow (about 15,000 to 20,000 ant
steps per second on 2 cores with ``spring``, a third of that with the other backends;
``benchmarks/brax_speed.py``): these tasks are for accelerators; tests use a few steps.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
import numpy as np

from qdkit import rng
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
PRESETS = ("qdkit", "paper")
#: Per task: episode length, hidden width, and the per-step reward offset that makes the
#: QD offset (offset x episode length), for ``preset="paper"`` (DCG-MAP-Elites' settings
#: and its code's ``reward_offset`` table).
PAPER = {"ant_omni": (250, 128, 3.03), "anttrap_omni": (250, 128, 3.03), "walker2d_uni": (1000, 128, 1.413)}
#: qdkit's own defaults: episode length and hidden width.
QDKIT = (250, 64)
#: QD-PG's trap, as MJCF capsules on the ground (``fromto`` end points, radius 0.5; the
#: DCG-MAP-Elites code gives each wall's length with its end caps).
TRAP = ("12 -2 0.5 12 2 0.5", "7 3 0.5 12 3 0.5", "7 -3 0.5 12 -3 0.5")
TRAP_RADIUS = 0.5


def _rotate(v: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Rotate ``v`` by the unit quaternion ``q = (w, x, y, z)``."""
    w, u = q[0], q[1:]
    return v + 2.0 * np.cross(u, np.cross(u, v) + w * v)


class BraxEnv:
    """A brax environment whose states carry ``info["state_descriptor"]``: the torso's
    (x, y) (``omni``) or the feet-contact booleans (``uni``)."""

    def __init__(self, name: str, kind: str, backend: str, trap: bool = False):
        try:
            from brax import envs
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("the brax tasks need brax: pip install 'qdkit[brax]'") from e
        if backend not in BACKENDS:
            raise ValueError(f"unknown brax backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
        with _brax_rules():
            self.env = envs.get_environment(name, backend=backend)
            if trap:
                self.env.sys = _with_trap(self.env.sys)
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
            points = (np.array(pts, np.float32), np.array(radii, np.float32))
            self.points.append((link, *jax.device_put(points)))  # jnp.asarray would compile per shape

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


def _with_trap(sys):
    """The ant's system with QD-PG's trap added: the ant's own MJCF with three capsule
    walls on the world body. The torso and the lower legs (the ankle capsules; their
    tips are the feet) collide with the walls through a second collision bit, so nothing
    else about the ant's contacts changes. The backend's changes to the options and the
    actuators (the time step, the gear) are taken over from ``sys``."""
    import xml.etree.ElementTree as ElementTree

    from brax.io import mjcf
    from etils import epath

    root = ElementTree.fromstring((epath.resource_path("brax") / "envs/assets/ant.xml").read_text())
    world = root.find("worldbody")
    for i, ends in enumerate(TRAP):
        ElementTree.SubElement(world, "geom", name=f"trap_{i}", type="capsule", fromto=ends, size=str(TRAP_RADIUS),
                               contype="0", conaffinity="2", rgba="0.8 0.3 0.3 1")  # fmt: skip
    for geom in root.iter("geom"):
        name = geom.get("name", "")
        if name == "torso_geom" or name.endswith("ankle_geom"):
            geom.set("contype", "2")
    trapped = mjcf.loads(ElementTree.tostring(root, encoding="unicode"))
    return trapped.replace(opt=sys.opt, actuator=sys.actuator)


@contextlib.contextmanager
def _brax_rules():
    """brax relies on JAX's default promotion rules; run it under them even when the
    caller chose strict ones."""
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        yield


def _locomotion(name: str, kind: str, episode_length, backend: str, hidden, omni_bound, preset: str,
                trap: bool = False):  # fmt: skip
    task_name = f"{name}trap_{kind}" if trap else f"{name}_{kind}"
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    if preset == "paper" and task_name not in PAPER:
        raise ValueError(f"{task_name} has no preset 'paper' (the DCG-MAP-Elites paper's tasks: {', '.join(PAPER)})")
    length, width, offset = PAPER[task_name] if preset == "paper" else (*QDKIT, None)
    episode_length = length if episode_length is None else episode_length
    hidden = width if hidden is None else hidden
    omni_bound = 30.0 if omni_bound is None else omni_bound
    if not (float(episode_length) == int(episode_length) >= 1 and float(hidden) == int(hidden) >= 1):
        raise ValueError(f"episode_length and hidden must be positive integers; got {episode_length} and {hidden}")
    episode_length, hidden, omni_bound = int(episode_length), int(hidden), float(omni_bound)
    if not omni_bound > 0:
        raise ValueError(f"bound must be positive; got {omni_bound}")
    env = BraxEnv(name, kind, backend, trap=trap)
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
    # the paper's QD offset: its per-step reward offset for the whole episode; ours a loose
    # lower bound (|per-step reward| stays below 10)
    qd_offset = -offset * episode_length if offset is not None else -float(episode_length) * 10.0
    options = {"episode_length": episode_length, "backend": backend, "hidden": hidden}
    if kind == "omni":
        options["bound"] = omni_bound
    if task_name in PAPER:
        options["preset"] = preset
    return PolicyTask(
        name=task_name,
        score=score,
        example_genotype=policy.init(rng.key(0)),
        genotype_lower=None,
        genotype_upper=None,
        lower=np.full(dims, -bound if kind == "omni" else 0.0, np.float32),
        upper=np.full(dims, bound, np.float32),
        qd_offset=qd_offset,
        descriptor_names=names,
        options=options,
        init=policy.init_batch,
        env=env,
        policy=policy,
        episode_length=episode_length,
        reward_min=-offset if offset is not None else -10.0,  # the critic's lower bound of a step's reward
    )


def ant_omni(episode_length: int | None = None, backend: str = "spring", hidden: int | None = None,
             bound: float | None = None, preset: str = "qdkit"):  # fmt: skip
    """brax ant, omnidirectional: descriptor = final (x, y); no forward reward (None: 250 steps, hidden 64, bound 30; preset=paper: the DCG paper's).

    ``preset="paper"``: DCG-MAP-Elites' settings (hidden 128 and the paper's QD
    offset); options given beside it override it."""
    return _locomotion("ant", "omni", episode_length, backend, hidden, bound, preset)


def anttrap_omni(episode_length: int | None = None, backend: str = "spring", hidden: int | None = None,
                 bound: float | None = None, preset: str = "qdkit"):  # fmt: skip
    """brax ant behind QD-PG's trap, omnidirectional: descriptor = final (x, y) (defaults and presets: ant_omni's).

    As ``ant_omni``, with the trap's three walls."""
    return _locomotion("ant", "omni", episode_length, backend, hidden, bound, preset, trap=True)


def ant_uni(episode_length: int = 250, backend: str = "spring", hidden: int = 64):
    """brax ant, forward: descriptor = proportion of steps each of the 4 feet touches the ground."""
    return _locomotion("ant", "uni", episode_length, backend, hidden, 1.0, "qdkit")


def walker2d_uni(episode_length: int | None = None, backend: str = "spring", hidden: int | None = None,
                 preset: str = "qdkit"):  # fmt: skip
    """brax walker2d, forward: descriptor = feet-contact proportions (2 feet) (None: 250 steps, hidden 64; preset=paper: the DCG paper's).

    ``preset="paper"``: DCG-MAP-Elites' settings (1,000 steps, hidden 128 and the
    paper's QD offset); options given beside it override it."""
    return _locomotion("walker2d", "uni", episode_length, backend, hidden, 1.0, preset)


def halfcheetah_uni(episode_length: int = 250, backend: str = "spring", hidden: int = 64):
    """brax halfcheetah, forward: descriptor = feet-contact proportions (2 feet)."""
    return _locomotion("halfcheetah", "uni", episode_length, backend, hidden, 1.0, "qdkit")


def hopper_uni(episode_length: int = 250, backend: str = "spring", hidden: int = 64):
    """brax hopper, forward: descriptor = foot-contact proportion (1 foot)."""
    return _locomotion("hopper", "uni", episode_length, backend, hidden, 1.0, "qdkit")
