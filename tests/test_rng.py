"""The fast noise generator: distribution, independence, determinism."""

import jax
import numpy as np
import pytest

from qdkit import rng


def test_deterministic_and_key_dependent():
    a = rng.normal(jax.random.key(0), (1000,))
    np.testing.assert_array_equal(a, rng.normal(jax.random.key(0), (1000,)))
    assert not np.allclose(a, rng.normal(jax.random.key(1), (1000,)))
    k1, k2 = jax.random.split(jax.random.key(0))
    assert not np.allclose(rng.normal(k1, (1000,)), rng.normal(k2, (1000,)))


def test_streams_of_one_key_are_independent():
    key = jax.random.key(0)
    streams = [np.asarray(rng.normal(key, (20_000,), stream=s), np.float64) for s in range(4)]
    np.testing.assert_array_equal(streams[0], rng.normal(key, (20_000,)))  # stream 0 is the default
    for i in range(4):
        for j in range(i + 1, 4):
            assert abs(np.corrcoef(streams[i], streams[j])[0, 1]) < 0.03
    # the seed words carry both words of a threefry key: keys differing in one word differ
    raw = [jax.random.wrap_key_data(np.asarray(w, np.uint32)) for w in ([0, 0], [0, 1], [1, 0])]
    seeds = {tuple(int(x) for x in rng.seed(k)) for k in raw}
    assert len(seeds) == 3
    with pytest.raises(ValueError, match="stream"):
        rng.normal(key, (3,), stream=-1)


def test_no_threefry_in_the_compiled_noise():
    """Deriving the seed words costs no threefry call (a while loop on CPU)."""
    text = jax.jit(lambda k: rng.normal(k, (64,), stream=3)).lower(jax.random.key(0)).as_text()
    assert "threefry" not in text and "while" not in text


def test_uniform_open_interval_and_moments():
    u = np.asarray(rng.uniform(jax.random.key(3), (400_000,)), np.float64)
    assert u.min() > 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.002 and abs(u.var() - 1 / 12) < 0.001
    counts = np.bincount((u * 64).astype(int), minlength=64)
    chi2 = np.sum((counts - counts.mean()) ** 2 / counts.mean())
    assert chi2 < 120  # 63 degrees of freedom: p ~ 1e-5 at 120


def test_normal_matches_standard_normal():
    x = np.asarray(rng.normal(jax.random.key(5), (500_000,)), np.float64)
    assert abs(x.mean()) < 0.006 and abs(x.std() - 1) < 0.005
    assert abs(np.mean(x**3)) < 0.02 and abs(np.mean(x**4) - 3) < 0.05
    # Kolmogorov-Smirnov distance to the normal CDF, computed with erf
    from math import erf, sqrt

    xs = np.sort(x[:50_000])
    cdf = 0.5 * (1 + np.vectorize(erf)(xs / sqrt(2)))
    ks = np.max(np.abs(cdf - np.arange(1, len(xs) + 1) / len(xs)))
    assert ks < 1.63 / np.sqrt(len(xs))  # 1% level


def test_no_correlation_between_neighbours_or_rows():
    x = np.asarray(rng.normal(jax.random.key(7), (1000, 100)), np.float64)
    flat = x.ravel()
    assert abs(np.corrcoef(flat[:-1], flat[1:])[0, 1]) < 0.01
    assert abs(np.corrcoef(x[:-1].ravel(), x[1:].ravel())[0, 1]) < 0.01
    y = np.asarray(rng.normal(jax.random.key(8), (1000, 100)), np.float64)
    assert abs(np.corrcoef(flat, y.ravel())[0, 1]) < 0.01


def test_unknown_generator():
    with pytest.raises(ValueError, match="valid"):
        rng.normal_fn("xorshift")


@pytest.mark.parametrize("num", [1, 2, 3, 4, 9])
def test_split_is_jax_random_split_bit_for_bit(num):
    for seed in (0, 1, 42, 2**31 - 1, 987654321):
        key = jax.random.key(seed)
        want = jax.random.key_data(jax.random.split(key, num))
        np.testing.assert_array_equal(jax.random.key_data(rng.split(key, num)), want)
        np.testing.assert_array_equal(jax.random.key_data(jax.jit(lambda k: rng.split(k, num))(key)), want)
        np.testing.assert_array_equal(jax.random.key_data(rng.split(key, np.int64(num))), want)
        raw = jax.random.PRNGKey(seed)  # legacy raw uint32[2] keys give raw keys
        np.testing.assert_array_equal(rng.split(raw, num), jax.random.split(raw, num))
    keys = jax.random.split(jax.random.key(5), 6)
    np.testing.assert_array_equal(
        jax.random.key_data(jax.vmap(lambda k: rng.split(k, num))(keys)),
        jax.random.key_data(jax.vmap(lambda k: jax.random.split(k, num))(keys)),
    )


def test_split_compiles_without_a_loop_and_hands_other_keys_to_jax():
    hlo = jax.jit(lambda k: rng.split(k, 3)).lower(jax.random.key(0)).compile().as_text()
    assert "while" not in hlo
    if jax.default_backend() == "cpu":  # where jax.random.split is a 5-step while loop
        assert "while" in jax.jit(lambda k: jax.random.split(k, 3)).lower(jax.random.key(0)).compile().as_text()
    np.testing.assert_array_equal(  # a shape, as jax.random.split takes
        jax.random.key_data(rng.split(jax.random.key(1), (2, 3))),
        jax.random.key_data(jax.random.split(jax.random.key(1), (2, 3))),
    )
    rbg = jax.random.key(0, impl="rbg")
    np.testing.assert_array_equal(jax.random.key_data(rng.split(rbg, 3)), jax.random.key_data(jax.random.split(rbg, 3)))
    with pytest.raises(ValueError, match="one key"):
        rng.split(jax.random.split(jax.random.key(0), 2), 2)


@pytest.mark.parametrize("shape", [(1024,), (1001, 33), (3, 700)])
def test_pieces_give_the_same_values(monkeypatch, shape):
    """A draw made in pieces (the CPU default for large draws) equals the draw made as
    one loop, bit for bit, for every stream; odd sizes split mid-pair."""
    n = int(np.prod(shape))
    assert len(rng.pieces(n)) == 3 and rng.pieces(n)[0] == 0 and rng.pieces(n)[-1] == n
    key = jax.random.key(7)
    pieces = [np.asarray(jax.jit(lambda k, s=s: rng.normal(k, shape, stream=s))(key)) for s in (0, 4)]
    monkeypatch.setattr(rng, "PIECE_ELEMENTS", 1 << 40)  # one loop
    assert len(rng.pieces(n)) == 2
    one = [np.asarray(jax.jit(lambda k, s=s: rng.normal(k, shape, stream=s))(key)) for s in (0, 4)]
    for a, b in zip(pieces, one):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(pieces[0], pieces[1])


def test_small_draws_are_one_piece():
    assert rng.pieces(2 * rng.PIECE_ELEMENTS - 1) == [0, 2 * rng.PIECE_ELEMENTS - 1]
    assert rng.pieces(0) == [0, 0]
    assert rng.normal(jax.random.key(0), (0, 3)).shape == (0, 3)
