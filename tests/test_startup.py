"""What ``qdkit run`` compiles before its first step: its own programs, nothing eager."""

import contextlib
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qdkit
from qdkit import archive as archive_module
from qdkit import map_elites, policy, rng
from qdkit.policy import MLP


@contextlib.contextmanager
def compiled(caplog):
    """The names of the programs compiled in the block (JAX's caches cleared first, so
    a program compiled earlier in this process is compiled again and seen)."""
    jax.clear_caches()
    names: list[str] = []
    with jax.log_compiles(), caplog.at_level("WARNING"):
        start = len(caplog.records)
        yield names
        names += [m.group(1) for r in caplog.records[start:] if (m := re.match(r"Compiling (\S+)", r.getMessage()))]


def test_the_compile_log_sees_an_eager_operation(caplog):  # the control for the tests below
    with compiled(caplog) as names:
        jnp.zeros((3, 7))
    assert names, "an eager jnp.zeros compiles a program in JAX 0.10"


def test_rng_key_is_jax_random_key_and_compiles_nothing(caplog):
    seeds = (0, 1, 12345, 2**31 - 1, np.int64(7), np.uint32(9))
    with compiled(caplog) as names:
        made = [rng.key(s) for s in seeds] + [rng.key([3, 4, 5])]
    assert names == []
    for key, s in zip(made, seeds):
        assert key.dtype == jax.random.key(0).dtype and key.shape == ()
        np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(jax.random.key(s)))
    stacked = jax.numpy.stack([jax.random.key(s) for s in (3, 4, 5)])
    np.testing.assert_array_equal(jax.random.key_data(made[-1]), jax.random.key_data(stacked))
    # outside the simple range, or traced: jax.random.key's own keys
    for s in (-3, 2**31):
        np.testing.assert_array_equal(jax.random.key_data(rng.key(s)), jax.random.key_data(jax.random.key(s)))
    crossing = jax.numpy.stack([jax.random.key(s) for s in (1, 2**31)])
    np.testing.assert_array_equal(jax.random.key_data(rng.key([1, 2**31])), jax.random.key_data(crossing))
    assert rng.key([]).shape == (0,)
    traced = jax.jit(lambda s: jax.random.key_data(rng.key(s)))(5)
    np.testing.assert_array_equal(traced, jax.random.key_data(jax.random.key(5)))


def test_empty_archive_is_made_eagerly_without_programs_and_traced_without_constants(caplog):
    task = qdkit.tasks.get("arm", dof=5)
    with compiled(caplog) as names:
        archive = qdkit.GridArchive.create(
            shape=(7, 3), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
        )
        copied = map_elites._private_copy(archive)
    assert names == []
    assert archive.fitness.shape == (21,) and bool(np.all(np.isneginf(np.asarray(archive.fitness))))
    assert archive.genotypes.shape == (21, 5) and int(archive.size()) == 0
    leaves, copies = jax.tree.leaves(archive), jax.tree.leaves(copied)
    assert all(a.unsafe_buffer_pointer() != b.unsafe_buffer_pointer() for a, b in zip(leaves, copies))
    # under a trace the empty archive is built by the program (reindex is jittable),
    # not baked in as constants of the archive's size
    assert archive_module._tracing() is False
    consts = jax.make_jaxpr(lambda a: a.reindex(a.indexer))(archive).consts
    assert not [c for c in consts if np.size(c) >= 21], [np.shape(c) for c in consts]


def test_private_copy_of_keys_replicated_over_devices_shares_no_buffer():
    if len(jax.devices()) < 2:
        pytest.skip("needs several devices (conftest forces 4 CPU devices)")
    mesh = jax.make_mesh((len(jax.devices()),), ("d",))
    key = jax.device_put(jax.random.key(3), jax.NamedSharding(mesh, jax.P()))
    data = jax.device_put(jnp.arange(8.0), jax.NamedSharding(mesh, jax.P()))

    def buffers(x):
        x = jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
        return {s.data.unsafe_buffer_pointer() for s in x.addressable_shards}

    for leaf in (key, data):
        copy = map_elites._copy_leaf(leaf)
        assert copy.sharding == leaf.sharding and not buffers(copy) & buffers(leaf)


@pytest.mark.parametrize("name", ["arm", "rastrigin", "sphere"])
def test_function_tasks_are_built_without_compiling(name, caplog):
    with compiled(caplog) as names:
        example = qdkit.tasks.get(name).example_genotype
    assert names == [] and isinstance(example, jax.Array) and example.dtype == np.float32


def test_policy_init_is_one_program_with_the_eager_weights():
    # the same body run eagerly, operation by operation, as before it was jitted
    # (jax.random's own jitted pieces stay programs, as they were)
    mlp = MLP((5, 8, 2))
    eager = policy._init_layers.__wrapped__(mlp, jax.random.key(4))
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(mlp.init(jax.random.key(4)))):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("seeds, init, chunk", [(1, "jit(_init)", "jit(_chunk)"),
                                               (2, "jit(_init_seeds)", "jit(_run_chunk_seeds)")])  # fmt: skip
def test_qdkit_run_compiles_only_its_programs_before_the_first_step(tmp_path, seeds, init, chunk):
    # the arm default: before the first step, only the initial batch (with two seeds over
    # two of conftest's devices, each seed's first checkpoint is sliced on the host)
    env = {**os.environ, "JAX_LOG_COMPILES": "1", "QDKIT_COMPILE_CACHE": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "qdkit.cli", "run", "--iterations", "1", "--batch-size", "16", "--no-progress",
         "--seeds", str(seeds), "--out", str(tmp_path / "run")],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    compiled_names = re.findall(r"Compiling (\S+) with global shapes", result.stderr)
    assert chunk in compiled_names, compiled_names
    before = compiled_names[: compiled_names.index(chunk)]
    assert before == [init], before
    assert seeds == 1 or "2 seeds over 2 devices" in result.stdout, result.stdout
