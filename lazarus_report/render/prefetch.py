"""What an HTML report will need, started on a background thread while the model loads and runs.

The command line calls ``start_html_prefetch`` once its options are checked, when ``--html`` is given:
the thread imports the chart code (Altair, vl-convert, Jinja: about 0.3 s), starts vl-convert's JavaScript
engine (its first conversion costs 0.3 s or more) and reads the Vega bundle from the disk cache (building
it the first time: see ``charts.bundle``). Loading a model is mostly native work that releases the GIL, so
on two cores this costs the main thread little. Nothing here is required: whatever fails here runs again
(and reports its error) when the report is rendered.
"""

from __future__ import annotations

import threading


def start_html_prefetch(*, static: bool) -> threading.Thread:
    """Start the prefetch (``static``: no bundle is needed) on a daemon thread and return it."""

    def work() -> None:
        try:
            from lazarus_report.render.charts.background import vega_bundle, warm_up

            warm_up()
            from lazarus_report.render import html

            html.html_environment()
            if not static:
                vega_bundle()
        except Exception:  # done again, with its error reported, when the report renders
            pass

    thread = threading.Thread(target=work, name="lazarus-html-prefetch", daemon=True)
    thread.start()
    return thread
