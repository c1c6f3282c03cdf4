"""qdkit's XLA:CPU flag, the arm's vectorised maths, and the archive's running totals
as the loop uses them."""

import contextlib
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qdkit
from emitters import gaussian, iso_line
from qdkit import map_elites, xla


def test_apply_defaults_respects_the_user(monkeypatch):
    # once a backend has started the flag would change nothing: qdkit warns instead
    monkeypatch.setattr(xla, "_backend_started", lambda: True)
    with pytest.warns(UserWarning, match="after JAX started its backend"):
        assert not xla.apply_defaults(late := {}) and "XLA_FLAGS" not in late
    monkeypatch.setattr(xla, "_backend_started", lambda: False)  # as at a fresh import
    monkeypatch.setattr(xla, "_jaxlib_version", lambda: (0, 9, 0))
    assert not xla.apply_defaults(old := {}) and "XLA_FLAGS" not in old  # an XLA that may not know it
    monkeypatch.setattr(xla, "_jaxlib_version", lambda: (0, 10, 2))
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert xla.apply_defaults(env) and env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {xla.FLAG}"
    assert xla.apply_defaults(empty := {}) and empty["XLA_FLAGS"] == xla.FLAG
    for off in ("0", "off", "False", "no"):
        env = {"QDKIT_XLA_DEFAULTS": off}
        assert not xla.apply_defaults(env) and "XLA_FLAGS" not in env
    chosen = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=reduce"}
    assert not xla.apply_defaults(chosen) and chosen["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=reduce"


def _program(compiled) -> str:
    return re.sub(r", metadata=\{[^}]*\}", "", compiled.as_text())


def test_the_flag_is_in_effect_and_compiles_what_compiler_options_name():
    assert xla.FLAG in os.environ["XLA_FLAGS"].split()  # conftest imports qdkit before any computation

    def f(x, w):  # a small reduction of transcendentals (the old arm) and a matrix product
        links = jnp.stack([jnp.cos(x), jnp.sin(x)], axis=-1) / 8
        return jnp.sum(links, axis=1), jnp.tanh(x @ w)

    lowered = jax.jit(f).lower(jnp.ones((256, 8)), jnp.ones((8, 8)))
    ours = _program(lowered.compile())
    assert ours == _program(lowered.compile(compiler_options=xla.compiler_options()))
    names = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE"
    with_reduce = _program(lowered.compile(compiler_options={"xla_cpu_experimental_ynn_fusion_type": names}))
    assert with_reduce.count("__ynn_fusion") > ours.count("__ynn_fusion")  # the flag removes a reduce fusion


def test_arm_fast_cosine_matches_xla():
    angles = jax.random.uniform(jax.random.key(0), (64, 8), minval=-np.pi, maxval=np.pi)
    fast, plain = qdkit.tasks.get("arm", cos="fast"), qdkit.tasks.get("arm", cos="xla")
    a, b = fast.score(None, angles), plain.score(None, angles)
    np.testing.assert_allclose(a.descriptors, b.descriptors, atol=2e-6)
    np.testing.assert_allclose(a.extras["joint_positions"], b.extras["joint_positions"], atol=2e-6)
    np.testing.assert_allclose(a.fitness, b.fitness)
    np.testing.assert_allclose(a.descriptors, a.extras["joint_positions"][:, -1], atol=1e-6)
    jac = [jax.jacobian(lambda g, t=t: t.score(None, g[None]).descriptors[0])(angles[0]) for t in (fast, plain)]
    np.testing.assert_allclose(jac[0], jac[1], atol=1e-5)
    with pytest.raises(ValueError, match="valid: fast, xla"):
        qdkit.tasks.get("arm", cos="libm")


def test_the_loop_reads_the_running_qd_score(monkeypatch):
    task = qdkit.tasks.get("arm", dof=4)
    archive = qdkit.GridArchive.create(
        shape=(8, 8), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    assert archive.qd_offset is None and archive.with_qd_offset(float("nan")).qd_offset is None
    emitter = iso_line(32, 0.05, 0.1, lower=task.genotype_lower, upper=task.genotype_upper)
    state = map_elites.init(jax.random.key(0), task, archive, emitter)
    assert state.archive.qd_offset == task.qd_offset

    def no_pass(*args, **kwargs):
        raise AssertionError("the metrics summed over the cells")

    with monkeypatch.context() as m:
        m.setattr(qdkit.Archive, "qd_score", no_pass)
        fresh = iso_line(32, 0.05, 0.1, lower=task.genotype_lower, upper=task.genotype_upper)  # traced anew
        state, metrics = map_elites.run(state, task, fresh, 5)
    assert metrics["qd_score"][-1] == pytest.approx(float(state.archive.qd_score(task.qd_offset)), rel=1e-6)
    # a state whose archive keeps no offset (built by hand, or a callback's) gets the task's
    bare = state.replace(archive=state.archive.replace(qd_offset=None))
    again, _ = map_elites.run(bare, task, emitter, 2)
    assert again.archive.qd_offset == task.qd_offset


def test_a_state_that_holds_one_array_twice_can_be_donated():
    shared = jnp.arange(4.0)
    tree = {"a": shared, "b": shared, "c": jnp.zeros(2)}
    out = map_elites._unshared(tree)
    assert out["a"] is shared and out["b"] is not shared and out["c"] is tree["c"]
    np.testing.assert_array_equal(out["b"], shared)


def _rastrigin_run(emitter_name: str, seeds: int | None = None):
    task = qdkit.tasks.get("rastrigin", dims=12)
    archive = qdkit.GridArchive.create(
        shape=(10, 10), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    if emitter_name == "iso_line":
        emitter = iso_line(48, 0.02, 0.1, lower=0.0, upper=1.0)  # a new emitter: traced anew
    else:
        emitter = gaussian(48, 0.05, lower=0.0, upper=1.0)
    key = jax.random.key(3) if seeds is None else jnp.stack([jax.random.key(k) for k in range(seeds)])
    state = map_elites.init(key, task, archive, emitter)
    return task, emitter, state


@pytest.mark.parametrize("emitter_name", ["iso_line", "gaussian"])
def test_offspring_in_kernels_of_their_own_change_no_number(emitter_name):
    """The emitters write their offspring once (a conditional XLA does not fuse across)
    and the runs are the same, bit for bit, as with the offspring fused into each
    consumer (the plain call, as traced inside plain_kernels)."""
    runs = {}
    for own in (True, False):
        task, emitter, state = _rastrigin_run(emitter_name)
        with contextlib.nullcontext() if own else xla.plain_kernels():
            program = _program(jax.jit(lambda s: map_elites._step(s, task, emitter)).lower(state).compile())
            state, metrics = map_elites.run(state, task, emitter, 25)
        assert ("conditional(" in program) is own
        runs[own] = (state, metrics)
    for leaf_own, leaf_plain in zip(jax.tree.leaves(runs[True][0].archive), jax.tree.leaves(runs[False][0].archive)):
        np.testing.assert_array_equal(leaf_own, leaf_plain)
    np.testing.assert_array_equal(runs[True][1]["qd_score"], runs[False][1]["qd_score"])
    assert runs[True][1]["num_added"].sum() > 0


def test_own_kernels_is_a_plain_call_off_the_cpu_eagerly_and_inside_plain_kernels(monkeypatch):
    traced = []

    def f(a, b):
        traced.append(isinstance(a, jax.core.Tracer))
        return jnp.clip(a[b] * 2.0 + 1.0, 0.0, 5.0)

    a, b = jnp.arange(12.0).reshape(6, 2), jnp.array([0, 3, 5])
    count = jnp.int32(4)
    own = jax.jit(lambda a, b, n: xla.own_kernels(f, (a, b), n))
    assert "conditional(" in _program(own.lower(a, b, count).compile())
    np.testing.assert_array_equal(own(a, b, count), f(a, b))
    traced.clear()  # eagerly (a concrete predicate): the function itself, no conditional compiled
    np.testing.assert_array_equal(xla.own_kernels(f, (a, b), count), f(a, b))
    assert traced == [False, False]
    with xla.plain_kernels():
        text = _program(jax.jit(lambda a, b, n: xla.own_kernels(f, (a, b), n)).lower(a, b, count).compile())
    assert "conditional(" not in text
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    text = _program(jax.jit(lambda a, b, n: xla.own_kernels(f, (a, b), n)).lower(a, b, count).compile())
    assert "conditional(" not in text


def test_vmapped_seeds_keep_the_conditional_and_are_the_single_runs_to_the_bit():
    """Under vmap the archive's size is batched (a batched predicate would make a select
    of both branches): the seeds reduce it over their vmap axis, keep the conditional,
    and make the single runs' numbers; a single run traced after them keeps its own."""
    task, emitter, seeds_state = _rastrigin_run("iso_line", seeds=2)
    lowered = map_elites._run_chunk_seeds.lower(seeds_state, np.int32(3), task, emitter, 3)
    assert "conditional(" in _program(lowered.compile())
    seeds_state, _ = map_elites.run(seeds_state, task, emitter, 6)
    archive = qdkit.GridArchive.create(
        shape=(10, 10), lower=task.lower, upper=task.upper, example_genotype=task.example_genotype
    )
    single = map_elites.init(jax.random.key(0), task, archive, emitter)
    text = _program(jax.jit(lambda s: map_elites._step(s, task, emitter)).lower(single).compile())
    assert "conditional(" in text
    single, _ = map_elites.run(single, task, emitter, 6)
    mine = map_elites.seed_state(seeds_state, 0)
    for a, b in zip(jax.tree.leaves(single.archive), jax.tree.leaves(mine.archive)):
        np.testing.assert_array_equal(a, b)


def test_a_jitted_function_calling_own_kernels_under_the_seeds_is_traced_again_outside():
    """kernels_over_axis keeps only an axis name: a function jitted on its own and traced
    under the seeds' vmap is traced again outside it (JAX's cache knows the axis)."""
    calls = jax.jit(lambda a, n: xla.own_kernels(lambda v: v * 2.0, (a,), n))

    def over(xs):
        with xla.kernels_over_axis("s"):
            return jax.vmap(lambda x: calls(x, jnp.int32(1) + x.astype(jnp.int32)), axis_name="s")(xs)

    np.testing.assert_array_equal(jax.jit(over)(jnp.arange(3.0)), [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(calls(jnp.float32(2.0), jnp.int32(1)), 4.0)
    assert "conditional(" in _program(jax.jit(over).lower(jnp.arange(3.0)).compile())


def test_the_arm_s_prefix_sums_are_the_associative_scan_s():
    from qdkit.tasks.arm import COLUMNS_UP_TO, _prefix_sums

    for n in (1, 2, 3, 5, 8, 13, COLUMNS_UP_TO + 3):
        x = jax.random.normal(jax.random.key(n), (32, n)) * 3.0
        scan = jax.jit(lambda x: jax.lax.associative_scan(jnp.add, x, axis=1))(x)
        np.testing.assert_array_equal(jax.jit(_prefix_sums)(x), scan)


@pytest.mark.parametrize("dof", [1, 3, 5, 8, 16, 40])
def test_the_arm_s_end_effector_on_columns_is_the_sum_of_its_links(dof):
    """The same sums as XLA's of the (B, n) links: with XLA's cosine bit for bit up to 8
    joints (the same order of additions); with the fast cosine XLA rounds some of its
    multiply-adds differently in the two programs."""
    from qdkit.tasks.arm import _link_directions, _links_and_end

    angles = jax.random.uniform(jax.random.key(dof), (512, dof), minval=-np.pi, maxval=np.pi)
    for cos in ("fast", "xla"):

        def plain(g, cos=cos):
            dx, dy = _link_directions(g, cos)
            return dx, dy, jnp.stack([jnp.sum(dx, axis=1), jnp.sum(dy, axis=1)], axis=-1) / dof

        ours = jax.jit(lambda g, cos=cos: _links_and_end(g, cos))(angles)
        theirs = jax.jit(plain)(angles)
        for a, b in zip(ours, theirs):
            if cos == "xla" and dof <= 8:
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, rtol=0, atol=4e-7 if dof <= 8 else 1e-6)
