"""Errors that end a run with one clear line instead of a traceback.

`UserError` means the input is wrong (config, missing or corrupt data): the CLI prints it and
exits with code 2. `RunAborted` means a run started but could not go on (for example every
client failed in a round): the CLI prints it, keeps what was written, and exits with code 1.
"""


class FedplatError(Exception):
    """Base class for errors fedplat reports as one line."""


class UserError(FedplatError):
    """Bad input: the message says what is wrong and how to fix it."""


class RunAborted(FedplatError):
    """A run stopped before its last round; results so far are kept."""
