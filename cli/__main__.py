"""``python -m cli``: run the modelsize command line."""

from cli.app import main

main()
