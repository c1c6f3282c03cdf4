"""Experiment trackers as run callbacks: TensorBoard, MLflow and Weights & Biases.

Each is a callback for :func:`qdkit.map_elites.run` (and :class:`qdkit.Scheduler`):
every metrics row is logged at its iteration as the step, the run's configuration as
parameters when the tracker starts, and a heatmap of the archive (its results) as an
image at every ``every`` iterations (the run's checkpoint interval under ``qdkit run
--log``) and by :meth:`Tracker.close`. In a run of several processes only process 0
logs. ``qdkit run --log tensorboard|mlflow|wandb`` (repeatable) adds them to a run;
``qdkit resume`` continues the same tracker runs (ids kept in ``trackers.json``).

Each needs an optional extra; a missing one is named in the error::

    pip install 'qdkit[tensorboard]'   # tensorboardX writes event files
    pip install 'qdkit[mlflow]'        # mlflow-skinny with its SQLite store
    pip install 'qdkit[wandb]'         # wandb, offline unless you have logged in

- :class:`TensorBoard` writes event files into ``logdir`` (``<run>/tensorboard``);
  ``tensorboard --logdir runs`` shows them. A resumed run purges the steps logged
  after its checkpoint, so each step holds one value.
- :class:`MLflow` logs to ``tracking_uri``: by default ``$MLFLOW_TRACKING_URI``, else
  MLflow's own local default, ``sqlite:///mlflow.db`` in the current directory
  (``mlflow ui`` run there shows it). Images go to the run's artifacts.
- :class:`Wandb` logs to Weights & Biases: online when ``WANDB_API_KEY`` is set or
  ``wandb login`` was run, else offline (``wandb sync`` uploads it later); ``mode``
  forces one. Its files go to ``dir`` (``<run>/`` under ``qdkit run``).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from qdkit import distributed

#: How a tracker run can end (:meth:`Tracker.close`).
STATUSES = ("finished", "killed", "failed")

#: ``--log`` names (each needs the extra of the same name) and the module each imports.
MODULES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}
NAMES = tuple(MODULES)


def check(names) -> None:
    """Refuse, before a run starts, an unknown tracker or one whose extra is missing."""
    import importlib.util

    for name in names:
        if name not in MODULES:
            raise ValueError(f"unknown tracker {name!r}; valid: {', '.join(NAMES)}")
        if importlib.util.find_spec(MODULES[name]) is None:
            raise ImportError(f"--log {name} needs the '{name}' extra: pip install 'qdkit[{name}]'")


def preflight(names) -> None:
    """:func:`check`, and for MLflow a tracking server (``$MLFLOW_TRACKING_URI``) that
    answers: what a run can know before it writes anything."""
    check(names)
    if "mlflow" in names and os.environ.get("MLFLOW_TRACKING_URI"):
        _reachable(os.environ["MLFLOW_TRACKING_URI"])


def _require(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"logging to {extra} needs the '{extra}' extra: pip install 'qdkit[{extra}]' ({e})") from e


def _plain(value: Any) -> Any:
    """A JSON-able form of a config value (NumPy scalars and arrays included)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"task_options": {"dof": 8}}`` -> ``{"task_options.dof": 8}``, values made
    JSON-able (NumPy values as numbers and lists, anything else as its ``str``)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = _plain(value)
    return out


