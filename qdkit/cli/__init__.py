"""The ``qdkit`` command line (click): one module per command or command group.

- :mod:`qdkit.cli.run`: ``run`` and ``resume``;
- :mod:`qdkit.cli.label`: ``label``;
- :mod:`qdkit.cli.outputs`: ``plot``, ``export``, ``render``;
- :mod:`qdkit.cli.distill`: ``distill``;
- :mod:`qdkit.cli.listing`: ``tasks``, ``emitters``;
- :mod:`qdkit.cli.options` holds what they share (parameter types, the TOML loader,
  option groups, messages), :mod:`qdkit.cli.model` the local model server's lifecycle.
"""

from __future__ import annotations

import click

from qdkit.cli.distill import distill
from qdkit.cli.label import label
from qdkit.cli.listing import emitters_cmd, tasks_cmd
from qdkit.cli.outputs import export_cmd, plot, render
from qdkit.cli.run import resume, run


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qdkit")
def main() -> None:
    """qdkit: quality-diversity search in JAX."""


for _command in (run, resume, label, plot, export_cmd, distill, render, tasks_cmd, emitters_cmd):
    main.add_command(_command)

__all__ = ["main"]
