"""`make samples`: regenerate sample_reports/ from the embedded real model(s).

Each sample is written as JSON (the result), HTML (interactive), static HTML (no scripts) and
Markdown, all through the same API the CLI uses.

The tuned-lens samples read SmolLM2 through a tuned lens fitted on the default corpus. It is fitted once
(about 20 minutes on a 2-core CPU) into build/lenses/ and reused while its lens.json is there; its
evaluation against the logit lens on the corpus's held-out text is written as the lens-eval sample.
"""

from __future__ import annotations

from pathlib import Path

from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.commands.compare import compare_models
from lazarus_report.commands.suite import run_suite
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.core.files import write_text_atomic
from lazarus_report.render import write_report_files
from lazarus_report.render.junit import render_junit
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
    (  # a generated answer (issue 19): the model writes its own reply, read token by token
        "analyze-weather-generated",
        "What's the weather in Paris?",
        AnalysisConfig(layer_strategy=LayerStrategy.ALL, generate=24, stop=["\n"]),
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
    (  # a teacher-forced answer (issue 19): both models read the whole tool call
        "compare-weather-answer",
        "smollm2-135m-instruct",
        "smollm2-135m-instruct",
        ADAPTER,
        "What's the weather in Paris?",
        AnalysisConfig(layer_strategy=LayerStrategy.ALL, answer='get_weather(city="Paris")'),
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


# Tuned-lens versions: (name, the logit-lens sample it mirrors)
TUNED = "build/lenses/smollm2-135m-instruct-tuned"  # relative: the reports show it as typed
LINEAR = "build/lenses/smollm2-135m-instruct-linear"  # beside the tuned lens in the lens evaluation sample
TUNED_SAMPLES = ["analyze-capital-raw", "analyze-weather-chat", "compare-base-vs-weather-adapter"]

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


def tuned_lens(analyzer: ModelAnalyzer) -> None:
    """Fit SmolLM2's tuned lens into TUNED and its linear lens into LINEAR unless they are there, and write the
    evaluation sample (the logit, linear and tuned lenses side by side)."""
    from lazarus_report.lens.learned import Lens, evaluate, fit_lens
    from lazarus_report.lens.learned.corpus import default_corpus
    from lazarus_report.lens.learned.store import save_logit_fidelity
    from lazarus_report.render.lens_report import render_lens_eval_html
    from lazarus_report.render.lens_text import render_eval_text

    if not (ROOT / TUNED / "lens.json").is_file():
        Path(TUNED).parent.mkdir(parents=True, exist_ok=True)
        print(f"fitting the tuned lens into {TUNED} (once; about 20 minutes on 2 cores)")
        fit_lens(analyzer.loaded, "tuned").save(TUNED)
    if not (ROOT / LINEAR / "lens.json").is_file():
        print(f"fitting the linear lens into {LINEAR} (once; about 3 minutes on 2 cores)")
        fit_lens(analyzer.loaded, "linear").save(LINEAR)
    lens = Lens.load(TUNED)
    # As `lazarus lens eval` does with every lens fitted for the model: the logit, linear and tuned lenses side by side.
    evaluation = evaluate(analyzer.loaded, [Lens.load(LINEAR), lens], default_corpus())
    # As `lazarus lens eval` does: the logit lens's held-out fidelity is cached for the model, so the logit-lens
    # samples written after this mark their unreliable layers (the same on every machine).
    save_logit_fidelity(analyzer.loaded, evaluation.logit, evaluation.corpus)
    name = "lens-eval-smollm2-tuned"
    evaluation.save(OUT / f"{name}.json")
    write_text_atomic(OUT / f"{name}.html", render_lens_eval_html(evaluation))
    write_text_atomic(OUT / f"{name}.static.html", render_lens_eval_html(evaluation, static=True))
    write_text_atomic(OUT / f"{name}.txt", render_eval_text(evaluation))
    # docs/lenses.md and the README show the per-layer KL chart (its static SVG)
    from lazarus_report.render.lens_report import fidelity_charts

    (ROOT / "docs" / "images").mkdir(exist_ok=True)
    write_text_atomic(ROOT / "docs" / "images" / "lens-fidelity-smollm2.svg", fidelity_charts(evaluation)[0].svg)
    print(f"wrote sample_reports/{name}.{{json,html,static.html,txt}}")


def main() -> None:
    import dataclasses
    import os

    os.chdir(ROOT)
    OUT.mkdir(exist_ok=True)
    with ModelAnalyzer.load("smollm2-135m-instruct") as analyzer:
        tuned_lens(analyzer)  # first: it caches the logit lens's fidelity the other samples show
        for name, prompt, config in ANALYZE_SAMPLES:
            write(name, analyzer.run(prompt, config))
        for name, prompt, config in ANALYZE_SAMPLES:
            if name in TUNED_SAMPLES:
                write(f"{name}-tuned", analyzer.run(prompt, dataclasses.replace(config, lens=TUNED)))
    for name, m1, m2, adapter2, prompt, config in COMPARE_SAMPLES:
        # causal attribution where it is possible: base vs base + LoRA adapter
        attribution = adapter2 is not None
        write(name, compare_models(m1, m2, prompt, config, adapter2=adapter2, attribution=attribution))
        if name in TUNED_SAMPLES:
            tuned = dataclasses.replace(config, lens=TUNED)
            write(f"{name}-tuned", compare_models(m1, m2, prompt, tuned, adapter2=adapter2, attribution=attribution))
    for name, suite_file, models, adapters in SUITE_SAMPLES:
        suite = run_suite(load_suite(suite_file), models, adapters=adapters, attribution=True)
        write(name, suite)
        write_text_atomic(OUT / f"{name}.junit.xml", render_junit(suite))
        print(f"wrote sample_reports/{name}.junit.xml ({suite.status})")
    drift_sample()
    sweep_sample()


def drift_sample() -> None:
    """sample_reports/drift-weather-adapter.{json,html,md}: ``compare --drift`` (issue 20 part 3), SmolLM2 vs the
    weather adapter over 4,096 positions of the built-in corpus's held-out split; without timings (byte-stable).
    Alone: ``python scripts/make_samples.py drift``."""
    import dataclasses
    import os

    from lazarus_report.commands.drift import measure_drift

    os.chdir(ROOT)
    OUT.mkdir(exist_ok=True)
    drift = measure_drift("smollm2-135m-instruct", "smollm2-135m-instruct", adapter2=ADAPTER, tokens=4096)
    drift = dataclasses.replace(drift, timings={})
    drift.save(OUT / "drift-weather-adapter.json")
    write_report_files(
        drift, html_path=OUT / "drift-weather-adapter.html", markdown_path=OUT / "drift-weather-adapter.md"
    )
    print("wrote sample_reports/drift-weather-adapter.{json,html,md}")


# --- checkpoint sweep sample (issue 20 part 2) ---------------------------------------------------------------

SWEEP_ADAPTER = "examples/weather-adapter-steps/adapter"  # scripts/train_weather_adapter.py --save-every 10 --rank 4


def sweep_sample() -> None:
    """sample_reports/sweep-weather-adapter.{json,html,md}: the weather suite at each checkpoint of the adapter
    trained with checkpoints, with attribution (the carrier layers over steps)."""
    import os

    from lazarus_report.commands.sweep import run_sweep
    from lazarus_report.models.checkpoints import folder_checkpoints

    os.chdir(ROOT)
    OUT.mkdir(exist_ok=True)
    name = "sweep-weather-adapter"
    spec = load_suite("examples/suites/weather-adapter.yaml")
    result = run_sweep(spec, "smollm2-135m-instruct", folder_checkpoints(SWEEP_ADAPTER), attribution=True)
    result.save(OUT / f"{name}.json")
    write_report_files(result, html_path=OUT / f"{name}.html", markdown_path=OUT / f"{name}.md", timings=False)
    print(f"wrote sample_reports/{name}.{{json,html,md}} ({result.status})")


# --- every lens of the model in one report (issue 21: the lens switch) -------------------------------------------


def all_lenses_sample() -> None:
    """sample_reports/analyze-capital-all-lenses.{json,html,static.html,md}: SmolLM2 on the capital prompt with
    ``--lens all`` (the logit lens first, then every lens fitted or shipped for it, read from one forward pass).
    Alone: ``python scripts/make_samples.py all-lenses``."""
    import os

    os.chdir(ROOT)
    OUT.mkdir(exist_ok=True)
    config = AnalysisConfig(
        layer_strategy=LayerStrategy.ALL, use_chat_template=False, track_tokens=[" Paris"], extra_lenses=["all"]
    )
    with ModelAnalyzer.load("smollm2-135m-instruct") as analyzer:
        write("analyze-capital-all-lenses", analyzer.run("The capital of France is", config))


if __name__ == "__main__":
    import sys

    alone = {
        "sweep": sweep_sample,
        "drift": drift_sample,
        "all-lenses": all_lenses_sample,
    }  # `make_samples.py sweep`: that sample alone
    alone.get(sys.argv[1] if len(sys.argv) == 2 else "", main)()
