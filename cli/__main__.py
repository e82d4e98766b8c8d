"""``python -m cli``: the same as the ``modelsize`` command."""

from cli.app import main

main()
