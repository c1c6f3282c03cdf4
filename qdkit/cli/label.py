"""``qdkit label``: answer a stopped run's pending similarity questions."""

from __future__ import annotations

import click

import feedback
from qdkit import rundir
from qdkit.cli.options import load_run, resume_hint, run_directory
from qdkit.cli.run import stopped_labelling


@click.command()
@run_directory
@click.option(
    "--web",
    is_flag=True,
    help="Answer in a browser page on 127.0.0.1 instead of the terminal (open the URL it prints: it carries "
    "the page's token).",
)
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port of the page.")
def label(directory, web, port):
    """Answer the pending similarity questions of a run with --judge human."""
    loaded = load_run(directory)
    refitter = loaded.refitter
    if refitter is None or not isinstance(refitter.judge, feedback.HumanJudge):
        raise click.ClickException(f"{directory} is not a run with --descriptors learned --judge human")
    if web:
        try:
            import flask  # noqa: F401
        except ImportError as e:
            raise click.ClickException("qdkit label --web needs Flask: pip install 'qdkit[web]'") from e
        from feedback.web import WebJudge

        terminal = refitter.judge
        refitter.judge = WebJudge(terminal.path, describe=terminal.describe, draw=terminal.draw, port=port)
    try:
        labelled = rundir.refit_if_due(loaded)
    except feedback.JudgingStopped:
        stopped_labelling(directory)
        return
    if not labelled:
        due = refitter.refit_iterations()
        nxt = (
            f"the next refit is at iteration {due[refitter.done]}"
            if refitter.done < len(due)
            else "all refits are done"
        )
        click.echo(f"No judgments are pending in {directory} ({nxt}).")
        return
    click.echo(f"Labelled and refitted. Continue with: {resume_hint(directory)}")
