"""What an HTML report will need, started on a background thread while the model loads and runs.

The command line calls ``start_html_prefetch`` once its options are checked, when ``--html`` is given.
The thread compiles the report templates (Jinja: about 0.2 s); for an interactive page it also imports the
chart spec code (Altair: about 0.8 s) and reads the Vega bundle from the disk cache (building it the first
time: see ``charts.bundle``). A ``--static`` analysis or comparison needs neither Altair nor vl-convert (its
charts are drawn by hand), so nothing more is loaded; only a suite page starts vl-convert's JavaScript
engine (its overview charts' SVGs; the first conversion costs 0.6 s). Loading a model and the lens are
mostly native work that releases the GIL, so on two cores this costs the main thread little.
Nothing here is required: whatever fails here runs again (and reports its error) when the report is rendered.
"""

from __future__ import annotations

import threading


def start_html_prefetch(*, static: bool, suite: bool = False) -> threading.Thread:
    """Start the prefetch (``static``: no bundle is needed; ``suite``: the suite page's templates) on a daemon
    thread and return it."""

    def work() -> None:
        try:
            if suite:
                from lazarus_report.render.charts.background import warm_up

                warm_up()
            compile_templates(suite=suite)
            if not static:
                from lazarus_report.render.charts import compare_specs, run_specs  # noqa: F401  (imports Altair)
                from lazarus_report.render.charts.background import vega_bundle

                if suite:
                    from lazarus_report.render.charts import suite_specs  # noqa: F401

                vega_bundle()
        except Exception:  # done again, with its error reported, when the report renders
            pass

    thread = threading.Thread(target=work, name="lazarus-html-prefetch", daemon=True)
    thread.start()
    return thread


def compile_templates(*, suite: bool) -> None:
    """Compile (into the environments' caches) the HTML and Markdown templates a report of this kind uses."""
    from lazarus_report.render.environment import html_environment, markdown_environment

    skip = ("lens_eval",) if suite else ("lens_eval", "suite")
    for env, folder in ((html_environment(), "html/"), (markdown_environment(), "markdown/")):
        for name in env.list_templates(extensions=["j2"]):
            if name.startswith(folder) and not any(s in name for s in skip):
                env.get_template(name)
