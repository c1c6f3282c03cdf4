"""The MAP-Elites loop: ``init``, a pure jitted ``step``, and ``run`` in compiled chunks.

``run`` executes chunks of up to ``chunk_size`` iterations as one compiled
``lax.fori_loop`` (the archive is updated in place by XLA), and does host work
between chunks through callbacks: progress bar, metrics log, checkpoints. One
compilation serves every chunk, whatever its length.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import PartitionSpec as P

from qdkit import distributed, rng, sharding, xla
from qdkit import metrics as metrics_lib
from qdkit.archive import Archive, CellBuffers, kept_offset, summing_whole_batches

Metrics = dict[str, np.ndarray]
Callback = Callable[["RunState", Metrics], "RunState | None"]


@dataclasses.dataclass(frozen=True)
class RunState:
    """Everything a run needs to continue: a checkpoint saves exactly this.

    Attributes:
        archive: the archive.
        emitter_state: the emitter's state pytree.
        key: PRNG key for the next iteration.
        iteration: int32 scalar, iterations done (the initial batch is iteration 0).
    """

    archive: Archive
    emitter_state: Any
    key: jax.Array
    iteration: jax.Array

    def replace(self, **changes: Any) -> RunState:
        return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(RunState, data_fields=["archive", "emitter_state", "key", "iteration"], meta_fields=[])


class StopRun(Exception):
    """Raised by host code (a host task's ``score``, a host emitter) to end a run
    cleanly, e.g. when a model budget is spent: the iteration in progress is dropped
    and :func:`run` raises :class:`Stopped` with the state after the last complete
    iteration."""


class Interrupted(KeyboardInterrupt):
    """Raised by :func:`run` after Ctrl-C, once the running chunk has finished (and,
    in a run without callbacks, the chunk already queued behind it).

    Attributes:
        state: the state at the end of the last completed chunk (safe to checkpoint).
        metrics: the metrics of the iterations completed by this ``run`` call.
    """

    def __init__(self, state: RunState, metrics: Metrics):
        super().__init__("interrupted")
        self.state = state
        self.metrics = metrics


class Stopped(Interrupted):
    """:func:`run` ended early because host code raised :class:`StopRun`.

    Attributes (besides :class:`Interrupted`'s): reason, the message of the
    :class:`StopRun`."""

    def __init__(self, state: RunState, metrics: Metrics, reason: str):
        super().__init__(state, metrics)
        self.reason = reason


def is_host(task, emitter) -> bool:
    """Whether a run of ``task`` with ``emitter`` goes through the host loop."""
    return bool(getattr(task, "host", False) or getattr(emitter, "host", False))


def describe(archive: Archive, task, evaluation):
    """``(evaluation, features)``: a scored batch as the archive sees it.

    For an archive over learned descriptors, the task's features
    (``task.features(evaluation)``, ``(B, F)``) projected with the archive's current
    parameters replace the evaluation's descriptors, and the features are returned to
    be stored with the elites; otherwise the evaluation is returned as it is, with
    ``None``. Emitters receive the described evaluation, so they see the descriptors
    the archive bins. Jittable."""
    if not archive.learned:
        return evaluation, None
    features = jnp.asarray(task.features(evaluation), jnp.float32)
    return evaluation._replace(descriptors=archive.describe(features)), features


def check(task, archive: Archive, emitter) -> None:
    """Refuse, before any compilation, a task, archive and emitter that cannot run
    together: genotypes of another structure, descriptors of another size, or learned
    descriptors for a task without (matching) features."""
    name = getattr(task, "name", "?")
    stored = [(g.shape[1:], g.dtype) for g in jax.tree.leaves(archive.genotypes)]
    given = [(jnp.shape(g), jnp.asarray(g).dtype) for g in jax.tree.leaves(task.example_genotype)]
    if jax.tree.structure(archive.genotypes) != jax.tree.structure(task.example_genotype) or stored != given:
        raise ValueError(f"the archive holds genotypes of another shape than task {name!r}'s example genotype")
    if archive.learned:
        if getattr(task, "features", None) is None:
            raise ValueError(
                f"task {name!r} has no features to learn descriptors from (Task.features); the arm and the maze have"
            )
        if not is_host(task, emitter) and task.feature_dim != archive.features.shape[1]:
            raise ValueError(
                f"task {name!r} gives ({task.feature_dim},) features per row but the archive's projection takes "
                f"{archive.features.shape[1:]}"
            )
    elif archive.descriptor_dim != task.descriptor_dim:
        raise ValueError(
            f"the archive has {archive.descriptor_dim} descriptor dimensions but task {name!r} has "
            f"{task.descriptor_dim}"
        )


def _start_emitter(emitter, key, archive, genotypes, evaluation):
    """The emitter's first state, after it has observed the initial population (if it
    has ``observe_initial``)."""
    state = emitter.init(key, archive)
    if emitter.observe_initial is not None:
        state = emitter.observe_initial(state, archive, genotypes, evaluation)
    return state


def _first_state(key, archive, emitter, genotypes, evaluation, features=None):
    """Insert the scored initial population and start the emitter: the state at
    iteration 0 (``key`` is the one :func:`init` was given) and the insertion's info.
    Shared by :func:`init` and the ask/tell scheduler."""
    _, _, k_emitter, k_next = rng.split(key, 4)
    archive, info = archive.add(genotypes, evaluation.fitness, evaluation.descriptors, features)
    state = RunState(archive, _start_emitter(emitter, k_emitter, archive, genotypes, evaluation), k_next,
                     jnp.zeros((), jnp.int32))  # fmt: skip
    return state, info


def _next_state(state, key, emitter, emitter_state, genotypes, evaluation, features=None):
    """Insert a scored batch and update the emitter: the next iteration's state (with
    ``key``) and the insertion's info. Shared by :func:`step` and the ask/tell scheduler."""
    archive, info = state.archive.add(genotypes, evaluation.fitness, evaluation.descriptors, features)
    emitter_state = emitter.update(emitter_state, archive, genotypes, evaluation, info)
    return RunState(archive, emitter_state, key, state.iteration + 1), info


