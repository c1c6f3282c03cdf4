"""Archive insertion, lookup, sampling and statistics: golden cases and properties."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import qdkit
from qdkit import IMPROVED, NEW, NOT_ADDED

G = jnp.zeros((3,), jnp.float32)


def grid(shape=(4, 4), lower=0.0, upper=1.0, example=G):
    return qdkit.GridArchive.create(shape=shape, lower=lower, upper=upper, example_genotype=example)


def batch(fitness, descriptors, genotypes=None):
    fitness = jnp.asarray(fitness, jnp.float32)
    descriptors = jnp.asarray(descriptors, jnp.float32)
    if genotypes is None:
        genotypes = jnp.arange(fitness.shape[0] * 3, dtype=jnp.float32).reshape(-1, 3)
    return genotypes, fitness, descriptors


# ----------------------------------------------------------------------- grid lookup


@pytest.mark.parametrize(
    "descriptor, expected",
    [
        ((0.0, 0.0), 0),
        ((0.24, 0.0), 0),
        ((0.25, 0.0), 4),  # lower edge belongs to the cell: (1, 0) -> row-major 1*4+0
        ((0.0, 0.26), 1),
        ((0.99, 0.99), 15),
        ((1.0, 1.0), 15),  # upper bound falls in the last cell
        ((-5.0, 0.6), 2),  # outside: nearest edge cell (0, 2)
        ((7.0, -3.0), 12),  # outside: (3, 0)
    ],
    ids=["origin", "inside-first", "lower-edge", "second-axis", "last", "upper-bound", "below", "beyond"],
)
def test_grid_index_golden(descriptor, expected):
    archive = grid()
    assert int(archive.index_of(jnp.asarray([descriptor], jnp.float32))[0]) == expected


def test_grid_index_nonuniform_shape_and_bounds():
    archive = grid(shape=(2, 5), lower=(-1.0, 10.0), upper=(1.0, 20.0))
    d = jnp.asarray([[-1.0, 10.0], [0.5, 19.9], [0.0, 14.0]], jnp.float32)
    np.testing.assert_array_equal(archive.index_of(d), [0, 9, 7])
    centers = np.asarray(archive.cell_centers())
    np.testing.assert_allclose(centers[7], [0.5, 15.0])
    np.testing.assert_array_equal(archive.index_of(jnp.asarray(centers)), np.arange(10))


# --------------------------------------------------------------------- insertion


def test_add_into_empty_and_status():
    archive = grid()
    new, info = archive.add(*batch([1.0, 2.0], [[0.1, 0.1], [0.9, 0.9]]))
    np.testing.assert_array_equal(info.status, [NEW, NEW])
    np.testing.assert_allclose(info.value, [1.0, 2.0])
    np.testing.assert_array_equal(info.index, [0, 15])
    assert len(new) == 2 and len(archive) == 0  # the input archive is unchanged
    np.testing.assert_allclose(new.fitness[0], 1.0)
    np.testing.assert_allclose(new.genotypes[15], [3.0, 4.0, 5.0])
    np.testing.assert_allclose(new.descriptors[15], [0.9, 0.9])


def test_improve_and_reject():
    archive, _ = grid().add(*batch([1.0], [[0.1, 0.1]]))
    archive, info = archive.add(*batch([0.5, 3.0], [[0.05, 0.05], [0.2, 0.2]]))
    # both rows in cell 0: the better one (3.0) improves; the worse one is not added
    np.testing.assert_array_equal(info.status, [NOT_ADDED, IMPROVED])
    np.testing.assert_allclose(info.value, [-0.5, 2.0])
    np.testing.assert_allclose(archive.fitness[0], 3.0)
    np.testing.assert_allclose(archive.genotypes[0], [3.0, 4.0, 5.0])
    # equal fitness does not replace
    archive2, info = archive.add(*batch([3.0], [[0.1, 0.1]]))
    np.testing.assert_array_equal(info.status, [NOT_ADDED])
    np.testing.assert_allclose(archive2.genotypes[0], [3.0, 4.0, 5.0])


def test_ties_first_in_batch_wins():
    genotypes = jnp.asarray([[1, 1, 1], [2, 2, 2], [3, 3, 3], [4, 4, 4]], jnp.float32)
    archive, info = grid().add(*batch([5.0, 7.0, 7.0, 7.0], [[0.1, 0.1]] * 4, genotypes))
    np.testing.assert_array_equal(info.status, [NOT_ADDED, NEW, NOT_ADDED, NOT_ADDED])
    np.testing.assert_allclose(archive.genotypes[0], [2, 2, 2])


@pytest.mark.parametrize(
    "fitness, descriptor",
    [
        (np.nan, (0.1, 0.1)),
        (np.inf, (0.1, 0.1)),
        (-np.inf, (0.1, 0.1)),
        (1.0, (np.nan, 0.1)),
        (1.0, (0.1, np.inf)),
    ],
    ids=["nan-fitness", "inf-fitness", "minus-inf-fitness", "nan-descriptor", "inf-descriptor"],
)
def test_non_finite_rows_never_enter(fitness, descriptor):
    archive, _ = grid().add(*batch([0.5], [[0.6, 0.6]]))
    new, info = archive.add(*batch([fitness, 2.0], [descriptor, [0.1, 0.1]]))
    assert int(info.status[0]) == NOT_ADDED
    assert int(info.status[1]) == NEW
    assert int(info.index[0]) == archive.num_cells
    assert float(info.value[0]) == 0.0
    assert len(new) == 2
    assert np.all(np.isfinite(np.asarray(new.fitness)[np.asarray(new.occupied)]))
    assert np.all(np.isfinite(np.asarray(new.descriptors)))


def test_out_of_bounds_goes_to_edge_and_keeps_descriptor():
    archive, info = grid().add(*batch([1.0], [[2.0, -1.0]]))
    assert int(info.index[0]) == 12
    np.testing.assert_allclose(archive.descriptors[12], [2.0, -1.0])


def test_pytree_genotypes():
    example = {"w": jnp.zeros((2, 2)), "b": jnp.zeros((3,), jnp.int32)}
    archive = grid(example=example)
    genotypes = {"w": jnp.ones((2, 2, 2)), "b": jnp.full((2, 3), 7, jnp.int32)}
    archive, info = archive.add(genotypes, jnp.asarray([1.0, 2.0]), jnp.asarray([[0.1, 0.1], [0.9, 0.9]]))
    assert archive.genotypes["w"].shape == (16, 2, 2)
    np.testing.assert_array_equal(archive.genotypes["b"][15], [7, 7, 7])
    best_genotype, best_fitness, best_descriptor = archive.best()
    assert best_genotype["w"].shape == (2, 2)
    assert float(best_fitness) == 2.0
    np.testing.assert_allclose(best_descriptor, [0.9, 0.9])


def test_bad_shapes_and_bounds_are_refused():
    with pytest.raises(ValueError, match="expected fitness"):
        grid().add(*batch([1.0, 2.0], [[0.1, 0.1, 0.1], [0.1, 0.1, 0.1]]))
    with pytest.raises(ValueError, match="upper > lower"):
        grid(lower=1.0, upper=0.0)
    with pytest.raises(ValueError, match="positive"):
        grid(shape=(0, 3))


# -------------------------------------------------------------- reference semantics


def reference_add(fit_store, fitness, cells):
    """Sequential definition of a batch insertion: best per cell, first row on ties."""
    fit_store = fit_store.copy()
    status = np.zeros(len(fitness), int)
    winners = {}
    for i, (f, c) in enumerate(zip(fitness, cells)):
        if not np.isfinite(f):
            continue
        if c not in winners or f > fitness[winners[c]]:
            winners[c] = i
    for c, i in winners.items():
        if fitness[i] > fit_store[c]:
            status[i] = NEW if not np.isfinite(fit_store[c]) else IMPROVED
            fit_store[c] = fitness[i]
    return fit_store, status


finite_or_nan = st.one_of(st.floats(-5, 5, width=32), st.just(float("nan")))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.lists(st.tuples(finite_or_nan, st.integers(0, 8), st.integers(0, 8)), min_size=1, max_size=40),
    st.lists(st.tuples(st.floats(-5, 5, width=32), st.integers(0, 8), st.integers(0, 8)), max_size=10),
)
def test_add_matches_sequential_reference(rows, prefill):
    archive = grid(shape=(3, 3)).with_qd_offset(0.5)  # fitness in [-5, 5]: some elites score 0
    if prefill:
        pf = np.asarray([r[0] for r in prefill], np.float32)
        pd = (np.asarray([[r[1] % 3, r[2] % 3] for r in prefill], np.float32) + 0.5) / 3
        archive, _ = archive.add(jnp.zeros((len(pf), 3)), jnp.asarray(pf), jnp.asarray(pd))
    fitness = np.asarray([r[0] for r in rows], np.float32)
    # discrete fitness values make ties frequent
    fitness = np.round(fitness)
    coords = np.asarray([[r[1] % 3, r[2] % 3] for r in rows])
    descriptors = ((coords + 0.5) / 3).astype(np.float32)
    cells = coords[:, 0] * 3 + coords[:, 1]
    expected_fitness, expected_status = reference_add(np.asarray(archive.fitness), fitness, cells)
    before = np.asarray(archive.fitness)
    new, info = archive.add(jnp.zeros((len(rows), 3)), jnp.asarray(fitness), jnp.asarray(descriptors))
    np.testing.assert_array_equal(info.status, expected_status)
    np.testing.assert_array_equal(new.fitness, expected_fitness)
    # a cell's fitness never decreases
    assert np.all((np.asarray(new.fitness) >= before) | ~np.isfinite(before))
    # the occupied-cell list holds exactly the occupied cells
    n = len(new)
    np.testing.assert_array_equal(np.sort(np.asarray(new.order)[:n]), np.nonzero(np.asarray(new.occupied))[0])
    # re-adding the same batch changes nothing
    again, info2 = new.add(jnp.zeros((len(rows), 3)), jnp.asarray(fitness), jnp.asarray(descriptors))
    np.testing.assert_array_equal(again.fitness, new.fitness)
    assert not np.any(np.asarray(info2.status))
    for a in (new, again):  # the running totals are those of the stored elites
        check_totals(a)


def check_totals(archive, rtol=1e-6):
    """``archive``'s running totals against a float64 pass over its cells."""
    totals, offset = archive.store.totals, archive.qd_offset
    f = np.asarray(archive.fitness, np.float64)
    f = f[np.isfinite(f)]
    scale = max(1.0, float(np.sum(np.abs(f))))
    assert abs(float(totals.fitness_sum) - np.sum(f)) <= rtol * scale
    if offset is not None:
        assert abs(float(totals.qd_score) - np.sum(np.maximum(f - offset, 0.0))) <= rtol * scale
    assert float(totals.max_fitness) == (f.max() if f.size else -np.inf)


