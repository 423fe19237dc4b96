"""The exception types the CLI turns into a one-line message: UsageError (exit code 2) and RunFailed (exit 1)."""


class UsageError(Exception):
    """Bad input: the message names the option or file at fault."""


class RunFailed(Exception):
    """A run that cannot go on for a reason that is not the input's (e.g. a failed engine sync check)."""