def _init(key, task, archive, emitter, num_initial, mesh):
    k_genotypes, k_score, _, _ = rng.split(key, 4)
    genotypes = sharding.shard_batch(task.initial_genotypes(k_genotypes, num_initial), mesh)
    evaluation = sharding.shard_batch(task.score(k_score, genotypes), mesh)
    evaluation, features = describe(archive, task, evaluation)
    archive = archive.with_qd_offset(task.qd_offset)  # the metrics read its running QD-score
    with summing_whole_batches(mesh):
        state, _ = _first_state(key, archive, emitter, genotypes, evaluation, features)
    return sharding.replicated(state, mesh)


_INIT_STATIC = ("task", "emitter", "num_initial", "mesh")
# init(donate=True): the state's archive reuses the given archive's buffers
_init_donated = jax.jit(_init, static_argnames=_INIT_STATIC, donate_argnames=("archive",))
_init = jax.jit(_init, static_argnames=_INIT_STATIC)


def init(
    key: jax.Array, task, archive: Archive, emitter, *, num_initial: int | None = None, mesh=None, donate: bool = False
) -> RunState:
    """Evaluate an initial population, insert it, and initialise the emitter (which then
    observes that population, if it has ``observe_initial``).

    Args:
        key: PRNG key (``jax.random.key(seed)``), or a vector of ``S`` keys
            (``jnp.stack([jax.random.key(s) for s in seeds])``): ``S`` independent runs
            as one computation (``vmap``), their state with a leading seed axis
            (:func:`seed_state` takes one out). Seeds need a compiled task and emitter;
            with a ``mesh`` the seeds are split over its devices.
        task: a :class:`qdkit.tasks.Task`.
        archive: an empty (or pre-filled) archive.
        emitter: an :class:`emitters.Emitter`.
        num_initial: size of the random initial population (default: the emitter's
            batch size), drawn by ``task.initial_genotypes``.
        mesh: optional device mesh from :func:`qdkit.sharding.batch_mesh`: the batch is
            split over its devices, the archive replicated. With several seeds, the
            seeds are split over its devices instead (``S`` a multiple of their number;
            see :mod:`qdkit.sharding`).
        donate: hand ``archive`` over: the state's archive is written into its buffers
            instead of new ones, so the archive is held once, not twice, while the
            initial population is inserted (at 10^6 cells of 100 parameters, 400 MB
            less at the peak; ``benchmarks/scaling.py``). JAX deletes the donated
            arrays: neither ``archive`` nor any array it shares may be used after the
            call. ``qdkit run`` donates. With several seeds (each its own archive), a
            mesh of several devices or a host task, nothing is donated.

    Raises:
        ValueError: a task, archive and emitter that cannot run together (see
            :func:`check`), before anything is compiled.
    """
    n = emitter.batch_size if num_initial is None else int(num_initial)
    if n < 1:
        raise ValueError(f"num_initial must be positive; got {n}")
    check(task, archive, emitter)
    typed = jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key)
    if typed and jnp.ndim(key) == 1:  # several seeds: one computation with a leading seed axis
        check_seeds(task, emitter, mesh, jnp.shape(key)[0])
        mesh = None if mesh is None or mesh.size == 1 else mesh
        return _init_seeds(sharding.shard_seeds(key, mesh), task, archive, emitter, n, mesh)
    if jnp.ndim(key) != (0 if typed else 1):
        raise ValueError(
            f"key must be one PRNG key or a vector of keys from jax.random.key (one per seed); got shape "
            f"{jnp.shape(key)}{'' if typed else ' of raw key data'}"
        )
    if is_host(task, emitter):
        return _host_init(key, task, archive, emitter, n)
    sharding.check_mesh(mesh)
    sharding.check_batch(mesh, n)
    archive = sharding.replicate(archive, mesh)
    if donate and (mesh is None or mesh.size == 1):  # (over a mesh, the replicated copies may share buffers)
        # (one buffer cannot be donated twice: a leaf repeated in the archive is copied)
        return _init_donated(sharding.replicate(key, mesh), task, _unshared(archive), emitter, n, mesh)
    return _init(sharding.replicate(key, mesh), task, archive, emitter, n, mesh)


