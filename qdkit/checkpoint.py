"""Checkpoints: the whole run state in one ``.npz`` file, written atomically.

The file is a NumPy ``.npz`` archive (a zip): one array per pytree leaf
(``leaf_0``, ``leaf_1``, ...) and a ``__qdkit__`` entry holding JSON metadata — the
format name and version, the qdkit version that wrote it, the iteration, the run
configuration, the tree structure and each leaf's dtype and shape.

Format versions: 1 was written by qdkit 0.1 (archives as subclasses, emitter states as
dicts); 2, from qdkit 0.2, holds the composed archive (storage, indexer, thresholds,
result archive) and named emitter states; 3, from qdkit 0.3, adds the archive's count of
elites (``Elites.count``); 4, from qdkit 0.4, its running totals (``Elites.totals``: the
QD-score the metrics read). A file of another version is refused with the
version that wrote it and what to do. PRNG keys are stored as their raw key data with the
implementation's name.

Loading needs a *template*: a state (or ``jax.eval_shape`` of one) with the same
structure, built from the run's configuration. The structure, shapes and dtypes of the
file must match it exactly, so a checkpoint of another run is refused with a clear
message rather than silently reinterpreted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import re
import tempfile
import zipfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from qdkit import distributed

FORMAT = "qdkit-checkpoint"
VERSION = 4
_META = "__qdkit__"
_HOST = "host/"
#: An archive's static field (its ``qd_offset``) as a tree structure prints it.
_ARCHIVE_META = re.compile(r"(?<=Archive\[\()([^,)]*)(?=,?\)\])")
#: What each earlier format version was written by, for the error message.
_WRITTEN_BY = {1: "qdkit 0.1", 2: "qdkit 0.2", 3: "qdkit 0.3"}


def _qdkit_version() -> str:
    from qdkit import __version__

    return __version__


class CheckpointError(Exception):
    """A checkpoint file is missing, truncated, corrupt, foreign or of another run."""


def _is_key(leaf: Any) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


@dataclasses.dataclass(frozen=True)
class HostCopy:
    """A state's leaves copied to the host once (:func:`on_host`), for several
    checkpoints of the same state (:func:`save`, :func:`save_seeds`) without a transfer
    each. ``iteration`` is the state's (``None`` when it has none)."""

    arrays: list[np.ndarray]
    described: list[dict]
    treedef: Any
    iteration: np.ndarray | None


def save(
    path: str | os.PathLike,
    state: Any,
    config: dict | None = None,
    host: dict[str, np.ndarray] | None = None,
) -> None:
    """Write ``state`` (any pytree, typically a :class:`qdkit.RunState`, or its
    :class:`HostCopy`) to ``path``.

    ``host`` holds named NumPy arrays of host-side state that must stay consistent with
    ``state`` (a QDHF refitter's judgments, refit count and random streams); they are
    written into the same file, so one rename commits both (read them with
    :func:`load_host`).

    The write is atomic: a temporary file in the same directory, flushed and synced,
    then renamed over ``path``. A crash leaves either the old or the new checkpoint.
    The file holds plain arrays, whatever devices or processes ``state`` lay on (an
    array split over processes is gathered, a collective), so it loads on any layout.
    """
    copy = on_host(state)
    _write(path, copy.arrays, copy.described, copy.treedef, copy.iteration, config, host)


def save_seeds(paths: list[str | os.PathLike], state: Any, configs: list[dict | None] | None = None) -> None:
    """Write seed ``k`` of ``state`` (leaves with a leading seed axis, e.g. a run state of
    several seeds, or its :class:`HostCopy`) to ``paths[k]`` with ``configs[k]``: the
    checkpoint that :func:`save` writes for ``map_elites.seed_state(state, k)``, but the
    state crosses to the host once and is sliced there (no device program per leaf and
    seed).

    Raises:
        ValueError: not one path per seed, or not one config per path.
    """
    copy = on_host(state)
    configs = [None] * len(paths) if configs is None else configs
    if len(configs) != len(paths):
        raise ValueError(f"{len(paths)} paths but {len(configs)} configs")
    axes = {a.shape[0] if a.ndim else None for a in copy.arrays}
    if axes != {len(paths)}:
        raise ValueError(
            f"{len(paths)} paths, but the state's leaves have leading axes {sorted(axes, key=str)}: give one path per "
            "seed of a state with a leading seed axis"
        )
    for k, path in enumerate(paths):
        mine = [{**entry, "shape": entry["shape"][1:]} for entry in copy.described]
        iteration = None if copy.iteration is None else copy.iteration[k]
        _write(path, [a[k] for a in copy.arrays], mine, copy.treedef, iteration, configs[k], None)


def on_host(state: Any) -> HostCopy:
    """The leaves of ``state`` as NumPy arrays (a key as its key data), how to rebuild
    each, the tree structure and the iteration; ``state`` itself when it is one."""
    if isinstance(state, HostCopy):
        return state
    leaves, treedef = jax.tree.flatten(state)
    leaves = distributed.to_host(leaves)
    arrays: list[np.ndarray] = []
    described = []
    for leaf in leaves:
        entry: dict[str, Any] = {}
        if _is_key(leaf):
            entry["key_impl"] = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
        array = np.asarray(leaf)
        entry.update(dtype=array.dtype.str, shape=list(array.shape))
        arrays.append(array)
        described.append(entry)
    iteration = getattr(state, "iteration", None)
    iteration = None if iteration is None else np.asarray(distributed.to_host(iteration))
    return HostCopy(arrays, described, treedef, iteration)


