"""`python -m valuescope.cli`: the command line, as the `valuescope` script runs it."""

from valuescope.cli.app import main

main()
