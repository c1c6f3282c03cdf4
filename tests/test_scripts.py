"""The examples and the benchmark script run end to end (tiny settings; no timing asserted)."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["MPLBACKEND"] = "Agg"
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_arm_example(tmp_path):
    out = tmp_path / "arm.png"
    result = run_script(
        os.path.join(ROOT, "examples", "arm_map_elites.py"), "--iterations", "50", "--out", str(out), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "elites, coverage" in result.stdout and out.stat().st_size > 1000


def test_custom_task_example(tmp_path):
    result = run_script(os.path.join(ROOT, "examples", "custom_task.py"), "--iterations", "30", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "QD-score" in result.stdout and "best fitness" in result.stdout


def test_custom_emitter_example(tmp_path):
    result = run_script(os.path.join(ROOT, "examples", "custom_emitter.py"), "--iterations", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "uniform parents" in result.stdout and "curious parents" in result.stdout


def test_ask_tell_examples_evaluate_in_worker_processes_and_in_another_program(tmp_path):
    import re

    result = run_script(
        os.path.join(ROOT, "examples", "ask_tell_pool.py"), "--iterations", "30", "--batch-size", "64", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "with 2 workers" in result.stdout
    assert float(re.search(r"coverage ([\d.]+)%", result.stdout).group(1)) > 20  # the search moved
    result = run_script(os.path.join(ROOT, "examples", "ask_tell_program.py"), "--iterations", "30", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert float(re.search(r"coverage ([\d.]+)%", result.stdout).group(1)) > 20
    assert "0 invalid rows" in result.stdout  # awk answered every line


def test_ask_tell_sphere_and_dcg_maze_examples(tmp_path):
    result = run_script(os.path.join(ROOT, "examples", "ask_tell_sphere.py"), "--iterations", "30", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "elites, coverage" in result.stdout and "best objective" in result.stdout
    result = run_script(
        os.path.join(ROOT, "examples", "dcg_maze.py"), "--iterations", "3", "--batch-size", "16",
        "--critic-steps", "5", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "DCG-ME: QD-score" in result.stdout and "distilled policy on 256 targets" in result.stdout
    assert (tmp_path / "distilled.npz").stat().st_size > 1000


def test_benchmark_smoke(tmp_path):
    pytest.importorskip("ribs")
    pytest.importorskip("qdax")
    result = run_script(os.path.join(ROOT, "benchmarks", "core_throughput.py"), "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for line in [
        "overhead ratio qdax (jnp.cos) / qdkit (jnp.cos), grid",
        "overhead ratio pyribs (NumPy) / qdkit (fastmath), cvt",
        "| emit + scoring + insertion |",
        "| run + metrics log and checkpoints |",
        "overhead qdkit (jnp.cos) / plain JAX loop (jnp.cos), grid",
        "first call",
    ]:
        assert line in result.stdout, line


def test_step_hlo_benchmark(tmp_path):
    result = run_script(os.path.join(ROOT, "benchmarks", "step_hlo.py"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if " operations, " in line]
    assert [line.split(":")[0] for line in lines] == ["fast", "plain (jnp.cos, threefry)"]
    assert all(int(line.split()[-2]) > 10 for line in lines)  # "<n> fusions"


def test_devices_benchmark_smoke(tmp_path):
    result = run_script(
        os.path.join(ROOT, "benchmarks", "devices_throughput.py"),
        "--iterations",
        "3",
        "--repeats",
        "1",
        "--batch",
        "64",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| 4 |" in result.stdout


def test_dqd_benchmark_smoke(tmp_path):
    pytest.importorskip("ribs")
    args = ["--quick", "--functions", "sphere", "--algorithms", "cma-mae", "cma-mega", "--pyribs-cma", "purecma"]
    result = run_script(os.path.join(ROOT, "benchmarks", "dqd.py"), *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "# pyribs' CMA-ES update: purecma" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("| sphere |")]
    assert [row.split("|")[2].strip() for row in rows] == ["cma-mae", "cma-mega"]


@pytest.mark.parametrize("task", ["arm", "maze"])
def test_qdhf_benchmark_smoke(tmp_path, task):
    extra = [] if task == "arm" else ["--no-sweeps", "--methods", "ground truth,qdhf"]  # the arm runs all of it
    result = run_script(os.path.join(ROOT, "benchmarks", "qdhf.py"), "--quick", "--task", task, *extra, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = ["| ground truth |", "| qdhf |"]
    if task == "arm":
        lines += ["| rotated ground truth |", "| aurora |", "| random |", "| 40 judgments |", "| flip 20% |"]
    for line in lines:
        assert line in result.stdout


def test_qdhf_example(tmp_path):
    result = run_script(
        os.path.join(ROOT, "examples", "qdhf_arm.py"), "--iterations", "40", "--judgments", "80", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "refit at     0: 20 judgments" in result.stdout and "of the true end-effector grid" in result.stdout


def _local_model():
    from feedback import local_server

    if not local_server.available():
        pytest.skip("the local model extra is not installed")


def test_qdaif_example_with_the_local_model(tmp_path):
    _local_model()
    result = run_script(
        os.path.join(ROOT, "examples", "qdaif_opinions.py"), "--iterations", "2", "--batch-size", "2", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sentiment" in result.stdout and "'requests':" in result.stdout and "lmx_generated" in result.stdout


def test_qdaif_benchmark_smoke(tmp_path):
    _local_model()
    args = ["--quick", "--budget", "16", "--candidates", "2"]
    result = run_script(os.path.join(ROOT, "benchmarks", "qdaif.py"), *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for line in [
        "local llama.cpp server",
        "scripted, 0.25 s latency",
        "QDAIF (lmx fewshot)",
        "baseline (seed few-shot)",
    ]:
        assert line in result.stdout
    assert "'QDAIF (lmx fewshot)': [16]" in result.stdout  # each run spent exactly its budget


def test_maze_dcg_benchmark_smoke(tmp_path):
    result = run_script(os.path.join(ROOT, "benchmarks", "maze_dcg.py"), "--quick", "--plot", str(tmp_path / "m.png"),
                        "--methods", "iso-line,dcg,dcg-learned", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for line in ["| iso-line |", "| dcg |", "| dcg-learned |", "| seed 0 |", "critic updates/s"]:
        assert line in result.stdout
    assert (tmp_path / "m.png").exists()
    result = run_script(os.path.join(ROOT, "benchmarks", "dcg_defaults.py"), "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for row in ["| now (official code) | `(defaults)` |", "| qdkit 0.4.0 | `-e train_batch_size=256 -e pg_lr=0.001` |"]:
        assert row in result.stdout, result.stdout


def test_maze_distill_benchmark_smoke(tmp_path):
    result = run_script(os.path.join(ROOT, "benchmarks", "maze_distill.py"), "--quick", "--maps", "standard",
                        "--variants", "state-0.03", "--refine", "5", "--imitate", "3", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| standard | state-0.03 |" in result.stdout
    assert "refine_distilled, 5 steps" in result.stdout
    for line in ["| standard | state-0.03 | DCG actor |", "| standard | state-0.03 | fresh 64-64 |"]:
        assert line in result.stdout
    assert "imitate_distilled, 3 steps" in result.stdout
    for line in ["| standard | state-0.03 | task |", "| standard | state-0.03 | elites |"]:
        assert line in result.stdout
    bad = run_script(os.path.join(ROOT, "benchmarks", "maze_distill.py"), "--variants", "nope", cwd=tmp_path)
    assert bad.returncode != 0 and "valid: paper, state-0.03, state-0.015, state-0.03-bound" in bad.stderr


def test_dcg_paper_and_brax_speed_benchmarks_smoke(tmp_path):
    pytest.importorskip("brax")
    bench = os.path.join(ROOT, "benchmarks")
    result = run_script(os.path.join(bench, "dcg_paper.py"), "--tasks", "anttrap_omni", "--methods", "me,dcrl",
                        "--seeds", "2", "--iterations", "1", "--episode-length", "5", "--out", str(tmp_path / "d"),
                        cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| anttrap_omni | MAP-Elites |" in result.stdout and "| anttrap_omni | DCRL-ME |" in result.stdout
    assert "97%, 5.8, 3.44" in result.stdout  # the paper's Table 2 beside ours
    saved = json.loads((tmp_path / "d" / "results.json").read_text())["results"]
    assert [r["method"] for r in saved] == ["me", "dcrl"] and len(saved[1]["distillation"]) == 2
    assert np.asarray(saved[0]["qd_score"]).shape == (2, 1) and saved[0]["qd_offset"] == -3.03 * 5
    assert (tmp_path / "d" / "qd_score.png").exists()
    again = run_script(os.path.join(bench, "dcg_paper.py"), "--report", str(tmp_path / "d" / "results.json"),
                       cwd=tmp_path)  # fmt: skip
    assert (
        again.returncode == 0
        and "| anttrap_omni | DCRL-ME |" in again.stdout
        and "2 task x method rows" in again.stdout
    )
    bad = run_script(os.path.join(bench, "dcg_paper.py"), "--tasks", "hexapod_omni", cwd=tmp_path)
    assert (
        bad.returncode != 0 and "unknown task hexapod_omni; valid: ant_omni, anttrap_omni, walker2d_uni" in bad.stderr
    )
    pytest.importorskip("qdax")  # brax_speed.py runs QDax's walker beside ours
    result = run_script(os.path.join(bench, "brax_speed.py"), "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for line in ["| ant_omni | spring | 64 |", "| QDax 0.5 (`scoring_function_brax_envs`) |", "| TD3 training"]:
        assert line in result.stdout


def test_ask_tell_seeds_kernels_and_startup_benchmarks_smoke(tmp_path):
    pytest.importorskip("ribs")
    bench = os.path.join(ROOT, "benchmarks")
    result = run_script(os.path.join(bench, "ask_tell.py"), "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| gaussian | 36 | qdkit |" in result.stdout and "| iso_line | 36 | pyribs |" in result.stdout
    result = run_script(os.path.join(bench, "seeds.py"), "--seeds", "2", "--iterations", "20", "--repeats", "1",
                        "--arm-cos", "xla", "--cores", "1", "--devices", "2", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| 2 seeds, vmapped | 2 |" in result.stdout and "cos=xla" in result.stdout
    assert "; 2 devices; on 1 of " in result.stdout, result.stdout
    assert "| 2 seeds over 2 devices, vmapped on each (same scores) | 2 |" in result.stdout, result.stdout
    fit = re.search(r"^One device, a line through \(seeds: µs an iteration\) 1: ([0-9.]+), 2: ([0-9.]+): each seed "
                    r"adds (-?[0-9.]+) µs an iteration, (-?[0-9.]+) µs at no seed\.$", result.stdout, re.M)  # fmt: skip
    assert fit, result.stdout
    one, two, per_seed, fixed = (float(x) for x in fit.groups())  # (a line through two points)
    assert abs(fixed + per_seed - one) < 0.3 and abs(fixed + 2 * per_seed - two) < 0.3, fit.group(0)  # (rounded)
    result = run_script(os.path.join(bench, "seeds_bound.py"), "--free", "none,noise,both", "--seeds", "2",
                        "--devices", "2", "--iterations", "20", "--repeats", "1", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^\| (\w+) \| [0-9.]+ \([0-9.]+\) \| [0-9.]+ \([0-9.]+\) \| [0-9.]+× \([0-9.]+×\) \| (-?[0-9.]+) \|$",
                      result.stdout, re.M)  # fmt: skip
    assert [name for name, _ in rows] == ["none", "noise", "both"], result.stdout
    assert len({score for _, score in rows}) == 3, result.stdout  # (each takes something else out)
    assert "2 seeds over 2 device(s)" in result.stdout, result.stdout
    result = run_script(os.path.join(bench, "seeds_bound.py"), "--free", "noise,cells", cwd=tmp_path)
    assert result.returncode == 2 and "--free unknown 'cells'; valid: none, noise, scoring, both" in result.stderr, (
        result.stderr
    )
    result = run_script(os.path.join(bench, "seeds_floor.py"), "--seeds", "2", "--devices", "2", "--iterations", "20",
                        "--repeats", "1", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = dict(re.findall(r"^\| ([^|]+?) \| [0-9.]+ \([0-9.]+\) \| [0-9.]+× \([0-9.]+×\) \| (-?[0-9.]+) \|", result.stdout,
                           re.M))  # fmt: skip
    assert list(rows) == ["hand-written, one seed", "hand-written, 2 seeds end to end, one device",
                          "hand-written, 2 seeds end to end over 2 devices", "qdkit, one seed",
                          "qdkit, 2 seeds vmapped over 2 devices"], result.stdout  # fmt: skip
    # the hand-written loop does qdkit's search: its QD-scores after 20 iterations are
    # close to qdkit's one seed's (a loop that sampled or inserted wrongly would not be)
    qdkit_one = float(rows["qdkit, one seed"])
    assert all(abs(float(rows[k]) - qdkit_one) < 0.15 * qdkit_one for k in list(rows)[:3]), result.stdout
    result = run_script(os.path.join(bench, "seeds_floor.py"), "--seeds", "3", "--devices", "2", cwd=tmp_path)
    assert result.returncode == 2 and "--devices must be at least 1 and divide --seeds (3); got 2" in result.stderr
    result = run_script(os.path.join(bench, "xla_options.py"), "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| arm, 1 seed") or "scoring alone" in line]
    assert len(rows) == 2 and all(line.rstrip().endswith("× |") for line in rows), result.stdout
    result = run_script(os.path.join(bench, "metrics_cost.py"), "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| 1,024 |" in result.stdout
    result = run_script(os.path.join(bench, "kernels.py"), "--number", "2", "--repeats", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| qdkit.fastmath.cos_2pi(x) |" in result.stdout and "| archive.sample, 36 rows |" in result.stdout
    result = run_script(os.path.join(bench, "startup.py"), "--configs", "arm", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    row = next(line for line in result.stdout.splitlines() if line.startswith("| arm | `(defaults)` |"))
    starts = re.findall(r"\| ([0-9.]+) \(([0-9.]+)\)", row)  # time to the first iteration (whole process)
    assert len(starts) == 3 and all(0 < float(first) <= float(whole) for first, whole in starts), row
    result = run_script(os.path.join(bench, "key_split.py"), "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| arm default, 16 seeds vmapped | 4 |" in result.stdout and "CMA-ME" in result.stdout
    result = run_script(os.path.join(bench, "noise_pieces.py"), "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^\| 1024 x 100 \| [0-9,]+ \| [0-9,]+ \| [-+][0-9,]+ \| yes \|$", result.stdout, re.M), (
        result.stdout
    )
    result = run_script(os.path.join(bench, "noise_pieces.py"), "--quick", "--against", "256", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| batch x genes | pieces from 512 ns/eval | pieces ns/eval |" in result.stdout, result.stdout
    result = run_script(os.path.join(bench, "run_loop.py"), "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^\| (arm default, one seed|arm default, 16 seeds over \d+ device\(s\)|rastrigin 1024 x 100, "
                      r"Iso\+LineDD) \| 20 \| (100|10) \| [0-9,.]+ \| [0-9,.]+ \| [0-9,.]+ \|$", result.stdout, re.M)  # fmt: skip
    assert len(rows) == 6, result.stdout
    result = run_script(os.path.join(bench, "own_kernels.py"), "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = re.findall(r"^\| (rastrigin 1024 x 100, [\w+]+|arm default, 16 seeds over \d+ device\(s\)) \|.* \| yes \|$",
                      result.stdout, re.M)  # fmt: skip
    assert len(rows) == 3, result.stdout
    result = run_script(os.path.join(bench, "step_profile.py"), "--iterations", "3", "--top", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # three kernel rows; JAX's profiler can miss the first kernels of a trace, so a short
    # trace may show fewer calls per iteration than ran
    rows = re.findall(r"^\| \S+ \| [0-9,.]+ \| ([0-9.]+) \| [12] \|$", result.stdout, re.M)
    assert "wall time per iteration" in result.stdout and len(rows) == 3, result.stdout
    assert all(0 < float(calls) <= 1.0 for calls in rows), result.stdout
    result = run_script(os.path.join(bench, "step_profile.py"), "--arm-seeds", "2", "--iterations", "3", "--top", "2",
                        cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "seeds in the state: 2, genotypes (8,)" in result.stdout and "wall time per iteration" in result.stdout, (
        result.stdout
    )
    result = run_script(os.path.join(bench, "compiles.py"), "--configs", "arm", "--repeats", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| arm | 1: _init |" in result.stdout and "- ml_dtypes: " in result.stdout, result.stdout


def test_cvt_lookup_benchmark_smoke(tmp_path):
    result = run_script(os.path.join(ROOT, "benchmarks", "cvt_lookup.py"), "--quick", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # both forms give brute force's cells, and the same archive in the loop
    assert re.search(r"^\| 1,000 \| \d+ \| [0-9,.]+ \| [0-9,.]+ \| [0-9.]+× \| yes \| yes \(256 points\) \| [0-9.]+ / [0-9.]+ \|$",
                     result.stdout, re.M), result.stdout  # fmt: skip
    assert re.search(r"^\| 1,000 \| [0-9,]+ \| [0-9,]+ \| [-+][0-9,]+ \| yes \|$", result.stdout, re.M), result.stdout
    for seeds, form in (("1", "one at a time"), ("2", "argmin")):  # the arm on a CVT, one seed and vmapped seeds
        assert re.search(
            rf"^\| {seeds} \| [0-9,.]+ \| [0-9,.]+ \| [-+][0-9,.]+ \| yes \| {form} \|$", result.stdout, re.M
        ), result.stdout


def test_cell_buffers_benchmark_smoke(tmp_path):
    script = os.path.join(ROOT, "benchmarks", "cell_buffers.py")
    result = run_script(
        script, "--quick", "--batch", "32", "--archives", "grid:400,cvt:1500,threshold:900", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "batch 32, 100 genes" in result.stdout, result.stdout
    # each archive given, both ways, ends with the same archive (small: qdkit keeps the segment operations)
    rows = re.findall(r"^\| (.+?) \| ([0-9,]+) \| [0-9,]+ \| [0-9,]+ \| [0-9.]+× \| yes \| [1-9]\d* / 0 \| segment operations \|$",
                      result.stdout, re.M)  # fmt: skip
    assert rows == [("grid", "400"), ("CVT", "1,500"), ("threshold grid (alpha 0.1)", "900")], result.stdout
    bad = run_script(script, "--archives", "hexagon:100", cwd=tmp_path)
    assert bad.returncode == 2 and "kinds grid, cvt, threshold" in bad.stderr, bad.stderr


def test_scaling_benchmark_smoke(tmp_path):
    pytest.importorskip("ribs")
    pytest.importorskip("qdax")
    script = os.path.join(ROOT, "benchmarks", "scaling.py")
    result = run_script(script, "--quick", "--sweeps", "seeds", "--out", str(tmp_path / "s"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for library in ("qdkit", "pyribs", "qdax"):
        assert f"| 2 | {library} |" in result.stdout, result.stdout
    assert "error" not in result.stdout and (tmp_path / "s" / "scaling.png").exists()
    again = run_script(script, "--report", str(tmp_path / "s" / "scaling.json"), cwd=tmp_path)
    assert again.returncode == 0 and "| 1 | qdkit |" in again.stdout
    bad = run_script(script, "--sweeps", "nope", cwd=tmp_path)
    assert bad.returncode == 2 and "valid: batch, cells, genotype, seeds" in bad.stderr


def _plain_loop():
    import importlib.util

    spec = importlib.util.spec_from_file_location("plain_loop", os.path.join(ROOT, "benchmarks", "plain_loop.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("plain_loop", module)  # (its dataclass looks its module up)
    spec.loader.exec_module(sys.modules["plain_loop"])
    module = sys.modules["plain_loop"]
    return module


def test_plain_loop_does_the_work_of_qdkits_loop():
    """benchmarks/plain_loop.py is the floor qdkit's loop is measured against: its
    iterations and its insertion must give qdkit's archives, bit for bit."""
    import jax
    import jax.numpy as jnp

    import qdkit
    from emitters import EmptyState, iso_line

    plain = _plain_loop()
    task = qdkit.tasks.get("arm", dof=8)

    def arm_score(genotypes):
        evaluation = task.score(None, genotypes)
        return evaluation.fitness, evaluation.descriptors

    setup = plain.Setup(arm_score, batch=64, dims=8, side=32, genotype_low=-np.pi, genotype_high=np.pi,
                        descriptor_low=-1.0, descriptor_high=1.0, iso_sigma=0.01, line_sigma=0.1)  # fmt: skip
    key = jax.random.key(5)
    mine = jax.jit(lambda key: plain.iterate(setup, plain.init(setup, key, 1), key, 1, 40))(key)
    archive = qdkit.GridArchive.create(shape=(32, 32), lower=task.lower, upper=task.upper,
                                       example_genotype=task.example_genotype)  # fmt: skip
    emitter = iso_line(64, 0.01, 0.1, lower=-np.pi, upper=np.pi)

    @jax.jit
    def theirs(archive):
        initial = -np.pi + (np.pi - -np.pi) * qdkit.rng.uniform(key, (64, 8), stream=7)  # (plain.init's expression)
        archive, _ = archive.add(initial, *arm_score(initial))

        def body(archive, i):
            genotypes, _ = emitter.emit(jax.random.fold_in(key, i), archive, EmptyState())
            return archive.add(genotypes, *arm_score(genotypes))[0], None

        return jax.lax.scan(body, archive, jnp.arange(40))[0]

    theirs = theirs(archive)
    count = int(mine[4][0])
    assert count == int(theirs.size()) > 100
    for a, b in [(mine[0], theirs.fitness), (mine[1], theirs.genotypes), (mine[2], theirs.descriptors),
                 (mine[3][:count], theirs.order[:count])]:  # fmt: skip
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    # Seeds end to end: each seed's rows go into its own archive as Archive.add puts
    # them, with ties (the first row wins), NaN and infinite rows (dropped), descriptors
    # out of bounds (edge cells) and rows that do not beat the elite.
    def read(genotypes):  # fitness and descriptors are the first three genes
        return genotypes[:, 0], genotypes[:, 1:3]

    small = plain.Setup(read, batch=8, dims=4, side=4, genotype_low=0.0, genotype_high=1.0,
                        descriptor_low=0.0, descriptor_high=1.0, iso_sigma=0.1, line_sigma=0.1)  # fmt: skip
    rows = np.float32([[1, 0.1, 0.1, 0], [1, 0.12, 0.1, 1], [2, 0.9, 0.9, 2], [np.nan, 0.5, 0.5, 3],
                       [3, np.inf, 0.5, 4], [4, 1.7, -0.3, 5], [0.5, 0.1, 0.1, 6], [2, 0.9, 0.9, 7]])  # fmt: skip
    later = rows.copy()
    later[:, 0] = [0.5, 1.5, 2, 9, 1, 3, 1.2, 5]
    later[:, 3] += 10
    batches = [np.stack([rows, rows[::-1], later]).reshape(24, 4), np.stack([later, rows, later[::-1]]).reshape(24, 4)]
    empty = (jnp.full((48,), -jnp.inf), jnp.zeros((48, 4)), jnp.zeros((48, 2)), jnp.zeros((48,), jnp.int32),
             jnp.zeros((3,), jnp.int32))  # fmt: skip
    mine = plain.insert(small, plain.insert(small, empty, batches[0], 3), batches[1], 3)
    for s in range(3):
        grid = qdkit.GridArchive.create(shape=(4, 4), lower=np.zeros(2), upper=np.ones(2), example_genotype=np.zeros(4))
        for batch in batches:
            grid, _ = grid.add(batch[8 * s : 8 * s + 8], *read(batch[8 * s : 8 * s + 8]))
        count = int(mine[4][s])
        assert count == int(grid.size()) > 2
        cells = slice(16 * s, 16 * s + 16)
        for a, b in [(mine[0][cells], grid.fitness), (mine[1][cells], grid.genotypes),
                     (mine[2][cells], grid.descriptors), (mine[3][16 * s : 16 * s + count] - 16 * s, grid.order[:count])]:  # fmt: skip
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # and each seed's parents come from its own archive: seed 0 holds one elite near
    # (0.1, 0.1), seed 1 one near (0.9, 0.9); with small steps, their children stay there
    tight = plain.Setup(read, batch=8, dims=4, side=4, genotype_low=0.0, genotype_high=1.0,
                        descriptor_low=0.0, descriptor_high=1.0, iso_sigma=1e-3, line_sigma=1e-3)  # fmt: skip
    elites = np.float32([[0.5, 0.1, 0.1, 0]] * 8 + [[0.5, 0.9, 0.9, 0]] * 8)
    empty = (jnp.full((32,), -jnp.inf), jnp.zeros((32, 4)), jnp.zeros((32, 2)), jnp.zeros((32,), jnp.int32),
             jnp.zeros((2,), jnp.int32))  # fmt: skip
    after = plain.iterate(tight, plain.insert(tight, empty, elites, 2), jax.random.key(0), 2, 5)
    filled = np.isfinite(np.asarray(after[0])).reshape(2, 16)
    assert filled[0].tolist() == [True] + [False] * 15 and filled[1].tolist() == [False] * 15 + [True]
    assert np.all(np.asarray(after[1])[[0, 31], 1:3] != [[0.1, 0.1], [0.9, 0.9]])  # (children did enter)
