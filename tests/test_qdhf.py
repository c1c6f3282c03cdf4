"""QDHF: judges, the learned projection, the learned archive and the refit schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import emitters
import feedback
from feedback import CANT_TELL, A, B
from qdkit import GridArchive, checkpoint, map_elites, tasks
from qdkit.tasks.arm import draw_arm

ARM = tasks.get("arm", dof=4)


# --------------------------------------------------------------------- judges
def test_simulated_judge_picks_the_nearer_item_by_ground_truth():
    judge = feedback.SimulatedJudge(lambda x: x)
    anchor = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    a = np.array([[0.1, 0.0], [5.0, 5.0], [1.0, 0.0]])
    b = np.array([[2.0, 0.0], [1.0, 1.2], [0.0, 1.0]])
    np.testing.assert_array_equal(judge(anchor, a, b), [A, B, CANT_TELL])  # an exact tie: can't tell
    assert judge.asked == 3
    near = np.array([[0.0, 1.001]])
    assert judge(anchor[2:], a[2:], near)[0] == A
    assert feedback.SimulatedJudge(lambda x: x, tie=0.01)(anchor[2:], a[2:], near)[0] == CANT_TELL
    liar = feedback.SimulatedJudge(lambda x: x, flip=1.0)
    np.testing.assert_array_equal(liar(anchor[:2], a[:2], b[:2]), [B, A])


def test_simulated_judge_noise_rate_and_validation():
    judge = feedback.SimulatedJudge(lambda x: x, flip=0.2, seed=1)
    n = 20_000
    x = np.zeros((n, 1))
    choices = judge(x, x + 1.0, x + 2.0)  # a is always right
    assert 0.18 < np.mean(choices == B) < 0.22
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        feedback.SimulatedJudge(lambda x: x, flip=1.5)


def test_arm_judge_uses_the_end_effector():
    judge = feedback.SimulatedJudge.from_task(ARM)
    straight = jnp.zeros((1, 4))
    bent = jnp.full((1, 4), 0.3)
    very_bent = jnp.full((1, 4), 1.2)
    assert judge(straight, bent, very_bent)[0] == A
    assert judge(very_bent, straight, bent)[0] == B


# --------------------------------------------------------------- the projection
def test_triplet_loss_by_hand_and_cant_tell_is_ignored():
    proj = feedback.Projection(2, 2)
    identity = [{"w": jnp.eye(2), "b": jnp.zeros(2)}]
    anchor = jnp.array([[0.0, 0.0], [0.0, 0.0]])
    a = jnp.array([[1.0, 0.0], [9.0, 9.0]])
    b = jnp.array([[0.0, 2.0], [9.0, 9.0]])
    # choice A: max(0, 1 - 4 + 0.5) = 0 ; choice B: max(0, 4 - 1 + 0.5) = 3.5
    assert float(feedback.triplet_loss(proj, identity, anchor[:1], a[:1], b[:1], jnp.array([A]), 0.5)) == 0.0
    assert float(feedback.triplet_loss(proj, identity, anchor[:1], a[:1], b[:1], jnp.array([B]), 0.5)) == 3.5
    both = feedback.triplet_loss(proj, identity, anchor, a, b, jnp.array([B, CANT_TELL]), 0.5)
    assert float(both) == 3.5


def test_fit_triplets_recovers_a_hidden_projection():
    rng = np.random.default_rng(0)
    features = rng.uniform(-1, 1, size=(3000, 6)).astype(np.float32)
    hidden = features[:, [4, 1]] * np.array([1.0, 2.0], np.float32)  # the judge's truth
    judge = feedback.SimulatedJudge(lambda i: hidden[i])
    idx = rng.integers(0, 3000, size=(3, 1500))
    choice = judge(*idx)
    proj = feedback.Projection(6, 2)
    params = proj.init(jax.random.key(0))
    params, loss = feedback.fit_triplets(proj, params, *(jnp.asarray(features[i]) for i in idx), jnp.asarray(choice))
    test = rng.integers(0, 3000, size=(3, 2000))
    z = np.asarray(proj.apply(params, features))
    learned = feedback.SimulatedJudge(lambda i: z[i])
    agreement = np.mean(learned(*test) == judge(*test))
    assert agreement > 0.95, agreement
    assert float(loss) < 0.2


def test_autoencoder_fit_lowers_reconstruction_error():
    rng = np.random.default_rng(1)
    latent = rng.normal(size=(500, 2))
    features = jnp.asarray(np.tanh(latent @ rng.normal(size=(2, 8))), jnp.float32)
    proj = feedback.Projection(8, 2, hidden=(16,))
    params, dec = proj.init(jax.random.key(0)), proj.decoder().init(jax.random.key(1))
    before = float(jnp.mean((proj.decoder().apply(dec, proj.apply(params, features)) - features) ** 2))
    _, _, after = feedback.fit_autoencoder(proj, params, dec, features, steps=300)
    assert float(after) < 0.3 * before


# ---------------------------------------------------------- the learned archive
def learned_archive(seed=0, shape=(8, 8)):
    proj = feedback.Projection(8, 2)
    return feedback.LearnedArchive.create(
        shape=shape, projection=proj, params=proj.init(jax.random.key(seed)), example_genotype=ARM.example_genotype
    )


def test_learned_archive_projects_features_and_keeps_them():
    archive = learned_archive()
    assert archive.learned and archive.kind == "grid" and archive.features.shape == (64, 8)
    g = ARM.initial_genotypes(jax.random.key(0), 64)
    ev = ARM.score(None, g)
    features = ARM.features(ev)
    assert features.shape == (64, 8)
    fitness = ev.fitness.at[0].set(jnp.nan)
    # add means the same for every archive: descriptors (here the learned ones) and, apart, the features
    described, feats = map_elites.describe(archive, ARM, ev)
    np.testing.assert_array_equal(feats, features)
    np.testing.assert_allclose(described.descriptors, archive.describe(features), rtol=1e-6)
    archive, info = archive.add(g, fitness, described.descriptors, feats)
    assert int(info.status[0]) == 0
    with pytest.raises(ValueError, match="needs the rows' features"):
        archive.add(g, fitness, described.descriptors)
    with pytest.raises(ValueError, match="features are kept by archives over learned descriptors only"):
        GridArchive.create(shape=(4, 4), lower=-1, upper=1, example_genotype=ARM.example_genotype).add(
            g, fitness, ev.descriptors, features
        )
    occupied = np.asarray(archive.occupied)
    stored = np.asarray(archive.features)[occupied]
    np.testing.assert_allclose(
        archive.describe(jnp.asarray(stored)), np.asarray(archive.descriptors)[occupied], rtol=1e-6
    )
    # each stored feature row is the feature row of the stored genotype
    again = ARM.features(ARM.score(None, jnp.asarray(np.asarray(archive.genotypes)[occupied])))
    np.testing.assert_allclose(stored, again, rtol=1e-6)


def test_redescribe_reinserts_every_elite_under_new_params():
    archive = learned_archive(shape=(16, 16))
    g = ARM.initial_genotypes(jax.random.key(0), 400)
    ev, features = map_elites.describe(archive, ARM, ARM.score(None, g))
    archive, _ = archive.add(g, ev.fitness, ev.descriptors, features)
    new_params = archive.indexer.projection.init(jax.random.key(5))
    fresh = jax.jit(lambda a, p: feedback.redescribe(a, p))(archive, new_params)
    occupied = np.asarray(fresh.occupied)
    elite_features = np.asarray(archive.features)[np.asarray(archive.occupied)]
    latents = np.asarray(fresh.describe(jnp.asarray(elite_features)))
    assert np.all(latents >= np.asarray(fresh.lower)) and np.all(latents <= np.asarray(fresh.upper))
    np.testing.assert_allclose(
        fresh.describe(jnp.asarray(np.asarray(fresh.features)[occupied])), np.asarray(fresh.descriptors)[occupied],
        rtol=1e-5, atol=1e-6,
    )  # fmt: skip
    # the best elite survives; no genotype appears that was not an elite before
    assert float(jnp.max(fresh.fitness)) == float(jnp.max(archive.fitness))
    before = {tuple(r) for r in np.asarray(archive.genotypes)[np.asarray(archive.occupied)].round(6)}
    after = {tuple(r) for r in np.asarray(fresh.genotypes)[occupied].round(6)}
    assert after <= before and 0 < len(after) <= len(before)


def test_learned_archive_checkpoints(tmp_path):
    archive = learned_archive()
    g = ARM.initial_genotypes(jax.random.key(0), 32)
    ev, features = map_elites.describe(archive, ARM, ARM.score(None, g))
    archive, _ = archive.add(g, ev.fitness, ev.descriptors, features)
    checkpoint.save(tmp_path / "c.npz", archive, {"note": "learned"})
    loaded = checkpoint.load(tmp_path / "c.npz", archive)
    for x, y in zip(jax.tree.leaves(loaded), jax.tree.leaves(archive)):
        np.testing.assert_array_equal(x, y)


def test_learned_descriptors_need_a_task_with_matching_features():
    sphere = tasks.get("sphere")
    archive = feedback.LearnedArchive.create(
        shape=(4, 4), projection=feedback.Projection(8, 2), params=feedback.Projection(8, 2).init(jax.random.key(0)),
        example_genotype=sphere.example_genotype,
    )  # fmt: skip
    with pytest.raises(ValueError, match="no features to learn descriptors from"):
        map_elites.init(jax.random.key(0), sphere, archive, emitters.gaussian(4, 0.1))
    arm = tasks.get("arm", dof=5)  # 10 features, not 8
    archive = learned_archive()
    with pytest.raises(ValueError, match="another shape"):
        map_elites.init(jax.random.key(0), arm, archive, emitters.gaussian(4, 0.1))
    wide = feedback.LearnedArchive.create(
        shape=(4, 4), projection=feedback.Projection(8, 2), params=feedback.Projection(8, 2).init(jax.random.key(0)),
        example_genotype=arm.example_genotype,
    )  # fmt: skip
    with pytest.raises(ValueError, match=r"gives \(10,\) features per row but the archive's projection takes \(8,\)"):
        map_elites.init(jax.random.key(0), arm, wide, emitters.gaussian(4, 0.1))


# ----------------------------------------------------------------- the schedule
def test_a_callback_can_replace_the_state_without_recompiling():
    task = tasks.get("arm", dof=4)
    archive = GridArchive.create(
        shape=(8, 8), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    emitter = emitters.iso_line(16, 0.01, 0.1)
    seen = []

    def wipe(state, metrics):
        seen.append(int(metrics["num_elites"][-1]))
        if int(state.iteration) == 10:  # empty the archive once, keep one elite
            a = state.archive
            keep = jnp.zeros_like(a.fitness).at[a.order[0]].set(1.0)
            return state.replace(
                archive=a.with_elites(a.genotypes, jnp.where(keep > 0, a.fitness, -jnp.inf), a.descriptors)
            )
        return None

    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    before = map_elites._run_chunk._cache_size()
    state, metrics = map_elites.run(state, task, emitter, 20, chunk_size=10, callbacks=[wipe])
    assert map_elites._run_chunk._cache_size() == before + 1
    assert metrics["num_elites"][10] <= 1 + 16  # restarted from one elite
    assert int(state.iteration) == 20


def test_refitter_validation():
    with pytest.raises(ValueError, match="qdhf, aurora, random"):
        feedback.Refitter(None, iterations=10, method="pca")
    with pytest.raises(ValueError, match="needs a judge"):
        feedback.Refitter(None, iterations=10)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        feedback.Refitter(feedback.SimulatedJudge(lambda x: x), iterations=10, refits=[0.5, 1.0])


def ground_truth_coverage(archive) -> float:
    occupied = np.asarray(archive.occupied)
    g = jnp.asarray(np.asarray(archive.genotypes)[occupied])
    truth = GridArchive.create(shape=(16, 16), lower=ARM.lower, upper=ARM.upper, example_genotype=ARM.example_genotype)
    ev = ARM.score(None, g)
    return float(truth.add(g, ev.fitness, ev.descriptors)[0].coverage())


def test_qdhf_beats_a_random_projection_on_the_arm():
    """The paper's finding in miniature: judged descriptors cover the ground truth better."""
    emitter = emitters.iso_line(64, 0.01, 0.1, lower=ARM.genotype_lower, upper=ARM.genotype_upper)
    coverage = {}
    for method in ("qdhf", "random"):
        archive = learned_archive(seed=3, shape=(16, 16))
        refitter = feedback.Refitter(
            feedback.SimulatedJudge.from_task(ARM), iterations=200, judgments=400, method=method, steps=300
        )
        state = refitter.start(map_elites.init(jax.random.key(0), ARM, archive, emitter))
        state, _ = map_elites.run(state, ARM, emitter, 200, chunk_size=10, callbacks=[refitter])
        assert [entry["iteration"] for entry in refitter.log] == [0, 20, 50, 100]
        coverage[method] = ground_truth_coverage(state.archive)
    assert refitter.judgments_so_far() == 0  # the random baseline asks nothing
    assert coverage["qdhf"] > coverage["random"] + 0.05, coverage


