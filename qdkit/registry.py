"""The composition root: names -> factories for emitters, archives, descriptor sources
and judges, and the check that a combination can run.

This is the only module of ``qdkit`` that imports ``emitters`` and ``feedback`` (the CLI
uses it). A run is fully described by a plain JSON-able config dict; :func:`build`
turns one into ``(task, archive, emitter)``, after :func:`check_combination` has refused,
in one line and before anything is compiled, a combination that cannot work.

An emitter's options and their defaults are read off its factory's signature (and, for
the gradient emitters, off :class:`emitters.TD3Config`): each default is written once,
where the emitter is defined. A preset (CMA-MAE over CMA-ME's factory) states only what
it changes.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

import emitters
import feedback
from qdkit import rng, tasks
from qdkit.archive import Archive
from qdkit.cvt_archive import CVTArchive
from qdkit.grid_archive import GridArchive
from qdkit.tasks import Task

# ------------------------------------------------------------------------ emitters


class EmitterSpec(NamedTuple):
    """A named emitter of the command line.

    Attributes:
        doc: one-line description.
        build: ``build(task, batch_size, **options) -> Emitter``.
        options: the options and their defaults (from the factory's signature).
        needs: what the task must offer: ``"text"`` (text genotypes), ``"arrays"``
            (array genotypes), ``"policy"`` (rollouts), ``"gradients"``.
        learning_rate: the archive learning rate a run uses unless it sets one
            (CMA-MAE's 0.01; 1 is the usual archive).
    """

    doc: str
    build: Callable[..., emitters.Emitter]
    options: dict[str, Any]
    needs: frozenset[str]
    learning_rate: float = 1.0


def _options(factory: Callable, *, skip: tuple[str, ...] = (), **preset: Any) -> dict[str, Any]:
    """The keyword options of ``factory`` with their defaults, less ``skip`` (wiring),
    with ``preset`` overriding some defaults."""
    params = inspect.signature(factory).parameters.values()
    found = {p.name: p.default for p in params if p.default is not p.empty and p.name not in skip}
    unknown = set(preset) - set(found)
    if unknown:  # pragma: no cover - a programming error in this module
        raise TypeError(f"{factory.__name__} has no option {sorted(unknown)}")
    return {**found, **preset}


#: TD3 settings as command-line options: :class:`emitters.TD3Config`'s fields, its
#: ``batch_size`` named ``train_batch_size`` (``--batch-size`` is the run's).
TD3_NAMES = {name: ("train_batch_size" if name == "batch_size" else name) for name in emitters.TD3Config._fields}
TD3_OPTIONS = {TD3_NAMES[k]: v for k, v in emitters.TD3Config._field_defaults.items()}
#: The emitters whose options include TD3's.
GRADIENT_EMITTERS = ("pga", "dcg")
#: The TD3 defaults a run directory records (its config's ``td3_defaults``), so that it
#: resumes with the settings it started with after a default changes: those that have
#: changed once (see :class:`emitters.TD3Config`).
TD3_RECORDED = ("train_batch_size", "pg_lr")
#: What they were in qdkit 0.4.0 and earlier, whose run directories did not record
#: them: such a run resumes with these (:func:`qdkit.rundir.read_config`).
TD3_BEFORE_RECORDING = {"train_batch_size": 256, "pg_lr": 1e-3}


def record_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the defaults a new run must keep to resume as it started: a
    gradient emitter's :data:`TD3_RECORDED` as they are now (unchanged when the config
    already records them)."""
    if config.get("emitter") not in GRADIENT_EMITTERS or "td3_defaults" in config:
        return config
    return {**config, "td3_defaults": {k: TD3_OPTIONS[k] for k in TD3_RECORDED}}


def emitter_options_of(config: dict[str, Any]) -> dict[str, Any]:
    """A run config's emitter options: the ones given, over the defaults it recorded."""
    options = dict(config.get("emitter_options") or {})
    if config.get("emitter") in GRADIENT_EMITTERS:
        options = {**(config.get("td3_defaults") or {}), **options}
    return options


def _bounds(task: Task) -> dict[str, Any]:
    return {"lower": task.genotype_lower, "upper": task.genotype_upper}


def _per_instance(name: str, batch_size: int, num_emitters: int) -> int:
    num_emitters = int(num_emitters)
    if num_emitters < 1:
        raise ValueError(f"num_emitters must be positive; got {num_emitters}")
    if batch_size % num_emitters or batch_size // num_emitters < 2:
        per = max(batch_size // num_emitters, 2)
        raise ValueError(
            f"{name} splits each batch between num_emitters={num_emitters} instances, so batch_size must be a "
            f"multiple of {num_emitters} (at least {2 * num_emitters}); got {batch_size}. Use e.g. batch_size "
            f"{num_emitters * per} ({num_emitters} x {per}) or another num_emitters"
        )
    return batch_size // num_emitters


def _iso_line(task, batch_size, **options):
    return emitters.iso_line(batch_size, **options, **_bounds(task))


def _gaussian(task, batch_size, **options):
    return emitters.gaussian(batch_size, **options, **_bounds(task))


def _iso_line_gaussian(task, batch_size, *, iso_sigma, line_sigma, sigma, noise):
    if batch_size < 2:
        raise ValueError("the iso-line+gaussian mix needs batch_size >= 2")
    half = batch_size // 2
    return emitters.mix(
        emitters.iso_line(half, iso_sigma, line_sigma, noise=noise, **_bounds(task)),
        emitters.gaussian(batch_size - half, sigma, noise=noise, **_bounds(task)),
    )


def _evolution_strategy(name):
    def build(task, batch_size, *, num_emitters, **options):
        population = _per_instance(name, batch_size, num_emitters)
        return emitters.evolution_strategy(
            task.example_genotype, population, num_emitters=num_emitters, **options, **_bounds(task)
        )

    return build


def _cma_mega(name):
    def build(task, batch_size, *, num_emitters, **options):
        per = _per_instance(name, batch_size, num_emitters)  # theta + (per - 1) branches per instance
        return emitters.cma_mega(
            task.jacobian, task.example_genotype, per - 1, num_emitters=num_emitters, **options, **_bounds(task)
        )

    return build


def _omg_mega(task, batch_size, **options):
    return emitters.omg_mega(task.jacobian, task.example_genotype, batch_size, **options, **_bounds(task))


def _lmx(task, batch_size, *, max_tokens, **options):
    domain = task.domain
    return emitters.lmx(
        task.client, item=domain.item, topic=domain.topic, seeds=domain.seeds, batch_size=batch_size,
        max_bytes=task.max_bytes, max_tokens=domain.max_tokens if max_tokens is None else max_tokens, **options,
    )  # fmt: skip


def _policy_gradient(factory):
    def build(task, batch_size, **options):
        fields = {field: options.pop(cli) for field, cli in TD3_NAMES.items() if cli in options}
        if "critic_hidden" in fields:
            fields["critic_hidden"] = tuple(int(w) for w in fields["critic_hidden"])
        return factory(task, batch_size, config=emitters.TD3Config(**fields), **options)

    return build


_ES_SKIP = ("example_genotype", "population", "x0", "lower", "upper")
_MEGA_SKIP = ("jacobian", *_ES_SKIP)
_MAE = {"ranker": "imp", "selection": "mu", "restart": "basic"}  # CMA-MAE's choices over CMA-ME's

EMITTERS: dict[str, EmitterSpec] = {
    "iso-line": EmitterSpec(
        "Iso+LineDD: Gaussian noise plus a step along the line between two elites.",
        _iso_line, _options(emitters.iso_line, skip=("lower", "upper")), frozenset({"arrays"}),
    ),
    "gaussian": EmitterSpec(
        "Gaussian mutation of uniformly sampled elites.",
        _gaussian, _options(emitters.gaussian, skip=("lower", "upper")), frozenset({"arrays"}),
    ),
    "iso-line+gaussian": EmitterSpec(
        "Half the batch Iso+LineDD, half Gaussian mutation (emitters.mix).",
        _iso_line_gaussian,
        {**_options(emitters.iso_line, skip=("lower", "upper")), **_options(emitters.gaussian, skip=("lower", "upper", "noise"))},
        frozenset({"arrays"}),
    ),
    "cma-me": EmitterSpec(
        "CMA-ME: CMA-ES instances ranked by archive improvement (batch = num_emitters x population).",
        _evolution_strategy("cma-me"), _options(emitters.evolution_strategy, skip=_ES_SKIP), frozenset({"arrays"}),
    ),
    "cma-mae": EmitterSpec(
        "CMA-MAE: CMA-ME ranked by improvement over a threshold archive (learning_rate 0.01 by default).",
        _evolution_strategy("cma-mae"), _options(emitters.evolution_strategy, skip=_ES_SKIP, **_MAE),
        frozenset({"arrays"}), learning_rate=0.01,
    ),
    "cma-mega": EmitterSpec(
        "CMA-MEGA: CMA-ES over gradient coefficients (differentiable tasks; batch = num_emitters x (1 + branches)).",
        _cma_mega("cma-mega"), _options(emitters.cma_mega, skip=_MEGA_SKIP), frozenset({"arrays", "gradients"}),
    ),
    "cma-maega": EmitterSpec(
        "CMA-MAEGA: CMA-MEGA ranked by improvement over a threshold archive (learning_rate 0.01 by default).",
        _cma_mega("cma-maega"), _options(emitters.cma_mega, skip=_MEGA_SKIP, **_MAE),
        frozenset({"arrays", "gradients"}), learning_rate=0.01,
    ),
    "omg-mega": EmitterSpec(
        "OMG-MEGA: elites branch along random gradient combinations (differentiable tasks).",
        _omg_mega, _options(emitters.omg_mega, skip=("jacobian", "example_genotype", "batch_size", "lower", "upper")),
        frozenset({"arrays", "gradients"}),
    ),
    "lmx": EmitterSpec(
        "LMX: a language model writes new texts from few-shot elites (text tasks; style fewshot/instruct/fixed).",
        _lmx,
        _options(emitters.lmx, skip=("client", "item", "topic", "seeds", "batch_size", "max_bytes"), max_tokens=None),
        frozenset({"text"}),
    ),
    "pga": EmitterSpec(
        "PGA-ME: half Iso+LineDD, half policy-gradient steps on a TD3 critic, plus the greedy actor (policy tasks).",
        _policy_gradient(emitters.pga), {**_options(emitters.pga, skip=("config",)), **TD3_OPTIONS},
        frozenset({"arrays", "policy"}),
    ),
    "dcg": EmitterSpec(
        "DCG-ME: policy gradients on a descriptor-conditioned critic; num_injected > 0 adds DCRL's actors (policy tasks).",
        _policy_gradient(emitters.dcg), {**_options(emitters.dcg, skip=("config",)), **TD3_OPTIONS},
        frozenset({"arrays", "policy"}),
    ),
}  # fmt: skip

ARCHIVES = ("grid", "cvt")

#: Descriptor sources: the task's own, or learned from its features (QDHF with a
#: judge; the AURORA and random-projection baselines without one).
DESCRIPTORS = {"task": None, "learned": "qdhf", "aurora": "aurora", "random": "random"}
JUDGES = ("simulated", "human", "llm", "embedding")
LLM_CACHE = "llm-cache.sqlite"
HUMAN_JUDGMENTS = "judgments-human.jsonl"
#: Files of a run directory that hold language-model replies and usage.
LLM_USAGE = "llm-usage.json"

#: Raised when a person stops answering (re-exported so run code needs only the registry).
JudgingStopped = feedback.JudgingStopped

#: The largest CMA-ES state (covariance, its eigenvectors and inverse square root, for
#: every instance) the CMA emitters are allowed to allocate.
CMA_MEMORY_LIMIT = 1 << 30


def emitter_names() -> list[str]:
    return sorted(EMITTERS)


def _check_name(kind: str, name: str, valid: list[str]) -> None:
    if name not in valid:
        raise KeyError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}")


def describe_emitter(name: str) -> str:
    _check_name("emitter", name, emitter_names())
    return EMITTERS[name].doc


def emitter_options(name: str) -> dict[str, Any]:
    _check_name("emitter", name, emitter_names())
    return dict(EMITTERS[name].options)


def _coerce(emitter: str, key: str, default: Any, value: Any) -> Any:
    """An option value of the kind its default has (``greedy=maybe`` is not true;
    ``critic_hidden=64,64`` is a tuple of widths)."""
    if isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"emitter {emitter!r}: option {key} must be true or false; got {value!r}")
        return bool(value)
    if isinstance(default, tuple):
        parts = value if isinstance(value, (list, tuple)) else str(value).replace("x", ",").split(",")
        try:
            widths = tuple(int(p) for p in parts)
        except (TypeError, ValueError):
            widths = ()
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"emitter {emitter!r}: option {key} must be positive widths like 64,64; got {value!r}")
        return widths
    if isinstance(default, (int, float)) and isinstance(value, (str, bool)):
        raise ValueError(f"emitter {emitter!r}: option {key} must be a number; got {value!r}")
    return value


