"""Host-side callbacks for :func:`qdkit.map_elites.run` (not jittable).

Each is called after every compiled chunk as ``callback(state, metrics)``. In a run of
several processes (:mod:`qdkit.distributed`) the ones that write or show something
do so in process 0 only: every process can pass the same callbacks.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from qdkit import checkpoint, distributed


class ProgressBar:
    """A tqdm progress bar over iterations with live QD-score and coverage.

    ``live``, if given, returns counters that grow *during* an iteration (a host
    task's model requests, tokens, texts rated: ``task.stats``); every ``interval``
    seconds a thread shows how far each has grown since the last finished iteration,
    so a slow host iteration shows progress before it ends."""

    def __init__(
        self,
        total: int,
        *,
        initial: int = 0,
        disable: bool | None = None,
        live: Callable[[], dict[str, float]] | None = None,
        interval: float = 2.0,
        **tqdm_kwargs: Any,
    ):
        from tqdm.auto import tqdm

        if not distributed.is_writer():
            disable = True
        self._bar = tqdm(total=total, initial=initial, unit="it", disable=disable, **tqdm_kwargs)
        self._postfix: dict[str, str] = {}
        self._live, self._base = live, None
        self._stop = threading.Event()
        self._thread = None
        if live is not None and not self._bar.disable:
            self._base = dict(live())
            self._thread = threading.Thread(target=self._poll, args=(float(interval),), daemon=True)
            self._thread.start()

    def _poll(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self._show_live()

    def _show_live(self) -> None:
        now, base = dict(self._live()), self._base or {}
        grown = {k: v - base.get(k, 0) for k, v in now.items() if v - base.get(k, 0)}
        shown = {LIVE_NAMES.get(k, k): f"{v:g}" for k, v in grown.items() if k in LIVE_NAMES}
        self._bar.set_postfix({**self._postfix, **shown}, refresh=True)

    def __call__(self, state, metrics) -> None:
        self._bar.update(len(metrics["iteration"]))
        # several seeds: their mean
        self._postfix = {
            "qd_score": f"{float(np.mean(metrics['qd_score'][-1])):.4g}",
            "coverage": f"{float(np.mean(metrics['coverage'][-1])):.1%}",
        }
        if self._live is not None:
            self._base = dict(self._live())
        self._bar.set_postfix(self._postfix, refresh=False)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._bar.close()


#: The live counters a :class:`ProgressBar` shows, and their short names: growth since
#: the last finished iteration.
LIVE_NAMES = {"llm_requests": "requests", "llm_completion_tokens": "tokens out", "rate_rated": "rated"}


def _jsonable(value: Any) -> Any:
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no inf/nan
    return value


class PerSeed:
    """Hands each seed of a run of several seeds (:func:`qdkit.map_elites.init` with a
    vector of keys) to a callback of its own: ``callbacks[k](state_k, metrics_k)`` with
    seed ``k``'s state and its ``(n,)`` metrics, as in a run of one seed (e.g. one
    :class:`MetricsLog` per seed directory). Replacement states are not supported."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)

    def __call__(self, state, metrics) -> None:
        from qdkit.map_elites import num_seeds, seed_state

        seeds = num_seeds(state)
        if seeds != len(self.callbacks):
            raise ValueError(f"PerSeed has {len(self.callbacks)} callbacks for a state of {seeds} seeds")
        for k, callback in enumerate(self.callbacks):
            rows = {name: (v if name == "iteration" else v[:, k]) for name, v in metrics.items()}
            if callback(seed_state(state, k), rows) is not None:
                raise ValueError("a callback under PerSeed cannot replace the state")


class MetricsLog:
    """Appends one JSON object per iteration to ``path`` (``metrics.jsonl``)."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)

    def __call__(self, state, metrics) -> None:
        if not distributed.is_writer():
            return
        names = list(metrics)
        columns = [_json_column(metrics[name]) for name in names]
        rows = "".join(json.dumps(dict(zip(names, values))) + "\n" for values in zip(*columns, strict=True))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(rows)


def _json_column(values: Any) -> list:
    """A chunk's column of one metric as JSON values (:func:`_jsonable` of each): a
    numeric vector (NumPy or JAX, as ``run`` gives) is converted at once (a value at a
    time, the nine metrics of 100 rows took about 0.8 ms, now 0.4). A list is converted
    a value at a time, keeping each value's own type."""
    if isinstance(values, (list, tuple)):
        return [_jsonable(value) for value in values]
    array = np.asarray(values)
    if array.ndim != 1 or array.dtype.kind not in "biuf":
        return [_jsonable(value) for value in values]
    column = array.tolist()
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        column = [value if math.isfinite(value) else None for value in column]
    return column


