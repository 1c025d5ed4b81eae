"""The ``lazarus`` command: a thin layer over the Python API.

Parse options, call the API, pick renderers, map errors to one line and an exit code.
Heavy modules (mlx, mlx-lm, transformers, altair) are imported inside the commands, so
``lazarus --help`` stays fast.
"""

from __future__ import annotations

import os
import sys

import click

from .common import CONTEXT, enable_fast_exit


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="lazarus-report", prog_name="lazarus")
def main() -> None:
    """Logit-lens analysis of language models: terminal, JSON, Markdown and HTML reports."""


if __name__ != "__main__":  # under `python -m lazarus_report.cli.main` the block at the end runs the real module
    from .introspect import introspect
    from .lens import lens
    from .report import report

    for _group in (introspect, report, lens):
        main.add_command(_group)


def entry() -> None:
    """Console-script entry point: run the command, then leave without tearing the interpreter down.

    Freeing a loaded model object by object at exit costs ~0.1 s of the 1 s a whole analysis takes;
    the operating system reclaims the memory at once. Output is flushed first; files were already
    written atomically. (Tests that call ``main`` in-process are unaffected.)
    """
    enable_fast_exit()
    code = 0
    try:
        main(standalone_mode=False)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except click.exceptions.Abort:
        click.echo("Aborted!", err=True)
        code = 1
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    # The subcommand modules import ``lazarus_report.cli.main``: run that module, not this ``__main__`` copy.
    from lazarus_report.cli.main import entry as _entry

    _entry()
