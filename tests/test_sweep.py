"""Checkpoint sweeps (``introspect sweep``): every step equals ``suite`` run alone against that checkpoint,
the base loads once, a resumed sweep writes what a full one writes, and bad input (an empty adapter folder,
a checkpoint with wrong shapes, a missing suite) is one line and exit 2 before any model loads, with no
output written."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import lazarus
from test_attribution import write_tiny_adapter

from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.models.checkpoints import folder_checkpoints
from lazarus_report.results.suite import SuiteResult
from lazarus_report.results.sweep import SweepResult

SUITE = """
name: tiny-sweep
defaults:
  raw: true
cases:
  - id: capital
    prompt: The capital of France is
    track: [" Paris"]
    expect:
      final_prob_at_most: 0.0105
    no_regression_of: final_prob
    tolerance: 0.0005
  - id: weather
    prompt: What's the weather?
    track: ["e"]
    expect:
      final_prob_at_least: 0.002
  - id: counting
    prompt: one two three four
    track: [" five"]
    no_regression_of: final_prob
    tolerance: 0.001
"""
STEPS = (10, 20, 30)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_model_dir):
    """A tiny base, and an adapter folder with three checkpoints (different weights each) laid out as mlx-lm's
    trainer writes them: ``0000010_adapters.safetensors``... and ``adapters.safetensors`` (= the last)."""
    root = tmp_path_factory.mktemp("sweep")
    base = str(tiny_model_dir("llama", seed=1, num_hidden_layers=4))
    folder = root / "adapter"
    for k, step in enumerate(STEPS):
        one = write_tiny_adapter(base, root / f"one-{step}", num_layers=3, zero_b=set(), seed=10 + k)
        if not folder.exists():
            folder.mkdir()
            shutil.copy(one / "adapter_config.json", folder / "adapter_config.json")
        shutil.copy(one / "adapters.safetensors", folder / f"{step:07d}_adapters.safetensors")
    shutil.copy(folder / f"{STEPS[-1]:07d}_adapters.safetensors", folder / "adapters.safetensors")
    suite = root / "suite.yaml"
    suite.write_text(SUITE, encoding="utf-8")
    return {"root": root, "base": base, "folder": folder, "suite": suite}


@pytest.fixture(scope="module")
def swept(setup):
    out = setup["root"] / "full"
    out.mkdir()
    r = lazarus(
        "introspect", "sweep", str(setup["suite"]), "-m", setup["base"], "--adapters", str(setup["folder"]),
        "-o", str(out / "s.json"), "--html", str(out / "s.html"), "--markdown", str(out / "s.md"),
        "--junit", str(out / "s.xml"),
    )  # fmt: skip
    assert r.returncode in (0, 1), r.stderr
    return out, r


def test_the_folder_is_read_in_training_order_and_the_final_copy_is_not_a_step(setup):
    steps = folder_checkpoints(str(setup["folder"]))
    assert [s.step for s in steps] == list(STEPS)
    assert [s.label for s in steps] == [f"step {n}" for n in STEPS]
    assert len({s.sha256 for s in steps}) == 3


def test_a_final_adapter_that_differs_from_the_last_checkpoint_is_the_last_step(setup, tmp_path):
    folder = tmp_path / "adapter"
    shutil.copytree(setup["folder"], folder)
    shutil.copy(folder / "0000010_adapters.safetensors", folder / "adapters.safetensors")
    steps = folder_checkpoints(str(folder))
    assert [s.label for s in steps] == ["step 10", "step 20", "step 30", "final"]


def test_each_step_equals_suite_run_alone_against_that_checkpoint(setup, swept):
    out, _ = swept
    result = SweepResult.load(out / "s.json")
    assert [s.step for s in result.steps] == list(STEPS)
    statuses = set()
    for step in result.steps:
        alone_json = out / f"alone-{step.step}.json"
        r = lazarus(
            "introspect", "suite", str(setup["suite"]), "-m1", setup["base"], "-m2", setup["base"],
            "--adapter2", str(step.adapter), "-o", str(alone_json), "-q",
        )  # fmt: skip
        assert r.returncode in (0, 1), r.stderr
        alone = SuiteResult.load(alone_json)
        for got, case in zip(step.cases, alone.cases):
            assert got.id == case.id and got.status == case.status
            statuses.add(got.status)
            assert [(c.name, c.status, c.actual) for c in got.checks] == [
                (c.name, c.status, c.actual) for c in case.checks
            ]
            cmp = case.comparison
            assert cmp is not None
            tracked = cmp.tracked[0] if cmp.tracked else None
            if tracked is not None:
                assert got.p_target == pytest.approx(tracked.final_probs[1], abs=1e-6)
                assert got.emergence_layer == tracked.emergence_layers[1]
            assert got.final_js == pytest.approx(cmp.divergences[-1].js, abs=1e-6)
    assert statuses == {"passed", "failed"}  # the suite is made so that verdicts differ between cases and steps


def test_the_base_loads_once_and_checkpoints_swap_in_place(setup, tmp_path, monkeypatch):
    calls: list[str] = []
    real = ModelAnalyzer._ensure_loaded

    def counting(self):
        if self._loaded is None:
            calls.append(self._model_id)
        return real(self)

    monkeypatch.setattr(ModelAnalyzer, "_ensure_loaded", counting)
    r = lazarus(
        "introspect", "sweep", str(setup["suite"]), "-m", setup["base"], "--adapters", str(setup["folder"]),
        "-o", str(tmp_path / "s.json"), "-q",
    )  # fmt: skip
    assert r.returncode in (0, 1), r.stderr
    assert calls == [setup["base"]]


def test_a_resumed_sweep_reads_done_steps_and_writes_the_same_bytes(setup, swept, tmp_path):
    out, _ = swept
    full = json.loads((out / "s.json").read_text(encoding="utf-8"))
    # An earlier sweep that stopped after the first step; its step 10 carries a marker value, which a resumed
    # run must keep (it reads the step) and a full run would replace.
    partial = json.loads(json.dumps(dict(full, steps=full["steps"][:1])))
    partial.pop("series")
    marker = partial["steps"][0]["cases"][0]["rank"]
    partial["steps"][0]["cases"][0]["rank"] = 123456
    target = tmp_path / "s.json"
    target.write_text(json.dumps(partial), encoding="utf-8")
    args = ["introspect", "sweep", str(setup["suite"]), "-m", setup["base"], "--adapters", str(setup["folder"])]
    r = lazarus(*args, "-o", str(target), "--html", str(tmp_path / "s.html"), "-q")
    assert r.returncode in (0, 1), r.stderr
    resumed = SweepResult.load(target)
    assert resumed.steps[0].cases[0].rank == 123456  # read, not recomputed
    # With the marker put back, the resumed result is the full run's, byte for byte (timings aside).
    fixed = json.loads(target.read_text(encoding="utf-8"))
    fixed["steps"][0]["cases"][0]["rank"] = marker
    fixed["series"] = full["series"]
    assert (
        SweepResult.from_dict(fixed).without_timings().to_json()
        == SweepResult.from_dict(full).without_timings().to_json()
    )
    # Resumed from the complete file: nothing runs again, and every output is the full run's bytes.
    shutil.copy(out / "s.json", tmp_path / "again.json")
    r = lazarus(*args, "-o", str(tmp_path / "again.json"), "--html", str(tmp_path / "again.html"), "-q")
    assert r.returncode in (0, 1), r.stderr
    assert (tmp_path / "again.html").read_bytes() == (out / "s.html").read_bytes()
    again, first = SweepResult.load(tmp_path / "again.json"), SweepResult.load(out / "s.json")
    assert again.without_timings().to_json() == first.without_timings().to_json()  # the JSON keeps timings


def test_report_render_reads_a_sweep_back(swept, tmp_path):
    out, _ = swept
    for source in ("s.json", "s.html"):
        r = lazarus("report", "render", str(out / source), "--html", str(tmp_path / "r.html"), "-q")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "r.html").read_bytes() == (out / "s.html").read_bytes()


def test_outputs_say_which_cases_changed_over_the_steps(swept):
    out, r = swept
    result = SweepResult.load(out / "s.json")
    md = (out / "s.md").read_text(encoding="utf-8")
    html = (out / "s.html").read_text(encoding="utf-8")
    for step in result.steps:
        assert step.label in md and step.label in html and step.label in r.stdout
    assert html.count("<svg") == 4  # passing, P(target), emergence, JS (no attribution)
    assert "<script>" not in html
    exit_code = 1 if result.steps[-1].status == "failed" else 0
    assert r.returncode == exit_code  # --fail-on last (the default): the last step decides
    assert (out / "s.xml").read_text(encoding="utf-8").count("<testsuite ") == len(STEPS)


def _bad(setup, tmp_path, *args: str) -> tuple[int, str]:
    out = tmp_path / "out.json"
    r = lazarus("introspect", "sweep", *args, "-o", str(out), "--html", str(tmp_path / "out.html"))
    assert not out.exists() and not (tmp_path / "out.html").exists()
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    return r.returncode, r.stderr


def test_an_empty_adapter_folder_is_one_line_exit_2(setup, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    # The base does not exist either: the checkpoint error comes first, so no model is looked at.
    code, err = _bad(setup, tmp_path, str(setup["suite"]), "-m", str(tmp_path / "no-model"), "--adapters", str(empty))
    assert code == 2 and "no LoRA adapter" in err
    (empty / "adapter_config.json").write_text((setup["folder"] / "adapter_config.json").read_text())
    code, err = _bad(setup, tmp_path, str(setup["suite"]), "-m", str(tmp_path / "no-model"), "--adapters", str(empty))
    assert code == 2 and "holds no checkpoints" in err


def test_a_checkpoint_with_wrong_shapes_is_one_line_exit_2(setup, tmp_path):
    import mlx.core as mx

    folder = tmp_path / "adapter"
    shutil.copytree(setup["folder"], folder)
    weights = mx.load(str(folder / "0000020_adapters.safetensors"))
    name = next(n for n in weights if n.endswith(".lora_a"))
    weights[name] = mx.zeros((weights[name].shape[0] + 1, weights[name].shape[1]))
    mx.save_safetensors(str(folder / "0000020_adapters.safetensors"), weights)
    code, err = _bad(setup, tmp_path, str(setup["suite"]), "-m", str(tmp_path / "no-model"), "--adapters", str(folder))
    assert code == 2 and "0000020_adapters.safetensors does not match" in err and name in err


def test_a_checkpoint_whose_rank_is_not_the_configs_is_one_line_exit_2(setup, tmp_path):
    folder = tmp_path / "adapter"
    shutil.copytree(setup["folder"], folder)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg["lora_parameters"]["rank"] = 8
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    code, err = _bad(setup, tmp_path, str(setup["suite"]), "-m", setup["base"], "--adapters", str(folder))
    assert code == 2 and "does not fit rank 8" in err


def test_a_missing_suite_is_one_line_exit_2(setup, tmp_path):
    code, err = _bad(
        setup, tmp_path, str(tmp_path / "nope.yaml"), "-m", setup["base"], "--adapters", str(setup["folder"])
    )
    assert code == 2 and "nope.yaml" in err


def test_an_output_that_is_not_a_sweep_is_never_replaced(setup, tmp_path):
    other = tmp_path / "other.json"
    other.write_text('{"kind": "something else"}', encoding="utf-8")
    r = lazarus(
        "introspect", "sweep", str(setup["suite"]), "-m", setup["base"], "--adapters", str(setup["folder"]),
        "-o", str(other),
    )  # fmt: skip
    assert r.returncode == 2 and "is not a sweep result" in r.stderr
    assert other.read_text(encoding="utf-8") == '{"kind": "something else"}'


def test_an_explicit_list_of_checkpoint_files_runs_in_the_order_given(setup, swept, tmp_path):
    out, _ = swept
    files = [str(setup["folder"] / f"{n:07d}_adapters.safetensors") for n in (30, 10)]
    r = lazarus(
        "introspect", "sweep", str(setup["suite"]), "-m", setup["base"], "--adapters", *files,
        "-o", str(tmp_path / "s.json"), "-q",
    )  # fmt: skip
    assert r.returncode in (0, 1), r.stderr
    listed = SweepResult.load(tmp_path / "s.json")
    full = SweepResult.load(out / "s.json")
    assert [s.step for s in listed.steps] == [30, 10]
    assert listed.steps[0].cases == full.steps[2].cases and listed.steps[1].cases == full.steps[0].cases


def test_with_attribution_each_step_has_the_carriers_suite_alone_finds(setup, tmp_path):
    r = lazarus(
        "introspect", "sweep", str(setup["suite"]), "-m", setup["base"], "--adapters", str(setup["folder"]),
        "--attribution", "-o", str(tmp_path / "s.json"), "--html", str(tmp_path / "s.html"), "-q",
    )  # fmt: skip
    assert r.returncode in (0, 1), r.stderr
    result = SweepResult.load(tmp_path / "s.json")
    last = result.steps[-1]
    alone = lazarus(
        "introspect", "suite", str(setup["suite"]), "-m1", setup["base"], "-m2", setup["base"],
        "--adapter2", str(last.adapter), "--attribution", "-o", str(tmp_path / "alone.json"), "-q",
    )  # fmt: skip
    assert alone.returncode in (0, 1), alone.stderr
    suite = SuiteResult.load(tmp_path / "alone.json")
    carriers = [c.comparison.attribution.carriers for c in suite.cases]
    assert [c.carriers for c in last.cases] == carriers
    assert any(carriers)
    html = (tmp_path / "s.html").read_text(encoding="utf-8")
    assert html.count("<svg") == 5 and "Carrier layers" in html


def test_case_ids_and_prompts_are_data_in_every_output(setup, tmp_path):
    hostile = '<script>alert("x")</script>'
    suite = tmp_path / "hostile.yaml"
    suite.write_text(
        SUITE.replace("id: capital", f"id: '{hostile}'").replace("prompt: one two", "prompt: <b>one</b> two"),
        encoding="utf-8",
    )
    r = lazarus(
        "introspect", "sweep", str(suite), "-m", setup["base"], "--adapters", str(setup["folder"]),
        "--html", str(tmp_path / "s.html"), "--markdown", str(tmp_path / "s.md"), "-q",
    )  # fmt: skip
    assert r.returncode in (0, 1), r.stderr
    html = (tmp_path / "s.html").read_text(encoding="utf-8")
    assert hostile not in html and "&lt;script&gt;" in html
    assert "<script>alert" not in (tmp_path / "s.md").read_text(encoding="utf-8")


def test_the_blocks_below_the_adapter_are_replayed_from_the_base_and_change_nothing(setup):
    """``engine.replay``: a checkpoint's batched pass skips the blocks below its adapter with the base's recorded
    state, and every number equals the pass that runs them (the adapter adapts the last 3 of 4 blocks)."""
    from lazarus_report.commands.suite import case_config
    from lazarus_report.engine.batched import analyze_many
    from lazarus_report.engine.replay import BlockReplay, replaying
    from lazarus_report.models.loader import load_model, with_adapter
    from lazarus_report.suites.spec import load_suite

    spec = load_suite(str(setup["suite"]))
    prompts, configs = [c.prompt for c in spec.cases], [case_config(c) for c in spec.cases]
    analyzer = ModelAnalyzer(load_model(setup["base"]))
    replay = BlockReplay(start=1)
    with replaying(replay):
        list(analyze_many(analyzer.loaded, prompts, configs, lens=analyzer.lens("logit")))
    assert replay.states and replay.replayed == 0
    tuned = ModelAnalyzer(with_adapter(analyzer.loaded, str(setup["folder"] / "0000020_adapters.safetensors")))
    replay.recording = False
    with replaying(replay):
        skipped = dict(analyze_many(tuned.loaded, prompts, configs, lens=tuned.lens("logit")))
    assert replay.replayed == len(replay.states)  # every pass skipped block 0
    full = dict(analyze_many(tuned.loaded, prompts, configs, lens=tuned.lens("logit")))
    for i in full:
        a, b = full[i], skipped[i]
        assert a.result.layer_predictions == b.result.layer_predictions
        assert (abs(a.log_probs - b.log_probs) <= 1e-6).all()
    # A replay that is wrong shows: the state recorded on a different model changes the numbers.
    other = BlockReplay(start=1, recording=False, states={k: v * 2 for k, v in replay.states.items()})
    other.gathered = replay.gathered
    with replaying(other):
        wrong = dict(analyze_many(tuned.loaded, prompts, configs, lens=tuned.lens("logit")))
    assert any((abs(full[i].log_probs - wrong[i].log_probs) > 1e-3).any() for i in full)


def test_whole_models_as_steps_equal_suite_alone(setup, tiny_model_dir, tmp_path):
    others = [str(tiny_model_dir("llama", seed=s, num_hidden_layers=4)) for s in (2, 3)]
    r = lazarus(
        "introspect", "sweep", str(setup["suite"]), "-m", setup["base"], "--models", *others,
        "-o", str(tmp_path / "s.json"), "-q",
    )  # fmt: skip
    assert r.returncode in (0, 1), r.stderr
    result = SweepResult.load(tmp_path / "s.json")
    assert [s.model for s in result.steps] == others and all(s.sha256 is None for s in result.steps)
    for step, other in zip(result.steps, others):
        alone = lazarus(
            "introspect", "suite", str(setup["suite"]), "-m1", setup["base"], "-m2", other,
            "-o", str(tmp_path / "alone.json"), "-q",
        )  # fmt: skip
        assert alone.returncode in (0, 1), alone.stderr
        suite = SuiteResult.load(tmp_path / "alone.json")
        assert [c.status for c in step.cases] == [c.status for c in suite.cases]
        assert [c.final_js for c in step.cases] == pytest.approx(
            [c.comparison.divergences[-1].js for c in suite.cases], abs=1e-6
        )


def test_an_output_from_another_sweep_is_not_resumed(setup, swept, tmp_path):
    out, _ = swept
    data = json.loads((out / "s.json").read_text(encoding="utf-8"))
    data["base"] = "another-base"
    for case in data["steps"][0]["cases"]:
        case["rank"] = 123456  # what a resumed step would keep
    target = tmp_path / "s.json"
    target.write_text(json.dumps(data), encoding="utf-8")
    r = lazarus(
        "introspect", "sweep", str(setup["suite"]), "-m", setup["base"], "--adapters", str(setup["folder"]),
        "-o", str(target),
    )  # fmt: skip
    assert r.returncode in (0, 1), r.stderr
    assert "every step runs again" in r.stderr
    again = SweepResult.load(target)
    assert again.without_timings().to_json() == SweepResult.load(out / "s.json").without_timings().to_json()


# Sweep tables on a phone (r18-tables): the static page's tables stack into labelled rows, as drift's do.
def test_the_sweep_tables_stack_on_a_phone_with_every_cell_labelled(swept):
    import re

    out, _ = swept
    html = (out / "s.html").read_text(encoding="utf-8")
    tables = re.findall(r"<table[^>]*>.*?</table>", html, flags=re.S)
    assert len(tables) == 2 and all(t.startswith('<table class="data stack">') for t in tables)
    cells = [c for t in tables for c in re.findall(r"<td\b[^>]*>", t)]
    assert cells and all('data-label="' in c for c in cells)