@pytest.mark.parametrize("kind", ["plain", "threshold", "best"])
def test_running_totals_and_metrics_follow_every_insertion(kind):
    """The metrics read the running totals (no pass over the cells); over many batches
    (ties, NaN rows, a threshold archive's worse replacements) they stay those of a
    pass over the reported archive's cells."""
    options = {} if kind == "plain" else {"learning_rate": 0.3, "threshold_min": -6.0, "replacement": kind}
    archive = qdkit.GridArchive.create(shape=(5, 5), lower=0.0, upper=1.0, example_genotype=G, **options)
    archive = archive.with_qd_offset(-1.0)  # some elites below it: their QD-score is clipped to 0
    add = jax.jit(lambda a, g, f, d: a.add(g, f, d))
    rng = np.random.default_rng(0)
    for i in range(30):
        fitness = np.round(rng.normal(0, 2, 40), 1).astype(np.float32)  # ties within and across batches
        fitness[rng.random(40) < 0.05] = np.nan
        archive, info = add(
            archive, jnp.zeros((40, 3)), jnp.asarray(fitness), jnp.asarray(rng.random((40, 2)), jnp.float32)
        )
        fast = qdkit.metrics.compute(archive, info, -1.0)
        reported = archive.results()
        f = np.asarray(reported.fitness)[np.asarray(reported.occupied)]  # a pass over the cells
        assert float(fast["qd_score"]) == pytest.approx(float(reported.qd_score(-1.0)), rel=1e-6, abs=1e-5), i
        assert float(fast["mean_fitness"]) == pytest.approx(float(np.mean(f)), rel=1e-6, abs=1e-5), i
        assert float(fast["max_fitness"]) == float(np.max(f)) and int(fast["num_elites"]) == f.size
        check_totals(reported)
    # a rebuilt or re-indexed archive starts from a pass over its cells
    check_totals(archive.with_elites(archive.genotypes, archive.fitness, archive.descriptors))
    check_totals(archive.reindex(archive.indexer).results())
    other = archive.with_qd_offset(2.0)
    assert other.qd_offset == 2.0
    check_totals(other.results())


