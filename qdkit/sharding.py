"""Spread each iteration's batch over several devices.

The layout is a 1-D mesh over the batch axis: offspring are generated and scored
shard by shard (each device handles ``batch / n`` rows), and the archive is
replicated: every device holds the whole archive and performs the same insertion
on the gathered batch, so candidates for one cell that come from different devices
compete exactly as they would on one device. A run with ``n`` devices draws the same
random numbers and keeps the same elites as the single-device run for the same seed,
with one caveat: XLA may vectorise a reduction inside a row (a sum over genes, say)
differently for a different number of rows per device, so fitness and descriptors
can differ in their last bit (relative 1e-7), which could, rarely, flip a near-tie.

What the replicated archive costs: every device receives the rows scored on the
others, ``(n - 1) / n * batch * row`` bytes per iteration (``row``: genotype, fitness and
descriptors), while its share of the scoring shrinks to ``batch / n``; the gather
dominates when ``(n - 1) * row / bandwidth`` exceeds the time to score one candidate.
For a brax ant policy (MLP 128x128, 84.5 kB per row, 250-step episodes) that needs a
link slower than about 3.5 GB/s at 8 devices even if an episode took only 0.17 ms, so
the batch split pays; for cheap functions (rastrigin, 412 B per row scored in well
under a microsecond) the gather dominates from 2 devices and one device is faster
(``benchmarks/devices_throughput.py``, figures in ``benchmarks/RESULTS.md``).

Several seeds (a run state with a leading seed axis: :func:`qdkit.map_elites.init` with
a vector of keys) use a mesh differently: the *seeds* are split over its devices, each
device running its share of them vmapped, with no communication (the seeds are
independent searches); every seed's numbers are those of the one-device run, to the
last bit. On a CPU this is how several seeds use several cores: XLA runs each device's
program on a thread of its own, while one device runs most of a small iteration on one
core. :func:`qdkit.xla.use_cpu_devices` (JAX's ``jax_num_cpu_devices``, before the
first use of a device) makes ``N`` CPU devices; ``qdkit run --seeds`` calls it.

Several processes (hosts): start one process per host with the same code and call
:func:`qdkit.distributed.initialize` first; ``jax.devices()`` then lists every
process's devices and :func:`batch_mesh` spans them all. A mesh of such a run must hold
devices of every process (each scores its share of the batch). :func:`replicate`
builds the replicated copies from each process's identical host values (a PRNG key
through its key data), and the compiled steps return the run state and metrics
replicated, so any process can read them without a collective.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

AXIS = "batch"


def batch_mesh(devices: int | Sequence[Any] | None = None) -> Mesh:
    """A 1-D device mesh named ``"batch"``.

    Args:
        devices: a number of devices (the first ``n`` of ``jax.devices()``), a list of
            devices, or ``None`` for all of them.
    """
    available = jax.devices()
    if devices is None:
        chosen = available
    elif isinstance(devices, int):
        if not 1 <= devices <= len(available):
            raise ValueError(f"devices must be between 1 and {len(available)} (the devices JAX sees); got {devices}")
        chosen = available[:devices]
    else:
        chosen = list(devices)
    return Mesh(np.asarray(chosen), (AXIS,))


def usable_devices(batch_size: int, available: int | None = None) -> int:
    """The largest device count ``<= available`` that divides ``batch_size``."""
    available = len(jax.devices()) if available is None else available
    return max(n for n in range(1, available + 1) if batch_size % n == 0)


def spans_processes(mesh: Mesh | None) -> bool:
    """Whether ``mesh`` holds devices of other processes than this one."""
    if mesh is None:
        return False
    here = jax.process_index()
    return any(d.process_index != here for d in mesh.devices.flat)


def resolve(devices: int | str | None, batch_size: int) -> Mesh | None:
    """The mesh for a CLI ``--devices`` value: ``"auto"`` takes as many devices as divide
    the batch (in a run of several processes: all of them, every process's), a number
    takes that many; one device means no mesh."""
    total = len(jax.devices())
    if jax.process_count() > 1:  # every process must take part: the mesh spans all devices
        if devices not in (None, "auto") and int(devices) != total:
            raise ValueError(
                f"devices must be auto or {total} (every device of the {jax.process_count()} processes) in a run of "
                f"several processes; got {devices}"
            )
        mesh = batch_mesh(total)
        if batch_size % total:
            raise ValueError(
                f"batch size {batch_size} does not split evenly over the {total} devices of the "
                f"{jax.process_count()} processes"
            )
        return mesh
    if devices in (None, "auto"):
        count = usable_devices(batch_size)
        return None if count == 1 else batch_mesh(count)
    mesh = batch_mesh(int(devices))  # validates the count
    check_batch(mesh, batch_size)
    return None if mesh.size == 1 else mesh


def resolve_seeds(devices: int | str | None, seeds: int) -> Mesh | None:
    """The mesh for a CLI ``--devices`` value in a run of several seeds: ``"auto"`` takes
    as many of this process's devices as divide the number of seeds, a number takes that
    many (it must divide it); one device means no mesh."""
    if devices in (None, "auto"):
        count = usable_devices(seeds, len(jax.local_devices()))
        return None if count == 1 else Mesh(np.asarray(jax.local_devices()[:count]), (AXIS,))
    mesh = batch_mesh(int(devices))  # validates the count
    check_seed_mesh(mesh, seeds)
    return None if mesh.size == 1 else mesh


def check_seed_mesh(mesh: Mesh | None, seeds: int) -> None:
    """Refuse a mesh that cannot split ``seeds`` seeds: one of several processes, not
    1-D, or a device count that does not divide the seeds."""
    if mesh is None or mesh.size == 1:
        return
    if spans_processes(mesh) or jax.process_count() > 1:
        raise ValueError(
            f"several seeds run in one process, over its own devices; this is process {jax.process_index()} of "
            f"{jax.process_count()} (run the seeds without jax.distributed / the process options)"
        )
    if len(mesh.axis_names) != 1:
        raise ValueError(f"several seeds are split over a 1-D mesh (sharding.batch_mesh()); got axes {mesh.axis_names}")
    if seeds % mesh.size:
        fits = [n for n in range(1, len(jax.local_devices()) + 1) if seeds % n == 0]
        raise ValueError(
            f"{seeds} seeds do not split evenly over {mesh.size} devices; device counts that do here: "
            f"{', '.join(map(str, fits))}"
        )


def seed_sharding(mesh: Mesh) -> NamedSharding:
    """The layout of leaves with a leading seed axis over a 1-D mesh: each device holds
    its share of the seeds."""
    return NamedSharding(mesh, P(mesh.axis_names[0]))


def shard_seeds(tree: Any, mesh: Mesh | None) -> Any:
    """Outside ``jit``: ``tree`` (leaves with a leading seed axis) laid out over the
    mesh's devices, each holding its share of the seeds."""
    if mesh is None or mesh.size == 1:
        return tree
    target = seed_sharding(mesh)

    def one(leaf):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            if leaf.sharding.is_equivalent_to(target, leaf.ndim):
                return leaf
            # through the host: JAX would compile a program to split a device array
            data = jax.device_put(np.asarray(jax.random.key_data(leaf)), target)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        return jax.device_put(leaf, target)

    return jax.tree.map(one, tree)


def check_mesh(mesh: Mesh | None) -> None:
    """In a run of several processes, refuse a mesh that leaves out a process's devices
    (or no mesh: each process would run a search of its own)."""
    count = jax.process_count()
    if count == 1:
        return
    if mesh is None:
        raise ValueError(
            f"a run of {count} processes needs a mesh over every process's devices (sharding.batch_mesh()); "
            "without one each process would run a search of its own"
        )
    held = {d.process_index for d in mesh.devices.flat}
    if len(held) < count:
        missing = sorted(set(range(count)) - held)
        raise ValueError(
            f"the mesh leaves out the devices of process(es) {missing}; in a run of {count} processes it must hold "
            "devices of every process (sharding.batch_mesh())"
        )


def check_batch(mesh: Mesh | None, batch_size: int) -> None:
    """Refuse a batch that does not split evenly over the mesh."""
    if mesh is not None and batch_size % mesh.size:
        raise ValueError(f"batch size {batch_size} does not split evenly over {mesh.size} devices")


def shard_batch(tree: Any, mesh: Mesh | None) -> Any:
    """Inside ``jit``: lay the leading (batch) axis of every leaf over the mesh."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, P(AXIS)))


def replicated(tree: Any, mesh: Mesh | None) -> Any:
    """Inside ``jit``: keep every leaf of ``tree`` whole on every device of the mesh
    (so each process can read it locally)."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, P()))


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Outside ``jit``: a copy of ``tree`` on every device of the mesh.

    On a mesh that spans processes every process must call it with the same values
    (the same seed, the same checkpoint): each builds its own devices' copies from its
    host values. Arrays already replicated over the mesh are returned as they are."""
    if mesh is None:
        return tree
    target = NamedSharding(mesh, P())
    if not spans_processes(mesh):
        return jax.device_put(tree, target)

    def one(leaf):
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            impl = jax.random.key_impl(leaf)
            return jax.random.wrap_key_data(one(jax.random.key_data(leaf)), impl=impl)
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            if leaf.sharding.is_equivalent_to(target, leaf.ndim):
                return leaf
            return jax.jit(lambda x: x, out_shardings=target)(leaf)
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, target, lambda index: host[index])

    return jax.tree.map(one, tree)