def check_seeds(task, emitter, mesh, seeds: int) -> None:
    """Refuse, up front, a run of several seeds that cannot be one computation."""
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1; got {seeds}")
    if is_host(task, emitter):
        raise ValueError(
            "several seeds run as one compiled computation; this task or emitter runs host code between steps "
            "(a language model or a person): run the seeds one after another"
        )
    sharding.check_seed_mesh(mesh, seeds)


#: The name of the ``vmap`` axis of several seeds.
SEEDS_AXIS = "qdkit_seeds"


def _over_seeds(fn, mesh, replicated_args: int = 0):
    """``fn`` (of seed-axis arguments, then ``replicated_args`` others) vmapped over the
    leading seed axis; with a mesh, each device runs its share of the seeds
    (``shard_map``), with no communication between them."""

    def vmapped(*args):
        split = len(args) - replicated_args
        with xla.kernels_over_axis(SEEDS_AXIS):  # (own_kernels' predicate, see qdkit.xla.own_kernels)
            return jax.vmap(lambda *mine: fn(*mine, *args[split:]), axis_name=SEEDS_AXIS)(*args[:split])

    if mesh is None:
        return vmapped

    def per_device(*args):
        spec = P(mesh.axis_names[0])
        specs = (spec,) * (len(args) - replicated_args) + (P(),) * replicated_args
        return jax.shard_map(vmapped, mesh=mesh, in_specs=specs, out_specs=spec, check_vma=False)(*args)

    return per_device


@functools.partial(jax.jit, static_argnames=("task", "emitter", "num_initial", "mesh"))
def _init_seeds(keys, task, archive, emitter, num_initial, mesh=None):
    return _over_seeds(lambda key: _init(key, task, archive, emitter, num_initial, None), mesh)(keys)


def num_seeds(state: RunState) -> int | None:
    """The number of seeds of a state with a leading seed axis, ``None`` for one run."""
    return None if jnp.ndim(state.iteration) == 0 else int(jnp.shape(state.iteration)[0])


def seed_state(state: RunState, k: int) -> RunState:
    """Seed ``k`` of a state with a leading seed axis: a state like one run's."""
    return jax.tree.map(lambda x: x[k], state)