class Tracker:
    """The part every tracker shares: rows, parameters, heatmaps (see the module
    docstring). Subclasses write with ``_scalars``, ``_params`` and ``_image``.

    Args:
        config: the run's configuration, logged once as parameters.
        every: log a heatmap when a chunk crosses a multiple of ``every`` iterations
            (``None``: only at :meth:`close`).
        descriptor_names: axis labels of the heatmap.
        title: heatmap title.
    """

    def __init__(self, *, config: dict | None = None, every: int | None = None, descriptor_names=None, title=None):
        if every is not None and int(every) < 1:
            raise ValueError(f"every must be positive; got {every}")
        self.every = None if every is None else int(every)
        self.descriptor_names = descriptor_names
        self.title = title
        self.writer = distributed.is_writer()
        self._params_given = None if config is None else flatten(config)  # logged once, at the start
        self._imaged: int | None = None  # the step of the last heatmap

    def _start(self) -> None:
        if self._params_given is not None:
            self._params(self._params_given)

    def __call__(self, state, metrics) -> None:
        if not self.writer:
            return
        names = [k for k in metrics if k != "iteration"]
        for i, step in enumerate(np.asarray(metrics["iteration"]).tolist()):
            values = {}
            for name in names:
                value = float(np.asarray(metrics[name][i]))
                if math.isfinite(value):  # an empty archive's max fitness is -inf: not a point
                    values[name] = value
            self._scalars(values, int(step))
        last = int(metrics["iteration"][-1])
        first = int(metrics["iteration"][0]) - 1
        if self.every is not None and last // self.every > first // self.every:
            self.image(state, last)

    def image(self, state, step: int) -> None:
        """Log the heatmap of ``state``'s archive at ``step`` (once per step)."""
        if self.writer and step != self._imaged:
            self._heatmap(state.archive.results(), step)
            self._imaged = step

    def _heatmap(self, archive, step: int) -> None:
        import matplotlib.pyplot as plt

        from qdkit import plot

        figure = plot.archive_figure(archive, descriptor_names=self.descriptor_names, title=self.title)
        try:
            self._image("heatmap", plot.figure_rgb(figure), step)
        finally:
            plt.close(figure)

    def close(self, state=None, status: str = "finished") -> None:
        """Log the final heatmap (of ``state``, if given) and close the tracker run as
        ``status``: ``"finished"``, ``"killed"`` (interrupted, resumable) or
        ``"failed"`` (an error)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; valid: {', '.join(STATUSES)}")
        if not self.writer:
            return
        if state is not None:
            self.image(state, int(np.max(distributed.to_host(state.iteration))))
        self._finish(status)

    # to implement
    def _scalars(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def _params(self, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def _image(self, name: str, rgb: np.ndarray, step: int) -> None:
        raise NotImplementedError

    def _finish(self, status: str) -> None:
        raise NotImplementedError

    def ids(self) -> dict[str, str]:
        """What :meth:`resume` needs to continue the same tracker run."""
        return {}


class TensorBoard(Tracker):
    """TensorBoard event files in ``logdir`` (tensorboardX). ``resume_from``: the
    iteration a resumed run continues from; steps logged after it are purged."""

    def __init__(self, logdir: str | os.PathLike, *, resume_from: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.logdir = os.fspath(logdir)
        if not self.writer:
            return
        tbx = _require("tensorboardX", "tensorboard")
        purge = None if resume_from is None else int(resume_from) + 1
        self._writer = tbx.SummaryWriter(self.logdir, purge_step=purge)
        if resume_from is None:
            self._start()

    def _scalars(self, values, step):
        for name, value in values.items():
            self._writer.add_scalar(f"qd/{name}", value, step)

    def _params(self, params):
        text = "\n".join(f"    {k} = {json.dumps(v)}" for k, v in sorted(params.items()))
        self._writer.add_text("config", text, 0)

    def _image(self, name, rgb, step):
        self._writer.add_image(name, rgb, step, dataformats="HWC")

    def _finish(self, status):
        self._writer.close()


class MLflow(Tracker):
    """An MLflow run (see the module docstring for the tracking URI). ``run_id``
    continues an existing run (a resume)."""

    def __init__(
        self,
        *,
        tracking_uri: str | None = None,
        experiment: str = "qdkit",
        run_name: str | None = None,
        run_id: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if not self.writer:
            return
        _require("mlflow", "mlflow")
        from mlflow.tracking import MlflowClient

        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
        if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):  # relative: pin it for resumes
            uri = "sqlite:///" + os.path.abspath(uri[len("sqlite:///") :])
        self.tracking_uri = uri
        _reachable(uri)
        import logging

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its table-creation INFO lines
        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        if run_id is None:
            found = self._client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found is not None else self._client.create_experiment(experiment)
            self.run_id = self._client.create_run(experiment_id, run_name=run_name).info.run_id
            self._start()
        else:
            self.run_id = run_id
            self._client.update_run(run_id, status="RUNNING")

    def _scalars(self, values, step):
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def _params(self, params):
        from mlflow.entities import Param

        items = [Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters a batch
            self._client.log_batch(self.run_id, params=items[i : i + 100])

    def _image(self, name, rgb, step):
        self._client.log_image(self.run_id, rgb, key=name, step=step)

    def _finish(self, status):
        self._client.set_terminated(self.run_id, status=status.upper())

    def ids(self):
        return {"run_id": self.run_id, "tracking_uri": self.tracking_uri}


class Wandb(Tracker):
    """A Weights & Biases run (see the module docstring for online/offline). ``run_id``
    continues an existing run (a resume)."""

    def __init__(
        self,
        *,
        project: str = "qdkit",
        dir: str | os.PathLike | None = None,
        name: str | None = None,
        mode: str | None = None,
        run_id: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if not self.writer:
            return
        wandb = _require("wandb", "wandb")
        if mode is None:
            mode = os.environ.get("WANDB_MODE") or ("online" if _logged_in() else "offline")
        if mode not in ("online", "offline", "disabled"):
            raise ValueError(f"unknown W&B mode {mode!r}; valid: online, offline, disabled")
        self._wandb = wandb
        self._run = wandb.init(
            project=project, dir=None if dir is None else os.fspath(dir), name=name, mode=mode, id=run_id,
            resume="allow" if run_id else None, config=None if run_id else self._params_given,
            # a run of several seeds has one W&B run per seed open at once
            reinit="create_new", settings=wandb.Settings(silent=True, console="off"),
        )  # fmt: skip
        self.run_id = self._run.id

    def _scalars(self, values, step):
        self._run.log(values, step=step)

    def _params(self, params):
        self._run.config.update(params, allow_val_change=True)

    def _image(self, name, rgb, step):
        self._run.log({name: self._wandb.Image(rgb)}, step=step)

    def _finish(self, status):
        self._run.finish(exit_code=0 if status == "finished" else 1)

    def ids(self):
        return {"run_id": self.run_id}


def _reachable(uri: str, timeout: float = 5.0) -> None:
    """Refuse at once a tracking server that does not answer (MLflow's client would
    retry for minutes without a word)."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError) as e:
        raise ConnectionError(f"no MLflow tracking server answers at {uri} ({e})") from e


def _logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        with open(netrc, encoding="utf-8") as f:
            return "api.wandb.ai" in f.read()
    except OSError:
        return False


def build(name: str, directory: str, config: dict, *, every: int, previous: dict | None = None,
          resume_from: int | None = None, descriptor_names=None, title=None, run_name: str | None = None) -> Tracker:  # fmt: skip
    """The tracker ``--log name`` gives a run in ``directory``; ``previous``, the ids a
    first run recorded (a resume continues them); ``run_name``, the MLflow or W&B run
    name (default: the directory's name)."""
    common = {"config": config, "every": every, "descriptor_names": descriptor_names, "title": title}
    previous = previous or {}
    run_name = run_name or os.path.basename(os.path.abspath(directory))
    if name == "tensorboard":
        return TensorBoard(os.path.join(directory, "tensorboard"), resume_from=resume_from, **common)
    if name == "mlflow":
        return MLflow(tracking_uri=previous.get("tracking_uri"), run_id=previous.get("run_id"), run_name=run_name,
                      **common)  # fmt: skip
    if name == "wandb":
        return Wandb(dir=directory, run_id=previous.get("run_id"), name=run_name, **common)
    raise ValueError(f"unknown tracker {name!r}; valid: {', '.join(NAMES)}")
