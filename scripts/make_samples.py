"""`make samples`: regenerate sample_reports/ from the embedded real model(s).

Each sample is written as JSON (the result), HTML (interactive), static HTML (no scripts) and
Markdown, all through the same API the CLI uses.
"""

from __future__ import annotations

from pathlib import Path

from lazarus_report.api import AnalysisConfig, LayerStrategy, ModelAnalyzer
from lazarus_report.render import write_report_files

OUT = Path(__file__).resolve().parents[1] / "sample_reports"

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


def main() -> None:
    OUT.mkdir(exist_ok=True)
    with ModelAnalyzer.load("smollm2-135m-instruct") as analyzer:
        for name, prompt, config in ANALYZE_SAMPLES:
            result = analyzer.run(prompt, config)
            result.save(OUT / f"{name}.json")
            write_report_files(result, html_path=OUT / f"{name}.html", markdown_path=OUT / f"{name}.md")
            write_report_files(result, html_path=OUT / f"{name}.static.html", static=True)
            print(f"wrote sample_reports/{name}.{{json,html,static.html,md}}")


if __name__ == "__main__":
    main()
