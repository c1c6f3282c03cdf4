"""Every combination runs or is refused up front: {grid, CVT} x {task, learned, aurora,
random descriptors} x every emitter `qdkit emitters` lists x every task `qdkit tasks`
lists, through the library at tiny sizes.

A refusal must come from :func:`qdkit.registry.check_combination` or the emitter's
factory, compile nothing, and be one line naming the combination and the reason. Every
other combination runs: initialised, refitted where its descriptors are learned, and one
iteration of the compiled loop (the host loop for text, against the scripted endpoint).
The brax tasks are checked up front only: compiling a brax rollout takes about a
minute per emitter on this machine's 2 cores (they share the maze's policy-task code
path, and ``tests/test_locomotion.py`` runs them)."""

from __future__ import annotations

import itertools

import jax
import pytest

import feedback
from qdkit import map_elites, registry, tasks

BRAX = ("ant_omni", "anttrap_omni", "ant_uni", "walker2d_uni", "halfcheetah_uni", "hopper_uni")
TINY_TASKS = {
    "arm": {"dof": 4}, "sphere": {"dims": 4}, "rastrigin": {"dims": 4}, "sphere_proj": {"dims": 4},
    "rastrigin_proj": {"dims": 4}, "maze": {"episode_length": 6, "hidden": 4}, "text": {"domain": "opinions"},
    **{name: {"episode_length": 4, "hidden": 8} for name in BRAX},
}  # fmt: skip
TD3 = {"critic_hidden": (8,), "critic_steps": 2, "train_batch_size": 8, "pg_steps": 1, "pg_batch_size": 8,
       "buffer_size": 2000}  # fmt: skip
TINY_EMITTERS = {
    "cma-me": {"num_emitters": 2}, "cma-mae": {"num_emitters": 2}, "cma-mega": {"num_emitters": 2},
    "cma-maega": {"num_emitters": 2}, "pga": TD3, "dcg": {**TD3, "num_injected": 1},
}  # fmt: skip
BATCH = 8


def test_the_matrix_covers_every_task_and_emitter():
    assert sorted(TINY_TASKS) == tasks.names()
    assert set(TINY_EMITTERS) <= set(registry.emitter_names())


class Compilations:
    """Counts XLA compilations (JAX's monitoring events) while active."""

    def __init__(self):
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            self.count += 1


COMPILATIONS = Compilations()


def config_for(task_name, emitter, archive, descriptors, base_url):
    return {
        "task": task_name, "task_options": TINY_TASKS[task_name], "emitter": emitter,
        "emitter_options": TINY_EMITTERS.get(emitter, {}), "batch_size": BATCH, "archive": archive,
        "shape": None, "cells": 12, "descriptors": descriptors, "seed": 0, "iterations": 2, "judgments": 6,
        "base_url": base_url, "model": "m", "concurrency": 1,
    }  # fmt: skip


@pytest.fixture(scope="module")
def quick_compiles():
    """Hundreds of tiny programs: compiled with most XLA optimisations off (they run for
    one iteration), and dropped after each task."""
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", False)


def run_tiny(config, task, emitter, centroids):
    """Through the library: the archive and refit schedule the registry builds for
    ``config``, then ``init``, a refit where the descriptors are learned, and one
    iteration. ``task`` and ``emitter`` are built once per task and emitter, so the
    runs over learned, AURORA and random descriptors share their compiled programs."""
    shape = None if task.edges is not None else [4] * (task.descriptor_dim if config["descriptors"] == "task" else 2)
    archive = registry.build_archive({**config, "shape": shape}, task, centroids.get(config["archive"]))
    if archive.kind == "cvt":
        centroids.setdefault(config["archive"], registry.cvt_centroids(archive))
    refitter = registry.build_refitter({**config, "refit_over": 2})
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    if refitter is not None:
        state = refitter.start(state)
        assert refitter.done == 1
    state, metrics = map_elites.run(state, task, emitter, 1, callbacks=[refitter] if refitter else ())
    assert int(state.iteration) == 1 and len(metrics["qd_score"]) == 1
    assert len(state.archive) >= 1 and state.archive.learned == (config["descriptors"] != "task")
    if config["emitter"] in ("cma-mae", "cma-maega"):
        assert state.archive.soft  # CMA-MAE keeps its threshold archive, learned descriptors or not
    return state