# ---------------------------------------------------------------- queries and stats


def test_sample_only_occupied_uniformly():
    archive, _ = grid().add(*batch([1.0, 2.0, 3.0], [[0.1, 0.1], [0.6, 0.1], [0.9, 0.9]]))
    index = np.asarray(archive.sample_indices(jax.random.key(0), 30_000))
    assert set(np.unique(index)) == {0, 8, 15}
    counts = np.bincount(index, minlength=16)[[0, 8, 15]]
    assert np.all(np.abs(counts / 30_000 - 1 / 3) < 0.02)
    genotypes = archive.sample(jax.random.key(1), 5)
    assert genotypes.shape == (5, 3)


def test_with_elites_rebuilds_the_occupied_list():
    archive = grid()
    fitness = jnp.full((16,), -jnp.inf).at[jnp.asarray([3, 7, 11])].set(jnp.asarray([1.0, 2.0, 3.0]))
    filled = archive.with_elites(jnp.ones((16, 3)), fitness, jnp.zeros((16, 2)))
    assert len(filled) == 3
    np.testing.assert_array_equal(np.asarray(filled.order)[:3], [3, 7, 11])
    index = np.asarray(filled.sample_indices(jax.random.key(0), 3000))
    assert set(np.unique(index)) == {3, 7, 11}
    # further insertions append after the existing elites
    filled, info = filled.add(*batch([5.0], [[0.1, 0.1]]))
    assert int(info.status[0]) == NEW
    np.testing.assert_array_equal(np.asarray(filled.order)[:4], [3, 7, 11, 0])


