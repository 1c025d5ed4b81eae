"""``python -m lazarus_report``: the ``lazarus`` command, for when the console script is not on PATH."""

from lazarus_report.cli.main import entry

if __name__ == "__main__":  # pragma: no cover - runs in a subprocess in tests/test_packaging.py
    entry()
