"""The model client and the LLM judge: against the real local model server (llama.cpp
serving SmolLM2-135M, see shared/local-llm.md), and fault injection from a local HTTP
server (timeouts, 429 with Retry-After, 500, garbage JSON)."""

from __future__ import annotations

import http.server
import json
import threading
import time

import numpy as np
import pytest

pytest.importorskip("openai")
from feedback.client import BudgetExhausted, ModelClient  # noqa: E402
from feedback.embedding_judge import EmbeddingJudge  # noqa: E402
from feedback.judges import CANT_TELL, A, B  # noqa: E402
from feedback.llm_judge import LLMJudge, parse_letter, parse_logprobs  # noqa: E402

TEXTS = np.array([["a red apple", "a green apple", "a steel bridge"], ["a cat", "a truck", "a kitten"]], dtype=object)


def describe(item):
    return str(item)


def test_parsers():
    assert parse_letter("A") == A and parse_letter(" b is closer") == CANT_TELL and parse_letter("B.") == B
    assert parse_letter("I think (B)") == B and parse_letter("Apple") == CANT_TELL and parse_letter("") == CANT_TELL
    assert parse_logprobs([{"A": -0.1, " B": -2.0}]) == A and parse_logprobs([{"B": -0.5, "x": -0.1}]) == B
    assert parse_logprobs(None) == CANT_TELL and parse_logprobs([{"x": -0.1}]) == CANT_TELL


def test_llm_judge_against_the_local_model(model_server, tmp_path):
    cache = str(tmp_path / "cache.sqlite")
    client = ModelClient(base_url=model_server, model="smollm2", cache_path=cache, concurrency=2)
    judge = LLMJudge(client, describe=describe)
    choices = judge(TEXTS[:, 0], TEXTS[:, 1], TEXTS[:, 2])
    assert choices.shape == (2,) and set(choices.tolist()) <= {A, B, CANT_TELL}
    stats = judge.stats
    assert stats["asked"] == 2 and stats["failed"] == 0
    assert stats["from_logprobs"] + stats["from_text"] + stats["unparseable"] == 2
    assert stats["from_logprobs"] >= 1  # the server gives log-probabilities
    assert client.usage["requests"] == 2 and client.usage["completion_tokens"] > 0  # the model really ran
    # a repeated run is answered from the cache: no new request
    again = LLMJudge(ModelClient(base_url=model_server, model="smollm2", cache_path=cache), describe=describe)
    np.testing.assert_array_equal(again(TEXTS[:, 0], TEXTS[:, 1], TEXTS[:, 2]), choices)
    assert again.client.usage["requests"] == 0 and again.client.usage["cached"] == 2
    assert "no-key" not in repr(client) and "hidden" in repr(client)