def test_statistics():
    archive = grid()
    assert len(archive) == 0 and float(archive.coverage()) == 0.0 and float(archive.qd_score(-10.0)) == 0.0
    archive, _ = archive.add(*batch([1.0, -2.0], [[0.1, 0.1], [0.9, 0.9]]))
    assert len(archive) == 2
    assert float(archive.coverage()) == pytest.approx(2 / 16)
    assert float(archive.qd_score(-10.0)) == pytest.approx(11.0 + 8.0)
    # an offset above some fitness never makes the score negative
    assert float(archive.qd_score(0.0)) == pytest.approx(1.0)
    _, f, d = archive.best()
    assert float(f) == 1.0
    np.testing.assert_allclose(d, [0.1, 0.1])


def test_elites_export_arrays():
    archive, _ = grid().add(*batch([1.0, 2.0], [[0.1, 0.1], [0.9, 0.9]]))
    e = archive.elites()
    np.testing.assert_array_equal(e["index"], [0, 15])
    np.testing.assert_allclose(e["fitness"], [1.0, 2.0])
    assert e["genotypes"].shape == (2, 3) and e["centers"].shape == (2, 2)


def test_add_is_jittable_and_in_scan():
    archive = grid()
    fitness = jax.random.normal(jax.random.key(0), (5, 8))
    descriptors = jax.random.uniform(jax.random.key(1), (5, 8, 2))

    def body(a, xs):
        f, d = xs
        a, info = a.add(jnp.zeros((8, 3)), f, d)
        return a, info.status

    scanned, statuses = jax.lax.scan(body, archive, (fitness, descriptors))
    looped = archive
    for i in range(5):
        looped, _ = jax.jit(lambda a, f, d: a.add(jnp.zeros((8, 3)), f, d))(looped, fitness[i], descriptors[i])
    np.testing.assert_array_equal(scanned.fitness, looped.fitness)
    assert statuses.shape == (5, 8)


def test_a_new_archive_is_not_made_on_the_host_first():
    # filled from one broadcast element: no host array of the archive's size (a whole
    # NumPy array would stay alive beside the device copy until a garbage collection)
    import tracemalloc

    from qdkit import archive as archive_module

    archive_module._filled((8, 4), jnp.float32, jnp.nan)
    tracemalloc.start()
    try:
        filled = archive_module._filled((200_000, 50), jnp.float32, -jnp.inf)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20 and filled.nbytes == 40_000_000, peak
    np.testing.assert_array_equal(np.asarray(filled[::9999]), np.full((21, 50), -np.inf, np.float32))


# ------------------------------------------------------- carried per-cell buffers


