"""QDHF's progressive ("online") schedule, as a callback of :func:`qdkit.map_elites.run`.

At each refit point the :class:`Refitter` samples triplets of current elites, asks the
judge, retrains the projection on every judgment collected so far, and returns the run
state with its :class:`feedback.LearnedArchive` re-described under the new parameters
(fresh grid, latent bounds from the elites' new range). The judgment budget is spread
evenly over the refits. The default refit points, at 0, 10, 25 and 50% of the run,
follow the spacing of the pyribs QDHF tutorial's refits (iterations 1, 21, 51, 101).

Two baselines share the machinery: ``method="aurora"`` refits the projection as the
encoder of an autoencoder on the elites' features (no judge), and ``method="random"``
keeps the random initial projection and only re-fits the latent bounds.

Usage::

    refitter = Refitter(judge, iterations=1000, judgments=1000)
    state = refitter.start(map_elites.init(key, task, archive, emitter))  # refit at 0
    state, metrics = map_elites.run(state, task, emitter, 1000, chunk_size=50,
                                    callbacks=[refitter])

Refits happen at the end of the first chunk that reaches each refit point, so choose
``chunk_size`` to divide the refit iterations (:meth:`Refitter.refit_iterations`) for
exact timing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from feedback.judges import CANT_TELL, Judge
from feedback.learned import align_axes, fit_autoencoder, fit_triplets
from feedback.learned_archive import redescribe

METHODS = ("qdhf", "aurora", "random")
DEFAULT_REFITS = (0.0, 0.1, 0.25, 0.5)


class Refitter:
    """Refits a run's learned descriptors on a schedule (see the module docstring).

    Args:
        judge: a :class:`feedback.Judge` (required for ``method="qdhf"``).
        iterations: the run's length, to place the refit fractions.
        judgments: total judgment budget, spread evenly over the refits.
        refits: refit points as fractions of ``iterations`` in ``[0, 1)``.
        method: ``"qdhf"``, ``"aurora"`` or ``"random"``.
        steps, lr, margin: training settings (Adam steps per refit, learning rate,
            triplet margin).
        align: rotate the latent space to the elites' principal axes after each fit
            (:func:`feedback.learned.align_axes`; distances, hence the loss, unchanged).
        pad: latent bounds are the elites' latent range widened by this fraction on
            each side (later discoveries beyond it share the edge cells until the next
            refit).
        seed: seed for triplet sampling and the decoder's initialisation.
    """

    def __init__(
        self,
        judge: Judge | None,
        *,
        iterations: int,
        judgments: int = 1000,
        refits: Sequence[float] = DEFAULT_REFITS,
        method: str = "qdhf",
        steps: int = 500,
        lr: float = 1e-2,
        margin: float = 1.0,
        align: bool = True,
        pad: float = 0.0,
        seed: int = 0,
    ):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
        if method == "qdhf" and judge is None:
            raise ValueError("method 'qdhf' needs a judge")
        refits = sorted(float(f) for f in refits)
        if not refits or refits[0] < 0 or refits[-1] >= 1:
            raise ValueError(f"refits must be fractions in [0, 1); got {refits}")
        if int(judgments) < len(refits) and method == "qdhf":
            raise ValueError(f"judgments ({judgments}) must be at least the number of refits ({len(refits)})")
        self.judge, self.method = judge, method
        self.iterations, self.judgments = int(iterations), int(judgments)
        self.fractions = refits
        self.steps, self.lr, self.margin = int(steps), float(lr), float(margin)
        self.align, self.pad = bool(align), float(pad)
        self.rng = np.random.default_rng(seed)
        self.seed = seed
        self.done = 0  # refits performed
        self.data: dict[str, list[np.ndarray]] = {"anchor": [], "a": [], "b": [], "choice": []}
        self.decoder = None
        self.log: list[dict[str, Any]] = []

    def refit_iterations(self) -> list[int]:
        return [int(round(f * self.iterations)) for f in self.fractions]

    # ------------------------------------------------------------------ hooks
    def start(self, state):
        """Refit at iteration 0 (if scheduled) on the initial elites; returns the state."""
        if self.done < len(self.fractions) and self.refit_iterations()[self.done] <= int(state.iteration):
            return self.refit(state)
        return state

    def __call__(self, state, metrics):
        due = self.refit_iterations()
        iteration = int(state.iteration)
        if self.done < len(due) and iteration >= due[self.done]:
            while self.done < len(due) - 1 and due[self.done + 1] <= iteration:
                self.done += 1  # several points fell inside one chunk: refit once
            return self.refit(state)
        return None

    # ------------------------------------------------------------------ refit
    def refit(self, state):
        archive = state.archive
        if not archive.learned:
            raise ValueError("the Refitter refits an archive over learned descriptors (feedback.LearnedArchive)")
        projection = archive.indexer.projection
        occupied = np.nonzero(np.asarray(archive.occupied))[0]
        if occupied.size < 3:
            self.done += 1
            return state
        features = jnp.asarray(np.asarray(archive.features)[occupied])
        params, loss = archive.indexer.params, float("nan")
        asked = 0
        if self.method == "qdhf":
            count = self.judgments // len(self.fractions) + (
                1 if self.done < self.judgments % len(self.fractions) else 0
            )
            sampler = self.rng.bit_generator.state
            picks = np.stack([self.rng.choice(occupied.size, 3, replace=False) for _ in range(count)])
            cells = occupied[picks]
            items = [jax.tree.map(lambda g, c=cells[:, i]: g[c], archive.genotypes) for i in range(3)]
            try:
                choice = np.asarray(self.judge(*items), np.int8)
            except BaseException:  # e.g. a person quit: ask the same triplets next time
                self.rng.bit_generator.state = sampler
                raise
            asked = count
            for name, i in (("anchor", 0), ("a", 1), ("b", 2)):
                self.data[name].append(np.asarray(archive.features)[cells[:, i]])
            self.data["choice"].append(choice)
            stacked = {k: jnp.asarray(np.concatenate(v)) for k, v in self.data.items()}
            if np.any(stacked["choice"] != CANT_TELL):
                params, loss = fit_triplets(
                    projection, params, stacked["anchor"], stacked["a"], stacked["b"], stacked["choice"],
                    steps=self.steps, lr=self.lr, margin=self.margin,
                )  # fmt: skip
        elif self.method == "aurora":
            if self.decoder is None:
                self.decoder = projection.decoder().init(jax.random.key(self.seed + 7919))
            params, self.decoder, loss = fit_autoencoder(
                projection, params, self.decoder, features, steps=self.steps, lr=self.lr
            )
        if self.align:
            params = align_axes(projection, params, features)
        before = len(archive)
        new_archive = redescribe(archive, params, pad=self.pad)
        self.log.append(
            {
                "iteration": int(state.iteration),
                "judgments": asked,
                "loss": float(loss),
                "elites_before": before,
                "elites_after": len(new_archive),
            }
        )
        self.done += 1
        return state.replace(archive=new_archive)

    def judgments_so_far(self) -> int:
        return int(sum(len(c) for c in self.data["choice"]))

    # ------------------------------------------------------------ persistence
    def state_arrays(self) -> dict[str, np.ndarray]:
        """The refitter's host state as named arrays: the judgments collected so far, the
        refit count and the random streams (triplet sampling; a simulated judge's
        noise). :func:`qdkit.rundir` writes them into each checkpoint, so the run state
        and the refits it reflects are committed together."""
        arrays = {k: np.concatenate(v) if v else np.zeros((0,)) for k, v in self.data.items()}
        judge_rng = getattr(self.judge, "rng", None)  # a simulated judge's noise stream
        streams = {
            "sampler": self.rng.bit_generator.state,
            "judge": None if judge_rng is None else judge_rng.bit_generator.state,
        }
        return {"done": np.asarray(self.done), "rng": np.asarray(json.dumps(streams)), **arrays}

    def restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Set the refitter's host state from :meth:`state_arrays`' output."""
        self.done = int(arrays["done"])
        streams = json.loads(str(arrays["rng"]))
        self.rng.bit_generator.state = streams["sampler"]
        if streams["judge"] is not None and getattr(self.judge, "rng", None) is not None:
            self.judge.rng.bit_generator.state = streams["judge"]
        self.data = {k: ([arrays[k]] if arrays[k].shape[0] else []) for k in ("anchor", "a", "b", "choice")}

    def save(self, path: str) -> None:
        """Write :meth:`state_arrays` to ``path`` atomically, so a resumed run retrains on
        every answer it has paid for and continues as if uninterrupted."""
        tmp = f"{path}.tmp.npz"
        np.savez(tmp, **self.state_arrays())
        os.replace(tmp, path)

    def load(self, path: str) -> None:
        """Restore what :meth:`save` wrote; raises ``ValueError`` naming a corrupt file."""
        try:
            with np.load(path) as f:
                self.restore({k: f[k] for k in f.files})
        except (OSError, KeyError, ValueError, EOFError) as e:
            raise ValueError(f"{path}: the judgments file is unreadable or corrupt ({e})") from e
