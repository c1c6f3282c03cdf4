"""The composition root: names -> factories for tasks, emitters and archives.

This is the only module of ``qdkit`` that imports ``emitters`` (the CLI uses it). A
run is fully described by a plain JSON-able config dict; :func:`build` turns one into
``(task, archive, emitter)``.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

import emitters
import feedback
from qdkit import tasks
from qdkit.archive import Archive
from qdkit.cvt_archive import CVTArchive
from qdkit.grid_archive import GridArchive
from qdkit.tasks import Task


def _iso_line(
    task: Task, batch_size: int, iso_sigma: float = 0.01, line_sigma: float = 0.1, noise: str = "fast"
) -> emitters.Emitter:
    """Iso+LineDD: Gaussian noise plus a step along the line between two elites."""
    return emitters.iso_line(
        batch_size, iso_sigma, line_sigma, lower=task.genotype_lower, upper=task.genotype_upper, noise=noise
    )


def _gaussian(task: Task, batch_size: int, sigma: float = 0.1, noise: str = "fast") -> emitters.Emitter:
    """Gaussian mutation of uniformly sampled elites."""
    return emitters.gaussian(batch_size, sigma, lower=task.genotype_lower, upper=task.genotype_upper, noise=noise)


def _iso_line_gaussian(
    task: Task,
    batch_size: int,
    iso_sigma: float = 0.01,
    line_sigma: float = 0.1,
    sigma: float = 0.1,
    noise: str = "fast",
) -> emitters.Emitter:
    """Half the batch Iso+LineDD, half Gaussian mutation (emitters.mix)."""
    if batch_size < 2:
        raise ValueError("the iso-line+gaussian mix needs batch_size >= 2")
    half = batch_size // 2
    return emitters.mix(
        _iso_line(task, half, iso_sigma, line_sigma, noise), _gaussian(task, batch_size - half, sigma, noise)
    )


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


def _check_kind(emitter: str, key: str, default: Any, value: Any) -> None:
    """Refuse an option value of the wrong kind (``greedy=maybe`` is not true)."""
    if isinstance(default, bool) and not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"emitter {emitter!r}: option {key} must be true or false; got {value!r}")
    if isinstance(default, (int, float)) and not isinstance(default, bool) and isinstance(value, (str, bool)):
        raise ValueError(f"emitter {emitter!r}: option {key} must be a number; got {value!r}")


def _preset(build: Callable[..., emitters.Emitter], name: str, doc: str, **defaults: Any):
    """A named emitter factory ``(task, batch_size, **options)`` over ``build``, whose
    signature lists ``defaults`` (so ``qdkit emitters`` shows them and unknown options
    are refused)."""

    def factory(task: Task, batch_size: int, **options: Any) -> emitters.Emitter:
        return build(name, task, batch_size, **{**defaults, **options})

    head = [inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in ("task", "batch_size")]
    tail = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in defaults.items()]
    factory.__signature__ = inspect.Signature(head + tail)
    factory.__doc__ = doc
    return factory


def _evolution_strategy(name: str, task: Task, batch_size: int, num_emitters: int, **options: Any) -> emitters.Emitter:
    population = _per_instance(name, batch_size, num_emitters)
    return emitters.evolution_strategy(
        task.example_genotype, population, num_emitters=num_emitters,
        lower=task.genotype_lower, upper=task.genotype_upper, **options,
    )  # fmt: skip


def _gradient_arborescence(name: str, task: Task, batch_size: int, num_emitters: int, **options: Any):
    per = _per_instance(name, batch_size, num_emitters)  # theta + (per - 1) branches per instance
    return emitters.cma_mega(
        task.jacobian, task.example_genotype, per - 1, num_emitters=num_emitters,
        lower=task.genotype_lower, upper=task.genotype_upper, **options,
    )  # fmt: skip


_ES = {"num_emitters": 15, "sigma0": 0.5}
_MEGA = {"num_emitters": 15, "sigma0": 10.0, "lr": 1.0, "optimizer": "sgd"}
_cma_me = _preset(
    _evolution_strategy, "cma-me",
    "CMA-ME: CMA-ES instances ranked by archive improvement (batch = num_emitters x population).",
    **_ES, ranker="2imp", selection="filter", restart="no_improvement", noise="fast",
)  # fmt: skip
_cma_mae = _preset(
    _evolution_strategy, "cma-mae",
    "CMA-MAE: CMA-ME ranked by improvement over a threshold archive (learning_rate 0.01 by default).",
    **_ES, ranker="imp", selection="mu", restart="basic", noise="fast",
)  # fmt: skip
_cma_mega = _preset(
    _gradient_arborescence, "cma-mega",
    "CMA-MEGA: CMA-ES over gradient coefficients (differentiable tasks; batch = num_emitters x (1 + branches)).",
    **_MEGA, ranker="2imp", selection="mu", restart="no_improvement", normalize=True,
)  # fmt: skip
_cma_maega = _preset(
    _gradient_arborescence, "cma-maega",
    "CMA-MAEGA: CMA-MEGA ranked by improvement over a threshold archive (learning_rate 0.01 by default).",
    **_MEGA, ranker="imp", selection="mu", restart="basic", normalize=True,
)  # fmt: skip


def _lmx(
    task: Task,
    batch_size: int,
    num_examples: int = 3,
    temperature: float = 0.8,
    style: str = "fewshot",
    max_tokens: int | None = None,
) -> emitters.Emitter:
    """LMX: a language model writes new texts from few-shot elites (text tasks; style fewshot/instruct/fixed)."""
    domain = task.domain
    return emitters.lmx(
        task.client, item=domain.item, topic=domain.topic, seeds=domain.seeds, batch_size=batch_size,
        max_bytes=task.max_bytes, num_examples=num_examples, temperature=temperature, style=style,
        max_tokens=domain.max_tokens if max_tokens is None else max_tokens,
    )  # fmt: skip


def _td3_config(**options: Any) -> emitters.TD3Config:
    width, depth = int(options.pop("critic_width")), int(options.pop("critic_depth"))
    if width < 1 or depth < 1:
        raise ValueError("critic_width and critic_depth must be positive")
    fields = {"train_batch_size": "batch_size"}
    return emitters.TD3Config(critic_hidden=(width,) * depth, **{fields.get(k, k): v for k, v in options.items()})


_TD3 = {
    "critic_width": 256, "critic_depth": 2, "critic_steps": 3000, "train_batch_size": 256, "pg_steps": 150,
    "pg_batch_size": 100, "buffer_size": 1_000_000, "discount": 0.99, "tau": 0.005, "policy_delay": 2,
    "critic_lr": 3e-4, "actor_lr": 3e-4, "pg_lr": 1e-3,
}  # fmt: skip


def _policy_gradient(name: str, task: Task, batch_size: int, **options: Any) -> emitters.Emitter:
    td3 = _td3_config(**{k: options.pop(k) for k in list(options) if k in _TD3})
    build = emitters.pga if name == "pga" else emitters.dcg
    return build(task, batch_size, config=td3, **options)


_pga = _preset(
    _policy_gradient, "pga",
    "PGA-ME: half Iso+LineDD, half policy-gradient steps on a TD3 critic, plus the greedy actor (policy tasks).",
    pg_fraction=0.5, greedy=True, iso_sigma=0.005, line_sigma=0.05, **_TD3,
)  # fmt: skip
_dcg = _preset(
    _policy_gradient, "dcg",
    "DCG-ME: policy gradients on a descriptor-conditioned critic; num_injected > 0 adds DCRL's actors (policy tasks).",
    pg_fraction=0.5, num_injected=0, length_scale=0.1, archive_replay=0.5, similarity_on="episode", return_bound=False,
    iso_sigma=0.005, line_sigma=0.05, **_TD3,
)  # fmt: skip


def _omg_mega(
    task: Task, batch_size: int, sigma_g: float = 10.0, normalize: bool = True, noise: str = "fast"
) -> emitters.Emitter:
    """OMG-MEGA: elites branch along random gradient combinations (differentiable tasks)."""
    return emitters.omg_mega(
        task.jacobian, task.example_genotype, batch_size, sigma_g=sigma_g, normalize=normalize,
        lower=task.genotype_lower, upper=task.genotype_upper, noise=noise,
    )  # fmt: skip


EMITTERS: dict[str, Callable[..., emitters.Emitter]] = {
    "iso-line": _iso_line,
    "gaussian": _gaussian,
    "iso-line+gaussian": _iso_line_gaussian,
    "cma-me": _cma_me,
    "cma-mae": _cma_mae,
    "cma-mega": _cma_mega,
    "cma-maega": _cma_maega,
    "omg-mega": _omg_mega,
    "lmx": _lmx,
    "pga": _pga,
    "dcg": _dcg,
}

#: Emitters that learn from rollouts (need a policy task such as maze).
POLICY_EMITTERS = frozenset({"pga", "dcg"})

#: Emitters that write text (need a text task); every other emitter varies arrays.
TEXT_EMITTERS = frozenset({"lmx"})

#: Emitters that need ``Task.jacobian``.
GRADIENT_EMITTERS = frozenset({"cma-mega", "cma-maega", "omg-mega"})

#: Archive learning rate used when a run with this emitter does not set one.
DEFAULT_LEARNING_RATE = {"cma-mae": 0.01, "cma-maega": 0.01}

ARCHIVES = ("grid", "cvt")


def emitter_names() -> list[str]:
    return sorted(EMITTERS)


def _check_name(kind: str, name: str, valid: list[str]) -> None:
    if name not in valid:
        raise KeyError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(valid)}")


def describe_emitter(name: str) -> str:
    _check_name("emitter", name, emitter_names())
    return (inspect.getdoc(EMITTERS[name]) or "").splitlines()[0]


def emitter_options(name: str) -> dict[str, Any]:
    _check_name("emitter", name, emitter_names())
    params = list(inspect.signature(EMITTERS[name]).parameters.values())[2:]
    return {p.name: p.default for p in params}


def build_emitter(name: str, task: Task, batch_size: int, **options: Any) -> emitters.Emitter:
    """Build a named emitter for ``task`` (genotype bounds taken from the task)."""
    valid = emitter_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"emitter {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"valid options: {', '.join(valid) or 'none'}"
        )
    for key, value in options.items():
        _check_kind(name, key, valid[key], value)
    is_text = isinstance(task, feedback.TextTask)
    if (name in TEXT_EMITTERS) != is_text:
        if is_text:
            raise ValueError(f"emitter {name!r} cannot vary text; text tasks use: {', '.join(sorted(TEXT_EMITTERS))}")
        raise ValueError(f"emitter {name!r} writes text; it needs --task text")
    if name in POLICY_EMITTERS and getattr(task, "policy", None) is None:
        raise ValueError(f"emitter {name!r} learns from rollouts; it needs a policy task (maze), not {task.name!r}")
    if name in GRADIENT_EMITTERS and not task.differentiable:
        raise ValueError(f"emitter {name!r} needs gradients, and task {task.name!r} does not provide them")
    return EMITTERS[name](task, batch_size, **options)


def archive_thresholds(config: dict[str, Any], task: Task) -> tuple[float, float]:
    """``(learning_rate, threshold_min)`` of a run: the config's, else the emitter's
    default (CMA-MAE: 0.01), with ``threshold_min`` defaulting to the task's
    ``qd_offset`` for a threshold archive and ``-inf`` otherwise."""
    lr = config.get("learning_rate")
    lr = DEFAULT_LEARNING_RATE.get(config.get("emitter", ""), 1.0) if lr is None else float(lr)
    tmin = config.get("threshold_min")
    if tmin is None:
        tmin = -np.inf if lr == 1.0 else float(task.qd_offset)
    return lr, float(tmin)


def build_archive(config: dict[str, Any], task: Task, centroids: np.ndarray | None = None) -> Archive:
    """An empty archive as the config says (``archive``: grid with ``shape``, or cvt
    with ``cells``; CVT centroids from ``centroids`` when given, else k-means seeded by
    ``seed``; thresholds from :func:`archive_thresholds`)."""
    kind = config.get("archive", "grid")
    _check_name("archive", kind, list(ARCHIVES))
    lr, tmin = archive_thresholds(config, task)
    if kind == "grid" and task.edges is not None and not config.get("shape"):
        return GridArchive.create(
            edges=task.edges, example_genotype=task.example_genotype, learning_rate=lr, threshold_min=tmin
        )
    if kind == "grid":
        shape = config.get("shape") or [32] * task.descriptor_dim
        if len(shape) != task.descriptor_dim:
            raise ValueError(
                f"grid shape {tuple(shape)} has {len(shape)} dimensions but task "
                f"{task.name!r} has {task.descriptor_dim} descriptors"
            )
        return GridArchive.create(
            shape=tuple(shape), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype,
            learning_rate=lr, threshold_min=tmin,
        )  # fmt: skip
    return CVTArchive.create(
        cells=int(config.get("cells") or 1024),
        centroids=centroids,
        lower=task.lower,
        upper=task.upper,
        example_genotype=task.example_genotype,
        key=jax.random.key(int(config.get("seed", 0)) + 1_000_003),
        learning_rate=lr,
        threshold_min=tmin,
    )


#: Raised when a person stops answering (re-exported so run code needs only the registry).
JudgingStopped = feedback.JudgingStopped

#: Descriptor sources: the task's own, or learned from its features (QDHF with a
#: judge; the AURORA and random-projection baselines without one).
DESCRIPTORS = {"task": None, "learned": "qdhf", "aurora": "aurora", "random": "random"}
#: Which extra of a task holds the features that learned descriptors project.
FEATURES = {"arm": "joint_positions", "maze": "trajectory"}
JUDGES = ("simulated", "human", "llm", "embedding")
LLM_CACHE = "llm-cache.sqlite"
HUMAN_JUDGMENTS = "judgments-human.jsonl"


#: Files of a run directory that hold language-model replies and usage.
LLM_USAGE = "llm-usage.json"


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


def _text(domain: str = "opinions") -> Task:
    """QDAIF text: texts of a domain (opinions, stories or a .toml file) rated by a language model."""
    return feedback.text_task(domain)


tasks.register("text", _text)


def build(
    config: dict[str, Any], centroids: np.ndarray | None = None, directory: str | None = None
) -> tuple[Task, Archive, emitters.Emitter]:
    """``(task, archive, emitter)`` from a run config (a text task's model client keeps
    its cache and usage in ``directory``)."""
    if config["task"] == "text":
        unknown = sorted(set(config.get("task_options", {})) - {"domain"})
        if unknown:
            raise TypeError(f"task 'text' has no option {', '.join(map(repr, unknown))}; valid options: domain")
        domain = config.get("task_options", {}).get("domain", "opinions")
        if config.get("domain_copy") and directory:  # a domain file, copied into the run directory
            domain = os.path.join(directory, config["domain_copy"])
        task = feedback.text_task(domain, build_client(config, directory))
    else:
        task = tasks.get(config["task"], **config.get("task_options", {}))
    source = config.get("descriptors") or "task"
    _check_name("descriptor source", source, list(DESCRIPTORS))
    if source != "task" and config["emitter"] in GRADIENT_EMITTERS:
        raise ValueError(f"emitter {config['emitter']!r} follows the task's own descriptor gradients; it cannot "
                         f"run with --descriptors {source}")  # fmt: skip
    emitter = build_emitter(config["emitter"], task, int(config["batch_size"]), **config.get("emitter_options", {}))
    if source == "task":
        return task, build_archive(config, task, centroids), emitter
    return (*learned_task_and_archive(config, task), emitter)


def learned_task_and_archive(config: dict[str, Any], task: Task) -> tuple[Task, Archive]:
    """The features task and an empty :class:`feedback.LearnedArchive` (2-D latent
    unless ``shape`` says otherwise; a random linear projection seeded by ``seed``)."""
    if task.name not in FEATURES:
        raise ValueError(
            f"task {task.name!r} has no features to learn descriptors from; tasks with features: "
            f"{', '.join(sorted(FEATURES))}"
        )
    if config.get("archive", "grid") != "grid":
        raise ValueError("learned descriptors use a grid archive (--archive grid)")
    features = feedback.features_task(task, FEATURES[task.name])
    shape = tuple(config.get("shape") or (32, 32))
    projection = feedback.Projection(features.descriptor_dim, len(shape))
    params = projection.init(jax.random.key(int(config.get("seed", 0)) + 7_000_003))
    archive = feedback.LearnedArchive.create(
        shape=shape, projection=projection, params=params, example_genotype=task.example_genotype
    )
    return features, archive


def drawer(task: Task):
    """``draw(ax, genotype)`` showing one of ``task``'s items to a person (``None`` for
    tasks shown as text): the arm's links, the maze with the robot's path."""
    if task.name == "arm":
        return feedback.draw_arm
    if task.name == "maze":
        draw = importlib.import_module("qdkit.tasks.maze").draw  # the package's ``maze`` is the task factory

        return lambda ax, genotype: draw(task, genotype, ax=ax)
    return None


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
            judge = feedback.HumanJudge(path, draw=drawer(truth))
        elif name == "llm":
            draw = drawer(truth) if config.get("judge_images") else None
            if config.get("judge_images") and draw is None:
                raise ValueError(f"task {config['task']!r} cannot draw its items; drop --judge-images")
            judge = feedback.LLMJudge(build_client(config, directory), draw=draw)
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