def _batches(count=12, size=40, seed=0):
    rng = np.random.default_rng(seed)
    fitness = np.round(rng.normal(0, 2, (count, size)), 1).astype(np.float32)  # ties within and across batches
    fitness[rng.random((count, size)) < 0.05] = np.nan
    return jnp.asarray(fitness), jnp.asarray(rng.random((count, size, 2)), jnp.float32)


@pytest.fixture
def any_size(monkeypatch):
    """The buffers for archives of any size (by default from CARRY_FROM_CELLS cells)."""
    from qdkit import archive as archive_module

    monkeypatch.setattr(archive_module, "CARRY_FROM_CELLS", 0)


@pytest.fixture
def no_segment_ops(monkeypatch):
    """Makes jax.ops' segment reductions raise while traced: proof that a trace took
    the carried buffers."""

    def refuse(*args, **kwargs):
        raise AssertionError("a segment operation was traced")

    def refusing():
        for name in ("segment_max", "segment_min", "segment_sum"):
            monkeypatch.setattr(jax.ops, name, refuse)

    return refusing


@pytest.mark.parametrize(
    "options",
    [{}, {"learning_rate": 0.3, "threshold_min": -6.0}, {"learning_rate": 1.0, "threshold_min": -6.0},
     {"learning_rate": 0.3, "threshold_min": -6.0, "replacement": "best"}],
    ids=["plain", "threshold", "threshold-alpha-1", "best"],
)  # fmt: skip
def test_carried_cell_buffers_insert_as_segment_operations_do(options, any_size, no_segment_ops):
    """Insertions that reduce into carried per-cell buffers (qdkit's loop) give the
    archives and statuses of the segment operations, bit for bit, and leave the buffers
    at their identities."""
    from qdkit.archive import REDUCTIONS, CellBuffers

    archive = qdkit.GridArchive.create(shape=(5, 5), lower=0.0, upper=1.0, example_genotype=G, **options)
    archive = archive.with_qd_offset(-1.0)
    fitness, descriptors = _batches()

    def plain(a):
        def body(a, xs):
            a, info = a.add(jnp.zeros((40, 3)), *xs)
            return a, info.status

        return jax.lax.scan(body, a, (fitness, descriptors))

    def carried(a):
        def body(carry, xs):
            a, cells = carry
            with CellBuffers(cells).using() as buffers:
                a, info = a.add(jnp.zeros((40, 3)), *xs)
            return (a, buffers.arrays), info.status

        (a, cells), status = jax.lax.scan(body, (a, CellBuffers.fresh_arrays(a)), (fitness, descriptors))
        return (a, status), cells

    expected = jax.jit(plain)(archive)
    no_segment_ops()
    got, cells = jax.jit(carried)(archive)
    for x, y in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
        np.testing.assert_array_equal(x, y)
    kinds = {"max", "min"} | ({"sum"} if options.get("learning_rate", 1.0) != 1.0 else set())
    assert set(cells) == kinds
    for kind, buffer in cells.items():
        np.testing.assert_array_equal(buffer, np.full(25, REDUCTIONS[kind][1], REDUCTIONS[kind][0]))


@pytest.mark.parametrize("nesting", ["cond", "scan", "vmap"])
def test_cell_buffers_stay_out_of_nested_traces(nesting, any_size):
    """An insertion traced inside a nested transformation keeps the segment operations
    and leaves the buffers alone (no tracer escapes its trace)."""
    from qdkit.archive import CellBuffers

    archive = grid(shape=(5, 5))
    fitness, descriptors = _batches(count=1)
    add = lambda a: a.add(jnp.zeros((40, 3)), fitness[0], descriptors[0])[0]  # noqa: E731

    def nested(a, fresh):
        with CellBuffers(fresh).using() as buffers:
            if nesting == "cond":
                a = jax.lax.cond(a.size() >= 0, add, add, a)
            elif nesting == "scan":
                a = jax.lax.scan(lambda a, _: (add(a), None), a, None, length=1)[0]
            else:
                a = jax.tree.map(lambda x: x[0], jax.vmap(add)(jax.tree.map(lambda x: x[None], a)))
        return a, buffers.arrays is not None and all(buffers.arrays[k] is fresh[k] for k in fresh)

    jax.make_jaxpr(lambda a: nested(a, CellBuffers.fresh_arrays(a))[0])(archive)  # no UnexpectedTracerError
    untouched = []

    def run(a):
        a, same = nested(a, CellBuffers.fresh_arrays(a))
        untouched.append(same)
        return a

    got = jax.jit(run)(archive)
    assert untouched == [True]
    expected, _ = archive.add(jnp.zeros((40, 3)), fitness[0], descriptors[0])
    np.testing.assert_array_equal(got.fitness, expected.fitness)


