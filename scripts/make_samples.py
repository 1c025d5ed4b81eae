"""`make samples`: regenerate sample_reports/ from the embedded real model(s).

Each sample is written as JSON (the result), HTML (interactive), static HTML (no scripts) and
Markdown, all through the same API the CLI uses.
"""

from __future__ import annotations

from pathlib import Path

from lazarus_report.api import AnalysisConfig, LayerStrategy, ModelAnalyzer, compare_models
from lazarus_report.render import write_report_files
from lazarus_report.result import write_text_atomic
from lazarus_report.suites.junit import render_junit
from lazarus_report.suites.runner import run_suite
from lazarus_report.suites.spec import load_suite

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "sample_reports"
ADAPTER = "examples/weather-adapter/adapter"  # relative: the reports show it as typed

ANALYZE_SAMPLES = [
    # (name, prompt, config)
    (
        "analyze-capital-raw",
        "The capital of France is",
        AnalysisConfig(layer_strategy=LayerStrategy.ALL, use_chat_template=False, track_tokens=[" Paris", " the"]),
    ),
    (
        "analyze-weather-chat",
        "What's the weather in Paris?",
        AnalysisConfig(layer_strategy=LayerStrategy.ALL, track_tokens=["I", "The", "get_weather"]),
    ),
]


COMPARE_SAMPLES = [
    # (name, model1, model2, adapter2, prompt, config)
    (
        "compare-base-vs-weather-adapter",
        "smollm2-135m-instruct",
        "smollm2-135m-instruct",
        ADAPTER,
        "What's the weather in Paris?",
        AnalysisConfig(layer_strategy=LayerStrategy.ALL, track_tokens=["get_weather", "I"]),
    ),
    (
        "compare-smollm2-vs-gemma3",
        "smollm2-135m-instruct",
        "gemma3-270m",
        None,
        "The capital of France is",
        AnalysisConfig(layer_strategy=LayerStrategy.ALL, use_chat_template=False, track_tokens=[" Paris"]),
    ),
]


SUITE_SAMPLES = [
    # (name, suite file, models, adapters)
    (
        "suite-weather-adapter",
        "examples/suites/weather-adapter.yaml",
        ["smollm2-135m-instruct", "smollm2-135m-instruct"],
        [None, ADAPTER],
    ),
]


def write(name: str, obj) -> None:
    obj.save(OUT / f"{name}.json")
    write_report_files(obj, html_path=OUT / f"{name}.html", markdown_path=OUT / f"{name}.md")
    write_report_files(obj, html_path=OUT / f"{name}.static.html", static=True)
    print(f"wrote sample_reports/{name}.{{json,html,static.html,md}}")


def main() -> None:
    import os

    os.chdir(ROOT)
    OUT.mkdir(exist_ok=True)
    with ModelAnalyzer.load("smollm2-135m-instruct") as analyzer:
        for name, prompt, config in ANALYZE_SAMPLES:
            write(name, analyzer.run(prompt, config))
    for name, m1, m2, adapter2, prompt, config in COMPARE_SAMPLES:
        write(name, compare_models(m1, m2, prompt, config, adapter2=adapter2))
    for name, suite_file, models, adapters in SUITE_SAMPLES:
        suite = run_suite(load_suite(suite_file), models, adapters=adapters)
        write(name, suite)
        write_text_atomic(OUT / f"{name}.junit.xml", render_junit(suite))
        print(f"wrote sample_reports/{name}.junit.xml ({suite.status})")


if __name__ == "__main__":
    main()
