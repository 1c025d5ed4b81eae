"""The one exception type the CLI turns into a one-line message and a non-zero exit, and the
warning category it prints as one line."""


class LazarusError(Exception):
    """A problem with the user's input or environment, described in one line (exit status 2)."""


class LazarusWarning(UserWarning):
    """Something the user should know that does not stop the run (a damaged cache entry rebuilt ...)."""
