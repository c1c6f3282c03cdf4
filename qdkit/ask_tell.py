"""Ask/tell: MAP-Elites driven from outside, for evaluations that are not JAX.

A :class:`Scheduler` holds an archive, an emitter and the run state. The caller asks
for a batch of solutions, evaluates them however it likes (a pool of worker processes,
a simulator in another program, a robot, a lab) and tells the scheduler the results::

    import numpy as np, qdkit
    from emitters import iso_line

    archive = qdkit.GridArchive.create(shape=(20, 20), lower=[-1, -1], upper=[1, 1],
                                       example_genotype=np.zeros(10, np.float32))
    emitter = iso_line(batch_size=36, iso_sigma=0.01, line_sigma=0.2)
    scheduler = qdkit.Scheduler(archive, emitter, initial=np.zeros((36, 10), np.float32))
    for _ in range(1000):
        solutions = scheduler.ask()                 # NumPy, (36, 10)
        objective, measures = evaluate(solutions)   # anything: (36,), (36, 2)
        scheduler.tell(objective, measures)
    scheduler.archive                               # a qdkit.Archive

This is pyribs' ``Scheduler.ask()`` / ``tell(objective, measures)``; the emitter's
``emit`` and the insertion, the emitter's ``update`` and the metrics are compiled
(two programs, compiled at the first ``ask`` and ``tell``). The first ``ask`` returns
the initial population (``initial``); every later one, the emitter's batch.

It is the loop of :func:`qdkit.map_elites.run` cut in two at the scoring: the same
random keys, the same insertion (rows with a NaN or infinite fitness or descriptor are
dropped and counted in ``num_invalid``), the same metrics rows, the same callbacks
(:class:`qdkit.callbacks.MetricsLog`, :class:`~qdkit.callbacks.Checkpointer`, ...,
called after every ``tell``) and the same checkpoints: a scheduler restored from a
checkpoint and told the same evaluations continues bit for bit. With ``initial`` a
function ``(key, n)`` and a task's ``score`` as the evaluator, it makes the search of
``map_elites.init`` and ``run`` with the same seed: the same parents, keys and cells;
as emit and insertion are compiled apart here and fused in ``run``'s chunk, a float may
differ in its last bit.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qdkit import callbacks as callbacks_lib
from qdkit import checkpoint, distributed, rng
from qdkit import metrics as metrics_lib
from qdkit.archive import Archive
from qdkit.map_elites import RunState, _as_jax, _first_state, _next_state, _private_copy, _unshared
from qdkit.tasks.base import Evaluation

Metrics = dict[str, np.ndarray]


def _emit(state: RunState, emitter):
    key, k_emit, _ = rng.split(state.key, 3)  # the third is run's scoring key
    genotypes, emitter_state = emitter.emit(k_emit, state.archive, state.emitter_state)
    return genotypes, (key, emitter_state)


def _packed(metrics: dict[str, jax.Array], iteration: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The metrics row as two vectors (floats; integers with the iteration last): two
    transfers to the host instead of one per metric."""
    floats = jnp.stack([metrics[k].astype(jnp.float32) for k in metrics_lib.NAMES if k not in metrics_lib.INT_METRICS])
    ints = jnp.stack([*(metrics[k] for k in metrics_lib.NAMES if k in metrics_lib.INT_METRICS), iteration])
    return floats, ints.astype(jnp.int32)


def _unpacked(floats: np.ndarray, ints: np.ndarray) -> dict[str, np.ndarray]:
    f, i = iter(floats), iter(ints)
    row = {k: next(i) if k in metrics_lib.INT_METRICS else next(f) for k in metrics_lib.NAMES}
    row["iteration"] = np.int64(ints[-1])
    return {k: np.asarray(v) for k, v in row.items()}


def _tell(state: RunState, pending, genotypes, evaluation, emitter, qd_offset):
    key, emitter_state = pending
    new_state, info = _next_state(state, key, emitter, emitter_state, genotypes, _as_jax(evaluation))
    return new_state, _packed(metrics_lib.compute(new_state.archive, info, qd_offset), new_state.iteration)


def _tell_initial(key, archive, genotypes, evaluation, emitter, qd_offset):
    state, info = _first_state(key, archive, emitter, genotypes, _as_jax(evaluation))
    return state, _packed(metrics_lib.compute(state.archive, info, qd_offset), state.iteration)


_emit_jit = jax.jit(_emit, static_argnames=("emitter",))
# the state is the scheduler's own: donated, so insertion writes the archive in place
_tell_jit = jax.jit(_tell, static_argnames=("emitter", "qd_offset"), donate_argnums=(0,))
_tell_initial_jit = jax.jit(_tell_initial, static_argnames=("emitter", "qd_offset"))


