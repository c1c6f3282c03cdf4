"""CMA-ES core, CMA-ME/CMA-MAE emitters, threshold archives and DQD emitters."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import emitters
import qdkit
from emitters import cma_es
from qdkit import IMPROVED, NEW, NOT_ADDED, CVTArchive, GridArchive, map_elites, tasks
from qdkit.archive import AddInfo
from qdkit.tasks import Evaluation


# ----------------------------------------------------------------- CMA-ES core
def reference_tell(mean, sigma, cov, pc, ps, evals, ranked, mu):
    """Hansen's purecma update (tutorial damping), float64, written out directly."""
    lam, n = ranked.shape
    w = np.log(mu + 0.5) - np.log(np.arange(1, mu + 1))
    w = w / w.sum()
    mueff = 1 / np.sum(w**2)
    cc = (4 + mueff / n) / (n + 4 + 2 * mueff / n)
    cs = (mueff + 2) / (n + mueff + 5)
    c1 = 2 / ((n + 1.3) ** 2 + mueff)
    cmu = min(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((n + 2) ** 2 + mueff))
    damps = 1 + 2 * max(0, np.sqrt((mueff - 1) / (n + 1)) - 1) + cs
    evals = evals + lam
    vals, vecs = np.linalg.eigh(cov)
    invsqrt = vecs @ np.diag(vals**-0.5) @ vecs.T
    new_mean = w @ ranked[:mu]
    y = new_mean - mean
    ps = (1 - cs) * ps + np.sqrt(cs * (2 - cs) * mueff) / sigma * invsqrt @ y
    hsig = float(np.sum(ps**2) / n / (1 - (1 - cs) ** (2 * evals / lam)) < 2 + 4 / (n + 1))
    pc = (1 - cc) * pc + hsig * np.sqrt(cc * (2 - cc) * mueff) / sigma * y
    c1a = c1 * (1 - (1 - hsig**2) * cc * (2 - cc))
    cov = cov * (1 - c1a - cmu * w.sum()) + c1 * np.outer(pc, pc)
    for k in range(mu):
        d = ranked[k] - mean
        cov = cov + w[k] * cmu / sigma**2 * np.outer(d, d)
    sigma = sigma * np.exp(min(1, cs / damps * (np.sum(ps**2) / n - 1) / 2))
    return new_mean, sigma, cov, pc, ps, evals


