"""`python -m nnrun` = the `nnrun` command."""

from nnrun.cli import main

main()