def state_template(task, archive: Archive, emitter, seeds: int | None = None):
    """The shapes and types of a run state (what :func:`qdkit.checkpoint.load` needs),
    without evaluating anything; with ``seeds``, of a state with that many seeds."""
    if seeds is not None:
        keys = rng.key(list(range(int(seeds))))  # shapes only
        return jax.eval_shape(lambda k: _init_seeds(k, task, archive, emitter, emitter.batch_size, None), keys)
    if is_host(task, emitter):  # nothing to trace: the emitter's own init is cheap host code
        key = rng.key(0)
        archive = archive.with_qd_offset(task.qd_offset)
        return RunState(archive, emitter.init(key, archive), key, jnp.zeros((), jnp.int32))
    check(task, archive, emitter)
    return jax.eval_shape(lambda key: _init(key, task, archive, emitter, emitter.batch_size, None), rng.key(0))


def _step(state: RunState, task, emitter, mesh=None) -> tuple[RunState, dict[str, jax.Array]]:
    key, k_emit, k_score = rng.split(state.key, 3)
    genotypes, emitter_state = emitter.emit(k_emit, state.archive, state.emitter_state)
    genotypes = sharding.shard_batch(genotypes, mesh)
    evaluation = sharding.shard_batch(task.score(k_score, genotypes), mesh)
    evaluation, features = describe(state.archive, task, evaluation)
    with summing_whole_batches(mesh):
        new_state, info = _next_state(state, key, emitter, emitter_state, genotypes, evaluation, features)
    return new_state, metrics_lib.compute(new_state.archive, info, task.qd_offset)


step = jax.jit(_step, static_argnames=("task", "emitter", "mesh"))
step.__doc__ = """One MAP-Elites iteration: emit, score, describe, insert, update the emitter.

Pure and jitted (``task``, ``emitter`` and the optional ``mesh`` are static). Returns
``(state, metrics)`` with metrics as scalars (see :func:`qdkit.metrics.compute`).
"""


# ----------------------------------------------------------------------- host loop
# Host tasks and emitters (language models, people) run eagerly, one iteration at a
# time; the archive insertion and the metrics stay compiled.


@functools.partial(jax.jit, static_argnames=("qd_offset",))
def _insert(archive, genotypes, fitness, descriptors, features, qd_offset):
    archive, info = archive.add(genotypes, fitness, descriptors, features)
    return archive, info, metrics_lib.compute(archive, info, qd_offset)


_split3 = jax.jit(lambda key: tuple(rng.split(key, 3)))


def _as_jax(evaluation):
    return type(evaluation)(
        jnp.asarray(evaluation.fitness, jnp.float32), jnp.asarray(evaluation.descriptors, jnp.float32),
        evaluation.extras,
    )  # fmt: skip


def _host_init(key, task, archive, emitter, n):
    k_genotypes, k_score, k_emitter, k_next = rng.split(key, 4)
    genotypes = jax.tree.map(jnp.asarray, task.initial_genotypes(k_genotypes, n))
    evaluation, features = describe(archive, task, _as_jax(task.score(k_score, genotypes)))
    archive = archive.with_qd_offset(task.qd_offset)  # the metrics read its running QD-score
    archive, _, _ = _insert(archive, genotypes, evaluation.fitness, evaluation.descriptors, features,
                            float(task.qd_offset))  # fmt: skip
    return RunState(archive, _start_emitter(emitter, k_emitter, archive, genotypes, evaluation), k_next,
                    jnp.zeros((), jnp.int32))  # fmt: skip


def _host_step(state: RunState, task, emitter) -> tuple[RunState, dict[str, Any]]:
    key, k_emit, k_score = _split3(state.key)
    genotypes, emitter_state = emitter.emit(k_emit, state.archive, state.emitter_state)
    genotypes = jax.tree.map(jnp.asarray, genotypes)
    evaluation, features = describe(state.archive, task, _as_jax(task.score(k_score, genotypes)))
    archive, info, m = _insert(
        state.archive, genotypes, evaluation.fitness, evaluation.descriptors, features, float(task.qd_offset)
    )
    emitter_state = emitter.update(emitter_state, archive, genotypes, evaluation, info)
    new_state = RunState(archive, emitter_state, key, state.iteration + 1)
    row = {k: np.asarray(v) for k, v in m.items()}
    row.update(_host_stats(task, emitter, emitter_state))
    return new_state, row