@pytest.mark.parametrize("task_name", sorted(TINY_TASKS))
def test_every_combination_runs_or_is_refused_up_front(task_name, scripted, quick_compiles):
    base_url = f"http://127.0.0.1:{scripted.server_port}/v1"
    task = registry.build_task(config_for(task_name, "iso-line", "grid", "task", base_url))
    outcomes, built, centroids = {}, {}, {}
    for emitter, archive, descriptors in itertools.product(
        registry.emitter_names(), registry.ARCHIVES, registry.DESCRIPTORS
    ):
        config = config_for(task_name, emitter, archive, descriptors, base_url)
        before = COMPILATIONS.count
        try:
            registry.check_combination(task, emitter, archive=archive, descriptors=descriptors,
                                       options=config["emitter_options"])  # fmt: skip
            if emitter not in built:
                built[emitter] = registry.build_emitter(emitter, task, BATCH, **config["emitter_options"])
        except ValueError as refusal:
            message = str(refusal)
            assert COMPILATIONS.count == before, f"{emitter} x {archive} x {descriptors}: compiled before refusing"
            assert "\n" not in message and len(message) < 400, message
            assert emitter in message and task_name in message, message
            outcomes[emitter, archive, descriptors] = "refused"
            continue
        outcomes[emitter, archive, descriptors] = "runs"
        if task_name not in BRAX:
            key = "learned" if descriptors != "task" else "task"
            run_tiny(config, task, built[emitter], centroids.setdefault(key, {}))
    jax.clear_caches()  # hundreds of programs: XLA's CPU compiler crashed with all of them alive
    runs = sorted(k for k, v in outcomes.items() if v == "runs")
    assert len(outcomes) == len(registry.emitter_names()) * 2 * 4
    # what each kind of task must accept
    if task_name == "arm":  # everything but the text, policy and (with learned descriptors) gradient emitters
        assert ("cma-mega", "cvt", "task") in runs and ("cma-mae", "cvt", "learned") in runs
        assert ("cma-mega", "grid", "learned") not in runs and ("dcg", "grid", "task") not in runs
    if task_name == "maze":
        assert ("dcg", "cvt", "learned") in runs and ("pga", "grid", "aurora") in runs
        assert ("cma-mega", "grid", "task") not in runs
    if task_name == "text":
        assert runs == [("lmx", "cvt", "task"), ("lmx", "grid", "task")]
    if task_name in ("sphere", "rastrigin", "sphere_proj", "rastrigin_proj") + BRAX:
        assert all(d == "task" for _, _, d in runs)  # no features to learn from
    if task_name in BRAX:
        assert {e for e, _, _ in runs} == {"iso-line", "gaussian", "iso-line+gaussian", "pga", "dcg", "cma-me",
                                           "cma-mae"}  # fmt: skip


def test_dcg_on_learned_descriptors_refuses_the_state_similarity_up_front():
    task = tasks.get("maze", episode_length=6, hidden=4)
    for options in ({"similarity_on": "state"}, {"return_bound": True}):
        with pytest.raises(ValueError, match="dcg on maze with learned descriptors"):
            registry.check_combination(task, "dcg", descriptors="learned", options=options)
    # the library refuses it too, when the emitter meets the archive (before anything is compiled)
    import emitters

    archive = registry.build_archive({"descriptors": "learned", "archive": "grid", "shape": [4, 4]}, task)
    emitter = emitters.dcg(task, 8, similarity_on="state", config=emitters.TD3Config(critic_hidden=(8,)))
    key = jax.random.key(0)  # (its own compile is not the library's)
    before = COMPILATIONS.count
    with pytest.raises(ValueError, match="learned descriptors"):
        map_elites.init(key, task, archive, emitter)
    assert COMPILATIONS.count == before
    assert isinstance(archive.indexer.projection, feedback.Projection)
