"""Suite files: parsing, validation errors (file:line: message) and the shipped JSON Schema.

Every invalid fixture the schema can express is checked against BOTH the schema and ``parse_suite``,
so the two cannot drift apart.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

try:
    import jsonschema
except ImportError:  # in the test extra; without it the schema tests skip
    jsonschema = None
import yaml

from lazarus_report.core.errors import LazarusError
from lazarus_report.suites.spec import (
    CaseSpec,
    Expectation,
    SuiteFileError,
    load_suite,
    parse_suite,
    schema_path,
)


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """The 1-based line of the ``nth`` line containing ``needle`` (so tests read the fixture, not magic numbers)."""
    hits = [i for i, line in enumerate(text.split("\n"), start=1) if needle in line]
    assert len(hits) >= nth, f"{needle!r} occurs {len(hits)} times in the fixture"
    return hits[nth - 1]


def error_of(text: str, path: str = "suite.yaml", fmt: str | None = None) -> str:
    with pytest.raises(SuiteFileError) as info:
        parse_suite(text, path, fmt)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- valid files ------------------------------------------------------------------------------

FULL_YAML = """\
# A suite with every key.
name: capitals
description: Capital cities, base vs tuned.
defaults:
  raw: true
  top_k: 8
  track: [" Paris"]
  tolerance: 0.1
cases:
  - id: paris
    prompt: The capital of France is
    description: the classic
    expect:
      final_top1: " Paris"
      not_top1: [" London", " the"]
      final_prob_at_least: 0.3
      emerges_by_layer: {" Paris": "75%", " Lyon": 20}
    expect_tuned:
      final_prob_at_most: {" Berlin": 0.01}
    no_regression_of: [final_prob, emergence, final_top1]
  - id: chat
    prompt: "What's the weather in Paris?"
    raw: false
    top_k: 3
    track: ["I", get_weather]
    expect_base:
      not_top1: get_weather
      emerges_by_layer: 1.0
    no_regression_of: {final_prob: null, emergence: 0.05, final_top1: null}
    tolerance: 0.02
  - id: plain
    prompt: "2 + 2 ="
    track: []
"""


def test_full_yaml_merges_defaults_and_expands_expectations():
    text = FULL_YAML
    suite = parse_suite(text, "suites/capitals.yaml")
    assert suite.name == "capitals" and suite.description == "Capital cities, base vs tuned."
    assert suite.format == "yaml" and suite.path == "suites/capitals.yaml"
    assert suite.sha256 == hashlib.sha256(text.encode()).hexdigest()
    paris, chat, plain = suite.cases
    expect_line = line_of(text, "emerges_by_layer: {")
    assert paris == CaseSpec(
        id="paris",
        prompt="The capital of France is",
        raw=True,
        top_k=8,
        track=[" Paris", " Lyon", " Berlin"],  # explicit first, then named in mappings, in file order
        description="the classic",
        expectations=[
            Expectation("final_top1", "all", " Paris", None, None, line_of(text, "final_top1:")),
            Expectation("not_top1", "all", " London", None, None, line_of(text, "not_top1: [")),
            Expectation("not_top1", "all", " the", None, None, line_of(text, "not_top1: [")),
            Expectation("final_prob_at_least", "all", " Paris", 0.3, None, line_of(text, "final_prob_at_least")),
            Expectation("emerges_by_layer", "all", " Paris", 0.75, None, expect_line),
            Expectation("emerges_by_layer", "all", " Lyon", 20, None, expect_line),
            Expectation("final_prob_at_most", "tuned", " Berlin", 0.01, None, line_of(text, '" Berlin": 0.01')),
            Expectation("no_regression", "comparison", " Paris", "final_prob", 0.1, line_of(text, "[final_prob")),
            Expectation("no_regression", "comparison", " Paris", "emergence", 0.0, line_of(text, "[final_prob")),
            Expectation("no_regression", "comparison", None, "final_top1", None, line_of(text, "[final_prob")),
        ],
        line=line_of(text, "id: paris"),
    )
    assert paris.target == " Paris"
    assert type(paris.expectations[5].value) is int  # 20: an absolute layer
    assert (chat.raw, chat.top_k, chat.track, chat.target) == (False, 3, ["I", "get_weather"], "I")
    assert chat.expectations == [
        Expectation("not_top1", "base", "get_weather", None, None, line_of(text, "not_top1: get_weather")),
        Expectation("emerges_by_layer", "base", "I", 1.0, None, line_of(text, "emerges_by_layer: 1.0")),
        # final_prob: the case's tolerance (0.02) beats defaults (0.1); emergence: given in the mapping.
        Expectation("no_regression", "comparison", "I", "final_prob", 0.02, line_of(text, "{final_prob: null")),
        Expectation("no_regression", "comparison", "I", "emergence", 0.05, line_of(text, "{final_prob: null")),
        Expectation("no_regression", "comparison", None, "final_top1", None, line_of(text, "{final_prob: null")),
    ]
    assert type(chat.expectations[1].value) is float  # 1.0: 100% depth, not layer 1
    # An empty track list replaces the default; a case with no expectations is allowed (it just runs).
    assert (plain.track, plain.expectations, plain.raw, plain.top_k) == ([], [], True, 8)


BARE_LIST_YAML = """\
- id: paris
  prompt: The capital of France is
  track: " Paris"
  expect:
    final_prob_at_least: 0.5
- id: london
  prompt: The capital of England is
