"""Report layout: the committed samples (sample_reports/*.json) rendered by this checkout and measured in headless
Debian Chromium (Playwright), at 1280 px, at 390 px (a phone) and printed to A4.

``python benchmarks/layout.py`` prints Markdown lines; from ``benchmarks/run.py`` call ``bench_layout()`` which
returns ``(lines, data)`` like the other sections, or ``([], {})`` when Chromium or Playwright is missing.

Per sample: the widest table against its box at 1280 px; at 390 px the page's own width (390 = no sideways
scroll), the widest table and chart against their boxes (every collapsed part opened, every chart interactive),
the smallest chart text in px, and the seconds until every chart is interactive (the page script lays wide
charts out again on a phone, so they may render more than once); the static page's widest line chart and
smallest chart text at 390 px; A4 pages when printed from the interactive page. Targets (issue 13): tables
<= their box at 1280 px; at 390 px no page scroll, tables and charts <= 1.35x their box; the 14-case suite
<= 12 A4 pages. Issue 23 adds where the verdict (the Summary section, #summary) starts, in 800 px screens, at
1280 px and 390 px as the page opens (nothing opened by hand), and the page's height in screens at 390 px.
Targets: verdict within the first screen at 1280 px and the first two at 390 px; a compare page <= 8 screens
at 390 px. Also the smallest chart text on paper (printed from the 1280 px page onto A4: charts drawn for the
window, laid out at the 718 px column with print styles): target >= 8 px.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

OPEN_ALL = "document.querySelectorAll('details').forEach(function (d) { d.open = true; })"
ALL_LIVE = (
    "document.querySelectorAll('figure.chart[data-spec]').length === "
    "document.querySelectorAll('figure.chart.is-live').length"
)
MEASURE = """() => {
  const tables = Array.from(document.querySelectorAll('table')).map(t =>
    t.getBoundingClientRect().width / t.parentElement.getBoundingClientRect().width);
  const charts = Array.from(document.querySelectorAll('figure.chart')).map(f => {
    const svg = Array.from(f.querySelectorAll('.chart-body svg')).find(s => s.getBoundingClientRect().width > 0);
    const shown = svg.getBoundingClientRect().width;
    const scale = shown / (parseFloat(svg.getAttribute('width')) || shown);
    let smallest = Infinity;
    svg.querySelectorAll('text').forEach(t => {
      if (t.textContent.trim() && t.getBoundingClientRect().height) {
        smallest = Math.min(smallest, parseFloat(getComputedStyle(t).fontSize) * scale);
      }
    });
    return {ratio: shown / f.getBoundingClientRect().width, smallest: smallest,
            fit: !!f.querySelector('.chart-body.fit')};
  });
  return {page: document.documentElement.scrollWidth, tables: tables, charts: charts};
}"""


def _render(out: Path) -> dict[str, Path]:
    from lazarus_report.render.html import render_html
    from lazarus_report.render.lens_report import render_lens_eval_html
    from lazarus_report.results.lens_eval import LensEvalResult
    from lazarus_report.results.loading import load_any_result

    files = {}
    for path in sorted((ROOT / "sample_reports").glob("*.json")):
        lens = path.stem.startswith("lens-eval")
        result = LensEvalResult.load(path) if lens else load_any_result(json.loads(path.read_text(encoding="utf-8")))
        render = render_lens_eval_html if lens else render_html
        for static in (False, True):
            target = out / f"{path.stem}{'.static' if static else ''}.html"
            target.write_text(render(result, static=static), encoding="utf-8")
            files[target.stem] = target
    return files


def _measure(ctx, path: Path, *, wait: bool) -> tuple[dict, float]:
    page = ctx.new_page()
    start = time.perf_counter()
    page.goto(path.as_uri())
    page.evaluate(OPEN_ALL)
    if wait:
        page.wait_for_function(ALL_LIVE, timeout=180_000)
    seconds = time.perf_counter() - start
    result = page.evaluate(MEASURE)
    page.close()
    return result, seconds


VERDICT = """() => { const s = document.querySelector('#summary');
  return [s ? s.getBoundingClientRect().top + scrollY : -1, document.documentElement.scrollHeight]; }"""
SCREEN = 800


def _verdict(ctx, path: Path) -> tuple[float, float]:
    """The Summary's top and the page's height, in screens of 800 px, as the page opens."""
    page = ctx.new_page()
    page.set_viewport_size({"width": page.viewport_size["width"], "height": SCREEN})
    page.goto(path.as_uri())
    page.wait_for_timeout(1500)
    top, height = page.evaluate(VERDICT)
    page.close()
    return top / SCREEN, height / SCREEN


# Printing as Chromium prints a page opened on a desktop: the charts drawn for the window, then the page laid
# out at an A4 column's width (190 mm = 718 px) with print styles and the print-time script (no resize event).
A4_COLUMN = 718
PRINT_TEXT = """() => { let smallest = Infinity;
  document.querySelectorAll('figure.chart').forEach(f => {
    if (f.closest('details:not([open])') || !f.getBoundingClientRect().width) { return; }
    const svg = [...f.querySelectorAll('.chart-body svg')].find(s => s.getBoundingClientRect().width > 0);
    if (!svg) { return; }
    const scale = svg.getBoundingClientRect().width / (parseFloat(svg.getAttribute('width')) || 1);
    svg.querySelectorAll('text').forEach(t => {
      if (t.textContent.trim() && t.getBoundingClientRect().height) {
        smallest = Math.min(smallest, parseFloat(getComputedStyle(t).fontSize) * scale);
      }
    });
  });
  return smallest === Infinity ? 0 : smallest; }"""


def _print_text(ctx, path: Path) -> float:
    """The smallest chart text on paper (px at 96 per inch), as printed from the 1280 px window."""
    page = ctx.new_page()
    page.goto(path.as_uri())
    page.wait_for_function(ALL_SHOWN_LIVE, timeout=180_000)
    page.wait_for_function(PAPER_READY, timeout=180_000)  # wide charts' copies for paper, drawn when idle
    page.evaluate("window.addEventListener('resize', e => e.stopImmediatePropagation(), true)")
    page.evaluate("window.dispatchEvent(new Event('beforeprint'))")
    page.emulate_media(media="print")
    page.set_viewport_size({"width": A4_COLUMN, "height": 1000})
    page.wait_for_timeout(300)
    smallest = page.evaluate(PRINT_TEXT)
    page.close()
    return smallest


PAPER_READY = (
    "[...document.querySelectorAll('figure.chart.is-live')].every(f => { const s = f.querySelector('.chart-live svg');"
    " return !s || +s.getAttribute('width') <= 780 || f.hasAttribute('data-paper'); })"
)
ALL_SHOWN_LIVE = (
    "[...document.querySelectorAll('figure.chart[data-spec]')].filter(f => !f.closest('details:not([open])'))"
    ".every(f => f.classList.contains('is-live'))"
)


def _pages(ctx, path: Path) -> int:
    page = ctx.new_page()
    page.goto(path.as_uri())
    page.wait_for_timeout(1500)
    page.wait_for_function(ALL_SHOWN_LIVE, timeout=180_000)
    page.wait_for_function(PAPER_READY, timeout=180_000)
    pdf = page.pdf(format="A4", print_background=True)
    page.close()
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def bench_layout() -> tuple[list[str], dict]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return _in_test_venv()
    if not os.path.exists(CHROMIUM):
        return [f"Not measured: no Chromium at {CHROMIUM}."], {}
    tmp = Path(tempfile.mkdtemp())
    files = _render(tmp)
    names = sorted(name for name in files if not name.endswith(".static"))
    rows = [
        "| sample | 1280 px: widest table / box | 390 px: page width | table / box | chart / box | smallest chart "
        "text | charts live (s) 1280 / 390 | static 390 px: line chart / box, smallest text | A4 pages | "
        "verdict at (screens) 1280 / 390 | height at 390 px (screens) | print: smallest chart text |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    data: dict[str, dict] = {}
    with sync_playwright() as p:

        def context(width: int):
            return p.chromium.launch_persistent_context(
                tempfile.mkdtemp(dir=tmp),
                executable_path=CHROMIUM,
                args=ARGS,
                headless=True,
                viewport={"width": width, "height": 900},
                offline=True,
            )

        wide, phone = context(1280), context(390)
        for name in names:
            desktop, t_desktop = _measure(wide, files[name], wait=True)
            mobile, t_mobile = _measure(phone, files[name], wait=True)
            still, _ = _measure(phone, files[f"{name}.static"], wait=False)
            pages = _pages(wide, files[name]) if name.startswith(("suite", "compare")) else None
            verdict_wide, _ = _verdict(wide, files[name])
            verdict_phone, height_phone = _verdict(phone, files[name])
            printed = _print_text(wide, files[name])
            lines = [c for c in still["charts"] if c["fit"]]
            d = {
                "table_1280": max(desktop["tables"], default=0),
                "page_390": mobile["page"],
                "table_390": max(mobile["tables"], default=0),
                "chart_390": max((c["ratio"] for c in mobile["charts"]), default=0),
                "text_390": min((c["smallest"] for c in mobile["charts"]), default=0),
                "live_s": (t_desktop, t_mobile),
                "static_chart_390": max((c["ratio"] for c in lines), default=0),
                "static_text_390": min((c["smallest"] for c in lines), default=0),
                "pages": pages,
                "verdict_screens": (verdict_wide, verdict_phone),
                "height_390_screens": height_phone,
                "print_text": printed,
            }
            data[name] = d
            rows.append(
                f"| {name} | {d['table_1280']:.2f}x | {d['page_390']} px | {d['table_390']:.2f}x | "
                f"{d['chart_390']:.2f}x | {d['text_390']:.0f} px | {t_desktop:.1f} / {t_mobile:.1f} | "
                f"{d['static_chart_390']:.2f}x, {d['static_text_390']:.1f} px | {pages if pages else ''} | "
                f"{verdict_wide:.2f} / {verdict_phone:.2f} | {height_phone:.1f} | {printed:.1f} px |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
        wide.close()
        phone.close()
    suite = data.get("suite-weather-adapter", {}).get("pages")
    if suite:
        rows.append("")
        rows.append(
            f"The 14-case suite prints on {suite} A4 pages (target <= 10; 35 before passing cases stayed closed)."
        )
    return rows, data


if __name__ == "__main__":
    print("\n".join(bench_layout()[0]))


def _in_test_venv() -> tuple[list[str], dict]:
    """Playwright lives in the test environment (``make install-test``), not the demo one ``make bench`` runs
    in: measure there (the layout does not depend on which environment renders it)."""
    import subprocess

    python = Path(__file__).resolve().parent.parent / ".venv-test" / "bin" / "python"
    if not python.exists():
        return ["Not measured: Playwright is in the test environment (`make install-test`), which is missing."], {}
    script = "import sys; sys.path.insert(0, 'benchmarks'); from layout import bench_layout; print('\\n'.join(bench_layout()[0]))"
    proc = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=python.parent.parent.parent)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    if not rows:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return [f"Not measured: the layout run in the test environment failed ({last})."], {}
    return rows, {}
