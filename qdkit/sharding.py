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

Several hosts: start one process per host with the same code after
``jax.distributed.initialize(coordinator_address="host0:1234", num_processes=N,
process_id=i)``; ``jax.devices()`` then lists every host's devices and
:func:`batch_mesh` spans them all.
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


def resolve(devices: int | str | None, batch_size: int) -> Mesh | None:
    """The mesh for a CLI ``--devices`` value: ``"auto"`` takes as many local devices as
    divide the batch, a number takes that many; one device means no mesh."""
    if devices in (None, "auto"):
        count = usable_devices(batch_size)
        return None if count == 1 else batch_mesh(count)
    mesh = batch_mesh(int(devices))  # validates the count
    check_batch(mesh, batch_size)
    return None if mesh.size == 1 else mesh


def check_batch(mesh: Mesh | None, batch_size: int) -> None:
    """Refuse a batch that does not split evenly over the mesh."""
    if mesh is not None and batch_size % mesh.size:
        raise ValueError(f"batch size {batch_size} does not split evenly over {mesh.size} devices")


def shard_batch(tree: Any, mesh: Mesh | None) -> Any:
    """Inside ``jit``: lay the leading (batch) axis of every leaf over the mesh."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, P(AXIS)))


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Outside ``jit``: a copy of ``tree`` on every device of the mesh."""
    if mesh is None:
        return tree
    return jax.device_put(tree, NamedSharding(mesh, P()))