@pytest.mark.parametrize(
    "options, seeds",
    [({}, 1), ({"learning_rate": 0.1, "threshold_min": 0.0}, 1), ({}, 2)],
    ids=["plain", "threshold", "vmapped-seeds"],
)
def test_the_loop_carries_the_cell_buffers(options, seeds, monkeypatch, any_size, no_segment_ops):
    """map_elites.run's loop inserts through the carried buffers (its chunk traces no
    segment operation) and ends where it ends without them."""
    from emitters import iso_line
    from qdkit import archive as archive_module

    task = qdkit.tasks.get("rastrigin", dims=4)

    def run(carry: bool):
        monkeypatch.setattr(archive_module, "CARRY_CELL_BUFFERS", carry)
        archive = qdkit.GridArchive.create(
            shape=(8, 8), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype, **options
        )
        emitter = iso_line(32, 0.05, 0.2, lower=0.0, upper=1.0)  # a new emitter: a new trace of the loop
        key = jax.random.split(jax.random.key(3), seeds) if seeds > 1 else jax.random.key(3)
        state = qdkit.map_elites.init(key, task, archive, emitter)
        if carry:
            no_segment_ops()
        return qdkit.map_elites.run(state, task, emitter, 25, chunk_size=10)

    (expected, expected_metrics), (got, metrics) = run(False), run(True)
    assert archive_module.CellBuffers.fresh_arrays(expected.archive) is not None
    assert qdkit.map_elites.num_seeds(got) == (seeds if seeds > 1 else None)
    for x, y in zip(jax.tree.leaves(expected.archive), jax.tree.leaves(got.archive)):
        np.testing.assert_array_equal(x, y)
    assert set(metrics) == set(expected_metrics)
    for name in metrics:
        np.testing.assert_array_equal(expected_metrics[name], metrics[name])


def test_small_archives_keep_the_segment_operations():
    from qdkit.archive import CARRY_FROM_CELLS, CellBuffers

    assert CellBuffers.fresh_arrays(grid(shape=(100, 100))) is None  # the headline's 10^4 cells
    assert set(CellBuffers.fresh_arrays(grid(shape=(1, CARRY_FROM_CELLS)))) == {"max", "min"}


@pytest.mark.parametrize(
    "options", [{}, {"learning_rate": 0.1, "threshold_min": 0.0}, {"learning_rate": 0.1, "threshold_min": 0.0,
                                                                   "replacement": "best"}],
    ids=["plain", "threshold", "best"],
)  # fmt: skip
@pytest.mark.parametrize("carried", [True, False], ids=["carried", "segment"])
def test_the_compiled_loop_writes_in_place(options, carried, monkeypatch):
    """No array of the archive's cells is copied in the compiled loop (but the segment
    operations' fresh buffers): the carried buffers are put back in place, and a
    threshold archive's fitness written in place (each needs its write ordered after a
    read, which the code makes a data dependency)."""
    from emitters import iso_line
    from qdkit import archive as archive_module

    monkeypatch.setattr(archive_module, "CARRY_FROM_CELLS", 0 if carried else 1 << 30)
    task = qdkit.tasks.get("rastrigin", dims=4)
    archive = qdkit.GridArchive.create(
        shape=(64, 61), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype, **options
    )  # 3,904 cells: a size no other array of the program has
    emitter = iso_line(32, 0.05, 0.2, lower=0.0, upper=1.0)
    state = qdkit.map_elites.init(jax.random.key(0), task, archive, emitter)
    text = (
        qdkit.map_elites._run_chunk.lower(state, 5, task=task, emitter=emitter, chunk_size=5, mesh=None)
        .compile()
        .as_text()
    )
    assert ("scatter-max" in text) and ("while" in text)
    # (a copy of a broadcast is how XLA fills the segment operations' buffers: theirs)
    copies = re.findall(r"= [fs]32\[3904\]\{0\} copy\((%[\w.-]+)\)", text)
    assert not [c for c in copies if "broadcast" not in c], copies
