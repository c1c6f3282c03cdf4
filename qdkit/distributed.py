"""Several processes, one search: ``jax.distributed`` for runs that span hosts.

Start one process per host (or per group of devices) with the same code and the same
settings, and call :func:`initialize` in each before JAX touches a device::

    import qdkit
    from qdkit import distributed, map_elites, sharding
    distributed.initialize("host0:1234", num_processes=2, process_id=i)
    mesh = sharding.batch_mesh()          # every process's devices
    state = map_elites.init(key, task, archive, emitter, mesh=mesh)
    state, metrics = map_elites.run(state, task, emitter, 1000, mesh=mesh)
    if distributed.is_writer():
        qdkit.export.save_npz(state.archive, "archive.npz")

Every process then computes the whole search together: each scores its share of the
batch on its own devices, and every device keeps a copy of the archive (see
:mod:`qdkit.sharding`). The run state that :func:`qdkit.map_elites.init` and
:func:`~qdkit.map_elites.run` return is replicated, so every process can read it
(``np.asarray``) without talking to the others; by convention process 0, the
*writer*, writes files and shows progress. ``qdkit run``/``resume`` do exactly this
with ``--coordinator``, ``--num-processes`` and ``--process-id`` (or the
``QDKIT_COORDINATOR``, ``QDKIT_NUM_PROCESSES`` and ``QDKIT_PROCESS_ID`` environment
variables).

When a process dies, the others learn it from the coordination service's heartbeat
and abort (JAX prints "another task died" or similar) after at most
``heartbeat_timeout`` seconds, instead of waiting forever inside a collective.
"""

from __future__ import annotations

import hashlib
import os
import sys
from typing import Any

import jax
import numpy as np

ENV_COORDINATOR = "QDKIT_COORDINATOR"
ENV_NUM_PROCESSES = "QDKIT_NUM_PROCESSES"
ENV_PROCESS_ID = "QDKIT_PROCESS_ID"
ENV_HEARTBEAT = "QDKIT_HEARTBEAT_TIMEOUT"
DEFAULT_HEARTBEAT = 30
ENV_INIT_TIMEOUT = "QDKIT_INIT_TIMEOUT"
DEFAULT_INIT_TIMEOUT = 120


class DistributedError(ValueError):
    """Settings for several processes that cannot work (one line naming the option)."""


