"""XLA:CPU settings qdkit runs with.

XLA:CPU hands some reductions to the YNNPACK library (its "YNN reduce fusions", on by
default in JAX 0.10). The reductions of a QD iteration are small (a batch of 256 rows, a
2-D descriptor), and for them the hand-off can cost more than the arithmetic: it also
makes XLA materialise every operand of the reduction instead of computing it in the
loop that reduces it. Without these fusions, on a 2-core CPU, 16 vmapped seeds of the
arm default ran 1.28x faster and the core-throughput rastrigin iteration 1.09x faster;
one seed of the arm ran 2% slower and the maze 5% slower, within this machine's
run-to-run spread (``benchmarks/xla_options.py``; RESULTS.md has the figures).

Importing qdkit therefore adds ``--xla_cpu_experimental_ynn_fusion_type=-reduce`` to
``XLA_FLAGS`` (YNNPACK keeps its matrix products), with three exceptions:

- ``QDKIT_XLA_DEFAULTS=0`` (or ``off``, ``false``, ``no``) in the environment keeps
  XLA's own defaults;
- an ``XLA_FLAGS`` that already sets ``xla_cpu_experimental_ynn_fusion_type`` is left
  as it is;
- a jaxlib older than 0.10 (:data:`MIN_JAXLIB`, the first one this was measured on): an
  XLA that does not know the flag refuses to start.

XLA reads its flags once, when JAX starts its first backend: import qdkit before the
first JAX computation of the process (``qdkit run`` does). Imported later, qdkit warns
and leaves ``XLA_FLAGS`` alone (setting it then would change only the subprocesses).
The flag concerns the CPU compiler only; GPU and TPU programs are unchanged.

:func:`own_kernels` computes a value in kernels of its own on a CPU backend (XLA's CPU
compiler would otherwise compute a cheap value again inside every kernel that reads it);
the Gaussian and Iso+LineDD emitters use it for their offspring.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.metadata
import os
import sys
import warnings
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

#: The flag qdkit adds to ``XLA_FLAGS``.
FLAG = "--xla_cpu_experimental_ynn_fusion_type=-reduce"

#: ``XLA_FLAGS`` names the flag this way; its presence means the user chose.
_NAME = "xla_cpu_experimental_ynn_fusion_type"

#: The oldest jaxlib qdkit sets the flag for.
MIN_JAXLIB = (0, 10)


def _jaxlib_version() -> tuple[int, ...]:
    try:
        text = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return ()
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _backend_started() -> bool:
    bridge = sys.modules.get("jax._src.xla_bridge")
    started = getattr(bridge, "backends_are_initialized", None)
    return bool(started and started())


def compiler_options() -> dict[str, str]:
    """The same setting as :data:`FLAG`, as compiler options for one program
    (``jax.jit(f).lower(...).compile(compiler_options=...)``): XLA's default list of
    YNN fusions without the reductions, as of jaxlib 0.10 (tests/test_xla.py checks that
    it compiles the same program as the flag; ``benchmarks/xla_options.py`` compares it
    with XLA's defaults in one process)."""
    return {_NAME: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_DOT"}


def apply_defaults(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Add :data:`FLAG` to ``environ["XLA_FLAGS"]`` unless ``QDKIT_XLA_DEFAULTS`` is off,
    ``XLA_FLAGS`` already sets the option, jaxlib is older than :data:`MIN_JAXLIB` or a
    JAX backend has already started (then with a warning); returns whether it was
    added."""
    if environ.get("QDKIT_XLA_DEFAULTS", "1").strip().lower() in ("0", "off", "false", "no"):
        return False
    flags = environ.get("XLA_FLAGS", "")
    if _NAME in flags or _jaxlib_version() < MIN_JAXLIB:
        return False
    if _backend_started():
        warnings.warn(
            "qdkit was imported after JAX started its backend: XLA keeps its default YNN reduce fusions in this "
            "process (import qdkit first; see qdkit.xla)",
            stacklevel=3,
        )
        return False
    environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
    return True


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def use_cpu_devices(count: int, environ: MutableMapping[str, str] = os.environ) -> bool:
    """Have JAX make ``count`` CPU devices (``jax_num_cpu_devices``), unless something
    already chose their number (``JAX_NUM_CPU_DEVICES``, the config option, or
    ``--xla_force_host_platform_device_count`` in ``XLA_FLAGS``) or a JAX backend has
    started (then it warns if the count differs: JAX makes its devices once); returns
    whether it did. ``qdkit run --seeds`` calls it: on a CPU each device runs its share
    of the seeds on a thread of its own (see :mod:`qdkit.sharding`). GPU and TPU devices
    are not affected. ``QDKIT_XLA_DEFAULTS`` does not concern it (``--devices 1`` keeps
    one device)."""
    import jax

    if count < 2:
        return False
    if "xla_force_host_platform_device_count" in environ.get("XLA_FLAGS", ""):
        return False
    if jax.config.jax_num_cpu_devices != -1:
        return False
    if _backend_started():
        have = len(jax.devices("cpu"))
        if have != count:
            warnings.warn(
                f"JAX has already started with {have} CPU device(s); call qdkit.xla.use_cpu_devices({count}) "
                "before the first JAX computation of the process to get more",
                stacklevel=2,
            )
        return False
    jax.config.update("jax_num_cpu_devices", int(count))
    return True


_OWN_KERNELS: contextvars.ContextVar = contextvars.ContextVar("qdkit_own_kernels", default=True)
_VMAP_AXIS: contextvars.ContextVar = contextvars.ContextVar("qdkit_vmap_axis", default=None)


def own_kernels(fn: Callable[..., Any], operands: tuple, nonconstant) -> Any:
    """``fn(*operands)``, computed by kernels of its own on a CPU backend; jittable.

    XLA's CPU compiler does not write a cheap elementwise value (a batch of offspring:
    parents gathered from the archive, plus noise, clipped) to memory: it computes it
    again inside every kernel that reads it. For an emitter's offspring those are the
    task's scoring, the finite check, the cell index and the archive write, and each
    copy reads the archive rows and the noise again. A conditional is a boundary XLA
    does not fuse across, so here ``fn`` runs as both branches of one: its kernels (the
    gathers fused into the arithmetic) write the result once, and the consumers read
    it. For the Gaussian and Iso+LineDD emitters the runs were the same, bit for bit
    (tests/test_xla.py; ``benchmarks/own_kernels.py`` compares the archives and the
    times), but XLA may round a multiply-add differently in another kernel, so the last
    bit of a function of one's own is not guaranteed.

    ``nonconstant`` is an integer scalar of the computation that XLA cannot know when
    compiling (an archive's size): the conditional's predicate. Both branches are
    ``fn``, so its value does not matter, but a constant predicate would let XLA inline
    the branch and fuse it again.

    It is a plain call ``fn(*operands)`` off the CPU, outside a trace (a concrete
    ``nonconstant``: an eager call would compile a conditional each time), and while
    tracing inside :func:`plain_kernels`. Under ``vmap`` the predicate is batched, and
    ``vmap`` turns a conditional with a batched predicate into a select of both
    branches, which costs more than it saves: inside :func:`kernels_over_axis` the
    predicate is reduced over that named ``vmap`` axis (the same for every member, so
    not batched). qdkit's vmapped seeds run inside it, so a seed of a vmapped run makes
    the same kernels, and the same numbers, as the run of that seed.
    """
    import jax
    import jax.numpy as jnp
    from jax import lax

    mode = _OWN_KERNELS.get()
    if mode is False or not isinstance(nonconstant, jax.core.Tracer) or jax.default_backend() != "cpu":
        return fn(*operands)
    predicate = (jnp.asarray(nonconstant) >= 0).astype(jnp.int32)
    if isinstance(mode, str):
        predicate = lax.pmin(predicate, mode)
    return lax.cond(predicate > 0, fn, fn, *operands)


@contextlib.contextmanager
def kernels_over_axis(axis_name: str) -> Iterator[None]:
    """While tracing inside it, :func:`own_kernels` reduces its predicate over the
    ``vmap`` axis ``axis_name`` (every call inside must be under that ``vmap``); inside
    :func:`plain_kernels` it stays a plain call. It also sets :func:`vmap_axis` to
    ``axis_name``, inside :func:`plain_kernels` too."""
    token = _OWN_KERNELS.set(False if _OWN_KERNELS.get() is False else str(axis_name))
    axis = _VMAP_AXIS.set(str(axis_name))
    try:
        yield
    finally:
        _VMAP_AXIS.reset(axis)
        _OWN_KERNELS.reset(token)


def vmap_axis() -> str | None:
    """The ``vmap`` axis of the innermost :func:`kernels_over_axis` being traced (qdkit's
    vmapped seeds), or ``None``. Code that makes different kernels for a batched
    operand reads it while tracing (``qdkit.cvt.nearest_table``): inside a ``vmap``'s
    ``scan`` or ``while`` the operands are plain tracers of one member's shape, so the
    batching cannot be seen from them."""
    return _VMAP_AXIS.get()


@contextlib.contextmanager
def plain_kernels() -> Iterator[None]:
    """While tracing inside it, :func:`own_kernels` is a plain call
    (``benchmarks/own_kernels.py`` times the code without it this way)."""
    token = _OWN_KERNELS.set(False)
    try:
        yield
    finally:
        _OWN_KERNELS.reset(token)
