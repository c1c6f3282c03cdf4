"""The web labelling page, driven in headless Chromium (Debian's package) with
Playwright: clicks, keyboard shortcuts, undo, stop, resume and a screenshot."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

import feedback
from feedback import CANT_TELL, A, B
from feedback.web import WebJudge
from qdkit.tasks.arm import draw_arm

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """Headless Chromium (Debian's, not a browser Playwright downloads) on one page,
    driven with Playwright."""

    def __init__(self, url: str):
        self.playwright = sync_playwright().start()
        try:
            self.browser = self.playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            self.page = self.browser.new_page(viewport={"width": 1100, "height": 700})
            self.page.goto(url)
        except BaseException:
            self.playwright.stop()
            raise

    def js(self, expression: str):
        return self.page.evaluate(expression)

    def wait_text(self, text: str, timeout: float = 30):
        try:
            self.page.wait_for_function(
                "text => document.body && document.body.innerText.includes(text)", arg=text, timeout=timeout * 1000
            )
        except Exception:
            raise AssertionError(f"page never showed {text!r}: {self.js('document.body.innerText')!r}") from None

    def wait_images(self, timeout: float = 60):
        """Until every image of the page has loaded and has a size."""
        self.page.wait_for_function(
            "[...document.images].length > 0 && [...document.images].every(i => i.complete && i.naturalWidth > 0)",
            timeout=timeout * 1000,
        )

    def click(self, element_id: str):
        self.page.click(f"#{element_id}")

    def key(self, key: str):
        self.page.keyboard.press(key)

    def screenshot(self) -> bytes:
        return self.page.screenshot()

    def close(self):
        self.browser.close()
        self.playwright.stop()


def drive(steps):
    """An ``on_serve`` callback running ``steps(browser)`` in a thread."""
    errors = []

    def on_serve(url):
        def run():
            browser = Browser(url)
            try:
                steps(browser)
            except BaseException as e:  # reported by the test
                errors.append(e)
            finally:
                browser.close()

        threading.Thread(target=run, daemon=True).start()

    return on_serve, errors


def test_web_page_clicks_keys_undo_stop_resume_and_screenshot(tmp_path):
    items = np.linspace(-1, 1, 36, dtype=np.float32).reshape(3, 3, 4)
    path = tmp_path / "judgments.jsonl"
    shot = tmp_path / "page.png"

    def first_session(browser):
        browser.wait_text("Question 1 of 3")
        assert browser.js("document.querySelectorAll('img').length") == 3
        browser.click("a")  # a button
        browser.wait_text("Question 2 of 3")
        browser.key("b")  # a keyboard shortcut
        browser.wait_text("Question 3 of 3")
        browser.key("u")  # undo the b
        browser.wait_text("Question 2 of 3")
        browser.click("s")
        browser.wait_text("Question 3 of 3")
        browser.wait_images()  # the drawings, not empty frames, in the screenshot
        shot.write_bytes(browser.screenshot())
        browser.key("q")
        browser.wait_text("Stopped: 2 of 3 answered")

    on_serve, errors = drive(first_session)
    judge = WebJudge(str(path), draw=draw_arm, on_serve=on_serve)
    with pytest.raises(feedback.JudgingStopped):
        judge(items[:, 0], items[:, 1], items[:, 2])
    time.sleep(1.0)
    assert not errors, errors
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r.get("choice", "undo") for r in records] == [A, B, "undo", CANT_TELL]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def second_session(browser):  # only the third question is left
        browser.wait_text("Question 3 of 3")
        browser.click("b")
        browser.wait_text("All 3 answered")

    on_serve, errors = drive(second_session)
    choices = WebJudge(str(path), on_serve=on_serve)(items[:, 0], items[:, 1], items[:, 2])
    time.sleep(1.0)
    assert not errors, errors
    np.testing.assert_array_equal(choices, [A, CANT_TELL, B])
    # the terminal judge reads the same file: nothing left to ask
    assert feedback.HumanJudge(str(path))(items[:, 0], items[:, 1], items[:, 2]).tolist() == [A, CANT_TELL, B]


def test_cli_label_web(tmp_path):
    """A run stopped at its first refit is labelled in the browser with `qdkit label --web`."""
    import os
    import sys

    from click.testing import CliRunner

    from qdkit.cli import main

    out = tmp_path / "run"
    args = ["run", "--task", "arm", "--descriptors", "learned", "--judge", "human", "--judgments", "8",
            "--iterations", "20", "--batch-size", "32", "--shape", "8x8", "--no-progress", "--out", str(out)]  # fmt: skip
    assert "Labelling stopped" in CliRunner().invoke(main, args, input="").output
    port = free_port()
    qdkit = os.path.join(os.path.dirname(sys.executable), "qdkit")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.Popen([qdkit, "label", str(out), "--web", "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)  # fmt: skip
    try:
        url = None
        for line in proc.stdout:  # the page's URL, with its token, is printed once it listens
            if "Label in your browser:" in line:
                url = line.split("Label in your browser:", 1)[1].split()[0]
                break
        assert url is not None and url.startswith(f"http://127.0.0.1:{port}/?token="), "no page"
        with pytest.raises(urllib.error.HTTPError) as refused:  # without the token: refused
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state", timeout=10)
        assert refused.value.code == 403
        browser = Browser(url)
        try:
            browser.wait_text("Question 1 of 2")
            browser.key("a")
            browser.wait_text("Question 2 of 2")
            browser.key("b")
            browser.wait_text("All 2 answered")
        finally:
            browser.close()
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    assert "Labelled and refitted" in output
    assert list(feedback.read_answers(str(out / "judgments-human.jsonl")).values()) == [A, B]
