"""QDAIF: text genotypes, non-uniform grids, domains, the host loop, AI feedback and the
LMX emitter -- against the real local model server (through a proxy that counts the
requests it forwards) and a scripted OpenAI-compatible server for fault injection."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import threading
import urllib.request

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from click.testing import CliRunner

import emitters
import qdkit
from feedback import domains
from feedback.ai_feedback import AIFeedback, parse_rating, pole_probability
from feedback.client import ModelClient
from qdkit import rundir
from qdkit import text as text_codec
from qdkit.cli import main

# --------------------------------------------------------------------- text codec


def test_text_codec_round_trip_and_limits():
    texts = ["hello", "", "naïve café ☕", "x" * 16]
    buffers = text_codec.encode(texts, 16)
    assert buffers.shape == (4, 16) and buffers.dtype == np.uint8
    assert text_codec.decode(buffers) == texts
    assert text_codec.decode(buffers[2]) == ["naïve café ☕"]
    assert text_codec.fits("é" * 8, 16) and not text_codec.fits("é" * 9, 16)  # bytes, not characters
    with pytest.raises(ValueError, match="does not fit in 16 bytes"):
        text_codec.encode(["x" * 17], 16)
    with pytest.raises(ValueError, match="NUL"):
        text_codec.encode(["a\x00b"], 16)


# ------------------------------------------------------------- non-uniform grids


def test_grid_with_edges_indexes_by_the_given_boundaries():
    edges = [[0.0, 0.1, 0.5, 1.0], [0.0, 0.5, 1.0]]
    archive = qdkit.GridArchive.create(edges=edges, example_genotype=jnp.zeros(2))
    assert archive.shape == (3, 2) and archive.num_cells == 6
    d = jnp.asarray([[0.05, 0.2], [0.1, 0.5], [0.49, 0.99], [1.0, 1.0], [-3.0, 7.0], [0.7, 0.0]], jnp.float32)
    # lower edge included; outside the bounds -> the nearest edge cell; row-major flat index
    expected_coords = np.array([[0, 0], [1, 1], [1, 1], [2, 1], [0, 1], [2, 0]])
    np.testing.assert_array_equal(np.asarray(archive.indexer.grid_indices(d)), expected_coords)
    np.testing.assert_array_equal(np.asarray(archive.index_of(d)), expected_coords @ np.array([2, 1]))
    centers = np.asarray(archive.cell_centers())
    np.testing.assert_allclose(centers[3], [0.3, 0.75])  # cell (1, 1)
    archive, info = archive.add(jnp.ones((6, 2)), jnp.arange(6, dtype=jnp.float32), d)
    assert len(archive) == 5  # rows 1 and 2 share cell (1, 1)
    with pytest.raises(ValueError, match="increase strictly"):
        qdkit.GridArchive.create(edges=[[0.0, 0.5, 0.5, 1.0]], example_genotype=jnp.zeros(2))
    with pytest.raises(ValueError, match="does not match the edges"):
        qdkit.GridArchive.create(shape=(4,), edges=[[0.0, 0.5, 1.0]], example_genotype=jnp.zeros(2))
    qdkit.plot.archive_heatmap(archive)  # drawn with pcolormesh over the true boundaries


def test_nonuniform_edges_are_finer_near_the_poles():
    edges = domains.nonuniform_edges(20)
    widths = np.diff(edges)
    assert len(edges) == 21 and edges[0] == 0.0 and edges[-1] == 1.0
    assert np.all(widths > 0) and np.allclose(widths, widths[::-1])
    assert np.all(np.diff(widths[:10]) > 0)  # widening towards the middle
    assert widths[0] < 0.01 < 0.07 < widths[9]


# -------------------------------------------------------------------- rating parse


def test_pole_probability_and_rating_parsers_by_hand():
    top = [{"pos": np.log(0.3), "Negative": np.log(0.1), "The": np.log(0.5), " positive": np.log(0.05)}]
    assert pole_probability(top, "negative", "positive") == pytest.approx(0.35 / 0.45)
    # a token that is a prefix of both poles says nothing
    assert pole_probability([{"h": 0.0, "hor": np.log(0.2)}], "horror", "happy") == pytest.approx(0.0)
    assert pole_probability([{"The": -0.1}], "no", "yes") is None and pole_probability(None, "no", "yes") is None
    assert parse_rating("I'd say 7/10.") == pytest.approx(6 / 9)
    assert parse_rating("10") == 1.0 and parse_rating("1") == 0.0
    assert parse_rating("11 or 0") is None and parse_rating("no idea") is None


# ------------------------------------------------------------------------ domains

GOOD = """
name = "slogans"
item = "product slogan"
topic = "a reusable water bottle"
quality = "Is this a good product slogan for a reusable water bottle?"
seeds = ["Drink more, waste less.", "Your water, everywhere."]
bins = 8
nonuniform = false

