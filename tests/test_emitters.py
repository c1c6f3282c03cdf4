"""Emitters: formulas, bounds, batching with mix, and loop-vs-scan equivalence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qdkit
from emitters import Emitter, EmptyState, gaussian, iso_line, mix
from qdkit import rng


def filled_archive(n=20, dim=4):
    archive = qdkit.GridArchive.create(shape=(10, 10), lower=0, upper=1, example_genotype=jnp.zeros(dim))
    genotypes = jax.random.uniform(jax.random.key(0), (n, dim))
    archive, _ = archive.add(genotypes, jnp.arange(n, dtype=jnp.float32), genotypes[:, :2])
    return archive


EMITTERS = {
    "gaussian": lambda: gaussian(16, 0.2, lower=0.0, upper=1.0),
    "iso_line": lambda: iso_line(16, 0.05, 0.2, lower=0.0, upper=1.0),
    "mix": lambda: mix(gaussian(6, 0.1), iso_line(10, 0.01, 0.1)),
}


@pytest.mark.parametrize("name", sorted(EMITTERS), ids=sorted(EMITTERS))
def test_python_loop_equals_scan(name):
    emitter = EMITTERS[name]()
    archive = filled_archive()
    keys = jax.random.split(jax.random.key(1), 4)
    state = emitter.init(jax.random.key(2), archive)

    def one(carry, key):
        archive, state = carry
        genotypes, state = emitter.emit(key, archive, state)
        fitness = -jnp.sum(genotypes, axis=1)
        evaluation = qdkit.Evaluation(fitness, genotypes[:, :2], {})
        archive, info = archive.add(genotypes, fitness, genotypes[:, :2])
        state = emitter.update(state, archive, genotypes, evaluation, info)
        return (archive, state), genotypes

    carry = (archive, state)
    looped = []
    for k in keys:
        carry, g = jax.jit(one)(carry, k)
        looped.append(g)
    (scanned_archive, _), scanned = jax.lax.scan(one, (archive, state), keys)
    np.testing.assert_allclose(np.stack(looped), scanned, rtol=1e-6)
    np.testing.assert_array_equal(carry[0].fitness, scanned_archive.fitness)
    assert scanned.shape == (4, emitter.batch_size, 4)


def test_iso_line_formula():
    archive = filled_archive()
    emitter = iso_line(8, 0.05, 0.3)
    key = jax.random.key(7)
    children, _ = emitter.emit(key, archive, EmptyState())
    index = archive.sample_indices(key, 16)  # rng stream 0
    x, y = archive.genotypes[index[:8]], archive.genotypes[index[8:]]
    line = 0.3 * rng.normal(key, (8,), stream=1)
    expected = x + 0.05 * rng.normal(key, x.shape, stream=2) + line[:, None] * (y - x)
    np.testing.assert_allclose(children, expected, rtol=1e-5, atol=1e-6)
    # parents are occupied cells, and x and y are drawn independently
    assert np.all(np.asarray(archive.occupied)[np.asarray(index)])
    assert not np.array_equal(index[:8], index[8:])


def test_threefry_noise_option():
    archive = filled_archive()
    fast, _ = gaussian(8, 0.1).emit(jax.random.key(0), archive, EmptyState())
    exact, _ = gaussian(8, 0.1, noise="threefry").emit(jax.random.key(0), archive, EmptyState())
    key = jax.random.key(0)
    parents = archive.sample(key, 8)
    noise = jax.random.normal(jax.random.fold_in(key, 1), parents.shape)  # stream 1: the first leaf
    np.testing.assert_allclose(exact, parents + 0.1 * noise, rtol=1e-6)
    assert not np.allclose(fast, exact)
    with pytest.raises(ValueError, match="valid: fast, threefry"):
        iso_line(8, noise="mt19937")


def test_gaussian_statistics_and_bounds():
    archive = filled_archive(n=1)
    parent = archive.genotypes[np.argmax(np.asarray(archive.occupied))]
    children, _ = gaussian(20_000, 0.1).emit(jax.random.key(0), archive, EmptyState())
    np.testing.assert_allclose(np.mean(children - parent[None, :], axis=0), 0.0, atol=0.005)
    np.testing.assert_allclose(np.std(children - parent[None, :], axis=0), 0.1, rtol=0.03)
    clipped, _ = gaussian(2_000, 5.0, lower=0.0, upper=1.0).emit(jax.random.key(0), archive, EmptyState())
    assert float(clipped.min()) == 0.0 and float(clipped.max()) == 1.0


def test_pytree_genotypes_are_varied_leaf_by_leaf():
    example = {"a": jnp.zeros((2,)), "b": jnp.zeros((3, 2))}
    archive = qdkit.GridArchive.create(shape=(4,), lower=0, upper=1, example_genotype=example)
    archive, _ = archive.add(
        {"a": jnp.ones((2, 2)), "b": jnp.ones((2, 3, 2))}, jnp.asarray([1.0, 2.0]), jnp.asarray([[0.1], [0.9]])
    )
    for emitter in (gaussian(5, 0.1), iso_line(5, 0.1, 0.1)):
        out, _ = emitter.emit(jax.random.key(0), archive, EmptyState())
        assert out["a"].shape == (5, 2) and out["b"].shape == (5, 3, 2)
        assert not np.allclose(out["a"], 1.0)


def test_mix_splits_batch_states_and_rows():
    seen = {}

    def recorder(tag, size, value):
        def init(key, archive):
            return jnp.zeros((), jnp.int32)

        def emit(key, archive, state):
            return jnp.full((size, 4), value, jnp.float32), state + 100  # the state emit returns reaches update

        def update(state, archive, genotypes, evaluation, info):
            seen[tag] = (np.asarray(genotypes), np.asarray(evaluation.fitness), np.asarray(info.status))
            return state + 1

        def observe_initial(state, archive, genotypes, evaluation):
            seen[f"{tag} initial"] = np.asarray(evaluation.fitness)
            return state + 10

        return Emitter(init, emit, update, size, observe_initial=observe_initial if tag == "a" else None)

    emitter = mix(recorder("a", 3, 1.0), recorder("b", 5, 2.0))
    assert emitter.batch_size == 8
    archive = filled_archive()
    state = emitter.init(jax.random.key(0), archive)
    fitness = jnp.arange(6, dtype=jnp.float32)
    observed = emitter.observe_initial(state, archive, None, qdkit.Evaluation(fitness, None, {}))
    assert [int(s) for s in observed] == [10, 0]  # only "a" observes, and it sees the whole initial batch
    np.testing.assert_array_equal(seen.pop("a initial"), np.arange(6))
    assert mix(recorder("b", 5, 2.0)).observe_initial is None
    genotypes, state = emitter.emit(jax.random.key(1), archive, state)
    assert [int(s) for s in state] == [100, 100]
    np.testing.assert_array_equal(genotypes[:, 0], [1, 1, 1, 2, 2, 2, 2, 2])
    fitness = jnp.arange(8, dtype=jnp.float32)
    archive, info = archive.add(genotypes, fitness, genotypes[:, :2] / 3)
    state = emitter.update(state, archive, genotypes, qdkit.Evaluation(fitness, genotypes[:, :2], {}), info)
    assert [int(s) for s in state] == [101, 101]
    np.testing.assert_array_equal(seen["a"][1], [0, 1, 2])
    np.testing.assert_array_equal(seen["b"][1], [3, 4, 5, 6, 7])
    assert np.all(seen["b"][0] == 2.0)


def test_mix_gives_each_emitter_its_own_key():
    archive = filled_archive()
    emitter = mix(gaussian(4, 0.1), gaussian(4, 0.1))
    out, _ = emitter.emit(jax.random.key(0), archive, emitter.init(jax.random.key(1), archive))
    assert not np.allclose(out[:4], out[4:])


@pytest.mark.parametrize(
    "factory",
    [lambda: gaussian(0, 0.1), lambda: gaussian(4, -1.0), lambda: iso_line(4, float("nan"), 0.1), lambda: mix()],
    ids=["zero-batch", "negative-sigma", "nan-sigma", "empty-mix"],
)
def test_bad_hyperparameters(factory):
    with pytest.raises(ValueError):
        factory()
