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
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with self.server.lock:
            self.server.calls += 1
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
        else:
            body = {
                "id": "x", "object": "chat.completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": action if action != "ok" else "B"}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
            }  # fmt: skip
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)


@pytest.fixture()
def faulty():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Faulty)
    server.script, server.calls, server.lock = [], 0, threading.Lock()
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