def build_emitter(name: str, task: Task, batch_size: int, **options: Any) -> emitters.Emitter:
    """Build a named emitter for ``task`` (genotype bounds taken from the task)."""
    valid = emitter_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"emitter {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(valid) or 'none'}"
        )
    options = {k: _coerce(name, k, valid[k], v) for k, v in options.items()}
    reason = _emitter_reason(name, task, {**valid, **options})
    if reason:
        raise ValueError(f"emitter {name!r} on task {task.name!r}: {reason}")
    return EMITTERS[name].build(task, int(batch_size), **{**valid, **options})


# ------------------------------------------------------------------ combinations


def _emitter_reason(name: str, task: Task, options: dict[str, Any]) -> str | None:
    """Why emitter ``name`` cannot vary ``task``'s genotypes, or ``None``."""
    needs = EMITTERS[name].needs
    is_text = getattr(task, "domain", None) is not None
    if is_text and "text" not in needs:
        return "the text task's genotypes are texts; only lmx writes them"
    if "text" in needs and not is_text:
        return "lmx writes text; it needs --task text"
    if "policy" in needs and getattr(task, "policy", None) is None:
        return f"{name} learns from rollouts; it needs a policy task (maze, ant_omni, walker2d_uni, ...)"
    if "gradients" in needs and not task.differentiable:
        return f"{name} needs gradients of the fitness and descriptors, and task {task.name!r} has none"
    if name.startswith("cma-"):
        n = sum(int(np.prod(np.shape(g))) for g in jax.tree.leaves(task.example_genotype))
        size = 3 * n * n * 4 * int(options["num_emitters"]) if name in ("cma-me", "cma-mae") else 0
        if size > CMA_MEMORY_LIMIT:
            return (
                f"{name} keeps three {n} x {n} matrices per CMA-ES instance ({options['num_emitters']} instances: "
                f"{size / 2**30:.1f} GiB) for this task's {n} genes; use it on genotypes of up to about "
                f"{int(math.sqrt(CMA_MEMORY_LIMIT / (12 * int(options['num_emitters'])))):,} genes (e.g. a smaller policy)"
            )
    return None


