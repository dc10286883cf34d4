"""``python -m kubelite.cli``: the same command line as the ``kubelite`` console script."""

from kubelite.cli.app import main

main()
