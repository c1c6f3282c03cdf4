"""``python -m qdkit.cli``: the command line, as the ``qdkit`` script."""

from qdkit.cli import main

main()