def check_combination(task: Task, emitter: str, *, archive: str = "grid", descriptors: str = "task",
                      options: dict[str, Any] | None = None) -> None:  # fmt: skip
    """Refuse, in one line naming the combination and the reason, an emitter, archive
    and descriptor source that cannot run on ``task``; nothing is compiled.

    Raises:
        KeyError: an unknown emitter, archive or descriptor source (the valid ones listed).
        ValueError: a combination that cannot work, with the reason.
    """
    _check_name("emitter", emitter, emitter_names())
    _check_name("archive", archive, list(ARCHIVES))
    _check_name("descriptor source", descriptors, list(DESCRIPTORS))
    options = {**EMITTERS[emitter].options, **(options or {})}
    reason = _emitter_reason(emitter, task, options)
    if reason is None and descriptors != "task":
        if task.features is None:
            reason = (
                f"task {task.name!r} has no features to learn descriptors from (Task.features); tasks with "
                "features: arm, maze"
            )
        elif "gradients" in EMITTERS[emitter].needs:
            reason = f"{emitter} follows the gradients of the task's own descriptors; learned descriptors have none"
        elif emitter == "dcg" and (options.get("similarity_on") == "state" or options.get("return_bound")):
            reason = (
                "similarity_on=state and return_bound compare each step's state with the target in the task's own "
                "descriptor space, which learned descriptors are not"
            )
    if reason:
        raise ValueError(f"{emitter} on {task.name} with {descriptors} descriptors ({archive} archive): {reason}")