class Scheduler:
    """Ask/tell MAP-Elites over one archive and one emitter (see the module docstring).

    Args:
        archive: an empty (or pre-filled) archive; not over learned descriptors.
        emitter: any :class:`emitters.Emitter` (combine several with
            :func:`emitters.mix`); host emitters (a language model) run eagerly.
        initial: the initial population the first :meth:`ask` returns: genotypes with a
            leading batch axis (an array, or a pytree like the archive's genotypes), or
            a function ``initial(key, n)`` drawing ``n`` of them (a task's
            ``initial_genotypes``). ``None`` when the archive already holds elites or
            the scheduler is restored from a checkpoint.
        num_initial: ``n`` for a function ``initial`` (default: the emitter's batch
            size).
        seed: seed of the run's PRNG key (or give ``key``).
        key: the run's PRNG key.
        qd_offset: lower bound on the fitness for the QD-score (as a task's
            ``qd_offset``): the QD-score sums ``max(fitness - qd_offset, 0)`` over the
            elites, so with fitness below 0 give an offset below it (pyribs sums
            ``objective - offset`` unclipped).
        callbacks: called after every :meth:`tell` as ``callback(state, metrics)`` with
            that iteration's metrics row (as :func:`qdkit.map_elites.run` calls them
            after each chunk); a callback may return a replacement state.
        config: the run configuration written into checkpoints (:meth:`save`).

    Raises:
        ValueError: an archive over learned descriptors, genotypes of another shape
            than the archive's, or a bad ``num_initial`` / ``qd_offset``.
    """

    def __init__(
        self,
        archive: Archive,
        emitter,
        *,
        initial: Any = None,
        num_initial: int | None = None,
        seed: int = 0,
        key: jax.Array | None = None,
        qd_offset: float = 0.0,
        callbacks: Sequence[Callable] = (),
        config: dict | None = None,
    ):
        if archive.learned:
            raise ValueError(
                "a Scheduler takes an archive over given descriptors: learned descriptors need features and a "
                "refit schedule that come with a task (run them with qdkit.map_elites.run or `qdkit run`)"
            )
        if key is not None and seed != 0:
            raise ValueError("give seed or key, not both")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
            raise ValueError(f"seed must be an integer; got {seed!r}")
        if jax.process_count() > 1:
            raise ValueError(
                "a Scheduler runs in one process: its evaluations come from the caller, which several processes "
                "would each make on their own (spread the evaluations with a pool instead)"
            )
        qd_offset = float(qd_offset)
        if not np.isfinite(qd_offset):
            raise ValueError(f"qd_offset must be finite; got {qd_offset}")
        self.emitter = emitter
        self.qd_offset = qd_offset
        self.callbacks = list(callbacks)
        self.config = config
        self._key = jax.random.key(int(seed)) if key is None else key
        archive = archive.with_qd_offset(qd_offset)  # the metrics read its running QD-score
        self._archive = archive
        self._state: RunState | None = None
        self._pending: Any = None  # (genotypes, what tell needs) between ask and tell
        self._rows: list[dict[str, np.ndarray]] = []
        self._initial = None
        if callable(initial):
            n = emitter.batch_size if num_initial is None else int(num_initial)
            if n < 1:
                raise ValueError(f"num_initial must be positive; got {n}")
            self._initial = lambda: initial(rng.split(self._key, 4)[0], n)
        elif initial is not None:
            if num_initial is not None:
                raise ValueError("num_initial is for a function `initial`; an array gives its own length")
            if isinstance(initial, (list, tuple)) and jax.tree.structure(archive.genotypes).num_leaves == 1:
                initial = np.asarray(initial)  # a nested list of numbers, for an archive of arrays
            self._check_genotypes(initial, "initial")
            initial = self._as_archive_dtypes(initial)
            self._initial = lambda: initial
        elif bool(jnp.any(archive.occupied)):  # a pre-filled archive: start emitting at once
            k_emitter, self._key = rng.split(self._key)
            archive = _private_copy(archive)  # tell reuses its buffers
            self._state = RunState(archive, emitter.init(k_emitter, archive), self._key, jnp.zeros((), jnp.int32))

    # ------------------------------------------------------------------ reading
    @property
    def state(self) -> RunState | None:
        """The run state after the last :meth:`tell` (``None`` before the first). Valid
        until the next :meth:`tell`, which reuses its buffers: copy what you keep
        (``jax.tree.map(jnp.copy, scheduler.state)``)."""
        return self._state

    @property
    def archive(self) -> Archive:
        """The archive after the last :meth:`tell` (valid until the next, as :attr:`state`)."""
        return self._archive if self._state is None else self._state.archive

    @property
    def iteration(self) -> int:
        """Iterations told (the initial population is iteration 0; -1 before it)."""
        return -1 if self._state is None else int(self._state.iteration)

    @property
    def metrics(self) -> Metrics:
        """The metrics rows of every :meth:`tell` of this scheduler, as arrays."""
        if not self._rows:
            return {}
        return {k: np.stack([r[k] for r in self._rows]) for k in self._rows[0]}

    @property
    def asked(self) -> bool:
        """Whether an :meth:`ask` waits for its :meth:`tell`."""
        return self._pending is not None

    # ------------------------------------------------------------------ ask / tell
    def ask(self) -> Any:
        """The next batch of solutions to evaluate, as NumPy arrays (a pytree like the
        archive's genotypes, leading axis the batch).

        Raises:
            RuntimeError: the last batch asked for has not been told yet.
        """
        if self._pending is not None:
            raise RuntimeError(
                f"ask() called again before tell(): tell the {self._pending[2]} solutions of the last ask first"
            )
        if self._state is None:
            if self._initial is None:
                raise ValueError(
                    "the archive is empty: give `initial` (genotypes, or a function (key, n) drawing them) for the "
                    "first ask, or restore() a checkpoint"
                )
            genotypes = self._initial()
            self._check_genotypes(genotypes, "initial")
            genotypes = jax.tree.map(jnp.asarray, self._as_archive_dtypes(genotypes))
            pending = None
        elif self.emitter.host:
            genotypes, pending = _emit(self._state, self.emitter)
            genotypes = jax.tree.map(jnp.asarray, genotypes)
        else:
            genotypes, pending = _emit_jit(self._state, self.emitter)
        n = jax.tree.leaves(genotypes)[0].shape[0]
        self._pending = (genotypes, pending, n)
        return jax.tree.map(np.array, genotypes)  # writable, as pyribs gives them

    def tell(self, fitness: Any, descriptors: Any, extras: dict | None = None) -> dict[str, np.ndarray]:
        """Insert the evaluated batch of the last :meth:`ask` and update the emitter.

        Args:
            fitness: ``(B,)`` numbers, higher is better (pyribs' objective).
            descriptors: ``(B, M)`` numbers (pyribs' measures). Rows with a NaN or
                infinite fitness or descriptor are dropped and counted
                (``num_invalid``).
            extras: per-row arrays some emitters read (the gradient emitters need
                ``transitions``), as a task's ``Evaluation.extras``.

        Returns:
            this iteration's metrics row (``qd_score``, ``coverage``, ...,
            ``iteration``).

        Raises:
            RuntimeError: no batch was asked for.
            ValueError: a length or shape that does not match the batch asked for.
        """
        if self._pending is None:
            raise RuntimeError("tell() without ask(): ask() for a batch, evaluate it, then tell() its results")
        genotypes, pending, n = self._pending
        evaluation = self._evaluation(fitness, descriptors, extras, n)
        if self._state is None:
            fn = _tell_initial if self.emitter.host else _tell_initial_jit
            state, m = fn(self._key, self._archive, genotypes, evaluation, self.emitter, self.qd_offset)
        else:
            fn = _tell if self.emitter.host else _tell_jit
            state, m = fn(self._state, pending, genotypes, evaluation, self.emitter, self.qd_offset)
        self._pending = None
        self._state = state
        row = _unpacked(*jax.device_get(m))
        if row["iteration"] > 0:  # the initial batch is iteration 0, as in run: no row
            self._rows.append(row)
            chunk = {k: v[None] for k, v in row.items()}
            for callback in self.callbacks:
                replacement = callback(self._state, chunk)
                if replacement is not None:  # tell donates the state: no buffer twice
                    archive = replacement.archive.with_qd_offset(self.qd_offset)
                    self._state = _unshared(replacement.replace(archive=archive))
        return row

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | os.PathLike) -> None:
        """Write the run state to a checkpoint (:mod:`qdkit.checkpoint`): only between a
        :meth:`tell` and the next :meth:`ask`."""
        if self._pending is not None:
            raise RuntimeError("save() between ask() and tell(): tell the pending batch first")
        if self._state is None:
            raise RuntimeError("nothing to save before the initial population is told")
        if distributed.is_writer():
            checkpoint.save(path, self._state, self.config)

    def restore(self, path: str | os.PathLike) -> None:
        """Continue from a checkpoint written by :meth:`save` (or a
        :class:`qdkit.callbacks.Checkpointer`) of a scheduler with the same archive and
        emitter; told the same evaluations, it continues bit for bit.

        Raises:
            qdkit.checkpoint.CheckpointError: a missing, corrupt or foreign file.
            RuntimeError: a batch asked for and not told.
        """
        if self._pending is not None:
            raise RuntimeError("restore() between ask() and tell(): tell the pending batch first")
        state = checkpoint.load(path, self._template())
        for name, mine, theirs in (("lower", self._archive.lower, state.archive.lower),
                                   ("upper", self._archive.upper, state.archive.upper)):  # fmt: skip
            if not np.array_equal(np.asarray(mine), np.asarray(theirs)):
                raise checkpoint.CheckpointError(
                    f"{path}: a checkpoint of an archive with other bounds ({name} {np.asarray(theirs).tolist()}, "
                    f"this scheduler's {np.asarray(mine).tolist()})"
                )
        self._state = state
        self._rows = []
        iteration = int(state.iteration)
        for callback in self.callbacks:  # rows logged after the checkpoint go: they are told again
            if isinstance(callback, callbacks_lib.MetricsLog):
                callbacks_lib.truncate_metrics(callback.path, iteration)

    def _template(self) -> RunState:
        key = jax.random.key(0)
        emitter_state = jax.eval_shape(self.emitter.init, key, self._archive) if not self.emitter.host else (
            self.emitter.init(key, self._archive))  # fmt: skip
        return RunState(self._archive, emitter_state, key, jnp.zeros((), jnp.int32))

    # ------------------------------------------------------------------ checks
    def _check_genotypes(self, genotypes: Any, what: str) -> None:
        stored = jax.tree.structure(self._archive.genotypes)
        if jax.tree.structure(genotypes) != stored:
            raise ValueError(f"{what}: genotypes of another structure than the archive's ({stored})")
        sizes = set()
        for g, s in zip(jax.tree.leaves(genotypes), jax.tree.leaves(self._archive.genotypes)):
            shape = np.shape(g)
            if shape[1:] != s.shape[1:]:
                raise ValueError(f"{what}: genotypes of shape {shape[1:]} per row; the archive stores {s.shape[1:]}")
            sizes.add(shape[0] if shape else 0)
        if len(sizes) != 1 or 0 in sizes:
            raise ValueError(f"{what}: a non-empty batch with one leading length; got lengths {sorted(sizes)}")

    def _as_archive_dtypes(self, genotypes: Any) -> Any:
        """Genotypes cast to the archive's dtypes (integers given for a float archive)."""
        dtypes = [leaf.dtype for leaf in jax.tree.leaves(self._archive.genotypes)]
        leaves, treedef = jax.tree.flatten(genotypes)
        return jax.tree.unflatten(treedef, [np.asarray(g).astype(d, copy=False) for g, d in zip(leaves, dtypes)])

    def _evaluation(self, fitness, descriptors, extras, n: int) -> Evaluation:
        fitness = np.asarray(fitness)
        descriptors = np.asarray(descriptors)
        dim = self._archive.descriptor_dim
        numbers = all(np.issubdtype(a.dtype, np.number) for a in (fitness, descriptors))
        if not numbers or np.iscomplexobj(fitness) or np.iscomplexobj(descriptors):
            raise ValueError("fitness and descriptors must be real numbers")
        if descriptors.shape == (n,) and dim == 1:
            raise ValueError(f"descriptors: expected shape ({n}, 1) for one descriptor; reshape with d[:, None]")
        if fitness.shape != (n,):
            raise ValueError(f"fitness: expected shape ({n},) for the {n} solutions asked for; got {fitness.shape}")
        if descriptors.shape != (n, dim):
            raise ValueError(
                f"descriptors: expected shape ({n}, {dim}) for the {n} solutions asked for; got {descriptors.shape}"
            )
        if extras is not None and not isinstance(extras, Mapping):
            raise ValueError(f"extras must be a dict of per-row arrays; got {type(extras).__name__}")
        extras = {} if extras is None else dict(extras)
        for name, value in extras.items():
            lengths = {np.shape(leaf)[0] if np.ndim(leaf) else None for leaf in jax.tree.leaves(value)}
            if lengths != {n}:
                raise ValueError(f"extras[{name!r}]: expected a leading axis of {n} (one row per solution)")
        # NumPy goes into the compiled call as it is: one transfer with the call, not one each
        return Evaluation(np.asarray(fitness, np.float32), np.asarray(descriptors, np.float32), extras)
