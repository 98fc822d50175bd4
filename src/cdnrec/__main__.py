"""`python -m cdnrec` runs the CLI."""

from cdnrec.cli import main

main()