# ----------------------------------------------------------------------- archives


def archive_thresholds(config: dict[str, Any], task: Task) -> tuple[float, float]:
    """``(learning_rate, threshold_min)`` of a run: the config's, else the emitter's
    default (CMA-MAE: 0.01), with ``threshold_min`` defaulting to the task's
    ``qd_offset`` for a threshold archive and ``-inf`` otherwise."""
    lr = config.get("learning_rate")
    spec = EMITTERS.get(config.get("emitter", ""))
    lr = (spec.learning_rate if spec else 1.0) if lr is None else float(lr)
    tmin = config.get("threshold_min")
    if tmin is None:
        tmin = -np.inf if lr == 1.0 else float(task.qd_offset)
    return lr, float(tmin)


def cvt_centroids(archive: Archive) -> np.ndarray | None:
    """The centroids that rebuild a CVT archive's cells (for a learned CVT, its unit-box
    base's), or ``None`` for a grid."""
    indexer = archive.indexer.base if archive.learned else archive.indexer
    centroids = getattr(indexer, "centroids", None)
    return None if centroids is None else np.asarray(centroids)


def build_archive(config: dict[str, Any], task: Task, centroids: np.ndarray | None = None) -> Archive:
    """An empty archive as the config says: ``archive`` grid (``shape``) or cvt
    (``cells``; centroids from ``centroids`` when given, else k-means seeded by
    ``seed``), over the task's descriptors or learned ones (``descriptors``: a 2-D
    latent, a random linear projection seeded by ``seed``), with thresholds from
    :func:`archive_thresholds` and the ``replacement`` rule."""
    kind = config.get("archive", "grid")
    _check_name("archive", kind, list(ARCHIVES))
    source = config.get("descriptors") or "task"
    _check_name("descriptor source", source, list(DESCRIPTORS))
    lr, tmin = archive_thresholds(config, task)
    soft = {"learning_rate": lr, "threshold_min": tmin, "replacement": config.get("replacement") or "threshold"}
    seed = int(config.get("seed", 0))

    def cvt() -> dict[str, Any]:  # a key only where a CVT needs one: an eager key costs a compile at start-up
        return {
            "cells": int(config.get("cells") or 1024),
            "centroids": centroids,
            "key": rng.key(seed + 1_000_003),
        }

    if source != "task":
        shape = config.get("shape")
        dims = len(shape) if shape and kind == "grid" else 2
        projection = feedback.Projection(task.feature_dim, dims)
        layout = {"shape": tuple(shape or (32,) * dims)} if kind == "grid" else cvt()
        return feedback.LearnedArchive.create(
            projection=projection, params=projection.init(rng.key(seed + 7_000_003)),
            example_genotype=task.example_genotype, **layout, **soft,
        )  # fmt: skip
    if kind == "grid" and task.edges is not None and not config.get("shape"):
        return GridArchive.create(edges=task.edges, example_genotype=task.example_genotype, **soft)
    if kind == "grid":
        shape = config.get("shape") or [32] * task.descriptor_dim
        if len(shape) != task.descriptor_dim:
            raise ValueError(
                f"grid shape {tuple(shape)} has {len(shape)} dimensions but task "
                f"{task.name!r} has {task.descriptor_dim} descriptors"
            )
        return GridArchive.create(
            shape=tuple(shape), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype, **soft
        )
    return CVTArchive.create(
        lower=task.lower, upper=task.upper, example_genotype=task.example_genotype, **cvt(), **soft
    )