def test_maze_trajectory_features_and_learned_metric_on_the_maze():
    """The maze's features are its path; judged by the final position, the learned
    latent orders held-out triplets like the ground truth, far better than chance."""
    maze = tasks.get("maze", episode_length=60)
    g = maze.initial_genotypes(jax.random.key(0), 4)
    ev = maze.score(jax.random.key(1), g)
    path = np.asarray(ev.extras["trajectory"]).reshape(4, 10, 2)
    np.testing.assert_allclose(path[:, -1], 2 * np.asarray(ev.descriptors) - 1, atol=1e-6)  # ends at the descriptor
    assert np.all(np.abs(path) <= 1)

    emitter = emitters.iso_line(64, 0.005, 0.05)
    projection = feedback.Projection(20, 2)
    archive = feedback.LearnedArchive.create(
        shape=(16, 16), projection=projection, params=projection.init(jax.random.key(2)),
        example_genotype=maze.example_genotype,
    )  # fmt: skip
    refitter = feedback.Refitter(feedback.SimulatedJudge.from_task(maze), iterations=40, judgments=400, steps=300)
    state = refitter.start(map_elites.init(jax.random.key(0), maze, archive, emitter))
    state, _ = map_elites.run(state, maze, emitter, 40, chunk_size=4, callbacks=[refitter])
    assert refitter.judgments_so_far() == 400

    occupied = np.asarray(state.archive.occupied)
    assert occupied.sum() > 30
    feats = np.asarray(state.archive.features)[occupied]
    latent = np.asarray(projection.apply(state.archive.indexer.params, jnp.asarray(feats)))
    truth = (feats[:, -2:] + 1) / 2  # the final position, from the path's last point
    rng = np.random.default_rng(0)
    i, j, k = rng.integers(0, len(feats), (3, 2000))

    def agreement(z):
        return np.mean(
            (np.sum((z[i] - z[j]) ** 2, 1) < np.sum((z[i] - z[k]) ** 2, 1))
            == (np.sum((truth[i] - truth[j]) ** 2, 1) < np.sum((truth[i] - truth[k]) ** 2, 1))
        )

    random_latent = np.asarray(projection.apply(projection.init(jax.random.key(2)), jnp.asarray(feats)))
    assert agreement(latent) > 0.9, agreement(latent)
    assert agreement(latent) > agreement(random_latent) + 0.1