def _row(line: str) -> dict | None:
    """One logged row, or ``None`` for a blank line or the cut-off last line of a run
    that was killed while writing it."""
    line = line.strip()
    if not line:
        return None
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


def read_metrics(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a ``metrics.jsonl`` file into a dict of arrays (``None`` read as ``nan``)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = _row(line)
            if row is not None:
                rows.append(row)
    if not rows:
        return {}
    return {k: np.asarray([np.nan if r.get(k) is None else r[k] for r in rows], dtype=float) for k in rows[0]}


def truncate_metrics(path: str | os.PathLike, iteration: int) -> None:
    """Drop logged rows after ``iteration`` (used on resume, so no row appears twice)."""
    if not distributed.is_writer() or not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        kept = [
            line.rstrip("\n") + "\n"
            for line in f
            if (row := _row(line)) is not None and row.get("iteration", 0) <= iteration
        ]
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(kept)
    os.replace(tmp, path)


class Checkpointer:
    """Saves the run state every ``every`` iterations (at the first chunk end past each
    multiple), and on demand with :meth:`save`. ``host``, if given, is called at each
    save for named arrays of host-side state to write into the same file
    (:func:`qdkit.checkpoint.save`).

    ``background=True`` writes the periodic checkpoints from a thread of their own: the
    state is copied to the host at the chunk end (the next chunk may reuse its device
    buffers), and the file is written while the next chunk computes. At most one write
    is in flight; the next one, :meth:`save` and :meth:`wait` wait for it, and raise the
    error it met, if any. Each file is still written atomically, so a run killed during
    a write resumes from the checkpoint before. With ``host`` the writes stay in the
    loop (the host state is not copied)."""

    def __init__(
        self, path: str | os.PathLike, every: int, config: dict | None = None, host=None, *, background: bool = False
    ):
        if int(every) < 1:
            raise ValueError(f"checkpoint interval must be positive; got {every}")
        self.path = os.fspath(path)
        self.every = int(every)
        self.config = config
        self.host = host
        self.background = bool(background) and host is None
        self.last_saved: int | None = None
        self._pending: threading.Thread | None = None
        self._error: BaseException | None = None

    def __call__(self, state, metrics) -> None:
        iteration = int(metrics["iteration"][-1])
        start = int(metrics["iteration"][0]) - 1
        if iteration // self.every > start // self.every:
            if self.background and distributed.is_writer():
                self._save_later(state)
            else:
                self.save(state)

    def save(self, state) -> None:
        """Write ``state`` now, after any write in flight; a failed earlier write is
        raised after this one is made (so the latest state is still saved)."""
        try:
            self.wait()
        except Exception as error:
            earlier = error
        else:
            earlier = None
        if distributed.is_writer():
            self._write(state, None if self.host is None else self.host())
        if earlier is not None:
            raise earlier

    def wait(self) -> None:
        """Wait for the write in flight, if any; raise the error it met. (``last_saved``
        counts a background write once this has returned.)"""
        if self._pending is not None:
            self._pending.join()  # (forgotten only once finished: a later save cannot overtake it)
            self._pending = None
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _save_later(self, state) -> None:
        self.wait()
        copy = checkpoint.on_host(state)
        # an array read back on a CPU is a view of the device's buffer, and JAX does not
        # donate a buffer that is viewed (it copies it): copied, so that the next chunk
        # takes its buffers over while this file is written
        own = [a if a.flags.owndata else np.array(a, copy=True) for a in copy.arrays]  # (a GPU's: copied already)
        iteration = None if copy.iteration is None else np.array(copy.iteration, copy=True)
        copy = checkpoint.HostCopy(own, copy.described, copy.treedef, iteration)

        def write():
            try:
                self._write(copy, None)
            except BaseException as error:  # raised by the next save or wait
                self._error = error

        self._pending = threading.Thread(target=write, name="qdkit-checkpoint")
        self._pending.start()

    def _write(self, state, host) -> None:
        checkpoint.save(self.path, state, self.config, host=host)
        iteration = distributed.to_host(state.iteration)
        self.last_saved = None if iteration is None else int(np.max(iteration))  # (every seed alike)