"""


def test_bare_list_uses_file_stem_and_builtin_defaults():
    suite = parse_suite(BARE_LIST_YAML, "dir/my-suite.yml")
    assert (suite.name, suite.description, suite.format) == ("my-suite", None, "yaml")
    paris, london = suite.cases
    assert (paris.raw, paris.top_k, paris.track, paris.description) == (False, 5, [" Paris"], None)
    assert paris.expectations == [Expectation("final_prob_at_least", "all", " Paris", 0.5, None, 5)]
    assert (london.id, london.line, london.track) == ("london", 6, [])


JSONL = """\
{"id": "paris", "prompt": "The capital of France is", "track": " Paris", "expect": {"final_prob_at_least": 0.5}}

{"id": "london", "prompt": "The capital of England is"}
"""


def test_jsonl_matches_the_equivalent_yaml():
    suite = parse_suite(JSONL, "checks/smoke.jsonl")
    assert (suite.name, suite.format, suite.description) == ("smoke", "jsonl", None)
    yaml_suite = parse_suite(BARE_LIST_YAML, "smoke.yaml")
    paris, london = suite.cases
    assert paris.line == 1 and london.line == 3  # blank lines count
    assert paris.expectations[0].line == 1
    assert [(c.id, c.prompt, c.raw, c.top_k, c.track) for c in suite.cases] == [
        (c.id, c.prompt, c.raw, c.top_k, c.track) for c in yaml_suite.cases
    ]


def test_emerges_by_layer_forms():
    text = """\
- id: a
  prompt: p
  track: x
  expect_base: {emerges_by_layer: 0}
  expect_tuned: {emerges_by_layer: 1}
  expect:
    emerges_by_layer: {x: 1.0, "y": 0.75, z: "75%", w: "62.5%", v: "100%", u: "0%", t: 0.0, s: 29}
"""
    values = [(e.token, e.value) for e in parse_suite(text, "s.yaml").cases[0].expectations]
    assert values == [
        ("x", 0), ("x", 1), ("x", 1.0), ("y", 0.75), ("z", 0.75), ("w", 0.625), ("v", 1.0), ("u", 0.0),
        ("t", 0.0), ("s", 29),
    ]  # fmt: skip
    kinds = [type(e.value) for e in parse_suite(text, "s.yaml").cases[0].expectations]
    assert kinds == [int, int, float, float, float, float, float, float, float, int]


def test_defaults_tolerance_and_track_replacement():
    text = """\
defaults: {track: [" Paris", " Lyon"], tolerance: 0.2}
cases:
  - {id: a, prompt: p, no_regression_of: final_prob}
  - {id: b, prompt: p, track: " Rome", no_regression_of: {final_prob: 0.3, emergence: null}}
  - {id: c, prompt: p, no_regression_of: emergence}
"""
    a, b, c = parse_suite(text, "s.yaml").cases
    assert a.track == [" Paris", " Lyon"]
    assert [(e.token, e.value, e.tolerance) for e in a.expectations] == [(" Paris", "final_prob", 0.2)]
    assert b.track == [" Rome"]
    assert [(e.token, e.value, e.tolerance) for e in b.expectations] == [
        (" Rome", "final_prob", 0.3),
        (" Rome", "emergence", 0.0),
    ]
    assert [(e.value, e.tolerance) for e in c.expectations] == [("emergence", 0.0)]
    default_tol = parse_suite("- {id: a, prompt: p, track: x, no_regression_of: final_prob}", "s.yaml")
    assert default_tol.cases[0].expectations[0].tolerance == 0.05


def test_auto_tracked_tokens_keep_file_order_without_duplicates():
    text = """\
- id: a
  prompt: p
  track: [" B"]
  expect_tuned:
    final_prob_at_most: {" C": 0.1, " B": 0.2}
  expect:
    emerges_by_layer: {" D": 3, " C": 4}
    final_top1: " E"
"""
    case = parse_suite(text, "s.yaml").cases[0]
    assert case.track == [" B", " C", " D"]  # final_top1 / not_top1 compare top-1 strings: not tracked


def test_yaml_booleans_and_name_description():
    suite = parse_suite("name: n\ndescription: d\ncases:\n- {id: a, prompt: p, raw: yes}\n", "x.yaml")
    assert suite.cases[0].raw is True  # YAML 1.1: bare yes is a boolean
    assert (suite.name, suite.description) == ("n", "d")


def test_anchors_and_aliases_are_values():
    text = """\
- id: a
  prompt: p
  track: &tokens [" Paris", " Lyon"]
- id: b
  prompt: q
  track: *tokens