def test_a_person_sees_maze_items_drawn(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    maze = tasks.get("maze", episode_length=30)
    fig, ax = plt.subplots()
    maze.draw(ax, jax.tree.map(lambda x: x[0], maze.initial_genotypes(jax.random.key(0), 1)))
    assert len(ax.lines) > 10  # the walls and the robot's path
    plt.close(fig)
    assert tasks.get("arm").draw is draw_arm
    assert tasks.get("sphere").draw is None


# ------------------------------------------------------------ runs and the CLI
def qdhf_config(**changes):
    config = {
        "task": "arm", "task_options": {"dof": 4}, "emitter": "iso-line", "emitter_options": {}, "iterations": 24,
        "batch_size": 32, "archive": "grid", "shape": [8, 8], "seed": 0, "checkpoint_every": 4, "devices": 1,
        "descriptors": "learned", "judge": "simulated", "judgments": 40, "judge_noise": 0.1,
    }  # fmt: skip
    return {**config, **changes}


def test_interrupted_qdhf_run_resumes_exactly(tmp_path):
    from qdkit import rundir

    straight = rundir.create(str(tmp_path / "straight"), qdhf_config())
    rundir.execute(straight, 24, progress=False)
    split = rundir.create(str(tmp_path / "split"), qdhf_config())
    rundir.execute(split, 10, progress=False)  # stops between the refits at 6 and 12
    resumed = rundir.load(str(tmp_path / "split"))
    assert resumed.refitter.done == 3 and resumed.refitter.judgments_so_far() == 30
    rundir.execute(resumed, 24, progress=False)
    assert resumed.refitter.judgments_so_far() == straight.refitter.judgments_so_far() == 40
    for x, y in zip(jax.tree.leaves(resumed.state.archive), jax.tree.leaves(straight.state.archive)):
        np.testing.assert_array_equal(x, y)


def test_judgments_live_in_the_checkpoint_and_corrupt_ones_are_reported(tmp_path):
    from qdkit import checkpoint, rundir

    run = rundir.create(str(tmp_path / "r"), qdhf_config())
    path = str(tmp_path / "r" / "checkpoint.npz")
    host = checkpoint.load_host(path)
    assert int(host["done"]) == 1 and host["choice"].shape == (10,)  # the refit at 0, committed with its state
    # judgments.npz is a readable copy: the checkpoint's own are what a resume uses
    (tmp_path / "r" / "judgments.npz").write_bytes(b"not a zip")
    loaded = rundir.load(str(tmp_path / "r"))
    assert loaded.refitter.done == 1 and loaded.refitter.judgments_so_far() == 10
    # a checkpoint without them (qdkit 0.2.0) falls back on the copy, whose corruption is named
    checkpoint.save(path, run.state, run.config)
    with pytest.raises(rundir.RunDirError, match="judgments file is unreadable or corrupt"):
        rundir.load(str(tmp_path / "r"))
    checkpoint.save(path, run.state, run.config, host={"done": np.asarray(1)})
    with pytest.raises(rundir.RunDirError, match="the checkpoint's judgments are corrupt"):
        rundir.load(str(tmp_path / "r"))


def test_cli_learned_descriptors(tmp_path):
    from click.testing import CliRunner

    from qdkit.cli import main

    out = tmp_path / "run"
    args = ["run", "--task", "arm", "--descriptors", "learned", "--judgments", "50", "--iterations", "20",
            "--batch-size", "32", "--shape", "8x8", "--no-progress", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with np.load(out / "judgments.npz") as f:
        assert f["choice"].shape == (50,) and int(f["done"]) == 4
    bad = CliRunner().invoke(
        main, ["run", "--task", "sphere", "--descriptors", "learned", "--out", str(tmp_path / "x")]
    )
    assert bad.exit_code == 2 and "tasks with features: arm, maze" in bad.output
    maze = tmp_path / "maze"
    args = ["run", "--task", "maze", "-t", "episode_length=40", "--descriptors", "learned", "--judgments", "30",
            "--iterations", "8", "--batch-size", "16", "--shape", "8x8", "--no-progress", "--out", str(maze)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with np.load(maze / "judgments.npz") as f:
        assert f["choice"].shape == (30,)

    bad = CliRunner().invoke(main, ["run", "--descriptors", "pca", "--out", str(tmp_path / "y")])
    assert bad.exit_code == 2 and "'task', 'learned', 'aurora', 'random'" in bad.output
