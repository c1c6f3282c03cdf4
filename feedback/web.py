"""The human judge in a browser: a small Flask page on 127.0.0.1.

:class:`WebJudge` has the same protocol and judgments file as
:class:`feedback.HumanJudge` (the two can take turns on one file). While it is asked,
it serves one page showing the anchor and the two candidates side by side (their PNG
drawings when a ``draw`` function is given, and their text), with buttons and keyboard
shortcuts — ``a``, ``b``, ``s`` (can't tell), ``u`` (undo), ``q`` (stop) — and the
progress. Each answer is appended to the file the moment the browser sends it.

The page changes state (answers, undo, stop), so it is guarded as Jupyter guards its
server: the URL printed carries a random token, which the first visit turns into a
``SameSite=Strict`` cookie; every other request needs that cookie (or the token), a
``Host`` of ``127.0.0.1`` or ``localhost`` on the page's port (no DNS rebinding), no
foreign ``Origin``, and a JSON body for the requests that change state. Anything else
is refused with 403 and records nothing.
"""

from __future__ import annotations

import hmac
import io
import secrets
import threading
from collections.abc import Callable
from typing import Any

import click
import jax
import numpy as np

from feedback.human import KEYS, JudgingStopped, describe_item, read_answers, triplet_id

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>qdkit: which is more alike?</title>
<style>
 body { font-family: sans-serif; margin: 2em; color: #222; }
 .row { display: flex; gap: 1.5em; }
 .item { flex: 1; border: 2px solid #ccc; border-radius: 8px; padding: 0.8em; text-align: center; }
 .item.anchor { border-color: #555; }
 .item img { max-width: 100%; }
 .item pre { white-space: pre-wrap; font-size: 0.8em; text-align: left; }
 button { font-size: 1.1em; margin: 0.8em 0.4em 0 0; padding: 0.4em 1em; }
 #progress { margin-bottom: 1em; }
</style></head>
<body>
<h2>Which candidate is more like the anchor?</h2>
<div id="progress"></div>
<div class="row" id="items"></div>
<div>
 <button id="a" onclick="answer('a')">A is more alike (a)</button>
 <button id="b" onclick="answer('b')">B is more alike (b)</button>
 <button id="s" onclick="answer('s')">Can't tell (s)</button>
 <button id="u" onclick="undo()">Undo (u)</button>
 <button id="q" onclick="stop()">Stop (q)</button>
</div>
<script>
let current = null;
async function post(url, body) {
  const r = await fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
                              body: JSON.stringify(body || {})});
  return r.json();
}
function show(state) {
  current = state.current;
  const p = document.getElementById("progress");
  if (state.finished) { p.textContent = state.finished; document.getElementById("items").innerHTML = ""; return; }
  p.textContent = `Question ${state.answered + 1} of ${state.total}`;
  const names = ["anchor", "a", "b"];
  document.getElementById("items").innerHTML = names.map((n, i) =>
    `<div class="item ${n}" id="item-${n}"><h3>${n}</h3>` +
    (state.images ? `<img alt="${n}" src="/image/${current.id}/${i}.png">` : "") +
    `<pre>${current.texts[i]}</pre></div>`).join("");
}
async function refresh() { show(await (await fetch("/api/state")).json()); }
async function answer(key) { if (current) show(await post("/api/answer", {id: current.id, key: key})); }
async function undo() { show(await post("/api/undo")); }
async function stop() { show(await post("/api/stop")); }
document.addEventListener("keydown", (e) => {
  if (e.key === "a" || e.key === "b" || e.key === "s") answer(e.key);
  else if (e.key === "u") undo();
  else if (e.key === "q") stop();
});
refresh();
</script></body></html>
"""


class WebJudge:
    """Asks a person through a local web page (see the module docstring).

    Args:
        path: the judgments file (JSON lines), shared with :class:`HumanJudge`.
        describe: ``describe(item) -> str``, the text shown for each item.
        draw: optional ``draw(ax, item)`` to show each item as an image.
        port: port on 127.0.0.1 (0: any free port); the URL is printed and kept in
            ``self.url`` while the page is served.
        on_serve: called with the URL once the server listens (tests drive it).
    """

    def __init__(
        self,
        path: str,
        *,
        describe: Callable[[Any], str] = describe_item,
        draw: Callable[[Any, Any], None] | None = None,
        port: int = 0,
        on_serve: Callable[[str], None] | None = None,
    ):
        self.path, self.describe, self.draw = path, describe, draw
        self.port, self.on_serve = int(port), on_serve
        self.url: str | None = None

    def _png(self, item: Any) -> bytes:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(3.2, 3.2))
        self.draw(ax, item)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        plt.close(fig)
        return buffer.getvalue()

    def __call__(self, anchor: Any, a: Any, b: Any) -> np.ndarray:
        from flask import Flask, Response, jsonify, request
        from werkzeug.serving import make_server

        from feedback.human import HumanJudge

        n = jax.tree.leaves(anchor)[0].shape[0]
        rows = [[jax.tree.map(lambda x, i=i: np.asarray(x)[i], t) for t in (anchor, a, b)] for i in range(n)]
        ids = [triplet_id(*r) for r in rows]
        answers = read_answers(self.path)
        record = HumanJudge(self.path)._append
        history: list[str] = []  # ids answered in this session, for undo
        lock, finished = threading.Lock(), threading.Event()
        outcome: dict[str, Any] = {"stopped": False}

        def state():
            pending = [i for i, t in enumerate(ids) if t not in answers]
            done = n - len(pending)
            if outcome["stopped"]:
                return {"finished": f"Stopped: {done} of {n} answered and saved. You can close this page.",
                        "answered": done, "total": n}  # fmt: skip
            if not pending:
                finished.set()
                return {"finished": f"All {n} answered. Thank you; you can close this page.", "answered": n, "total": n}
            i = pending[0]
            current = {"id": ids[i], "texts": [self.describe(item) for item in rows[i]]}
            return {"current": current, "answered": done, "total": n, "images": self.draw is not None}

        app = Flask("qdkit-label")
        token = secrets.token_urlsafe(24)
        guard: dict[str, Any] = {}  # the port, once the server listens

        def refused(reason: str):
            return Response(f"refused: {reason}\n", status=403, mimetype="text/plain")

        @app.before_request
        def check_request():
            port = guard["port"]
            if request.host not in (f"127.0.0.1:{port}", f"localhost:{port}"):
                return refused("this page answers on 127.0.0.1 and localhost only")
            origin = request.headers.get("Origin")
            if origin is not None and origin not in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
                return refused("a request from another site")
            given = request.args.get("token") or request.cookies.get(guard["cookie"]) or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                return refused("open the URL printed in the terminal (it carries the page's token)")
            if request.method == "POST" and not request.is_json:
                return refused("changes need a JSON body")
            return None

        @app.get("/")
        def page():
            response = Response(PAGE, mimetype="text/html")
            response.set_cookie(guard["cookie"], token, httponly=True, samesite="Strict")
            return response

        @app.get("/api/state")
        def get_state():
            with lock:
                return jsonify(state())

        @app.post("/api/answer")
        def post_answer():
            body = request.get_json(silent=True) or {}
            if not isinstance(body, dict):
                body = {}
            with lock:
                tid, key = body.get("id"), str(body.get("key", ""))
                if tid in ids and tid not in answers and key in KEYS and not outcome["stopped"]:
                    answers[tid] = KEYS[key]
                    record({"id": tid, "choice": KEYS[key]})
                    history.append(tid)
                return jsonify(state())

        @app.post("/api/undo")
        def post_undo():
            with lock:
                while history and history[-1] not in answers:
                    history.pop()
                if history and not outcome["stopped"]:
                    tid = history.pop()
                    answers.pop(tid)
                    record({"id": tid, "undo": True})
                return jsonify(state())

        @app.post("/api/stop")
        def post_stop():
            with lock:
                outcome["stopped"] = True
                finished.set()
                return jsonify(state())

        @app.get("/image/<tid>/<int:k>.png")
        def image(tid, k):
            if self.draw is None or tid not in ids or not 0 <= k < 3:
                return Response("not found", status=404)
            return Response(self._png(rows[ids.index(tid)][k]), mimetype="image/png")

        with lock:
            if all(t in answers for t in ids):
                return np.asarray([answers[t] for t in ids], np.int8)
        server = make_server("127.0.0.1", self.port, app, threaded=True)
        guard.update(port=server.server_port, cookie=f"qdkit-label-{server.server_port}")
        self.url = f"http://127.0.0.1:{server.server_port}/?token={token}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        click.echo(f"Label in your browser: {self.url}  ({sum(t in answers for t in ids)} of {n} answered)")
        if self.on_serve is not None:
            self.on_serve(self.url)
        try:
            while not finished.wait(0.2):
                pass
        except KeyboardInterrupt:
            outcome["stopped"] = True
        finally:
            server.shutdown()
            thread.join()
            self.url = None
        if outcome["stopped"]:
            done = sum(t in answers for t in ids)
            click.echo(f"stopped; {done} of {n} answered, saved in {self.path}")
            raise JudgingStopped(f"{n - done} judgments still to give")
        return np.asarray([answers[t] for t in ids], np.int8)
