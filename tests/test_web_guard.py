"""The labelling page refuses forged requests (no browser needed): no token, a wrong
token, a foreign ``Host`` (DNS rebinding), a foreign ``Origin``, a non-JSON body. Each
is sent to the real server on 127.0.0.1 and nothing may be recorded."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse

import numpy as np
import pytest

import feedback
from feedback import A
from feedback.web import WebJudge


def request(url: str, method: str, path: str, *, body: bytes | None = None, headers: dict | None = None):
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode(), response.getheader("Set-Cookie")
    finally:
        connection.close()


def test_forged_requests_are_refused_and_record_nothing(tmp_path):
    items = np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 4)
    path = tmp_path / "judgments.jsonl"
    served = threading.Event()
    urls: list[str] = []

    def on_serve(url):
        urls.append(url)
        served.set()

    judge = WebJudge(str(path), on_serve=on_serve)
    result: dict = {}

    def ask():
        try:
            result["choices"] = judge(items[:, 0], items[:, 1], items[:, 2])
        except feedback.JudgingStopped as e:
            result["stopped"] = e

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    assert served.wait(60)
    url = urls[0]
    parts = urllib.parse.urlsplit(url)
    token = urllib.parse.parse_qs(parts.query)["token"][0]
    assert len(token) >= 24
    port, host = parts.port, f"127.0.0.1:{parts.port}"

    # the page itself: the token in the URL becomes a cookie
    status, page, cookie = request(url, "GET", f"/?token={token}", headers={"Host": host})
    assert status == 200 and "Which candidate" in page
    assert "SameSite=Strict" in cookie and "HttpOnly" in cookie
    name = cookie.split("=", 1)[0]
    good = {"Host": host, "Cookie": f"{name}={token}", "Content-Type": "application/json"}
    status, state, _ = request(url, "GET", "/api/state", headers=good)
    tid = json.loads(state)["current"]["id"]
    answer = json.dumps({"id": tid, "key": "b"}).encode()

    forged = {
        "no token": {**good, "Cookie": ""},
        "wrong token": {**good, "Cookie": f"{name}=x{token[1:]}"},
        "foreign Host": {**good, "Host": f"attacker.example:{port}"},
        "foreign Origin": {**good, "Origin": "http://attacker.example"},
        "text/plain body": {**good, "Content-Type": "text/plain"},
    }
    for what, headers in forged.items():
        for route in ("/api/answer", "/api/undo", "/api/stop"):
            status, text, _ = request(url, "POST", route, body=answer, headers=headers)
            assert status == 403, (what, route, status, text)
    # reads are guarded too: a rebinding page cannot see the questions
    for what in ("no token", "foreign Host"):
        status, _, _ = request(url, "GET", "/api/state", headers=forged[what])
        assert status == 403, what
    assert not path.exists() or path.read_text() == ""  # nothing recorded
    assert thread.is_alive()  # and nothing stopped

    # the real page's requests work: answer, then stop
    status, state, _ = request(url, "POST", "/api/answer", body=json.dumps({"id": tid, "key": "a"}).encode(),
                               headers=good)  # fmt: skip
    assert status == 200 and json.loads(state)["answered"] == 1
    status, _, _ = request(url, "POST", "/api/stop", body=b"{}", headers=good)
    assert status == 200
    thread.join(30)
    assert "stopped" in result
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records == [{"id": tid, "choice": A}]


@pytest.mark.parametrize("host", ["localhost"])
def test_localhost_is_accepted(tmp_path, host):
    items = np.zeros((1, 3, 2), np.float32)
    served = threading.Event()
    urls: list[str] = []
    judge = WebJudge(str(tmp_path / "j.jsonl"), on_serve=lambda u: (urls.append(u), served.set()))
    thread = threading.Thread(target=lambda: pytest.raises(feedback.JudgingStopped, judge, *items.transpose(1, 0, 2)),
                              daemon=True)  # fmt: skip
    thread.start()
    assert served.wait(60)
    parts = urllib.parse.urlsplit(urls[0])
    token = urllib.parse.parse_qs(parts.query)["token"][0]
    headers = {"Host": f"{host}:{parts.port}", "Content-Type": "application/json"}
    status, _, _ = request(urls[0], "GET", f"/api/state?token={token}", headers=headers)
    assert status == 200
    status, _, _ = request(urls[0], "POST", f"/api/stop?token={token}", body=b"{}", headers=headers)
    assert status == 200
    thread.join(30)
    assert not thread.is_alive()