# ------------------------------------------------------------------- model client


def needs_model(config: dict[str, Any]) -> bool:
    """Whether a run calls a language model (text tasks, an LLM judge)."""
    return config.get("task") == "text" or (
        (config.get("descriptors") or "task") == "learned" and config.get("judge") in ("llm", "embedding")
    )


def needs_embeddings(config: dict[str, Any]) -> bool:
    """Whether a run asks a model endpoint for embeddings (the embedding judge)."""
    return (config.get("descriptors") or "task") == "learned" and config.get("judge") == "embedding"


def build_client(config: dict[str, Any], directory: str | None = None) -> feedback.ModelClient:
    """The run's model client: endpoint and model from the config (else the
    ``OPENAI_*`` environment), with its cache and usage file in ``directory``, its
    concurrency and its request and token budgets. A run on the bundled local server
    (``local_model``) keys its cache by the model alone, as the port changes."""
    local = bool(config.get("local_model"))
    model = config.get("model") or (feedback.local_server.MODEL if local else None)
    return feedback.ModelClient(
        base_url=config.get("base_url"), model=model,
        cache_path=os.path.join(directory, LLM_CACHE) if directory else None,
        usage_path=os.path.join(directory, LLM_USAGE) if directory else None,
        cache_scope="local" if local else None,
        concurrency=int(config.get("concurrency") or 4), timeout=float(config.get("model_timeout") or 60.0),
        max_requests=config.get("max_requests"), max_tokens=config.get("max_tokens"),
    )  # fmt: skip


