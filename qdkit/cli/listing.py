"""``qdkit tasks`` and ``qdkit emitters``: what can be run, with its options."""

from __future__ import annotations

import click

from qdkit import registry, tasks
from qdkit.cli.options import options_text


@click.command("tasks")
def tasks_cmd():
    """List the tasks."""
    for name in tasks.names():
        click.echo(f"{name:16s} {tasks.describe(name)}")
        click.echo(f"{'':16s} options: {options_text(tasks.options(name))}")
        if tasks.default_batch_size(name) != tasks.DEFAULT_BATCH_SIZE:
            click.echo(f"{'':16s} default --batch-size: {tasks.default_batch_size(name)}")


@click.command("emitters")
def emitters_cmd():
    """List the emitters."""
    for name in registry.emitter_names():
        click.echo(f"{name:18s} {registry.describe_emitter(name)}")
        click.echo(f"{'':18s} options: {options_text(registry.emitter_options(name))}")
