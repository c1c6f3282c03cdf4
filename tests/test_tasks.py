"""Tasks: registry errors, hand-computed values, bounds and offsets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qdkit import tasks


def test_registry_lists_valid_names():
    assert {"arm", "sphere", "rastrigin", "sphere_proj", "rastrigin_proj"} <= set(tasks.names())
    with pytest.raises(KeyError, match="valid tasks: ant_omni, ant_uni, anttrap_omni, arm, halfcheetah_uni"):
        tasks.get("armm")
    with pytest.raises(TypeError, match="valid options: dof"):
        tasks.get("arm", joints=3)
    with pytest.raises(ValueError, match="dof"):
        tasks.get("arm", dof=0)
    assert tasks.describe("arm").startswith("Planar arm")
    assert tasks.options("rastrigin") == {"dims": 10}


def test_arm_hand_computed():
    task = tasks.get("arm", dof=4)
    angles = jnp.asarray(
        [[0.0, 0.0, 0.0, 0.0], [np.pi / 2, 0.0, 0.0, 0.0], [0.0, np.pi / 2, 0.0, -np.pi / 2]], jnp.float32
    )
    ev = task.score(jax.random.key(0), angles)
    np.testing.assert_allclose(ev.descriptors, [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], atol=1e-6)
    np.testing.assert_allclose(
        ev.fitness, [0.0, -np.var([np.pi / 2, 0, 0, 0]), -np.var([0, np.pi / 2, 0, -np.pi / 2])], rtol=1e-6
    )
    joints = ev.extras["joint_positions"]
    assert joints.shape == (3, 4, 2)
    np.testing.assert_allclose(joints[2], [[0.25, 0.0], [0.25, 0.25], [0.25, 0.5], [0.5, 0.5]], atol=1e-6)


def test_functions_hand_computed():
    sphere = tasks.get("sphere", dims=3)
    ev = sphere.score(None, jnp.asarray([[0.5, 0.5, 0.5], [1.0, 0.5, 0.0]], jnp.float32))
    np.testing.assert_allclose(ev.fitness, [0.0, -50.0])
    np.testing.assert_allclose(ev.descriptors, [[0.5, 0.5], [1.0, 0.5]])
    rastrigin = tasks.get("rastrigin", dims=2)
    ev = rastrigin.score(None, jnp.asarray([[0.5, 0.5], [0.6, 0.5]], jnp.float32))
    np.testing.assert_allclose(ev.fitness, [0.0, -(1.0 - 10 * np.cos(2 * np.pi) + 10)], atol=1e-4)


def test_projection_descriptors_hand_computed():
    task = tasks.get("sphere_proj", dims=4)
    g = jnp.asarray([[1.0, 2.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0]], jnp.float32)
    ev = task.score(None, g)
    np.testing.assert_allclose(ev.descriptors, [[3.0, -0.5], [0.0, 0.0]])
    optimum = jnp.full((1, 4), 0.4 * 5.12, jnp.float32)
    np.testing.assert_allclose(task.score(None, optimum).fitness, [100.0], rtol=1e-6)
    # genes beyond the bounds fold to 5.12 / x
    folded = tasks.functions._projection_descriptors(jnp.asarray([[10.24, 0.0, 0.0, 0.0]], jnp.float32))
    np.testing.assert_allclose(folded, [[0.5, 0.0]])


@pytest.mark.parametrize("name", ["arm", "sphere", "rastrigin", "sphere_proj", "rastrigin_proj"])
def test_random_genotypes_respect_bounds_and_offset(name):
    task = tasks.get(name)
    genotypes = task.initial_genotypes(jax.random.key(0), 4096)
    lo, hi = task.genotype_lower, task.genotype_upper
    if name.endswith("_proj"):  # unbounded genotype, initialised in the box
        assert lo is None and hi is None
        lo, hi = -5.12, 5.12
    assert float(genotypes.min()) >= lo and float(genotypes.max()) <= hi
    ev = task.score(jax.random.key(1), genotypes)
    assert ev.fitness.shape == (4096,) and ev.descriptors.shape == (4096, task.descriptor_dim)
    assert float(ev.fitness.min()) >= task.qd_offset
    d = np.asarray(ev.descriptors)
    assert np.all(d >= task.lower - 1e-5) and np.all(d <= task.upper + 1e-5)
    # extreme corners too
    for corner in (lo, hi):
        ev = task.score(None, jnp.full((1, task.example_genotype.shape[0]), corner, jnp.float32))
        assert float(ev.fitness[0]) >= task.qd_offset - 1e-4 * max(1.0, abs(task.qd_offset))  # float round-off


def test_the_registry_builds_every_task_and_holds_only_names_and_factories():
    """``tasks.get`` builds the text task without the caller importing feedback (or the
    CLI's registry) first: a fresh interpreter, and no model configured."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, qdkit\n"
        "assert 'feedback' not in sys.modules\n"
        "task = qdkit.tasks.get('text', domain='stories')\n"
        "print(task.name, task.descriptor_dim, type(task.client).__name__, 'feedback' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["text", "2", "EnvironmentClient", "True"]
    assert tasks.options("text") == {"domain": "opinions"}  # the client is wiring, not an option
    # task facts live on the task: features for learned descriptors, a drawing for a person
    arm, sphere = tasks.get("arm", dof=3), tasks.get("sphere")
    ev = arm.score(None, jnp.zeros((2, 3)))
    assert arm.features(ev).shape == (2, 6) and arm.draw is not None
    assert sphere.features is None and sphere.draw is None