# ------------------------------------------------------------ fault injection
class Faulty(http.server.BaseHTTPRequestHandler):
    """Answers chat completions with the next fault of ``server.script``."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        request = self.rfile.read(int(self.headers.get("content-length", 0)))
        with self.server.lock:
            self.server.calls += 1
            self.server.requests.append(request)
            action = self.server.script.pop(0) if self.server.script else "ok"
        if action == "slow":
            time.sleep(1.5)
            action = "ok"
        if action == "429":
            self.send_response(429)
            self.send_header("Retry-After", "0")
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "slow down"}}')
        elif action == "500":
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "boom"}}')
        elif action == "garbage":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{not json")
        elif self.path.endswith("/embeddings"):  # a bag of letters per text
            text = json.loads(request)["input"][0].lower()
            vector = [float(text.count(c)) for c in "abcdefghijklmnopqrstuvwxyz"]
            body = {"object": "list", "model": "m", "data": [{"object": "embedding", "index": 0, "embedding": vector}],
                    "usage": {"prompt_tokens": 3, "total_tokens": 3}}  # fmt: skip
            self.reply(body)
        else:
            body = {
                "id": "x", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": action if action != "ok" else "B"}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
            }  # fmt: skip
            self.reply(body)

    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def faulty():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Faulty)
    server.script, server.calls, server.lock, server.requests = [], 0, threading.Lock(), []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def client_for(server, **kw):
    return ModelClient(base_url=f"http://127.0.0.1:{server.server_port}/v1", model="m", backoff=0.01, **kw)


def test_retries_on_429_500_and_timeouts_then_succeed(faulty):
    faulty.script = ["429", "500", "slow"]
    client = client_for(faulty, timeout=0.5, concurrency=1)
    reply = client.chat([{"role": "user", "content": "hi"}])
    assert reply is not None and reply.text == "B"
    assert client.usage["retries"] == 3 and client.usage["failures"] == 0 and faulty.calls == 4


def test_garbage_and_refusals_are_counted_never_fatal(faulty):
    faulty.script = ["garbage", "I cannot help with that.", "500", "500", "500"]
    client = client_for(faulty, max_retries=2, concurrency=1)
    judge = LLMJudge(client, describe=describe, top_logprobs=0)
    choices = judge(TEXTS[:, 0].repeat(2)[:3], TEXTS[:, 1].repeat(2)[:3], TEXTS[:, 2].repeat(2)[:3])
    # garbage JSON (a 200 with a bad body) fails at once; a refusal is unparseable; three
    # 500s exhaust the retries
    assert choices.tolist() == [CANT_TELL, CANT_TELL, CANT_TELL]
    assert judge.stats["failed"] == 2 and judge.stats["unparseable"] == 1


def test_budget_stops_cleanly(faulty):
    client = client_for(faulty, max_requests=2, concurrency=1)
    judge = LLMJudge(client, describe=describe, top_logprobs=0)
    choices = judge(TEXTS[:, 0].repeat(2), TEXTS[:, 1].repeat(2), TEXTS[:, 2].repeat(2))
    assert choices.tolist() == [B, B, CANT_TELL, CANT_TELL] and judge.stats["budget_exhausted"] == 1
    with pytest.raises(BudgetExhausted):
        client.chat([{"role": "user", "content": "one more"}])


def test_cli_run_with_an_llm_judge(model_server, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from qdkit.cli import main

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123")
    out = tmp_path / "run"
    args = ["run", "--task", "arm", "--descriptors", "learned", "--judge", "llm", "--base-url", model_server,
            "--model", "smollm2", "--judgments", "8", "--iterations", "8", "--batch-size", "32", "--shape", "8x8",
            "--no-progress", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with np.load(out / "judgments.npz") as f:
        assert f["choice"].shape == (8,) and int(f["done"]) == 4
    assert (out / "llm-cache.sqlite").stat().st_size > 0
    for path in out.iterdir():  # the key is written nowhere
        assert b"sk-test-secret-123" not in path.read_bytes(), path
    no_model = [
        "run",
        "--descriptors",
        "learned",
        "--judge",
        "llm",
        "--base-url",
        model_server,
        "--out",
        str(tmp_path / "x"),
    ]
    missing = CliRunner().invoke(main, no_model, env={"OPENAI_MODEL": ""})
    assert missing.exit_code == 2 and "no model" in missing.output


# ------------------------------------------------------------ the embedding judge
def test_embedding_judge_by_hand():
    table = {"x": [1.0, 0.0], "near x": [0.9, 0.1], "far": [0.0, 1.0], "same": [2.0, 0.0], "bad": None}
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return [table[t] for t in texts]

    judge = EmbeddingJudge(embed, describe=describe)
    anchor = np.array(["x", "x", "x", "x"], dtype=object)
    a = np.array(["near x", "far", "same", "bad"], dtype=object)
    b = np.array(["far", "near x", "same", "far"], dtype=object)
    assert judge(anchor, a, b).tolist() == [A, B, CANT_TELL, CANT_TELL]  # cosine: "same" ties with itself
    assert judge.stats == {"asked": 4, "answered": 2, "ties": 1, "failed": 1}
    assert sorted(calls[0]) == sorted(table)  # each distinct text embedded once
    array_judge = EmbeddingJudge(lambda texts: np.array([[1.0, len(t)] for t in texts]), describe=describe)
    assert array_judge(np.array(["ab"]), np.array(["abc"]), np.array(["abcdefgh"])).tolist() == [A]
    with pytest.raises(ValueError, match="non-negative"):
        EmbeddingJudge(embed, tie=-1)


def test_embedding_judge_against_the_local_model(tmp_path):
    from feedback import local_server

    if not local_server.available():
        pytest.skip("the local model extra is not installed")
    cache = str(tmp_path / "cache.sqlite")
    with local_server.LocalServer(threads=2, embedding=True) as server:
        client = ModelClient(base_url=server.base_url, model="smollm2", cache_path=cache, concurrency=2)
        vector = client.embed("a red apple")
        assert vector is not None and len(vector) > 100 and np.isfinite(vector).all()
        judge = EmbeddingJudge.from_client(client, describe=describe)
        choices = judge(TEXTS[:, 0], TEXTS[:, 1], TEXTS[:, 2])
        assert choices.shape == (2,) and judge.stats["failed"] == 0 and judge.stats["asked"] == 2
        assert client.usage["requests"] == 6 and client.usage["cached"] == 1  # "a red apple" was embedded above
        again_client = ModelClient(base_url=server.base_url, model="smollm2", cache_path=cache)
        again = EmbeddingJudge.from_client(again_client, describe=describe)
        np.testing.assert_array_equal(again(TEXTS[:, 0], TEXTS[:, 1], TEXTS[:, 2]), choices)
        assert again_client.usage["requests"] == 0 and again_client.usage["cached"] == 6
        # chat still works on the embedding server
        assert client.chat([{"role": "user", "content": "Say hi"}], max_tokens=4) is not None


def test_embedding_judge_faults_are_counted_never_fatal(faulty):
    faulty.script = ["429", "ok", "garbage", "500", "500", "500"]
    client = client_for(faulty, max_retries=2, concurrency=1)
    judge = EmbeddingJudge.from_client(client, describe=describe)
    choices = judge(TEXTS[:1, 0], TEXTS[:1, 1], TEXTS[:1, 2])
    # anchor: a 429 then an answer; a: garbage (fails at once); b: three 500s (retries spent)
    assert choices.tolist() == [CANT_TELL] and judge.stats["failed"] == 1
    assert client.usage["retries"] == 3 and client.usage["failures"] == 2
    ok = EmbeddingJudge.from_client(client_for(faulty, max_requests=3, concurrency=1), describe=describe)
    assert ok(TEXTS[:1, 0], TEXTS[:1, 1], TEXTS[:1, 2]).tolist() == [A]  # letters: red apple ~ green apple
    spent = EmbeddingJudge.from_client(client_for(faulty, max_requests=2, concurrency=1), describe=describe)
    assert spent(TEXTS[:1, 0], TEXTS[:1, 1], TEXTS[:1, 2]).tolist() == [CANT_TELL]  # the budget ran out: no crash


def test_cli_run_with_an_embedding_judge_on_the_bundled_model(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from feedback import local_server
    from qdkit.cli import main

    if not local_server.available():
        pytest.skip("the local model extra is not installed")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    out = tmp_path / "run"
    args = ["run", "--task", "arm", "--descriptors", "learned", "--judge", "embedding", "--judgments", "12",
            "--iterations", "8", "--batch-size", "32", "--shape", "8x8", "--no-progress", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with np.load(out / "judgments.npz") as f:
        assert f["choice"].shape == (12,) and int(f["done"]) == 4
        assert np.mean(f["choice"] != CANT_TELL) > 0.5  # answered, not failed
    usage = json.loads((out / "llm-usage.json").read_text())
    assert usage["requests"] > 0 and usage["failures"] == 0


def test_llm_judge_shows_a_vision_model_images(faulty):
    """With ``draw``, each request carries the anchor and candidates as three PNG images."""
    import base64

    from qdkit.tasks.arm import draw_arm

    faulty.script = ["A", "B"]
    judge = LLMJudge(client_for(faulty, concurrency=1), draw=draw_arm, top_logprobs=0, image_size=96)
    angles = np.linspace(-1, 1, 6 * 4).reshape(6, 4).astype(np.float32)
    assert judge(angles[:2], angles[2:4], angles[4:]).tolist() == [A, B]
    body = json.loads(faulty.requests[0])
    parts = body["messages"][1]["content"]
    images = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    labels = [p["text"] for p in parts if p["type"] == "text"]
    assert len(images) == 3 and labels[:3] == ["Anchor:", "Candidate A:", "Candidate B:"]
    pngs = [base64.b64decode(url.split(",", 1)[1]) for url in images]
    assert all(p.startswith(b"\x89PNG") for p in pngs) and len(set(pngs)) == 3  # three different drawings
    assert json.loads(faulty.requests[1])["messages"][1]["content"] != parts  # the second triplet's own images
    with pytest.raises(ValueError, match="image_size"):
        LLMJudge(client_for(faulty), draw=draw_arm, image_size=4)


def test_cli_judge_images_reach_the_endpoint(faulty, tmp_path):
    from click.testing import CliRunner

    from qdkit.cli import main

    out = tmp_path / "run"
    args = ["run", "--task", "maze", "-t", "episode_length=30", "--descriptors", "learned", "--judge", "llm",
            "--judge-images", "--base-url", f"http://127.0.0.1:{faulty.server_port}/v1", "--model", "m",
            "--judgments", "4", "--iterations", "4", "--batch-size", "16", "--shape", "8x8", "--no-progress",
            "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    usage = json.loads((out / "llm-usage.json").read_text())
    assert usage["requests"] == len(faulty.requests) >= 1
    for request in faulty.requests:
        parts = json.loads(request)["messages"][1]["content"]
        assert sum(p["type"] == "image_url" for p in parts) == 3
    with np.load(out / "judgments.npz") as f:  # the scripted answer, parsed, for every triplet asked
        assert f["choice"].tolist() == [B] * (usage["requests"] + usage["cached"])