def _host_stats(task, emitter, emitter_state) -> dict[str, np.ndarray]:
    extra = dict(task.stats() if getattr(task, "stats", None) else {})
    if getattr(emitter, "stats", None) is not None:
        extra.update(emitter.stats(emitter_state))
    return {k: np.asarray(v) for k, v in extra.items()}


def _host_run(state, task, emitter, iterations, chunk_size, callbacks, interrupted):
    collected: list[Metrics] = []
    rows: list[dict[str, Any]] = []

    def flush():
        nonlocal state
        if not rows:
            return
        chunk = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
        chunk["iteration"] = np.arange(int(state.iteration) - len(rows) + 1, int(state.iteration) + 1, dtype=np.int64)
        rows.clear()
        collected.append(chunk)
        for callback in callbacks:
            replacement = callback(state, chunk)
            if replacement is not None:
                state = _with_task_offset(replacement, task, None)

    for done in range(iterations):
        try:
            state, row = _host_step(state, task, emitter)
        except StopRun as stop:
            flush()
            raise Stopped(state, _concat(collected), str(stop)) from stop
        rows.append(row)
        if len(rows) == chunk_size or done + 1 == iterations or interrupted[0]:
            flush()
        if interrupted[0] and done + 1 < iterations:
            raise Interrupted(state, _concat(collected))
    return state, _concat(collected)


def _metric_buffers(size: int) -> dict[str, jax.Array]:
    return {
        name: jnp.zeros((size,), jnp.int32 if name in metrics_lib.INT_METRICS else jnp.float32)
        for name in metrics_lib.NAMES
    }


def _chunk(state, num, task, emitter, chunk_size, mesh):
    """Up to ``chunk_size`` iterations (``num`` of them) in one loop; metrics in buffers."""

    def body(i, carry):
        state, buffers, cell_buffers = carry
        if cell_buffers is None:
            state, m = _step(state, task, emitter, mesh)
        else:  # the insertions reduce into the carried buffers, and leave them updated in .arrays
            with CellBuffers(cell_buffers).using() as carried:
                state, m = _step(state, task, emitter, mesh)
            cell_buffers = carried.arrays
        buffers = {k: buffers[k].at[i].set(m[k]) for k in buffers}
        return state, buffers, cell_buffers

    # the insertions' per-cell buffers (CellBuffers), carried; not when the batch is
    # split over a mesh's devices (each seed's loop inside _run_chunk_seeds is traced
    # without a mesh, and carries them)
    cell_buffers = CellBuffers.fresh_arrays(state.archive) if mesh is None else None
    state, buffers, _ = lax.fori_loop(0, num, body, (state, _metric_buffers(chunk_size), cell_buffers))
    return sharding.replicated((state, buffers), mesh)  # readable by every process


_run_chunk = jax.jit(_chunk, static_argnames=("task", "emitter", "chunk_size", "mesh"), donate_argnums=(0,))


@functools.partial(jax.jit, static_argnames=("task", "emitter", "chunk_size", "mesh"), donate_argnums=(0,))
def _run_chunk_seeds(state, num, task, emitter, chunk_size, mesh=None):
    """:func:`_chunk` for a state with a leading seed axis (split over ``mesh``'s
    devices, if given): metrics ``(chunk, S)``."""
    chunk = _over_seeds(lambda s, n: _chunk(s, n, task, emitter, chunk_size, None), mesh, replicated_args=1)
    state, buffers = chunk(state, num)
    return state, {k: v.T for k, v in buffers.items()}


