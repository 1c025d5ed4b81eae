"""The one exception type the CLI turns into a one-line message and a non-zero exit, and the
warning category it prints as one line."""


class LazarusError(Exception):
    """A problem with the user's input or environment, described in one line (exit status 2)."""


class LazarusWarning(UserWarning):
    """Something the user should know that does not stop the run (a damaged cache entry rebuilt ...)."""


def printable(text: str) -> str:
    """``text`` as one terminal-safe line: every character that is not printable (newlines, escape
    sequences, bidirectional overrides, lone surrogates) is spelled as its Python escape, the way
    tokens are quoted (``'\\x1b[2J'``), so nothing a user or a model wrote can move the cursor."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
