"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class LazarusError(Exception):
    """A problem with the user's input or environment, described in one line (exit status 2)."""
