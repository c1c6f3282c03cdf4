"""What ``qdkit run`` compiles before its first step: its two programs, nothing eager."""

import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

import qdkit
from qdkit import archive as archive_module
from qdkit import map_elites, rng


def test_rng_key_is_jax_random_key_and_compiles_nothing(caplog):
    with jax.log_compiles(), caplog.at_level("WARNING"):
        made = [rng.key(s) for s in (0, 1, 12345, 2**31 - 1)] + [rng.key([3, 4, 5]), rng.key(np.int64(7))]
    assert not [r for r in caplog.records if "Compiling" in r.getMessage()]
    for key, s in zip(made, (0, 1, 12345, 2**31 - 1)):
        assert key.dtype == jax.random.key(0).dtype and key.shape == ()
        np.testing.assert_array_equal(jax.random.key_data(key), jax.random.key_data(jax.random.key(s)))
    np.testing.assert_array_equal(
        jax.random.key_data(made[4]), jax.random.key_data(jax.numpy.stack([jax.random.key(s) for s in (3, 4, 5)]))
    )
    np.testing.assert_array_equal(jax.random.key_data(made[5]), jax.random.key_data(jax.random.key(7)))
    big = rng.key(2**31)  # outside the simple range: jax.random.key's own key
    np.testing.assert_array_equal(jax.random.key_data(big), jax.random.key_data(jax.random.key(2**31)))


def test_empty_archive_is_made_eagerly_without_programs_and_traced_without_constants(caplog):
    task = qdkit.tasks.get("arm", dof=5)
    with jax.log_compiles(), caplog.at_level("WARNING"):
        archive = qdkit.GridArchive.create(
            shape=(7, 3), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
        )
        copied = map_elites._private_copy(archive)
    assert not [r for r in caplog.records if "Compiling" in r.getMessage()]
    assert archive.fitness.shape == (21,) and bool(np.all(np.isneginf(np.asarray(archive.fitness))))
    assert archive.genotypes.shape == (21, 5) and int(archive.size()) == 0
    leaves, copies = jax.tree.leaves(archive), jax.tree.leaves(copied)
    assert all(a.unsafe_buffer_pointer() != b.unsafe_buffer_pointer() for a, b in zip(leaves, copies))
    # under a trace the archive is built by the program (reindex is jittable), not baked in as constants
    hlo = jax.jit(lambda a: a.reindex(a.indexer)).lower(archive).as_text()
    assert not re.search(r"dense<0\.0+e\+00> : tensor<21x5xf32>|constant.*21x5", hlo)
    assert archive_module._tracing() is False


def test_qdkit_run_compiles_only_its_programs_before_the_first_step(tmp_path):
    # every eager jnp operation compiles a program of its own (5-20 ms each on a CPU);
    # before the first step `qdkit run` compiles only the initial batch and the loop
    env = {**os.environ, "JAX_LOG_COMPILES": "1", "QDKIT_COMPILE_CACHE": "0"}
    result = subprocess.run(
        [sys.executable, "-m", "qdkit.cli", "run", "--iterations", "1", "--batch-size", "16", "--no-progress",
         "--out", str(tmp_path / "run")],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    compiled = re.findall(r"Compiling (\S+) with global shapes", result.stderr)
    assert "jit(_chunk)" in compiled, compiled
    before = compiled[: compiled.index("jit(_chunk)")]
    assert before == ["jit(_init)"], before


@pytest.mark.parametrize("name", ["arm", "rastrigin", "sphere"])
def test_task_example_genotypes_are_device_arrays(name):
    example = qdkit.tasks.get(name).example_genotype
    assert isinstance(example, jax.Array) and example.dtype == np.float32