[[axes]]
name = "tone"
low = "serious"
high = "playful"
"""


def test_domain_file_loads_and_malformed_ones_say_what_is_wrong(tmp_path):
    path = tmp_path / "slogans.toml"
    path.write_text(GOOD)
    domain = domains.get(str(path))
    assert domain.name == "slogans" and domain.axes[0].high == "playful" and domain.edges() is None
    assert domain.bins == 8 and domain.max_bytes == 512
    assert domains.get("opinions").edges()[0][1] < 0.01
    cases = {
        GOOD + 'colour = "red"\n': "unknown key 'colour'; valid keys: name",
        GOOD.replace('topic = "a reusable water bottle"\n', ""): "missing key 'topic'",
        GOOD.replace("bins = 8", "bins = 1"): "bins must be an integer from 2",
        GOOD.replace('high = "playful"', 'high = "Serious"'): "the poles must differ",
        GOOD.replace('"Drink more, waste less."', '"' + "x" * 600 + '"'): "longer than max_bytes=512",
        GOOD.replace("seeds = [", "seeds = [3, "): "seeds\\[0\\] must be a non-empty string",
        GOOD.replace("nonuniform = false", "nonuniform = 2"): "nonuniform must be true or false",
        GOOD.split("[[axes]]")[0] + "axes = []\n": "axes must be a list of 1 to 3",
        GOOD + "[[axes]]\nname = 'x'\nlow = 'a'\n": "axes\\[1\\]: missing key 'high'",
        GOOD.replace("name = ", "name == ", 1): "is not valid TOML",
    }
    for i, (content, message) in enumerate(cases.items()):
        bad = tmp_path / f"bad{i}.toml"
        bad.write_text(content)
        with pytest.raises(domains.DomainError, match=message):
            domains.get(str(bad))
    with pytest.raises(KeyError, match="valid domains: opinions, stories"):
        domains.get("poems")


# ---------------------------------------------------------------------- host loop


def _host_arm(fail_on_call: int | None = None):
    """The arm task as a host task (scored eagerly through NumPy), optionally raising
    StopRun on its n-th call."""
    arm = qdkit.tasks.get("arm", dof=4)
    calls = [0]

    def score(key, genotypes):
        calls[0] += 1
        if fail_on_call is not None and calls[0] == fail_on_call:
            raise qdkit.StopRun("the judge went home")
        evaluation = arm.score(key, jnp.asarray(np.asarray(genotypes)))
        return qdkit.Evaluation(np.asarray(evaluation.fitness), np.asarray(evaluation.descriptors), {})

    import dataclasses

    task = dataclasses.replace(arm, score=score, host=True, stats=lambda: {"calls": calls[0]})
    return task, calls


def test_host_loop_matches_the_compiled_loop_stops_cleanly_and_resumes():
    arm = qdkit.tasks.get("arm", dof=4)
    emitter = emitters.iso_line(16, 0.01, 0.1, lower=arm.genotype_lower, upper=arm.genotype_upper)
    archive = qdkit.GridArchive.create(shape=(8, 8), lower=arm.lower, upper=arm.upper,
                                       example_genotype=arm.example_genotype)  # fmt: skip
    compiled = qdkit.map_elites.init(jax.random.key(3), arm, archive, emitter)
    compiled, _ = qdkit.map_elites.run(compiled, arm, emitter, 6, chunk_size=4)

    task, calls = _host_arm()
    state = qdkit.map_elites.init(jax.random.key(3), task, archive, emitter)
    state, metrics = qdkit.map_elites.run(state, task, emitter, 6, chunk_size=4)
    assert calls[0] == 7 and metrics["calls"].tolist() == [2, 3, 4, 5, 6, 7]
    assert metrics["iteration"].tolist() == [1, 2, 3, 4, 5, 6]
    # same keys: the host loop finds the compiled loop's elites (up to XLA's fused rounding)
    np.testing.assert_array_equal(np.asarray(state.archive.occupied), np.asarray(compiled.archive.occupied))
    np.testing.assert_allclose(np.asarray(state.archive.fitness), np.asarray(compiled.archive.fitness), rtol=1e-5)

    task, _ = _host_arm(fail_on_call=5)  # init is call 1: iterations 1-3 complete, the 4th stops
    begun = qdkit.map_elites.init(jax.random.key(3), task, archive, emitter)
    with pytest.raises(qdkit.Stopped, match="interrupted") as stop:
        qdkit.map_elites.run(begun, task, emitter, 6, chunk_size=2)
    assert int(stop.value.state.iteration) == 3 and stop.value.reason == "the judge went home"
    assert stop.value.metrics["iteration"].tolist() == [1, 2, 3]
    task, _ = _host_arm()
    resumed, _ = qdkit.map_elites.run(stop.value.state, task, emitter, 3)
    np.testing.assert_array_equal(np.asarray(resumed.archive.fitness), np.asarray(state.archive.fitness))


# ---------------------------------------------------------- real model, via a proxy


class Proxy(http.server.BaseHTTPRequestHandler):
    """Forwards to the model server and records a hash of every request body."""

    def log_message(self, *args):
        pass

    def _forward(self, body: bytes | None):
        request = urllib.request.Request(
            self.server.target + self.path, data=body, method=self.command,
            headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=120) as response:
            data, status = response.read(), response.status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._forward(None)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        with self.server.lock:
            self.server.seen.append(hashlib.sha256(body).hexdigest())
        self._forward(body)


@pytest.fixture()
def proxy(model_server):
    target = model_server[: -len("/v1")]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    server.target, server.seen, server.lock = target, [], threading.Lock()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def _url(server) -> str:
    return f"http://127.0.0.1:{server.server_port}/v1"


TEXTS = [
    "Vegetables are wonderful; I feel healthier and happier since I started eating them every day.",
    "I hate vegetables. They are bitter, boring and a waste of money.",
]


def test_ratings_from_the_real_models_logprobs_and_the_rating_fallback(model_server):
    client = ModelClient(base_url=model_server, model="smollm2", concurrency=2)
    rater = AIFeedback(client, domains.get("opinions"))
    quality, axes = rater(TEXTS)
    assert quality.shape == (2,) and axes.shape == (2, 1)
    assert np.all((quality > 0) & (quality < 1)) and np.all((axes > 0) & (axes < 1))  # probabilities, not 0/1
    assert rater.stats["from_logprobs"] == 4 and rater.stats["rated"] == 2
    assert client.usage["requests"] == 4 and client.usage["completion_tokens"] > 0
    # without log-probabilities: the 1-10 rating route, values on the k/9 lattice (or NaN)
    fallback = AIFeedback(client, domains.get("opinions"), top_logprobs=0)
    quality, axes = fallback(TEXTS)
    values = np.concatenate([quality, axes[:, 0]])
    finite = values[np.isfinite(values)]
    assert fallback.stats["from_logprobs"] == 0
    assert fallback.stats["from_rating"] + fallback.stats["unrated"] == 4 and fallback.stats["from_rating"] >= 1
    np.testing.assert_allclose(finite * 9, np.round(finite * 9), atol=1e-5)


def run_args(out, url, *extra):
    return ["run", "--task", "text", "--domain", "opinions", "--iterations", "3", "--batch-size", "4",
            "--base-url", url, "--model", "smollm2", "--checkpoint-every", "1", "--no-progress", "--out",
            str(out), *extra]  # fmt: skip


def test_text_run_end_to_end_cache_budget_and_resume(proxy, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-qdaif")
    out = tmp_path / "run"
    result = CliRunner().invoke(main, run_args(out, _url(proxy)))
    assert result.exit_code == 0, result.output
    first = len(proxy.seen)
    loaded = rundir.load(str(out))
    archive = loaded.state.archive
    assert len(archive) >= 3  # several cells filled
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["llm_requests"] == first and rows[-1]["lmx_generated"] == 12
    assert rows[-1]["lmx_accepted"] + rows[-1]["lmx_duplicate"] + rows[-1]["lmx_empty"] + rows[-1][
        "lmx_too_long"] + rows[-1]["lmx_failed"] == 12  # fmt: skip
    page = (out / "elites.html").read_text()
    for text in text_codec.decode(np.asarray(archive.genotypes)[np.asarray(archive.occupied)]):
        assert json.dumps(text)[1:20] in json.dumps(page) or text[:15].replace("&", "&amp;") in page
    for name in os.listdir(out):  # the key is never written
        assert b"sk-test-secret-qdaif" not in (out / name).read_bytes(), name

    # the same run again: every reply comes from the cache, no request reaches the server
    again = CliRunner().invoke(main, run_args(out, _url(proxy), "--overwrite"))
    assert again.exit_code == 0, again.output
    assert len(proxy.seen) == first
    np.testing.assert_array_equal(np.asarray(rundir.load(str(out)).state.archive.fitness), np.asarray(archive.fitness))

    # a request budget stops the run cleanly; resuming with a larger one pays nothing twice
    budget = tmp_path / "budget"
    start = len(proxy.seen)
    stopped = CliRunner().invoke(main, run_args(budget, _url(proxy), "--max-requests", "20"))
    assert stopped.exit_code == 0, stopped.output
    match = re.search(r"Stopped at iteration (\d+): the request budget \(20 requests\) is spent", stopped.output)
    assert match is not None and int(match.group(1)) < 3, stopped.output
    assert (budget / "elites.html").exists() and len(paid := proxy.seen[start:]) == 20
    assert int(rundir.load(str(budget)).state.iteration) == int(match.group(1))  # its checkpoint
    resumed = CliRunner().invoke(main, ["resume", str(budget), "--max-requests", "500", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    assert int(rundir.load(str(budget)).state.iteration) == 3
    paid = proxy.seen[start:]
    assert len(paid) == len(set(paid))  # no request was sent twice
    usage = json.loads((budget / "llm-usage.json").read_text())
    assert usage["requests"] == len(paid)


# ------------------------------------------------------------- fault injection


def test_text_run_survives_timeouts_429_500_garbage_refusals_and_bad_outputs(scripted, tmp_path):
    from qdkit import registry

    scripted.script["rate"] = ["429", "500", "garbage", "refusal", "empty", "slow"]
    config = {"task": "text", "task_options": {"domain": "opinions"}, "emitter": "lmx", "emitter_options": {},
              "iterations": 4, "batch_size": 4, "seed": 0, "base_url": _url(scripted), "model": "m",
              "concurrency": 1, "checkpoint_every": 1, "model_timeout": 0.5}  # fmt: skip
    run = rundir.create(str(tmp_path / "faults"), config)
    run.task.client.backoff = 0.01
    scripted.script["write"] = ["slow", "refusal", "empty", "long", "garbage"] + ["500"] * 5
    rundir.execute(run, 4, progress=False)
    rows = [json.loads(line) for line in (tmp_path / "faults" / "metrics.jsonl").read_text().splitlines()]
    last = rows[-1]
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4]
    # 429, 500 and timeouts are retried; garbage fails at once; five 500s in a row exhaust the retries
    assert last["llm_retries"] >= 3 + 4 and last["llm_failures"] == 3
    assert last["lmx_generated"] == 16 and last["lmx_empty"] == 1 and last["lmx_too_long"] == 1
    assert last["lmx_failed"] == 2 and last["lmx_accepted"] == 12  # a refusal is a (poor) text like any other
    assert last["rate_failed"] == 1 and last["rate_from_rating"] == 2  # garbage; refusal and empty -> 1-10
    assert len(run.state.archive) >= 2 and np.all(np.isfinite(np.asarray(run.state.archive.fitness)[
        np.asarray(run.state.archive.occupied)]))  # fmt: skip
    # nothing lost: the directory reloads at the last iteration with the same archive
    loaded = rundir.load(str(tmp_path / "faults"))
    assert int(loaded.state.iteration) == 4
    np.testing.assert_array_equal(np.asarray(loaded.state.archive.fitness), np.asarray(run.state.archive.fitness))
    assert registry.LLM_USAGE in os.listdir(tmp_path / "faults")


def test_cli_starts_the_local_model_when_no_endpoint_is_given(tmp_path, monkeypatch):
    from feedback import local_server

    if not local_server.available():
        pytest.skip("the local model extra is not installed")
    for name in ("OPENAI_BASE_URL", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "auto"
    args = ["run", "--task", "text", "--iterations", "1", "--batch-size", "2", "--no-progress", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "starting the bundled local model server" in result.output
    config = json.loads((out / "config.json").read_text())
    assert config["local_model"] is True and config["base_url"] is None and config["emitter"] == "lmx"
    made = json.loads((out / "llm-usage.json").read_text())["requests"]
    assert made > 0
    # the server is stopped at exit; a repeated run starts another (on another port) and
    # its replies all come from the cache
    again = CliRunner().invoke(main, [*args, "--overwrite"])
    assert again.exit_code == 0, again.output
    usage = json.loads((out / "llm-usage.json").read_text())
    assert usage["requests"] == 0 and usage["cached"] == made
    exported = CliRunner().invoke(main, ["export", str(out)])
    assert exported.exit_code == 0, exported.output
    header = (out / "archive.csv").read_text().splitlines()[0]
    assert header.endswith(",text") and "genotype_0" not in header
