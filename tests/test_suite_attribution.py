"""Suites as a fine-tune scorecard: ``group``, ``changes_only_in_layers`` (by divergence, and causally with
``--attribution``), per-case final-layer JS and the top-1 changed flag. Tiny model + a tiny LoRA adapter."""

from __future__ import annotations

import jsonschema
import numpy as np
import pytest
from test_attribution import N_LAYERS, one_layer_changed, write_tiny_adapter
from tiny_models import build_tiny_model

from lazarus_report.commands.suite import run_suite
from lazarus_report.core.errors import LazarusError
from lazarus_report.results.suite import ERROR, FAILED, PASSED, SKIPPED, SuiteResult
from lazarus_report.suites.spec import SuiteFileError, parse_suite, schema_path

SUITE = """
defaults:
  raw: true
  track: [" Paris"]
  group: collateral
cases:
  - id: right-layers
    prompt: The capital of France is
    group: intended
    changes_only_in_layers: "1-4"
  - id: too-narrow
    prompt: The capital of France is
    changes_only_in_layers: "3-4"
  - id: list-form
    prompt: hello world
    changes_only_in_layers: [1, 2, 3, 4]
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite-attr")
    build_tiny_model("llama", root / "a", seed=1, num_hidden_layers=N_LAYERS)
    adapter = write_tiny_adapter(str(root / "a"), root / "lora", num_layers=4, zero_b={2})
    return str(root / "a"), str(adapter)


def test_group_and_layer_sets_parse_and_match_the_schema():
    import yaml

    spec = parse_suite(SUITE, "s.yaml")
    assert [c.group for c in spec.cases] == ["intended", "collateral", "collateral"]
    layers = [[e.value for e in c.expectations if e.check == "changes_only_in_layers"] for c in spec.cases]
    assert layers == [[[1, 2, 3, 4]], [[3, 4]], [[1, 2, 3, 4]]]
    schema = __import__("json").loads(schema_path().read_text())
    jsonschema.validate(yaml.safe_load(SUITE), schema)
    assert parse_suite("cases:\n  - id: a\n    prompt: p\n    changes_only_in_layers: '0-3, 7'\n", "x.yaml").cases[
        0
    ].expectations[0].value == [0, 1, 2, 3, 7]


@pytest.mark.parametrize("bad", ["'29-22'", "'a-b'", "[]", "-1", "true"])
def test_bad_layer_sets_are_one_line_errors(bad):
    with pytest.raises(SuiteFileError, match=r"s\.yaml:4: case 'a': changes_only_in_layers"):
        parse_suite(f"cases:\n  - id: a\n    prompt: p\n    changes_only_in_layers: {bad}\n", "s.yaml")


def _checks(suite: SuiteResult) -> dict[str, str]:
    return {c.id: next(k.status for k in c.checks if k.check == "changes_only_in_layers") for c in suite.cases}


def test_changes_only_in_layers_by_divergence(tiny):
    model, adapter = tiny
    suite = run_suite(parse_suite(SUITE, "s.yaml"), [model, model], adapters=[None, adapter])
    # Layer 0 has no adapter: identical there; the adapter acts from layer 1 (layer 2's B is zero).
    assert _checks(suite) == {"right-layers": PASSED, "too-narrow": FAILED, "list-form": PASSED}
    case = suite.cases[1]
    message = next(k.message for k in case.checks if k.check == "changes_only_in_layers")
    assert "diverge from layer 1, before 3-4" in message and "--attribution" in message
    assert all(c.comparison.attribution is None for c in suite.cases)


def test_changes_only_in_layers_with_attribution(tiny):
    model, adapter = tiny
    suite = run_suite(parse_suite(SUITE, "s.yaml"), [model, model], adapters=[None, adapter], attribution=True)
    for case in suite.cases:
        a = case.comparison.attribution
        assert a is not None and a.method == "adapter-ablation"
        assert a.layers[0].effect == 0.0 and a.layers[2].effect == 0.0  # no adapter / B = 0
    statuses = _checks(suite)
    assert statuses["right-layers"] == PASSED and statuses["list-form"] == PASSED
    # Layer 1's adapter is among the carriers: "3-4" is too narrow.
    assert 1 in suite.cases[1].comparison.attribution.carriers
    assert statuses["too-narrow"] == FAILED
    message = next(k.message for k in suite.cases[1].checks if k.check == "changes_only_in_layers")
    assert message.startswith("comparison: layer 1 outside 3-4 carries part of the change")
    again = SuiteResult.from_json(suite.to_json())
    assert again == suite


def test_activation_patching_in_a_suite_runs_both_directions(tiny, tmp_path):
    """Two models whose weights differ in block 2 only: every case puts the whole effect on block 2, and the
    reverse direction (model 2's block outputs into model 1, loaded again after model 2) runs for every case
    and equals the standalone compare's."""
    from lazarus_report.commands.compare import compare_models

    model, _ = tiny
    changed = tmp_path / "changed"
    one_layer_changed(model, changed, layer=2)
    suite = run_suite(parse_suite(SUITE, "s.yaml"), [model, str(changed)], attribution=True)
    for case in suite.cases:
        a = case.comparison.attribution
        assert a is not None and a.method == "activation-patching" and a.change > 1e-4
        np.testing.assert_allclose([x.effect for x in a.layers], [0, 0, 1, 0, 0], atol=1e-5)
        np.testing.assert_allclose([x.reverse_cumulative for x in a.layers], [0, 0, 1, 1, 1], atol=1e-5)
        assert not any("reverse direction" in n for n in a.notes)
        alone = compare_models(model, str(changed), case.prompt, _config(case), attribution=True).attribution
        assert [x.reverse_cumulative for x in a.layers] == pytest.approx(
            [x.reverse_cumulative for x in alone.layers], abs=1e-6
        )


def _config(case):
    from lazarus_report.commands.suite import case_config

    [spec] = [c for c in parse_suite(SUITE, "s.yaml").cases if c.id == case.id]
    return case_config(spec, "logit")


def test_attribution_needs_two_models(tiny):
    model, _ = tiny
    with pytest.raises(LazarusError, match="needs two models"):
        run_suite(parse_suite(SUITE, "s.yaml"), [model], attribution=True)


def test_one_model_skips_the_layer_check(tiny):
    model, _ = tiny
    suite = run_suite(parse_suite(SUITE, "s.yaml"), [model])
    assert set(_checks(suite).values()) == {SKIPPED}
    assert ERROR not in _checks(suite).values()