"""
    assert parse_suite(text, "s.yaml").cases[1].track == [" Paris", " Lyon"]


def test_bom_and_crlf_are_accepted():
    suite = parse_suite("\ufeff- id: a\r\n  prompt: p\r\n", "s.yaml")
    assert suite.cases[0].prompt == "p"
    suite = parse_suite('\ufeff{"id": "a", "prompt": "p"}\r\n{"id": "b", "prompt": "q"}\r\n', "s.jsonl")
    assert [c.id for c in suite.cases] == ["a", "b"]


# --- format sniffing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "fmt"),
    [
        ('{"id": "a", "prompt": "p"}\n{"id": "b", "prompt": "q"}\n', "cases.txt", "jsonl"),
        ('\n  {"id": "a", "prompt": "p"}\n', "cases", "jsonl"),
        ("- id: a\n  prompt: p\n", "cases.txt", "yaml"),
        ("[{id: a, prompt: p}]\n", "cases.suite", "yaml"),  # YAML flow style is not JSON
        ('{"name": "n", "cases": [{"id": "a", "prompt": "p"}]}\n', "suite.json", "yaml"),  # a JSON document
        ('{\n  "cases": [{"id": "a", "prompt": "p"}]\n}\n', "suite.json", "yaml"),
    ],
)
def test_format_from_content_when_the_extension_says_nothing(text, path, fmt):
    suite = parse_suite(text, path)
    assert suite.format == fmt
    assert suite.cases[0].id == "a"


def test_the_extension_decides_when_it_is_known():
    jsonl = '{"id": "a", "prompt": "p"}\n{"id": "b", "prompt": "q"}\n'
    # JSON is YAML: two JSONL lines are not one YAML document.
    assert error_of(jsonl, "suite.yaml").startswith("suite.yaml:2: invalid YAML: ")
    assert error_of("- id: a\n  prompt: p\n", "suite.jsonl") == (
        "suite.jsonl:1: invalid JSON: Expecting value (column 1)"
    )
    assert parse_suite(jsonl, "suite.NDJSON").format == "jsonl"


def test_explicit_format_overrides_the_extension():
    assert parse_suite('{"id": "a", "prompt": "p"}\n', "x.yaml", fmt="jsonl").format == "jsonl"
    with pytest.raises(ValueError):
        parse_suite("- {id: a, prompt: p}", "x.yaml", fmt="toml")


# --- errors: file:line: message ---------------------------------------------------------------


def _yaml_case(body: str) -> str:
    """A one-case YAML suite: line 1 is ``cases:``, line 2 the id, line 3 the prompt, ``body`` from line 4."""
    return "cases:\n  - id: paris\n    prompt: The capital of France is\n" + body


# (fixture, the text marking the line the error must point at, the message after "suite.yaml:LINE: ")
YAML_ERRORS = {
    "unknown case key": (
        _yaml_case("    track: ' Paris'\n    expct:\n      final_top1: ' Paris'\n"),
        "expct:",
        "case 'paris': unknown key 'expct' in case (did you mean 'expect'?)",
    ),
    "unknown expect key": (
        _yaml_case("    expect:\n      final_top: ' Paris'\n"),
        "final_top:",
        "case 'paris': unknown key 'final_top' in expect (did you mean 'final_top1'?)",
    ),
    "unknown key, no close match": (
        _yaml_case("    colour: red\n"),
        "colour",
        "case 'paris': unknown key 'colour' in case (allowed: id, prompt, description, raw, top_k, track, "
        "expect, expect_base, expect_tuned, no_regression_of, tolerance, group, changes_only_in_layers, "
        "answer, generate, stop)",
    ),
    "unknown top-level key": (
        "nmae: x\ncases:\n  - {id: a, prompt: p}\n",
        "nmae",
        "unknown key 'nmae' at the top level (did you mean 'name'?)",
    ),
    "unknown defaults key": (
        "defaults:\n  raw: true\n  topk: 3\ncases:\n  - {id: a, prompt: p}\n",
        "topk",
        "unknown key 'topk' in defaults (did you mean 'top_k'?)",
    ),
    "probability not a number": (
        _yaml_case("    track: ' Paris'\n    expect:\n      final_prob_at_least: high\n"),
        "high",
        "case 'paris': expect.final_prob_at_least must be a number between 0 and 1, got 'high'",
    ),
    "probability out of range in a mapping": (
        _yaml_case("    expect_base:\n      final_prob_at_most:\n        ' Paris': 1.5\n"),
        "1.5",
        "case 'paris': expect_base.final_prob_at_most[' Paris'] must be a number between 0 and 1, got 1.5",
    ),
    "probability is a bool": (
        _yaml_case("    track: x\n    expect:\n      final_prob_at_least: true\n"),
        "true",
        "case 'paris': expect.final_prob_at_least must be a number between 0 and 1, got true",
    ),
    "scalar form without track": (
        _yaml_case("    expect:\n      emerges_by_layer: 20\n"),
        "emerges_by_layer",
        "case 'paris': expect.emerges_by_layer without a token is about the case's target (its first tracked "
        "token), but the case tracks nothing: add 'track' or write {TOKEN: value}",
    ),
    "negative layer": (
        _yaml_case("    track: x\n    expect:\n      emerges_by_layer: -1\n"),
        "-1",
        "case 'paris': expect.emerges_by_layer must be a layer index >= 0, got -1",
    ),
    "float layer above 1": (
        _yaml_case("    track: x\n    expect:\n      emerges_by_layer: 20.0\n"),
        "20.0",
        "case 'paris': expect.emerges_by_layer: a relative depth must be between 0.0 and 1.0, got 20.0 "
        "(write an integer like 20 for an absolute layer)",
    ),
    "percentage above 100": (
        _yaml_case("    expect:\n      emerges_by_layer: {' Paris': '150%'}\n"),
        "150%",
        "case 'paris': expect.emerges_by_layer[' Paris'] must be a layer index (integer >= 0), a relative depth "
        "(0.0 to 1.0) or a percentage like '75%', got '150%'",
    ),
    "top_k zero": (
        _yaml_case("    top_k: 0\n"),
        "top_k",
        "case 'paris': top_k must be an integer >= 1, got 0",
    ),
    "top_k bool": (
        _yaml_case("    top_k: true\n"),
        "top_k",
        "case 'paris': top_k must be an integer >= 1, got true",
    ),
    "top_k string": (
        "defaults:\n  top_k: '5'\ncases:\n  - {id: a, prompt: p}\n",
        "top_k",
        "defaults.top_k must be an integer >= 1, got '5'",
    ),
    "raw as a quoted string": (
        _yaml_case("    raw: 'yes'\n"),
        "raw",
        "case 'paris': raw must be true or false, got 'yes'",
    ),
    "track item not a string": (
        _yaml_case("    track:\n      - ' Paris'\n      - 3\n"),
        "- 3",
        "case 'paris': track[1] must be a token string, got 3 (quote it)",
    ),
    "track listed twice": (
        _yaml_case("    track: [' Paris', ' Paris']\n"),
        "track",
        "case 'paris': track lists ' Paris' twice",
    ),
    "final_top1 number": (
        _yaml_case("    expect: {final_top1: 42}\n"),
        "final_top1",
        "case 'paris': expect.final_top1 must be a token string, got 42 (quote it)",
    ),
    "token read as a boolean": (
        _yaml_case("    expect:\n      not_top1: [' yes', no]\n"),
        "not_top1",
        "case 'paris': expect.not_top1[1] must be a token string, got false (quote it)",
    ),
    "not_top1 empty list": (
        _yaml_case("    expect: {not_top1: []}\n"),
        "not_top1",
        "case 'paris': expect.not_top1 must be a token or a non-empty list of tokens, got an empty list",
    ),
    "token key not a string": (
        _yaml_case("    expect:\n      final_prob_at_least:\n        1: 0.5\n"),
        "1: 0.5",
        "case 'paris': keys must be strings, got 1 in expect.final_prob_at_least (quote it)",
    ),
    "missing id": (
        "cases:\n  - id: a\n    prompt: p\n  - prompt: q\n",
        "prompt: q",
        "case #2: missing required key 'id'",
    ),
    "missing prompt": (
        _yaml_case("").replace("    prompt: The capital of France is\n", "    raw: true\n"),
        "id: paris",
        "case 'paris': missing required key 'prompt'",
    ),
    "blank prompt": (
        "- id: a\n  prompt: '   '\n",
        "prompt",
        "case 'a': prompt must not be empty",
    ),
    "id not a string": (
        "- id: 123\n  prompt: p\n",
        "id: 123",
        "case #1: id must be a string, got 123",
    ),
    "case not a mapping": (
        "- id: a\n  prompt: p\n- just a prompt\n",
        "just a prompt",
        "case #2: a case must be a mapping with 'id' and 'prompt', got 'just a prompt'",
    ),
    "duplicate case id": (
        "- id: paris\n  prompt: p\n- id: london\n  prompt: q\n- id: paris\n  prompt: r\n",
        "id: paris",  # the second occurrence is checked below
        "duplicate case id 'paris' (first at line 1)",
    ),
    "duplicate key in a case": (
        _yaml_case("    track: x\n    prompt: again\n"),
        "prompt: again",
        "case 'paris': duplicate key 'prompt' in case (first at line 3)",
    ),
    "duplicate key in expect": (
        _yaml_case("    track: x\n    expect:\n      final_top1: ' Paris'\n      final_top1: ' Lyon'\n"),
        "' Lyon'",
        "case 'paris': duplicate key 'final_top1' in expect (first at line 6)",
    ),
    "duplicate token in a mapping": (
        _yaml_case("    expect:\n      final_prob_at_least: {' Paris': 0.1, ' Paris': 0.2}\n"),
        "0.2",
        "case 'paris': duplicate key ' Paris' in expect.final_prob_at_least (first at line 5)",
    ),
    "duplicate top-level key": (
        "cases:\n  - {id: a, prompt: p}\ncases:\n  - {id: b, prompt: q}\n",
        "cases:",  # the second occurrence is checked below
        "duplicate key 'cases' at the top level (first at line 1)",
    ),
    "empty expect_base": (
        _yaml_case("    expect_base:\n    track: x\n"),
        "expect_base",
        "case 'paris': expect_base is empty (give at least one expectation, or remove it)",
    ),
    "empty expect mapping": (
        _yaml_case("    expect: {}\n"),
        "expect",
        "case 'paris': expect is empty (give at least one expectation, or remove it)",
    ),
    "expect is a list": (
        _yaml_case("    expect:\n      - final_top1: x\n"),
        "- final_top1",
        "case 'paris': expect must be a mapping, got a list",
    ),
    "empty no_regression_of": (
        _yaml_case("    no_regression_of: []\n"),
        "no_regression_of",
        "case 'paris': no_regression_of is empty (name at least one of final_prob, final_top1, emergence, "
        "answer_logprob, or remove it)",
    ),
    "unknown metric": (
        _yaml_case("    track: x\n    no_regression_of: [final_prob, final_probability]\n"),
        "no_regression_of",
        "case 'paris': no_regression_of[1] must be one of final_prob, final_top1, emergence, answer_logprob, "
        "got 'final_probability'",
    ),
    "unknown metric in a mapping": (
        _yaml_case("    track: x\n    no_regression_of:\n      emergance: 0.1\n"),
        "emergance",
        "case 'paris': unknown key 'emergance' in no_regression_of (did you mean 'emergence'?)",
    ),
    "metric twice": (
        _yaml_case("    track: x\n    no_regression_of: [final_top1, final_top1]\n"),
        "no_regression_of",
        "case 'paris': no_regression_of lists 'final_top1' twice",
    ),
    "final_top1 tolerance": (
        _yaml_case("    no_regression_of: {final_top1: 0.1}\n"),
        "no_regression_of",
        "case 'paris': no_regression_of.final_top1 takes no tolerance (write 'final_top1: null' or 0)",
    ),
    "negative tolerance": (
        _yaml_case("    track: x\n    no_regression_of:\n      final_prob: -0.1\n"),
        "-0.1",
        "case 'paris': no_regression_of.final_prob must be a number between 0 and 1 (100%), got -0.1",
    ),
    "emergence tolerance above 100%": (  # "emerges by depth 110%" allows anything
        _yaml_case("    track: x\n    no_regression_of:\n      emergence: 1.1\n"),
        "1.1",
        "case 'paris': no_regression_of.emergence must be a number between 0 and 1 (100%), got 1.1",
    ),
    "no_regression without a target": (
        _yaml_case("    no_regression_of:\n      - final_top1\n      - emergence\n"),
        "- emergence",
        "case 'paris': no_regression_of emergence is about the case's target (its first tracked token), "
        "but the case tracks nothing: add 'track'",
    ),
    "tolerance without no_regression_of": (
        _yaml_case("    track: x\n    tolerance: 0.1\n"),
        "tolerance",
        "case 'paris': tolerance is only used by no_regression_of, which this case lacks",
    ),
    "merge key": (
        "- &base {id: a, prompt: p}\n- <<: *base\n  id: b\n",
        "<<",
        "case 'b': keys must be strings, got a YAML merge key '<<' (not supported: write the keys out) in case",
    ),
    "timestamp value": (
        "- id: a\n  prompt: 2024-01-01\n",
        "prompt",
        "case 'a': prompt must be a string, got date '2024-01-01'",
    ),
    "cases not a list": (
        "cases:\n  id: a\n  prompt: p\n",
        "id: a",
        "cases must be a list of cases, got a mapping",
    ),
    "no cases": (
        "name: empty\ncases: []\n",
        "cases",
        "cases has no cases (a suite needs at least one)",
    ),
    "missing cases": (
        "name: x\ndefaults: {raw: true}\n",
        "name",
        "missing key 'cases' at the top level (the list of cases)",
    ),
    "empty bare list": ("[]\n", "[]", "the file has no cases (a suite needs at least one)"),
    "top-level scalar": (
        "just some text\n",
        "just",
        "a suite file must be a mapping with 'cases' or a list of cases, got 'just some text'",
    ),
    "one case, not a list": (
        "id: a\nprompt: p\n",
        "id: a",
        "this looks like a single case, but a YAML suite is a list of cases (start each with '- ') "
        "or a mapping with 'cases'",
    ),
    "empty name": ("name: ''\ncases:\n  - {id: a, prompt: p}\n", "name", "name must not be empty"),
    "invalid YAML": (
        "cases:\n  - id: a\n    prompt: [unclosed\n  - id: b\n",
        "- id: b",
        "invalid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence started at line 3)",
    ),
    "bad indentation": (
        "cases:\n  - id: a\n    prompt: p\n   track: x\n",
        "track",
        "invalid YAML: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block collection started at line 2)",
    ),
    "two documents": (
        "- {id: a, prompt: p}\n---\n- {id: b, prompt: q}\n",
        "---",
        "invalid YAML: expected a single document in the stream, but found another document",
    ),
    "empty file": ("", None, "the file is empty (a suite needs at least one case)"),
    "whitespace only": ("  \n\n", None, "the file is empty (a suite needs at least one case)"),
    "comments only": (
        "# nothing yet\n",
        None,
        "the file has no content, only comments (a suite needs at least one case)",
    ),
}


@pytest.mark.parametrize("name", list(YAML_ERRORS))
def test_yaml_errors_name_file_line_and_key(name):
    text, marker, message = YAML_ERRORS[name]
    nth = 2 if name in ("duplicate case id", "duplicate top-level key") else 1
    line = 1 if marker is None else line_of(text, marker, nth)
    assert error_of(text) == f"suite.yaml:{line}: {message}"


JSONL_ERRORS = {
    "invalid JSON": (
        '{"id": "a", "prompt": "p"}\n{"id": "b", "prompt": "q",}\n',
        2,
        "invalid JSON: Expecting property name enclosed in double quotes (column 27)",
    ),
    "line not an object": (
        '{"id": "a", "prompt": "p"}\n\n["b", "q"]\n',
        3,
        "each line of a JSONL suite must be one case (a JSON object), got a list",
    ),
    "NaN": (
        '{"id": "a", "prompt": "p", "track": "x", "expect": {"final_prob_at_least": NaN}}\n',
        1,
        "invalid JSON: NaN is not a valid JSON number",
    ),
    "duplicate id": (
        '{"id": "x", "prompt": "p"}\n{"id": "paris", "prompt": "p"}\n\n\n{"id": "y", "prompt": "p"}\n'
        '\n{"id": "paris", "prompt": "q"}\n',
        7,
        "duplicate case id 'paris' (first at line 2)",
    ),
    "duplicate key": (
        '{"id": "a", "prompt": "p", "raw": true, "raw": false}\n',
        1,
        "case 'a': duplicate key 'raw' in case (first at line 1)",
    ),
    "unknown key": (
        '{"id": "a", "prompt": "p"}\n{"id": "b", "promt": "p"}\n',
        2,
        "case 'b': unknown key 'promt' in case (did you mean 'prompt'?)",
    ),
    "wrong type": ('{"id": "a", "prompt": "p", "top_k": 2.5}\n', 1, "case 'a': top_k must be an integer >= 1, got 2.5"),
    "blank lines only": ("\n   \n\n", 1, "the file is empty (a suite needs at least one case)"),
}


@pytest.mark.parametrize("name", list(JSONL_ERRORS))
def test_jsonl_errors_name_file_line_and_key(name):
    text, line, message = JSONL_ERRORS[name]
    assert error_of(text, "suite.jsonl") == f"suite.jsonl:{line}: {message}"


def test_suite_file_error_is_a_lazarus_error_with_parts():
    with pytest.raises(LazarusError) as info:
        parse_suite("- id: a\n", "s.yaml")
    err = info.value
    assert isinstance(err, SuiteFileError)
    assert (err.path, err.line, err.message) == ("s.yaml", 1, "case 'a': missing required key 'prompt'")


def test_first_error_wins():
    text = "- id: a\n  prompt: p\n  top_k: 0\n  raw: maybe\n- id: a\n  prompt: q\n"
    assert error_of(text) == "suite.yaml:3: case 'a': top_k must be an integer >= 1, got 0"


# --- files ------------------------------------------------------------------------------------


def test_load_suite_reads_bytes_and_hashes_them(tmp_path):
    path = tmp_path / "capitals.yaml"
    data = FULL_YAML.replace("\n", "\r\n").encode()
    path.write_bytes(data)
    suite = load_suite(path)
    assert suite.path == str(path)
    assert suite.sha256 == hashlib.sha256(data).hexdigest()
    assert suite.name == "capitals" and len(suite.cases) == 3
    assert load_suite(str(path)).cases == suite.cases


def test_load_suite_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("- id: a\n  prompt: p\n- id: b\n  prompt: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(SuiteFileError) as info:
        load_suite(path)
    assert str(info.value) == f"{path}:4: not UTF-8 text (byte 0xe9); save the file as UTF-8"


def test_load_suite_missing_file_and_directory(tmp_path):
    with pytest.raises(SuiteFileError, match=r"nope\.yaml: no such file$"):
        load_suite(tmp_path / "nope.yaml")
    with pytest.raises(SuiteFileError) as info:
        load_suite(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a suite file"


@pytest.mark.slow  # a fresh process
def test_modules_import_without_heavy_dependencies():
    code = (
        "import sys\n"
        "import lazarus_report.suites.spec, lazarus_report.suites.checks\n"
        "heavy = [m for m in ('yaml', 'mlx', 'numpy', 'jsonschema', 'mlx_lm') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from lazarus_report.suites.spec import parse_suite\n"
        'parse_suite(\'{"id": "a", "prompt": "p"}\', \'x.jsonl\')\n'
        "assert 'yaml' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the JSON Schema ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict:
    if jsonschema is None:
        pytest.skip("jsonschema is not installed (it is in the test extra)")
    return json.loads(schema_path().read_text(encoding="utf-8"))


def _validator(schema: dict, ref: str | None = None) -> jsonschema.Draft202012Validator:
    if ref is not None:
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": ref}
    return jsonschema.Draft202012Validator(schema)


def _draft7_validator(schema: dict) -> jsonschema.Draft7Validator:
    """How editors that implement only draft-07 (yaml-language-server) read the schema."""
    return jsonschema.Draft7Validator({k: v for k, v in schema.items() if k != "$schema"})


def test_schema_is_a_valid_draft_2020_12_schema(schema):
    assert schema_path().is_file()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


VALID_YAML = {
    "full": FULL_YAML,
    "bare list": BARE_LIST_YAML,
    "defaults": "defaults: {track: x, tolerance: 0}\ncases:\n  - {id: a, prompt: p, no_regression_of: final_prob}\n",
    "layers": "- id: a\n  prompt: p\n  track: x\n  expect: {emerges_by_layer: {x: 0, y: 0.5, z: '62.5%', w: '100%'}}\n",
    "not_top1 scalar": "- {id: a, prompt: p, expect: {not_top1: ' the'}}\n",
    "final_top1 zero": "- {id: a, prompt: p, no_regression_of: {final_top1: 0}}\n",
}


@pytest.mark.parametrize("name", list(VALID_YAML))
def test_valid_yaml_fixtures_validate_against_the_schema(schema, name):
    text = VALID_YAML[name]
    parse_suite(text, "s.yaml")
    _validator(schema).validate(yaml.safe_load(text))
    _draft7_validator(schema).validate(yaml.safe_load(text))


def test_valid_jsonl_lines_validate_against_the_case_definition(schema):
    validator = _validator(schema, "#/$defs/case")
    parse_suite(JSONL, "s.jsonl")
    for line in JSONL.splitlines():
        if line.strip():
            validator.validate(json.loads(line))


# Invalid suites both the schema and the parser must reject (a case body, or a whole YAML file).
INVALID = {
    "unknown case key": "- {id: a, prompt: p, expct: {final_top1: x}}",
    "unknown expect key": "- {id: a, prompt: p, expect: {final_top: x}}",
    "unknown top-level key": "nmae: x\ncases: [{id: a, prompt: p}]",
    "unknown defaults key": "defaults: {topk: 3}\ncases: [{id: a, prompt: p}]",
    "missing id": "- {prompt: p}",
    "missing prompt": "- {id: a}",
    "empty id": "- {id: '', prompt: p}",
    "blank prompt": "- {id: a, prompt: '  '}",
    "id not a string": "- {id: 7, prompt: p}",
    "prompt a list": "- {id: a, prompt: [p]}",
    "raw a string": "- {id: a, prompt: p, raw: 'true'}",
    "raw a number": "- {id: a, prompt: p, raw: 1}",
    "top_k zero": "- {id: a, prompt: p, top_k: 0}",
    "top_k float": "- {id: a, prompt: p, top_k: 2.5}",
    "top_k bool": "- {id: a, prompt: p, top_k: true}",
    "track number": "- {id: a, prompt: p, track: 3}",
    "track empty token": "- {id: a, prompt: p, track: ['']}",
    "track duplicate": "- {id: a, prompt: p, track: [x, x]}",
    "final_top1 number": "- {id: a, prompt: p, expect: {final_top1: 1}}",
    "final_top1 empty": "- {id: a, prompt: p, expect: {final_top1: ''}}",
    "not_top1 empty list": "- {id: a, prompt: p, expect: {not_top1: []}}",
    "not_top1 mapping": "- {id: a, prompt: p, expect: {not_top1: {x: 1}}}",
    "probability string": "- {id: a, prompt: p, track: x, expect: {final_prob_at_least: high}}",
    "probability above 1": "- {id: a, prompt: p, track: x, expect: {final_prob_at_least: 1.5}}",
    "probability negative": "- {id: a, prompt: p, track: x, expect: {final_prob_at_most: -0.1}}",
    "probability mapping out of range": "- {id: a, prompt: p, expect: {final_prob_at_most: {x: 2}}}",
    "probability empty mapping": "- {id: a, prompt: p, expect: {final_prob_at_least: {}}}",
    "probability empty token": "- {id: a, prompt: p, expect: {final_prob_at_least: {'': 0.5}}}",
    "layer negative": "- {id: a, prompt: p, track: x, expect: {emerges_by_layer: -1}}",
    "depth above 1": "- {id: a, prompt: p, track: x, expect: {emerges_by_layer: 1.5}}",
    "percent above 100": "- {id: a, prompt: p, track: x, expect: {emerges_by_layer: '150%'}}",
    "percent malformed": "- {id: a, prompt: p, track: x, expect: {emerges_by_layer: '75 %'}}",
    "layer a word": "- {id: a, prompt: p, track: x, expect: {emerges_by_layer: late}}",
    "layer bool": "- {id: a, prompt: p, track: x, expect: {emerges_by_layer: true}}",
    "empty expect": "- {id: a, prompt: p, expect: {}}",
    "null expect": "- {id: a, prompt: p, expect: null}",
    "expect a list": "- {id: a, prompt: p, expect: [final_top1]}",
    "unknown metric": "- {id: a, prompt: p, track: x, no_regression_of: final_probability}",
    "empty metric list": "- {id: a, prompt: p, no_regression_of: []}",
    "metric twice": "- {id: a, prompt: p, track: x, no_regression_of: [final_prob, final_prob]}",
    "final_top1 tolerance": "- {id: a, prompt: p, no_regression_of: {final_top1: 0.1}}",
    "final_top1 true": "- {id: a, prompt: p, no_regression_of: {final_top1: true}}",
    "negative tolerance": "- {id: a, prompt: p, track: x, no_regression_of: {final_prob: -1}}",
    "tolerance string": "- {id: a, prompt: p, track: x, no_regression_of: final_prob, tolerance: low}",
    "tolerance alone": "- {id: a, prompt: p, track: x, tolerance: 0.1}",
    "defaults tolerance negative": "defaults: {tolerance: -0.5}\ncases: [{id: a, prompt: p}]",
    "defaults raw string": "defaults: {raw: 'no'}\ncases: [{id: a, prompt: p}]",
    "description number": "- {id: a, prompt: p, description: 3}",
    "empty case list": "cases: []",
    "cases missing": "name: x",
    "name empty": "name: ''\ncases: [{id: a, prompt: p}]",
    "case a string": "- just a prompt",
    "top-level number": "42",
}


@pytest.mark.parametrize("name", list(INVALID))
def test_invalid_fixtures_are_rejected_by_schema_and_parser(schema, name):
    text = INVALID[name]
    assert not _validator(schema).is_valid(yaml.safe_load(text)), "the schema accepts it"
    assert not _draft7_validator(schema).is_valid(yaml.safe_load(text)), "the schema read as draft-07 accepts it"
    with pytest.raises(SuiteFileError):
        parse_suite(text, "s.yaml")


@pytest.mark.parametrize("name", [n for n, t in INVALID.items() if t.startswith("- {")])
def test_invalid_cases_as_jsonl_are_rejected_by_schema_and_parser(schema, name):
    case = yaml.safe_load(INVALID[name])[0]
    line = json.dumps(case)
    assert not _validator(schema, "#/$defs/case").is_valid(json.loads(line))
    with pytest.raises(SuiteFileError):
        parse_suite(line + "\n", "s.jsonl")


# --- whole answers (issue 19): answer / generate / stop and the answer expectations -------------------

ANSWER_YAML = """\
cases:
  - id: weather
    prompt: What is the weather in Paris?
    answer: 'get_weather(city="Paris")'
    expect:
      answer_top1: true
      answer_logprob_at_least: -2.5
      answer_emerges_by_layer: 75%
    no_regression_of: [answer_logprob, final_top1]
  - id: written
    prompt: Call the weather tool for Paris.
    generate: 16
    stop: ")"
    expect_tuned:
      generated_startswith: get_weather(
      generated_matches: 'city="?Paris'
      answer_emerges_by_layer: 20
    no_regression_of: final_top1
"""


def test_answer_cases_parse_into_specs():
    weather, written = parse_suite(ANSWER_YAML, "s.yaml").cases
    assert (weather.answer, weather.generate, weather.stop) == ('get_weather(city="Paris")', None, [])
    assert [(e.check, e.side, e.value, e.tolerance, e.line) for e in weather.expectations] == [
        ("answer_top1", "all", True, None, 6),
        ("answer_logprob_at_least", "all", -2.5, None, 7),
        ("answer_emerges_by_layer", "all", 0.75, None, 8),
        ("no_regression", "comparison", "answer_logprob", 0.5, 9),
        ("no_regression", "comparison", "final_top1", None, 9),
    ]
    assert weather.track == []  # an answer needs no tracked token
    assert (written.answer, written.generate, written.stop) == (None, 16, [")"])
    assert [(e.check, e.side, e.value) for e in written.expectations] == [
        ("generated_startswith", "tuned", "get_weather("),
        ("generated_matches", "tuned", 'city="?Paris'),
        ("answer_emerges_by_layer", "tuned", 20),
        ("no_regression", "comparison", "final_top1"),
    ]
    explicit = parse_suite(
        "- {id: a, prompt: p, answer: ' x', no_regression_of: {answer_logprob: 2}}\n", "s.yaml"
    ).cases[0]
    assert explicit.expectations[0].tolerance == 2.0
    jsonl = parse_suite('{"id": "a", "prompt": "p", "generate": 4, "stop": ["\\n", "."]}\n', "s.jsonl").cases[0]
    assert (jsonl.generate, jsonl.stop) == (4, ["\n", "."])


ANSWER_ERRORS = {
    "empty answer": (
        _yaml_case("    answer: ''\n"),
        "answer:",
        "case 'paris': answer must not be an empty string (remove it, or use generate: N)",
    ),
    "answer a number": (_yaml_case("    answer: 42\n"), "answer:", "case 'paris': answer must be a string, got 42"),
    "answer and generate": (
        _yaml_case("    answer: ' Paris'\n    generate: 3\n"),
        "generate:",
        "case 'paris': answer and generate exclude each other (answer: a given text read by the lens; "
        "generate: the model writes its own)",
    ),
    "generate zero": (
        _yaml_case("    generate: 0\n"),
        "generate:",
        "case 'paris': generate must be a whole number of tokens >= 1, got 0",
    ),
    "generate a float": (
        _yaml_case("    generate: 2.5\n"),
        "generate:",
        "case 'paris': generate must be a whole number of tokens >= 1, got 2.5",
    ),
    "stop without generate": (
        _yaml_case("    answer: x\n    stop: ')'\n"),
        "stop:",
        "case 'paris': stop is only used with generate: N, which this case lacks",
    ),
    "stop empty string": (
        _yaml_case("    generate: 3\n    stop: ['.', '']\n"),
        "''",
        "case 'paris': stop[1] must not be an empty string",
    ),
    "answer check without an answer": (
        _yaml_case("    expect:\n      answer_top1: true\n"),
        "answer_top1",
        "case 'paris': answer_top1 is about the case's answer: add 'answer: TEXT' or 'generate: N'",
    ),
    "generated check on a teacher-forced answer": (
        _yaml_case("    answer: ' Paris'\n    expect:\n      generated_startswith: ' Paris'\n"),
        "generated_startswith",
        "case 'paris': generated_startswith checks what the model writes: add 'generate: N' to the case",
    ),
    "answer_top1 false": (
        _yaml_case("    answer: x\n    expect:\n      answer_top1: false\n"),
        "answer_top1",
        "case 'paris': expect.answer_top1 takes true (remove it to not check), got false",
    ),
    "positive log-probability": (
        _yaml_case("    answer: x\n    expect:\n      answer_logprob_at_least: 0.5\n"),
        "answer_logprob",
        "case 'paris': expect.answer_logprob_at_least must be a natural log-probability <= 0 (e.g. -2.5 for a "
        "sequence probability of about 8%), got 0.5",
    ),
    "answer depth above 1": (
        _yaml_case("    answer: x\n    expect:\n      answer_emerges_by_layer: 1.5\n"),
        "answer_emerges",
        "case 'paris': expect.answer_emerges_by_layer: a relative depth must be between 0.0 and 1.0, got 1.5 "
        "(write an integer like 1 for an absolute layer)",
    ),
    "bad regular expression": (
        _yaml_case("    generate: 8\n    expect:\n      generated_matches: 'get_weather(city'\n"),
        "generated_matches",
        "case 'paris': expect.generated_matches is not a valid regular expression: missing ), unterminated "
        "subpattern (at character 11)",
    ),
    "empty startswith": (
        _yaml_case("    generate: 8\n    expect:\n      generated_startswith: ''\n"),
        "generated_startswith",
        "case 'paris': expect.generated_startswith must not be an empty string",
    ),
    "answer_logprob regression on generated answers": (
        _yaml_case("    generate: 8\n    no_regression_of: answer_logprob\n"),
        "no_regression_of",
        "case 'paris': no_regression_of answer_logprob compares both models on the same text: add 'answer: "
        "TEXT' (with generate each model writes its own)",
    ),
    "negative answer_logprob tolerance": (
        _yaml_case("    answer: x\n    no_regression_of: {answer_logprob: -1}\n"),
        "no_regression_of",
        "case 'paris': no_regression_of.answer_logprob must be a tolerance in nats >= 0 (how far the tuned "
        "model's answer log-probability may fall below the base's), got -1",
    ),
}


@pytest.mark.parametrize("name", list(ANSWER_ERRORS))
def test_answer_errors_name_file_line_and_key(name):
    text, marker, message = ANSWER_ERRORS[name]
    assert error_of(text) == f"suite.yaml:{line_of(text, marker)}: {message}"


def test_answer_suite_validates_against_the_schema(schema):
    _validator(schema).validate(yaml.safe_load(ANSWER_YAML))
    _draft7_validator(schema).validate(yaml.safe_load(ANSWER_YAML))


ANSWER_INVALID = {
    "answer and generate": "- {id: a, prompt: p, answer: x, generate: 3}",
    "empty answer": "- {id: a, prompt: p, answer: ''}",
    "generate zero": "- {id: a, prompt: p, generate: 0}",
    "stop alone": "- {id: a, prompt: p, stop: x}",
    "stop empty list": "- {id: a, prompt: p, generate: 2, stop: []}",
    "answer_top1 false": "- {id: a, prompt: p, answer: x, expect: {answer_top1: false}}",
    "positive logprob bound": "- {id: a, prompt: p, answer: x, expect: {answer_logprob_at_least: 1}}",
    "answer depth 150%": "- {id: a, prompt: p, answer: x, expect: {answer_emerges_by_layer: '150%'}}",
    "empty startswith": "- {id: a, prompt: p, generate: 3, expect: {generated_startswith: ''}}",
    "negative answer tolerance": "- {id: a, prompt: p, answer: x, no_regression_of: {answer_logprob: -1}}",
}


@pytest.mark.parametrize("name", list(ANSWER_INVALID))
def test_invalid_answer_cases_are_rejected_by_schema_and_parser(schema, name):
    text = ANSWER_INVALID[name]
    assert not _validator(schema).is_valid(yaml.safe_load(text)), "the schema accepts it"
    assert not _draft7_validator(schema).is_valid(yaml.safe_load(text)), "the schema read as draft-07 accepts it"
    with pytest.raises(SuiteFileError):
        parse_suite(text, "s.yaml")