@contextlib.contextmanager
def _sigint_flag(enabled: bool) -> Iterator[list[bool]]:
    """While active, the first Ctrl-C sets ``flag[0]``; a second one interrupts at once."""
    flag = [False]
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def run(
    state: RunState,
    task,
    emitter,
    iterations: int,
    *,
    chunk_size: int = 100,
    callbacks: Sequence[Callback] = (),
    catch_interrupt: bool = True,
    mesh=None,
    donate: bool = False,
) -> tuple[RunState, Metrics]:
    """Run ``iterations`` MAP-Elites iterations.

    Args:
        state: from :func:`init` or a checkpoint. It is not modified (unless donated).
        task, emitter: as given to :func:`init`.
        iterations: number of iterations to run (``>= 0``).
        chunk_size: iterations per compiled chunk; host work happens between chunks.
            Without callbacks, the next chunk is handed to the device before the
            metrics of the one before are read, so the device does not wait for the
            host (``benchmarks/run_loop.py``).
        callbacks: called after each chunk as ``callback(state, metrics)`` with the
            chunk's metrics (NumPy arrays, including ``iteration``). The state is only
            valid during the call (its buffers are reused by the next chunk). A
            callback may return a new :class:`RunState` (same shapes and types, e.g. a
            rebuilt archive) to continue from; later callbacks see that one.
        catch_interrupt: on Ctrl-C (main thread only), finish the running chunk (and,
            without callbacks, the one already queued behind it: up to two chunks),
            then raise :class:`Interrupted` carrying the state; a second Ctrl-C stops
            at once.
        mesh: optional device mesh (:func:`qdkit.sharding.batch_mesh`): each batch is
            split over its devices and the archive replicated; the elites are those of
            the single-device run, scores equal up to the last bit (see
            :mod:`qdkit.sharding`). A state of several seeds is split over its devices
            by seed instead, each seed's numbers those of the one-device run.
        donate: hand ``state`` over to the loop, which then reuses its buffers rather
            than copying it first: the copy holds a second archive for the length of
            the call and takes its time (0.2-0.3 s per call at 10^6 cells on a
            2-core CPU; ``benchmarks/scaling.py``, RESULTS.md). JAX
            deletes donated arrays, so neither ``state`` nor any array it shares (one
            passed through from elsewhere) may be used after the call; use the
            returned state. ``qdkit run`` and ``qdkit resume`` donate.

    Host tasks and emitters (``host=True``: language models, people) run one
    iteration at a time outside the compiler (insertion stays compiled; ``mesh`` is
    not used); Ctrl-C stops after the iteration in progress, and a
    :class:`StopRun` raised by them ends the run with :class:`Stopped`. Their
    ``stats`` counters join every metrics row.

    A state of several seeds (from :func:`init` with a vector of keys) runs them all
    as one computation: metrics are ``(iterations, S)`` arrays (``iteration`` stays
    ``(iterations,)``) and callbacks receive the state with its seed axis
    (:class:`qdkit.callbacks.PerSeed` hands each seed's slice to a callback of its own).

    Returns:
        ``(state, metrics)``: metrics as a dict of ``(iterations,)`` NumPy arrays, plus
        ``iteration`` (the 1-based iteration number of each row).
    """
    iterations = int(iterations)
    chunk_size = int(chunk_size)
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0; got {iterations}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive; got {chunk_size}")
    seeds = num_seeds(state)
    if seeds is not None:
        check_seeds(task, emitter, mesh, seeds)
    state = _with_task_offset(state, task, seeds)
    if is_host(task, emitter):  # one iteration at a time; no device mesh
        with _sigint_flag(catch_interrupt) as interrupted:
            return _host_run(state, task, emitter, iterations, chunk_size, callbacks, interrupted)
    if seeds is None:
        sharding.check_mesh(mesh)
        sharding.check_batch(mesh, emitter.batch_size)
    else:
        mesh = None if mesh is None or mesh.size == 1 else mesh
    place = functools.partial(sharding.replicate if seeds is None else sharding.shard_seeds, mesh=mesh)
    collected: list[Metrics] = []
    # The chunks donate (reuse) their input buffers: a private copy unless handed over.
    state = place(_unshared(state) if donate else _private_copy(state))
    done = 0
    start = int(np.max(distributed.to_host(state.iteration))) if iterations else 0
    # Without callbacks, the next chunk is dispatched before this one's metrics are read,
    # so the device does not wait for the host between chunks (a chunk adds its number
    # of iterations to every seed's count, so the host knows where the next one starts).
    waiting: list[tuple[Any, int, int]] = []  # (metric buffers, first iteration, num), not yet read

    def collect() -> Metrics:
        buffers, first, num = waiting.pop(0)
        chunk = {k: v[:num] for k, v in distributed.to_host(buffers).items()}
        chunk["iteration"] = np.arange(first + 1, first + num + 1, dtype=np.int64)
        collected.append(chunk)
        return chunk

    with _sigint_flag(catch_interrupt) as interrupted:
        while done < iterations:
            num = min(chunk_size, iterations - done)
            if seeds is None:
                state, buffers = _run_chunk(state, np.int32(num), task, emitter, chunk_size, mesh)
            else:
                state, buffers = _run_chunk_seeds(state, np.int32(num), task, emitter, chunk_size, mesh)
            waiting.append((buffers, start, num))
            start, done = start + num, done + num
            if callbacks:
                chunk = collect()
                for callback in callbacks:
                    replacement = callback(state, chunk)
                    if replacement is not None:  # e.g. a refit of learned descriptors
                        state = place(_unshared(_with_task_offset(replacement, task, seeds)))
                        start = int(np.max(distributed.to_host(state.iteration)))
            elif len(waiting) > 1:
                collect()  # the previous chunk's metrics, while this chunk runs
            if interrupted[0] and done < iterations:
                while waiting:
                    collect()
                raise Interrupted(state, _concat(collected))
        while waiting:
            collect()
    return state, _concat(collected)


