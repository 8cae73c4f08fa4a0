"""User-facing errors: the CLI prints each as one clear line, never a traceback."""

from __future__ import annotations


class ValuescopeError(Exception):
    """An error the user can act on; its message says what is wrong and how to fix it."""

    exit_code = 1


class UsageError(ValuescopeError):
    """The command line or an input file is wrong (exit code 2)."""

    exit_code = 2


class ModelSpecError(UsageError):
    """A model spec string that names no known backend or a missing file."""


class ModelNotAvailableError(ValuescopeError):
    """A model that is well specified but cannot be loaded on this machine."""

    exit_code = 2


class BackendCapabilityError(ValuescopeError):
    """The chosen backend cannot do what was asked (e.g. hidden states from a server)."""

    exit_code = 2