def _write(path, leaves, described, treedef, iteration, config, host) -> None:
    path = os.fspath(path)
    arrays = {f"leaf_{i}": array for i, array in enumerate(leaves)}
    for name, value in (host or {}).items():
        arrays[_HOST + name] = np.asarray(value)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "qdkit": _qdkit_version(),
        "iteration": None if iteration is None else int(np.max(iteration)),  # (every seed alike)
        "config": config or {},
        "treedef": str(treedef),
        "leaves": described,
        "host": sorted(host or {}),
    }
    arrays[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=directory)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as other files (mkstemp makes it private to its owner)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _open(path: str) -> tuple[dict, Any]:
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or corrupt): {e}") from e
    if not hasattr(npz, "files") or _META not in npz.files:
        raise CheckpointError(f"{path} is not a qdkit checkpoint (no {_META} entry)")
    try:
        meta = json.loads(bytes(npz[_META]).decode())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: checkpoint metadata is corrupt: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a qdkit checkpoint (format {meta.get('format')!r})")
    version = meta.get("version")
    if version != VERSION:
        writer = meta.get("qdkit") or _WRITTEN_BY.get(version, "another qdkit")
        if isinstance(version, int) and version < VERSION:
            todo = (
                f"finish or export that run with {writer} (pip install the commit that wrote it), or start it again "
                f"with this qdkit ({_qdkit_version()}, checkpoint format {VERSION})"
            )
        else:
            todo = f"read it with the qdkit that wrote it, or upgrade this one ({_qdkit_version()})"
        raise CheckpointError(
            f"{path} is checkpoint format {version}, written by {writer}; this qdkit reads format {VERSION}: {todo}"
        )
    return meta, npz


def read_meta(path: str | os.PathLike) -> dict:
    """The metadata of a checkpoint (format, version, iteration, config) without its arrays."""
    meta, npz = _open(os.fspath(path))
    npz.close()
    return meta


def load_host(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The host-side arrays saved with a checkpoint (``save(..., host=)``); empty if it
    has none (a checkpoint written without them, or by qdkit 0.2.0).

    Raises:
        CheckpointError: missing, truncated or corrupt file.
    """
    path = os.fspath(path)
    meta, npz = _open(path)
    with npz:
        try:
            return {name: npz[_HOST + name] for name in meta.get("host", [])}
        except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
            raise CheckpointError(f"{path} is corrupt (host arrays unreadable): {e}") from e


def load(path: str | os.PathLike, like: Any, sharding: jax.sharding.Sharding | None = None) -> Any:
    """Read a checkpoint into the structure of ``like``.

    Args:
        path: the checkpoint file.
        like: a template with the same pytree structure, leaf shapes and dtypes (a
            state, or ``jax.eval_shape`` of the function that builds one).
        sharding: where every leaf goes, straight from the file (a PRNG key through its
            key data); JAX's default device when ``None``. For instance a state of
            several seeds split over a mesh (``NamedSharding(mesh, P(axis))``) with no
            copy left on the first device.

    Raises:
        CheckpointError: missing, truncated, corrupt or foreign file, or a structure,
            shape or dtype that does not match ``like``.
    """
    path = os.fspath(path)
    meta, npz = _open(path)
    with npz:
        like_leaves, treedef = jax.tree.flatten(like)
        if meta["treedef"] != str(treedef) or len(meta["leaves"]) != len(like_leaves):
            saved_offsets, offsets = _ARCHIVE_META.findall(meta["treedef"]), _ARCHIVE_META.findall(str(treedef))
            if saved_offsets != offsets and _ARCHIVE_META.sub("", meta["treedef"]) == _ARCHIVE_META.sub(
                "", str(treedef)
            ):
                raise CheckpointError(
                    f"{path} holds an archive that keeps its QD-score for qd_offset {', '.join(saved_offsets)}; this "
                    f"run's is {', '.join(offsets)} (another task or task option?)"
                )
            raise CheckpointError(
                f"{path} was written for a different run configuration (archive, emitter or genotype structure differ)"
            )
        leaves = []
        for i, (entry, template) in enumerate(zip(meta["leaves"], like_leaves)):
            try:
                array = npz[f"leaf_{i}"]
            except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
                raise CheckpointError(f"{path} is corrupt (leaf {i} unreadable): {e}") from e
            put = jnp.asarray if sharding is None else functools.partial(jax.device_put, device=sharding)
            if "key_impl" in entry:
                leaf = jax.random.wrap_key_data(put(array), impl=entry["key_impl"])
            else:
                leaf = put(array)
            if leaf.shape != tuple(template.shape) or leaf.dtype != template.dtype:
                raise CheckpointError(
                    f"{path} does not match this run: leaf {i} is {leaf.dtype}{list(leaf.shape)}, "
                    f"expected {template.dtype}{list(template.shape)}"
                )
            leaves.append(leaf)
    return jax.tree.unflatten(treedef, leaves)