def _with_task_offset(state: RunState, task, seeds: int | None) -> RunState:
    """``state`` with an archive that keeps its running QD-score for the task's
    ``qd_offset`` (a state from elsewhere, such as a callback's replacement or one built
    by hand, may keep none, and then the metrics would sum over the cells and its
    checkpoints would not match the run's template); free when it already does."""
    archive = state.archive
    if kept_offset(task.qd_offset) == archive.qd_offset:
        return state
    if seeds is None:
        return state.replace(archive=archive.with_qd_offset(task.qd_offset))
    return state.replace(archive=jax.vmap(lambda a: a.with_qd_offset(task.qd_offset))(archive))


def _copy_leaf(leaf):
    """A copy of one leaf in new buffers. A JAX array this process holds whole is
    copied by ``jax.device_put(..., may_alias=False)`` (its sharding kept, no program
    compiled: an eager ``jnp.copy`` compiles one for each shape and dtype, about 5 ms
    each, eight of them before the first step of ``qdkit run``'s arm); a PRNG key
    through its key data (``device_put`` of a key replicated over several devices
    reuses a buffer); anything else by ``jnp.copy``."""
    if isinstance(leaf, jax.core.Tracer) or not isinstance(leaf, jax.Array) or not leaf.is_fully_addressable:
        return jnp.copy(leaf)
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        data = jax.device_put(jax.random.key_data(leaf), may_alias=False)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    return jax.device_put(leaf, may_alias=False)


def _private_copy(tree):
    """``tree`` with every leaf copied into a new buffer, as :func:`_copy_leaf` copies
    it; the arrays this process holds whole, and the keys' data, in one
    ``jax.device_put`` call (the arm's 14 leaves: 0.49 ms, against 0.66 ms a call
    per leaf)."""
    leaves, treedef = jax.tree.flatten(tree)
    whole = [
        i
        for i, leaf in enumerate(leaves)
        if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer) and leaf.is_fully_addressable
    ]
    keys = {i for i in whole if jnp.issubdtype(leaves[i].dtype, jax.dtypes.prng_key)}
    data = [jax.random.key_data(leaves[i]) if i in keys else leaves[i] for i in whole]
    copied = dict(zip(whole, jax.device_put(data, may_alias=False)))
    for i in keys:
        copied[i] = jax.random.wrap_key_data(copied[i], impl=jax.random.key_impl(leaves[i]))
    return jax.tree.unflatten(treedef, [copied[i] if i in copied else _copy_leaf(x) for i, x in enumerate(leaves)])


def _unshared(tree):
    """``tree`` with a copy of every leaf that repeats an earlier one (a state built
    outside the loop may hold one array twice, e.g. a threshold archive's empty storage
    and result archive); the chunks donate their input, and one buffer cannot be
    donated twice."""
    seen: set[int] = set()

    def one(leaf):
        if isinstance(leaf, jax.Array) and id(leaf) in seen:
            return _copy_leaf(leaf)
        seen.add(id(leaf))
        return leaf

    return jax.tree.map(one, tree)


def _concat(chunks: list[Metrics]) -> Metrics:
    if not chunks:  # (a run of several seeds that ran no iteration returns these too)
        out = {k: np.asarray(v) for k, v in _metric_buffers(0).items()}
        out["iteration"] = np.zeros((0,), np.int64)
        return out
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
