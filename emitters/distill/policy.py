"""The distilled policy: DCG's descriptor-conditioned actor as one policy for any
target descriptor (archive distillation), saved and loaded as one ``.npz``."""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from emitters import rl
from qdkit.policy import MLP


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


def distilled_policy(state: Any, task: Any, archive: Any = None) -> DistilledPolicy:
    """The descriptor-conditioned actor of a DCG emitter state (``run_state.emitter_state``)
    for ``task``. Targets are normalised by the bounds of ``archive`` (the run's archive:
    DCG conditions on its bounds, which for learned descriptors are the latent ones),
    or by the task's descriptor bounds when no archive is given."""
    learner = getattr(state, "learner", None)
    if not isinstance(state, rl.GradientState) or learner is None:
        raise ValueError("not the state of a dcg emitter")
    params = learner.actor
    sizes = (int(params[0]["w"].shape[0]), *(int(layer["w"].shape[1]) for layer in params))
    actor = MLP(sizes, task.policy.activation, task.policy.final)
    if sizes[0] != task.policy.sizes[0] + task.descriptor_dim:
        raise ValueError("this actor is not descriptor-conditioned (a pga state?)")
    lower, upper = (task.lower, task.upper) if archive is None else (archive.lower, archive.upper)
    return DistilledPolicy(params, actor, np.asarray(lower, np.float32), np.asarray(upper, np.float32))
