"""The distribution's version (pyproject.toml reads it from here; ``lazarus_report.__version__`` re-exports it)."""

__version__ = "0.1.0"