# -------------------------------------------------------------------------- a run


def build_task(config: dict[str, Any], directory: str | None = None) -> Task:
    """The run's task (a text task gets the run's model client, keeping its cache and
    usage in ``directory``, and the domain file copied there)."""
    options = dict(config.get("task_options", {}))
    if config["task"] == "text":
        if config.get("domain_copy") and directory:  # a domain file, copied into the run directory
            options["domain"] = os.path.join(directory, config["domain_copy"])
        return tasks.get("text", **options, client=build_client(config, directory))
    return tasks.get(config["task"], **options)


def check(config: dict[str, Any]) -> Task:
    """Refuse a run config that cannot work -- unknown names, bad option values, a
    combination that cannot run, a grid of the wrong dimension -- before anything is
    written or compiled; returns the task it built to check."""
    task = build_task(config)
    check_combination(
        task, config["emitter"], archive=config.get("archive", "grid"), descriptors=config.get("descriptors") or "task",
        options=emitter_options_of(config),
    )  # fmt: skip
    emitter = build_emitter(config["emitter"], task, int(config["batch_size"]), **emitter_options_of(config))
    check_processes(task, emitter, config.get("descriptors") or "task")
    seeds = int(config.get("seeds") or 1)
    if seeds > 1:
        if (config.get("descriptors") or "task") != "task":
            raise ValueError(
                f"--descriptors {config['descriptors']} refits on the host between chunks: one seed per run "
                "(run the seeds one after another)"
            )
        if jax.process_count() > 1:
            raise ValueError("several seeds run in one process: leave out the process options, or --seeds")
        from qdkit import map_elites

        map_elites.check_seeds(task, emitter, None, seeds)
    shape = config.get("shape")
    if shape and config.get("archive", "grid") == "grid" and (config.get("descriptors") or "task") == "task":
        if len(shape) != task.descriptor_dim:
            raise ValueError(
                f"grid shape {tuple(shape)} has {len(shape)} dimensions but task {task.name!r} has "
                f"{task.descriptor_dim} descriptors"
            )
    if config.get("replacement", "threshold") not in ("threshold", "best"):
        raise ValueError(f"unknown replacement rule {config['replacement']!r}; valid: threshold, best")
    return task