@pytest.mark.parametrize("mu", [4, 3, 1])
def test_cma_tell_matches_reference_on_fixed_samples(mu):
    n, lam = 6, 8
    rng = np.random.default_rng(0)
    state = cma_es.reset(jnp.asarray(rng.normal(size=n), jnp.float32), 0.7)
    ref = (np.asarray(state.mean, np.float64), 0.7, np.eye(n), np.zeros(n), np.zeros(n), 0)
    for _ in range(3):  # three updates, with a decomposition between them
        z = jnp.asarray(rng.normal(size=(lam, n)), jnp.float32)
        x = cma_es.sample(state, z)
        ranked = np.asarray(x)[rng.permutation(lam)]
        state = cma_es.decompose(cma_es.tell(state, jnp.asarray(ranked), jnp.asarray(mu)))
        ref = reference_tell(*ref, ranked.astype(np.float64), mu)
        np.testing.assert_allclose(state.mean, ref[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(state.sigma, ref[1], rtol=1e-5)
        np.testing.assert_allclose(state.cov, ref[2], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(state.pc, ref[3], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(state.ps, ref[4], rtol=1e-4, atol=1e-5)
    # the decomposition is consistent: B diag(eig) B^T == C
    rebuilt = (state.basis * state.eigvals[None, :]) @ state.basis.T
    np.testing.assert_allclose(rebuilt, state.cov, rtol=1e-4, atol=1e-6)


def test_dqd_benchmark_patch_gives_pyribs_cma_es_the_purecma_update(monkeypatch):
    """benchmarks/dqd.py --pyribs-cma purecma: pyribs' CMA-ES, patched, follows the
    purecma reference exactly (float64); unpatched it does not (its evolution path is not
    divided by sigma and its rank-one term has c1 twice), and the patch is undone."""
    from pathlib import Path

    pytest.importorskip("ribs")
    from ribs.emitters.opt._cma_es import CMAEvolutionStrategy

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import dqd

    def run(patched: bool):
        n, lam, mu = 6, 12, 6
        es = CMAEvolutionStrategy(sigma0=0.5, solution_dim=n, batch_size=lam, seed=1, dtype=np.float64)
        es.reset(np.zeros(n))
        ref = (np.zeros(n), 0.5, np.eye(n), np.zeros(n), np.zeros(n), 0)
        rng = np.random.default_rng(0)
        for _ in range(4):
            x = es.ask()
            order = np.argsort(-rng.normal(size=lam))
            es.tell(order, np.zeros(lam), mu)
            ref = reference_tell(*ref, x[order], mu)
        return np.max(np.abs(es.cov.cov - ref[2])), abs(es.sigma - ref[1])

    with dqd.purecma_update_in_pyribs():
        cov_error, sigma_error = run(True)
    assert cov_error < 1e-12 and sigma_error < 1e-12
    cov_error, _ = run(False)
    assert cov_error > 1e-3


def test_cma_tell_without_parents_only_counts():
    state = cma_es.reset(jnp.ones(3), 0.5)
    after = cma_es.tell(state, jnp.zeros((4, 3)), jnp.asarray(0))
    np.testing.assert_array_equal(after.mean, state.mean)
    assert float(after.sigma) == 0.5 and float(after.evals) == 4.0


def test_cma_es_minimises_a_rotated_ellipsoid():
    n, lam = 8, 12
    rot = np.linalg.qr(np.random.default_rng(1).normal(size=(n, n)))[0]
    scales = 10.0 ** np.linspace(0, 2, n)

    def f(x):
        return jnp.sum(((x @ rot.T) * jnp.asarray(scales, jnp.float32)[None, :]) ** 2, axis=1)

    @jax.jit
    def generation(state, key):
        x = cma_es.sample(state, jax.random.normal(key, (lam, n)))
        ranked = x[jnp.argsort(f(x))]
        return cma_es.decompose(cma_es.tell(state, ranked, jnp.asarray(lam // 2))), None

    state = cma_es.reset(jnp.full((n,), 3.0), 1.0)
    state, _ = jax.lax.scan(generation, state, jax.random.split(jax.random.key(0), 400))
    assert float(f(state.mean[None, :])[0]) < 1e-6


def test_lazy_gap_grows_with_dimension():
    assert cma_es.lazy_gap(2, 36) == 1
    assert cma_es.lazy_gap(100, 36) == 3  # pyribs: 102.8 evaluations, exceeded after 3 x 36
    assert cma_es.lazy_gap(100, 36) < cma_es.lazy_gap(1000, 36)


# ------------------------------------------------------------ threshold archive
def soft_grid(lr, threshold_min, shape=(4,), replacement="threshold"):
    return GridArchive.create(
        shape=shape, lower=[0.0] * len(shape), upper=[1.0] * len(shape), example_genotype=jnp.zeros(2),
        learning_rate=lr, threshold_min=threshold_min, replacement=replacement,
    )  # fmt: skip


@pytest.mark.parametrize("replacement", ["threshold", "best"], ids=["published", "best"])
def test_threshold_batch_update_against_hand_computation(replacement):
    archive = soft_grid(0.1, 0.0, replacement=replacement)
    assert (archive.result is not None) == (replacement == "threshold")
    genotypes = jnp.arange(8.0).reshape(4, 2)
    # cell 0 gets 10 and 20 (both beat t = 0); cell 3 gets -1 (below threshold_min)
    archive, info = archive.add(genotypes[:3], jnp.array([10.0, 20.0, -1.0]), jnp.array([[0.1], [0.2], [0.9]]))
    # t0 <- 0.9^2 * 0 + (1 - 0.9^2) * mean(10, 20)
    assert float(archive.threshold[0]) == pytest.approx(0.19 * 15.0, rel=1e-6)
    assert float(archive.threshold[3]) == 0.0
    np.testing.assert_array_equal(info.rank_status, [NEW, NEW, NOT_ADDED])
    np.testing.assert_array_equal(info.status, [NOT_ADDED, NEW, NOT_ADDED])  # the best one is stored
    np.testing.assert_allclose(info.value, [10.0, 20.0, -1.0])  # f - threshold_min
    assert float(archive.fitness[0]) == 20.0 and not bool(archive.occupied[3])

    # 3 beats the threshold 2.85 but not the stored elite 20: accepted; the paper's rule replaces the
    # occupant with it (the result archive keeps the 20), qdkit's "best" keeps the 20
    archive, info = archive.add(genotypes[3:], jnp.array([3.0]), jnp.array([[0.05]]))
    assert int(info.rank_status[0]) == IMPROVED
    assert float(info.value[0]) == pytest.approx(3.0 - 2.85, rel=1e-5)
    assert float(archive.threshold[0]) == pytest.approx(0.9 * 2.85 + 0.1 * 3.0, rel=1e-6)
    if replacement == "threshold":
        assert int(info.status[0]) == IMPROVED and float(archive.fitness[0]) == 3.0
        np.testing.assert_array_equal(archive.genotypes[0], genotypes[3])
        results = archive.results()
        assert float(results.fitness[0]) == 20.0 and results.result is None and not results.soft
        np.testing.assert_array_equal(results.genotypes[0], genotypes[1])
        # the metrics report the result archive: the best ever found
        assert float(qdkit.metrics.compute(archive, info, 0.0)["max_fitness"]) == 20.0
    else:
        assert int(info.status[0]) == NOT_ADDED and float(archive.fitness[0]) == 20.0
        assert archive.results() is archive
    # 2 is below the threshold: rejected, threshold unchanged
    before = float(archive.threshold[0])
    archive, info = archive.add(genotypes[:1], jnp.array([2.0]), jnp.array([[0.05]]))
    assert int(info.rank_status[0]) == NOT_ADDED and float(archive.threshold[0]) == before
    assert int(info.status[0]) == NOT_ADDED


@pytest.mark.parametrize("kind", ["grid", "cvt"])
def test_published_threshold_rule_matches_pyribs(kind):
    """pyribs as the oracle of CMA-MAE's archive: the same batches give the same statuses,
    values, elites and thresholds, and pyribs' result archive (a plain archive fed every
    batch) equals qdkit's result archive."""
    ribs_archives = pytest.importorskip("ribs.archives")
    lr, tmin = 0.2, -3.0
    common = {"learning_rate": lr, "threshold_min": tmin}
    if kind == "grid":
        ours = GridArchive.create(shape=(5, 4), lower=[0, 0], upper=[1, 1], example_genotype=jnp.zeros(3), **common)
        make = lambda **kw: ribs_archives.GridArchive(solution_dim=3, dims=[5, 4], ranges=[(0, 1), (0, 1)],  # noqa: E731
                                                      epsilon=0.0, dtype=np.float32, **kw)  # fmt: skip
    else:
        ours = CVTArchive.create(cells=15, lower=[0, 0], upper=[1, 1], example_genotype=jnp.zeros(3), samples=3000,
                                 lookup="brute", **common)  # fmt: skip
        make = lambda **kw: ribs_archives.CVTArchive(solution_dim=3, centroids=np.asarray(ours.centroids),  # noqa: E731
                                                     ranges=[(0, 1), (0, 1)], dtype=np.float32, **kw)  # fmt: skip
    theirs, their_results = make(**common), make()
    rng = np.random.default_rng(7)
    for _ in range(8):
        g = rng.normal(size=(30, 3)).astype(np.float32)
        f = np.round(rng.normal(size=30), 1).astype(np.float32)  # ties
        d = rng.uniform(0.02, 0.98, size=(30, 2)).astype(np.float32)  # off the cell boundaries
        ours, info = ours.add(jnp.asarray(g), jnp.asarray(f), jnp.asarray(d))
        expected = theirs.add(g, f, d)
        their_results.add(g, f, d)
        np.testing.assert_array_equal(info.rank_status, expected["status"])
        np.testing.assert_allclose(info.value, expected["value"], rtol=1e-6, atol=1e-6)
    for archive, reference in ((ours, theirs), (ours.results(), their_results)):
        data = reference.data()
        index = np.asarray(data["index"])
        occupied = np.asarray(archive.occupied)
        assert sorted(index.tolist()) == np.nonzero(occupied)[0].tolist()
        np.testing.assert_array_equal(np.asarray(archive.fitness)[index], data["objective"])
        np.testing.assert_array_equal(np.asarray(archive.genotypes)[index], data["solution"])
        if archive.soft:
            np.testing.assert_allclose(np.asarray(archive.threshold)[index], data["threshold"], rtol=1e-6, atol=1e-6)


def test_learning_rate_one_behaves_like_the_plain_archive():
    """alpha = 1 reduces CMA-MAE's archive to CMA-ME's: same acceptance and elites."""
    rng = np.random.default_rng(3)
    plain, soft = soft_grid(1.0, -np.inf, (5, 5)), soft_grid(1.0, -1e6, (5, 5))
    assert plain.threshold is None and soft.threshold is not None
    for _ in range(6):
        g = jnp.asarray(rng.normal(size=(40, 2)), jnp.float32)
        f = jnp.asarray(np.round(rng.normal(size=40), 1), jnp.float32)  # rounding: ties
        d = jnp.asarray(rng.uniform(size=(40, 2)), jnp.float32)
        plain, info_p = plain.add(g, f, d)
        soft, info_s = soft.add(g, f, d)
        np.testing.assert_array_equal(info_s.status, info_p.status)
        np.testing.assert_array_equal(info_s.rank_status, info_p.rank_status)
        np.testing.assert_array_equal(soft.fitness, plain.fitness)
        np.testing.assert_array_equal(soft.genotypes, plain.genotypes)
        # the threshold of a cell is its elite's fitness
        occupied = np.asarray(plain.occupied)
        np.testing.assert_array_equal(np.asarray(soft.threshold)[occupied], np.asarray(plain.fitness)[occupied])


def test_rank_status_counts_every_row_that_beats_the_old_elite():
    archive = soft_grid(1.0, -np.inf)
    g = jnp.zeros((3, 2))
    archive, info = archive.add(g, jnp.array([1.0, 2.0, 0.5]), jnp.full((3, 1), 0.1))
    np.testing.assert_array_equal(info.status, [NOT_ADDED, NEW, NOT_ADDED])
    np.testing.assert_array_equal(info.rank_status, [NEW, NEW, NEW])
    archive, info = archive.add(g, jnp.array([1.5, 3.0, jnp.nan]), jnp.full((3, 1), 0.1))
    np.testing.assert_array_equal(info.rank_status, [NOT_ADDED, IMPROVED, NOT_ADDED])


@pytest.mark.parametrize(
    ("lr", "tmin", "match"),
    [(0.5, -np.inf, "finite threshold_min"), (1.5, 0.0, r"\[0, 1\]"), (0.1, np.nan, "threshold_min")],
)
def test_bad_threshold_settings_are_refused(lr, tmin, match):
    with pytest.raises(ValueError, match=match):
        soft_grid(lr, tmin)


def test_cvt_archive_takes_thresholds():
    archive = CVTArchive.create(
        cells=16, lower=[0, 0], upper=[1, 1], example_genotype=jnp.zeros(2), learning_rate=0.5, threshold_min=0.0
    )
    archive, _ = archive.add(jnp.zeros((2, 2)), jnp.array([4.0, 8.0]), jnp.full((2, 2), 0.5))
    cell = int(archive.index_of(jnp.full((1, 2), 0.5))[0])
    assert float(archive.threshold[cell]) == pytest.approx(0.75 * 6.0)


# ------------------------------------------------------------ CMA-ME / CMA-MAE
def filled_archive(task, n=200, seed=0, **kw):
    archive = GridArchive.create(
        shape=(10, 10), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype, **kw
    )
    g = task.initial_genotypes(jax.random.key(seed), n)
    ev = task.score(None, g)
    return archive.add(g, ev.fitness, ev.descriptors)[0]


def fake_feedback(emitter, genotypes, rank_status, value=None):
    b = emitter.batch_size
    value = jnp.zeros(b) if value is None else value
    info = AddInfo(jnp.zeros(b, jnp.int32), value, jnp.zeros(b, jnp.int32), jnp.asarray(rank_status, jnp.int32))
    return Evaluation(jnp.arange(b, dtype=jnp.float32), jnp.zeros((b, 2)), {}), info


@pytest.mark.parametrize("restart", ["no_improvement", "basic", 3])
def test_restart_rules(restart):
    task = tasks.get("sphere_proj", dims=4)
    archive = filled_archive(task)
    emitter = emitters.evolution_strategy(task.example_genotype, 6, num_emitters=2, sigma0=0.3, restart=restart)
    state = emitter.init(jax.random.key(0), archive)
    elites = np.asarray(archive.genotypes)[np.asarray(archive.occupied)]
    first_direction = np.asarray(state.direction)
    emit, update = jax.jit(emitter.emit), jax.jit(emitter.update)
    # instance 0 accepted two candidates, instance 1 none
    status = [1, 2, 0, 0, 0, 0] + [0] * 6
    for it in range(1, 4):
        genotypes, state = emit(jax.random.key(it), archive, state)
        evaluation, info = fake_feedback(emitter, genotypes, status, jnp.linspace(5, 0, 12))
        state = update(state, archive, genotypes, evaluation, info)
        if restart == "no_improvement":
            np.testing.assert_array_equal(state.restarts, [0, it])
        elif restart == "basic":
            np.testing.assert_array_equal(state.restarts, [0, 0])
        else:
            np.testing.assert_array_equal(state.restarts, [it // 3, it // 3])
    if restart != "basic":  # a restarted instance sits on an elite with sigma0 and C = I
        restarted = 1
        mean = np.asarray(state.cma.mean[restarted])
        assert np.min(np.abs(elites - mean).max(axis=1)) < 1e-6
        assert float(state.cma.sigma[restarted]) == pytest.approx(0.3)
        np.testing.assert_array_equal(state.cma.cov[restarted], np.eye(4))
        assert np.all(np.asarray(state.direction)[restarted] != first_direction[restarted])  # a new target


def test_flat_ranking_values_stop_an_instance_under_any_rule():
    task = tasks.get("sphere_proj", dims=4)
    archive = filled_archive(task)
    emitter = emitters.evolution_strategy(task.example_genotype, 4, num_emitters=1, ranker="imp", restart="basic")
    state = emitter.init(jax.random.key(0), archive)
    genotypes, state = emitter.emit(jax.random.key(1), archive, state)
    evaluation, info = fake_feedback(emitter, genotypes, [1, 1, 1, 1], jnp.full(4, 2.0))
    state = jax.jit(emitter.update)(state, archive, genotypes, evaluation, info)
    assert int(state.restarts[0]) == 1


def test_filter_selection_recombines_only_accepted_candidates():
    task = tasks.get("sphere_proj", dims=4)
    archive = filled_archive(task)
    emitter = emitters.evolution_strategy(task.example_genotype, 8, num_emitters=1, selection="filter")
    state = emitter.init(jax.random.key(0), archive)
    genotypes, state = emitter.emit(jax.random.key(1), archive, state)
    # rows 5 (new) then 2 (improved) are the two parents, in that order
    status = jnp.array([0, 0, 1, 0, 0, 2, 0, 0])
    value = jnp.array([9.0, 8.0, 1.0, 7.0, 6.0, 0.5, 5.0, 4.0])
    evaluation, info = fake_feedback(emitter, genotypes, status, value)
    after = emitter.update(state, archive, genotypes, evaluation, info)
    x = np.asarray(genotypes)
    w = np.log(2.5) - np.log([1.0, 2.0])
    w /= w.sum()
    np.testing.assert_allclose(after.cma.mean[0], w[0] * x[5] + w[1] * x[2], rtol=1e-5, atol=1e-6)


def test_options_are_validated_with_the_valid_choices():
    g = jnp.zeros(3)
    with pytest.raises(ValueError, match="2imp, imp, obj, 2rd, rd"):
        emitters.evolution_strategy(g, 8, ranker="best")
    with pytest.raises(ValueError, match="filter, mu"):
        emitters.evolution_strategy(g, 8, selection="top")
    with pytest.raises(ValueError, match="no_improvement, basic"):
        emitters.evolution_strategy(g, 8, restart="never")
    with pytest.raises(ValueError, match="sgd, adam"):
        emitters.cma_mega(lambda k, x: None, g, 8, optimizer="rmsprop")


def test_cma_me_emits_its_batch_and_runs_in_the_loop():
    task = tasks.get("sphere_proj", dims=10)
    archive = filled_archive(task, n=1)
    emitter = emitters.evolution_strategy(task.example_genotype, 10, num_emitters=3)
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    state, metrics = map_elites.run(state, task, emitter, 30, chunk_size=10)
    assert emitter.batch_size == 30 and int(state.emitter_state.iteration) == 30
    assert metrics["num_elites"][-1] > metrics["num_elites"][0] > 0
    assert np.all(np.isfinite(np.asarray(state.emitter_state.cma.sigma)))


# --------------------------------------------------------------- DQD emitters
@pytest.mark.parametrize("name", ["sphere_proj", "rastrigin_proj", "sphere", "arm"])
def test_task_jacobian_matches_finite_differences(name):
    task = tasks.get(name)
    x = task.initial_genotypes(jax.random.key(0), 3).astype(jnp.float32)
    evaluation, jac = task.jacobian(jax.random.key(1), x)
    direct = task.score(None, x)
    np.testing.assert_allclose(evaluation.fitness, direct.fitness, rtol=1e-6)
    np.testing.assert_allclose(evaluation.descriptors, direct.descriptors, rtol=1e-6)
    assert jac.shape == (3, 1 + task.descriptor_dim, x.shape[1])
    x64 = np.asarray(x, np.float64)
    eps = 1e-3

    def outputs(v):
        ev = task.score(None, jnp.asarray(v, jnp.float32))
        return np.concatenate([np.asarray(ev.fitness)[:, None], np.asarray(ev.descriptors)], axis=1)

    for j in range(x.shape[1]):
        step = np.zeros_like(x64)
        step[:, j] = eps
        fd = (outputs(x64 + step) - outputs(x64 - step)) / (2 * eps)
        scale = np.maximum(np.abs(fd), 1.0)
        np.testing.assert_array_less(np.abs(np.asarray(jac[:, :, j]) - fd) / scale, 2e-2)


def test_sphere_proj_gradients_are_analytic():
    task = tasks.get("sphere_proj", dims=4)
    x = jnp.array([[1.0, -2.0, 6.0, 0.5]])
    _, jac = task.jacobian(jax.random.key(0), x)
    worst = 4 * (5.12 + 2.048) ** 2
    np.testing.assert_allclose(jac[0, 0], -200 * (np.asarray(x[0]) - 2.048) / worst, rtol=1e-5)
    # descriptor 1 = x0 + x1, descriptor 2 = 5.12 / x2 + x3 (x2 is beyond the bound)
    np.testing.assert_allclose(jac[0, 1], [1, 1, 0, 0])
    np.testing.assert_allclose(jac[0, 2], [0, 0, -5.12 / 36, 1], rtol=1e-5)


def test_jacobian_of_a_non_differentiable_task_is_refused():
    task = tasks.Task(
        name="plain", score=lambda k, g: None, example_genotype=jnp.zeros(2), genotype_lower=0.0,
        genotype_upper=1.0, lower=np.zeros(2), upper=np.ones(2), qd_offset=0.0, descriptor_names=("a", "b"),
    )  # fmt: skip
    with pytest.raises(ValueError, match="differentiable"):
        task.jacobian(jax.random.key(0), jnp.zeros((1, 2)))


def test_cma_mega_branches_are_theta_plus_gradient_combinations():
    task = tasks.get("sphere_proj", dims=6)
    archive = filled_archive(task)
    emitter = emitters.cma_mega(task.jacobian, task.example_genotype, 5, num_emitters=2, sigma0=1.0)
    state = jax.jit(emitter.init)(jax.random.key(0), archive)
    batch, state = jax.jit(emitter.emit)(jax.random.key(1), archive, state)
    batch = np.asarray(batch).reshape(2, 6, 6)
    np.testing.assert_allclose(batch[:, 0], state.theta)  # theta comes first
    grads = np.asarray(state.grads)
    np.testing.assert_allclose(np.linalg.norm(grads, axis=2), 1.0, rtol=1e-5)
    for e in range(2):  # each branch minus theta lies in the span of the 3 gradients
        offsets = batch[e, 1:] - batch[e, 0]
        coef, *_ = np.linalg.lstsq(grads[e].T, offsets.T, rcond=None)
        np.testing.assert_allclose(grads[e].T @ coef, offsets.T, atol=1e-4)
    # emit keeps the coefficients of its branches in the state, and the update steps theta along them
    coefficients = np.asarray(state.coefficients)  # (E, population, 1 + M)
    np.testing.assert_allclose(batch[:, 1:] - batch[:, :1], np.einsum("epk,ekn->epn", coefficients, grads), atol=1e-4)
    evaluation = task.score(None, jnp.asarray(batch.reshape(12, 6)))
    archive2, info = archive.add(jnp.asarray(batch.reshape(12, 6)), evaluation.fitness, evaluation.descriptors)
    after = jax.jit(emitter.update)(state, archive2, jnp.asarray(batch.reshape(12, 6)), evaluation, info)
    moved = np.asarray(after.theta) - np.asarray(state.theta)
    for e in range(2):
        if int(after.restarts[e]) == 0:
            coef, *_ = np.linalg.lstsq(grads[e].T, moved[e], rcond=None)
            np.testing.assert_allclose(grads[e].T @ coef, moved[e], atol=1e-4)
            assert np.linalg.norm(moved[e]) > 0


def test_dqd_beats_cma_me_and_map_elites_on_a_small_projection_benchmark():
    """At equal evaluations, the paper's ordering on the 20-D sphere projection."""
    task = tasks.get("sphere_proj", dims=20)
    scores = {}

    def run(name, emitter, iterations, lr=1.0, tmin=-np.inf):
        archive = GridArchive.create(
            shape=(20, 20), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype,
            learning_rate=lr, threshold_min=tmin,
        )  # fmt: skip
        state = map_elites.init(jax.random.key(0), task, archive, emitter, num_initial=100)
        state, _ = map_elites.run(state, task, emitter, iterations)
        scores[name] = float(state.archive.qd_score(task.qd_offset))

    g = task.example_genotype
    run("map-elites", emitters.gaussian(120, 0.5), 100)
    run("cma-me", emitters.evolution_strategy(g, 12, num_emitters=10), 100)
    run("cma-mega", emitters.cma_mega(task.jacobian, g, 11, num_emitters=10), 100)
    assert scores["cma-mega"] > scores["cma-me"] and scores["cma-mega"] > scores["map-elites"], scores


# ------------------------------------------------------------------- registry
def test_registry_builds_the_cma_family_with_paper_defaults():
    from qdkit import registry

    base = {"task": "sphere_proj", "task_options": {"dims": 10}, "batch_size": 30, "emitter_options": {}}
    task, archive, emitter = registry.build({**base, "emitter": "cma-mae"})
    assert archive.soft and archive.learning_rate == 0.01 and archive.threshold_min == task.qd_offset
    assert emitter.batch_size == 30
    _, archive, _ = registry.build({**base, "emitter": "cma-mae", "learning_rate": 1.0})
    assert not archive.soft  # alpha = 1: the plain archive, as CMA-ME uses
    _, archive, emitter = registry.build({**base, "emitter": "cma-mega", "emitter_options": {"num_emitters": 5}})
    assert not archive.soft and emitter.batch_size == 30  # 5 x (theta + 5 branches)
    plain = tasks.Task(
        name="plain", score=lambda k, g: None, example_genotype=jnp.zeros(2), genotype_lower=0.0,
        genotype_upper=1.0, lower=np.zeros(2), upper=np.ones(2), qd_offset=0.0, descriptor_names=("a", "b"),
    )  # fmt: skip
    with pytest.raises(ValueError, match="needs gradients"):
        registry.build_emitter("omg-mega", plain, 10)


def test_cma_mega_with_adam_runs_on_the_arm():
    task = tasks.get("arm", dof=6)
    archive = filled_archive(task, n=50)
    emitter = emitters.cma_mega(task.jacobian, task.example_genotype, 7, num_emitters=2, sigma0=0.5, lr=0.05,
                                optimizer="adam", lower=task.genotype_lower, upper=task.genotype_upper)  # fmt: skip
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    state, metrics = map_elites.run(state, task, emitter, 20, chunk_size=10)
    theta = np.asarray(state.emitter_state.theta)
    assert np.all(np.abs(theta) <= np.pi + 1e-6)  # theta stays in the genotype bounds
    assert metrics["num_elites"][-1] > metrics["num_elites"][0]


def test_random_direction_rankers_order_by_projection():
    task = tasks.get("sphere_proj", dims=4)
    archive = filled_archive(task)
    for ranker in ("rd", "2rd"):
        emitter = emitters.evolution_strategy(task.example_genotype, 6, num_emitters=1, ranker=ranker,
                                              selection="mu", restart="basic")  # fmt: skip
        state = emitter.init(jax.random.key(0), archive)
        direction = np.asarray(state.direction[0])
        assert direction.shape == (2,) and np.all(direction != 0)
        descriptors = jnp.asarray(np.random.default_rng(1).normal(size=(6, 2)), jnp.float32)
        status = jnp.array([0, 0, 1, 0, 0, 0])
        info = AddInfo(jnp.zeros(6, jnp.int32), jnp.zeros(6), jnp.zeros(6, jnp.int32), status)
        order, _ = emitters.cma.rank(ranker, info, jnp.zeros(6), descriptors, state.direction[0])
        projection = np.asarray(descriptors) @ direction
        expected = list(np.argsort(-projection))
        if ranker == "2rd":  # the accepted row first
            expected = [2] + [i for i in expected if i != 2]
        assert list(np.asarray(order)) == expected
    with pytest.raises(ValueError, match="2imp, imp, obj"):
        emitters.cma_mega(task.jacobian, task.example_genotype, 4, ranker="rd")


def test_cma_maega_preset_runs_over_a_threshold_archive():
    from qdkit import registry

    config = {"task": "sphere_proj", "task_options": {"dims": 10}, "emitter": "cma-maega", "batch_size": 24,
              "emitter_options": {"num_emitters": 3}, "shape": [10, 10]}  # fmt: skip
    task, archive, emitter = registry.build(config)
    assert archive.soft and archive.learning_rate == 0.01 and archive.threshold_min == 0.0
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    state, metrics = map_elites.run(state, task, emitter, 20, chunk_size=10)
    thresholds = np.asarray(state.archive.threshold)
    occupied = np.asarray(state.archive.occupied)
    # thresholds moved off threshold_min in the occupied cells, and stay below their elites
    assert np.all(thresholds[occupied] > 0.0)
    assert np.all(thresholds[occupied] <= np.asarray(state.archive.fitness)[occupied] + 1e-4)
    assert metrics["num_elites"][-1] > metrics["num_elites"][0]
