"""The one exception the deploy tool raises for problems a user can act on."""

from __future__ import annotations


class DeployError(Exception):
    """A problem the user can fix; the CLI prints the message (no traceback) and exits 1."""

    exit_code = 1


class UsageError(DeployError):
    """The command line names something that does not exist (an unknown middleware or component)."""

    exit_code = 2
