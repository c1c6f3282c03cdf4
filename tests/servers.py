"""Test servers shared by several test modules: a scripted OpenAI-compatible endpoint."""

from __future__ import annotations

import http.server
import json
import threading
import time

import numpy as np


class Scripted(http.server.BaseHTTPRequestHandler):
    """An OpenAI-compatible server with plausible answers by request kind (writing or
    rating), and faults taken in order from ``server.script[kind]``: slow (past the
    client's timeout), 429 (with Retry-After), 500, garbage (a 200 with a broken body),
    refusal, empty, long (cut at the token limit)."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        prompt = request["messages"][-1]["content"]
        kind = "rate" if ("Answer with one word" in prompt or "number only" in prompt) else "write"
        with self.server.lock:
            script = self.server.script[kind]
            fault = script.pop(0) if script else None
            self.server.count += 1
            count = self.server.count
        if fault == "slow":
            time.sleep(1.0)
        if fault in ("429", "500"):
            self.send_response(int(fault))
            if fault == "429":
                self.send_header("Retry-After", "0")
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "try later"}}')
            return
        if fault == "garbage":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"choices": [')
            return
        logprobs = None
        finish = "stop"
        if "Answer with one word" in prompt:
            word = "yes" if "yes or no" in prompt else prompt.rsplit(" or ", 1)[-1].rstrip(".")
            text = word
            other = "no" if word == "yes" else "negative"
            p = (count % 7 + 1) / 9
            logprobs = {"content": [{"token": word, "logprob": float(np.log(p)), "bytes": None, "top_logprobs": [
                {"token": word, "logprob": float(np.log(p)), "bytes": None},
                {"token": other, "logprob": float(np.log(1 - p)), "bytes": None}]}]}  # fmt: skip
        elif "number only" in prompt:
            text = "7"
        else:
            text = f"Opinion number {count}: vegetables are {'great' if count % 2 else 'awful'}."
        if fault == "refusal":
            text, logprobs = "I cannot help with that.", None
        elif fault == "empty":
            text = "   "
        elif fault == "long":
            text, finish = "very long " * 20, "length"
        if fault in ("refusal", "empty", "long") or not request.get("logprobs"):
            logprobs = None
        body = {
            "id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": logprobs,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13},
        }  # fmt: skip
        data = json.dumps(body).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out (the "slow" fault)
            pass


def start_scripted() -> http.server.ThreadingHTTPServer:
    """A :class:`Scripted` server on a free port of 127.0.0.1, serving in a thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.script, server.count, server.lock = {"write": [], "rate": []}, 0, threading.Lock()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
