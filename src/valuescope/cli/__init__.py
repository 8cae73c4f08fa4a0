"""The `valuescope` command line: thin wrappers over the public API."""

from valuescope.cli.app import app, main

__all__ = ["app", "main"]