def settings(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> tuple[str, int, int] | None:
    """``(coordinator, num_processes, process_id)`` from the arguments, each falling back
    on its environment variable; ``None`` for a single-process run (nothing given, or
    one process). Refuses incomplete or inconsistent settings."""
    coordinator = coordinator if coordinator is not None else os.environ.get(ENV_COORDINATOR) or None
    num = _integer("num_processes", ENV_NUM_PROCESSES, num_processes)
    pid = _integer("process_id", ENV_PROCESS_ID, process_id)
    if coordinator is None and num is None and pid is None:
        return None
    if num is None:
        given = "coordinator" if coordinator is not None else "process_id"
        raise DistributedError(
            f"num_processes (--num-processes or ${ENV_NUM_PROCESSES}) is needed when {given} is given"
        )
    if num < 1:
        raise DistributedError(f"num_processes must be positive; got {num}")
    if num == 1:
        if pid not in (None, 0):
            raise DistributedError(f"process_id must be 0 for 1 process; got {pid}")
        return None
    if coordinator is None:
        raise DistributedError(
            f"coordinator (--coordinator HOST:PORT or ${ENV_COORDINATOR}) is needed for {num} processes"
        )
    host, sep, port = coordinator.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedError(f"coordinator must be HOST:PORT; got {coordinator!r}")
    if pid is None:
        raise DistributedError(f"process_id (--process-id or ${ENV_PROCESS_ID}) is needed for {num} processes")
    if not 0 <= pid < num:
        raise DistributedError(f"process_id must be in [0, {num - 1}] for {num} processes; got {pid}")
    return coordinator, num, pid


def _integer(name: str, env: str, value: int | None) -> int | None:
    if value is not None:
        return int(value)
    raw = os.environ.get(env)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise DistributedError(f"${env} ({name}) must be an integer; got {raw!r}") from None


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    heartbeat_timeout: int | None = None,
) -> bool:
    """Join a run of several processes (``jax.distributed.initialize``); returns whether
    there are several.

    Args:
        coordinator: ``HOST:PORT`` of process 0, which hosts the coordination service
            (default ``$QDKIT_COORDINATOR``).
        num_processes: processes in the run (default ``$QDKIT_NUM_PROCESSES``).
        process_id: this process's rank, ``0 .. num_processes - 1`` (default
            ``$QDKIT_PROCESS_ID``).
        heartbeat_timeout: seconds after which the others give up on a process that
            stopped answering (default ``$QDKIT_HEARTBEAT_TIMEOUT``, else 30).

    Nothing given (or one process) is a single-process run: nothing happens. Call it
    before anything touches a device (creating an array, ``jax.devices()``).

    Raises:
        DistributedError: incomplete or inconsistent settings, or a call after JAX has
            started its devices.
    """
    chosen = settings(coordinator, num_processes, process_id)
    if chosen is None:
        return False
    if heartbeat_timeout is None:
        heartbeat_timeout = _integer("heartbeat_timeout", ENV_HEARTBEAT, None)
        heartbeat_timeout = DEFAULT_HEARTBEAT if heartbeat_timeout is None else heartbeat_timeout
    if int(heartbeat_timeout) < 1:
        raise DistributedError(f"heartbeat_timeout must be positive; got {heartbeat_timeout}")
    from jax._src import distributed as jax_distributed
    from jax._src import xla_bridge

    if jax_distributed.global_state.client is not None:
        raise DistributedError("jax.distributed is already initialised in this process")
    if xla_bridge.backends_are_initialized():
        raise DistributedError(
            "distributed.initialize must come before anything touches a device (an array, jax.devices())"
        )
    address, num, pid = chosen
    wait = _integer("initialization_timeout", ENV_INIT_TIMEOUT, None)
    wait = DEFAULT_INIT_TIMEOUT if wait is None else wait
    if wait < 1:
        raise DistributedError(f"${ENV_INIT_TIMEOUT} must be positive; got {wait}")
    print(f"process {pid} of {num}: waiting up to {wait} s for all {num} processes at {address}", file=sys.stderr,
          flush=True)  # fmt: skip
    jax.distributed.initialize(
        coordinator_address=address, num_processes=num, process_id=pid, heartbeat_timeout_seconds=int(heartbeat_timeout),
        initialization_timeout=int(wait),
    )  # fmt: skip
    return True


def same_everywhere(text: str) -> bool:
    """Whether every process holds the same ``text`` (e.g. its run settings); a
    collective, so every process gets the same answer."""
    if jax.process_count() == 1:
        return True
    from jax.experimental import multihost_utils

    digest = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], np.int32)
    every = np.asarray(multihost_utils.process_allgather(digest))
    return bool((every == every[0]).all())


def process_index() -> int:
    return jax.process_index()


def process_count() -> int:
    return jax.process_count()


def is_writer() -> bool:
    """Whether this process writes files and shows progress (process 0)."""
    return jax.process_index() == 0


def agree(value: int) -> int:
    """The writer's ``value`` (a small integer) in every process: for decisions only
    the writer can make, such as whether a run directory already holds a run."""
    if jax.process_count() == 1:
        return int(value)
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def to_host(tree: Any) -> Any:
    """A pytree of NumPy arrays (PRNG keys stay keys, on this process's default
    device) from arrays that may span processes. Replicated arrays are read locally;
    an array split over processes is gathered (a collective: every process must call
    this together)."""

    def one(leaf):
        if not isinstance(leaf, jax.Array):
            return leaf
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            impl = jax.random.key_impl(leaf)
            return jax.random.wrap_key_data(np.asarray(one(jax.random.key_data(leaf))), impl=impl)
        if leaf.is_fully_addressable or leaf.is_fully_replicated:
            return np.asarray(leaf.addressable_data(0) if not leaf.is_fully_addressable else leaf)
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))

    return jax.tree.map(one, tree)
