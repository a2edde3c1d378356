"""`python -m mirror` = the `mirror` command."""

from mirror.cli import main

main()