def check_processes(task: Task, emitter: emitters.Emitter, descriptors: str = "task") -> None:
    """In a run of several processes (:mod:`qdkit.distributed`), refuse what runs on
    the host between compiled steps: host tasks and emitters (language models, people)
    and the refits of learned descriptors. Each process would call the model or ask the
    person again, and nothing makes their answers agree."""
    count = jax.process_count()
    if count == 1:
        return
    if getattr(task, "host", False) or getattr(emitter, "host", False):
        what = f"task {task.name!r}" if getattr(task, "host", False) else "this emitter"
        raise ValueError(
            f"{what} runs on the host (a language model or a person); a run of {count} processes supports compiled "
            "tasks and emitters only: run it in one process"
        )
    if descriptors != "task":
        raise ValueError(
            f"--descriptors {descriptors} refits on the host between steps; a run of {count} processes supports the "
            "task's own descriptors only: run it in one process"
        )


def build(
    config: dict[str, Any], centroids: np.ndarray | None = None, directory: str | None = None
) -> tuple[Task, Archive, emitters.Emitter]:
    """``(task, archive, emitter)`` from a run config, after :func:`check_combination`
    (a text task's model client keeps its cache and usage in ``directory``)."""
    task = build_task(config, directory)
    check_combination(
        task, config["emitter"], archive=config.get("archive", "grid"), descriptors=config.get("descriptors") or "task",
        options=emitter_options_of(config),
    )  # fmt: skip
    emitter = build_emitter(config["emitter"], task, int(config["batch_size"]), **emitter_options_of(config))
    return task, build_archive(config, task, centroids), emitter


def build_refitter(config: dict[str, Any], directory: str | None = None) -> feedback.Refitter | None:
    """The QDHF refit schedule of a run with learned descriptors (``None`` otherwise);
    a human judge keeps its answers in ``directory``."""
    method = DESCRIPTORS[config.get("descriptors") or "task"]
    if method is None:
        return None
    judge = None
    if method == "qdhf":
        name = config.get("judge") or "simulated"
        _check_name("judge", name, list(JUDGES))
        truth = tasks.get(config["task"], **config.get("task_options", {}))
        if name == "human":
            path = os.path.join(directory or ".", HUMAN_JUDGMENTS)
            judge = feedback.HumanJudge(path, draw=truth.draw)
        elif name == "llm":
            if config.get("judge_images") and truth.draw is None:
                raise ValueError(f"task {config['task']!r} cannot draw its items; drop --judge-images")
            judge = feedback.LLMJudge(
                build_client(config, directory), draw=truth.draw if config.get("judge_images") else None
            )
        elif name == "embedding":
            judge = feedback.EmbeddingJudge.from_client(build_client(config, directory))
        else:
            noise = float(config.get("judge_noise") or 0.0)
            judge = feedback.SimulatedJudge.from_task(truth, flip=noise, seed=int(config.get("seed", 0)))
    judgments = config.get("judgments")
    return feedback.Refitter(
        judge, iterations=int(config.get("refit_over") or config["iterations"]),
        judgments=1000 if judgments is None else int(judgments),
        method=method, seed=int(config.get("seed", 0)),
    )  # fmt: skip
