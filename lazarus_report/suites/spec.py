"""Suite files: reading and validating a prompt suite (YAML or JSONL) into plain specs.

Conventions, stated once:

* Every error is a ``SuiteFileError`` whose text is one line, ``{path}:{line}: {message}``: ``path`` as
  given, ``line`` 1-based and pointing at the offending key (or value). Messages name the case (by id,
  or ``case #N`` when it has no usable id) and the key path (``expect.final_prob_at_least[' Paris']``).
  The first problem found is raised; nothing is loaded before the whole file is valid.
* User text in messages (ids, keys, tokens, bad values) is quoted with ``repr`` so whitespace shows.
* A case's *target* is its first explicitly tracked token (``track``, or ``defaults.track``). Scalar
  forms of ``final_prob_at_least`` / ``final_prob_at_most`` / ``emerges_by_layer`` and the
  ``final_prob`` / ``emergence`` regression metrics are about the target. Tokens named in mapping forms
  are added to the case's track list after the explicit ones, in file order.
* ``emerges_by_layer`` and ``answer_emerges_by_layer``: an ``int`` is an absolute 0-based layer; a ``float``
  (``0.0``..``1.0``) or a ``"NN%"`` string is a relative depth ``layer / (num_layers - 1)``.
* A case's *answer* follows its prompt: ``answer: TEXT`` (teacher-forced: the lens reads every token of it) or
  ``generate: N`` (the model writes up to N tokens greedily, ``stop:`` strings end it early). ``answer_*``
  expectations need one of them; ``generated_*`` expectations and ``stop`` need ``generate``;
  ``no_regression_of: answer_logprob`` needs ``answer`` (both models read the same text).

The YAML is composed (``yaml.compose``) rather than loaded, so every value keeps its line and duplicate
mapping keys (which ``yaml.safe_load`` silently collapses) are errors. PyYAML is imported only when a
YAML file is read. This module imports nothing heavy (no MLX, no numpy).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from lazarus_report.core.errors import LazarusError

METRICS = ("final_prob", "final_top1", "emergence", "answer_logprob")
ANSWER_CHECKS = ("answer_top1", "answer_logprob_at_least", "answer_emerges_by_layer")
GENERATED_CHECKS = ("generated_startswith", "generated_matches")
DEFAULT_TOP_K = 5
DEFAULT_TOLERANCE = 0.05  # no_regression_of final_prob
DEFAULT_EMERGENCE_TOLERANCE = 0.0  # no_regression_of emergence (relative depth)
DEFAULT_ANSWER_LOGPROB_TOLERANCE = 0.5  # no_regression_of answer_logprob (nats of the sequence log-probability)

TOP_LEVEL_KEYS = ("name", "description", "defaults", "cases", "max_drift_js")
DRIFT_LIMIT_KEYS = ("layers", "js", "stat")
DRIFT_STATS = ("mean", "p90", "p99", "max")  # max_drift_js: which statistic over the corpus positions
DEFAULTS_KEYS = ("raw", "top_k", "track", "tolerance", "group", "changes_only_in_layers", "lens")
CASE_KEYS = (
    "id", "prompt", "description", "raw", "top_k", "track",
    "expect", "expect_base", "expect_tuned", "no_regression_of", "tolerance", "group", "changes_only_in_layers",
    "answer", "generate", "stop",
)  # fmt: skip
EXPECT_KEYS = (
    "final_top1", "not_top1", "final_prob_at_least", "final_prob_at_most", "emerges_by_layer",
    *ANSWER_CHECKS, *GENERATED_CHECKS,
)  # fmt: skip
BLOCK_SIDES = {"expect": "all", "expect_base": "base", "expect_tuned": "tuned"}

# "22-29", "0-3, 7": the same pattern is in the JSON Schema.
LAYER_SET_RE = re.compile(r"^ *[0-9]+( *- *[0-9]+)?( *, *[0-9]+( *- *[0-9]+)?)* *$")
# "75%", "62.5%", "100%": the same pattern is in the JSON Schema.
PERCENT_RE = re.compile(r"^(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)%$")

YAML_SUFFIXES = (".yaml", ".yml")
MAX_YAML_VALUES = 100_000  # plus the file's length: more values than that come only from aliases
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
JSONL_SUFFIXES = (".jsonl", ".ndjson")


class SuiteFileError(LazarusError):
    """A suite file that cannot be used, described in one line: ``{path}:{line}: {message}``."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        super().__init__(f"{path}:{line}: {message}" if line is not None else f"{path}: {message}")


@dataclass(frozen=True)
class Expectation:
    """One check written in a case.

    ``side``: ``"all"`` (``expect``: every model of the run), ``"base"`` (``expect_base``: model 1),
    ``"tuned"`` (``expect_tuned``: model 2) or ``"comparison"`` (``no_regression_of``).
    ``token``: final_top1 / not_top1: the expected / forbidden top-1 token; final_prob_* and
    emerges_by_layer: the tracked token; no_regression: the target (None for metric ``final_top1``).
    ``value``: final_prob_*: the bound (float); emerges_by_layer and answer_emerges_by_layer: ``int`` absolute
    layer or ``float`` relative depth in [0, 1]; no_regression: the metric name; final_top1 / not_top1: None;
    answer_top1: True; answer_logprob_at_least: the bound (natural log, <= 0); generated_startswith: the text;
    generated_matches: the regular expression (checked at load time, searched anywhere in the generated text).
    ``tolerance``: no_regression only (None for metric ``final_top1``; nats for ``answer_logprob``).
    """

    check: str
    side: str
    token: str | None
    value: Any
    tolerance: float | None
    line: int


@dataclass(frozen=True)
class CaseSpec:
    """One validated case with defaults merged in. ``track`` is what the runner must track."""

    id: str
    prompt: str
    raw: bool  # True: the prompt is used as is; False: the chat template is applied when there is one
    top_k: int
    track: list[str]  # explicit tokens first (track[0] is the target), then tokens named in expectations
    description: str | None
    expectations: list[Expectation]  # in file order; a not_top1 list gives one per token
    line: int  # where the case starts
    group: str | None = None  # the case's ``group`` (e.g. "intended", "collateral"), for grouping in reports
    answer: str | None = None  # teacher-forced answer after the prompt (read token by token)
    generate: int | None = None  # the model writes up to this many tokens greedily
    stop: list[str] = field(default_factory=list)  # generate: stop strings (the first one found ends the answer)

    @property
    def target(self) -> str | None:
        return self.track[0] if self.track else None


@dataclass(frozen=True)
class DriftLimit:
    """``max_drift_js``: on neutral text (``suite --drift``), JS(base, tuned) at every captured layer of ``layers``
    stays at or below ``js`` nats; ``stat``: the statistic over the corpus positions (``DRIFT_STATS``)."""

    layers: list[int]
    js: float
    stat: str
    line: int


@dataclass(frozen=True)
class SuiteSpec:
    """A whole suite file, validated."""

    name: str  # the file's ``name``, else the file stem
    description: str | None
    path: str  # as given
    sha256: str  # of the file's bytes
    format: str  # "yaml" | "jsonl"
    cases: list[CaseSpec]
    lens: str | None = None  # defaults.lens: "logit", "linear", "tuned" or a lens directory (relative paths resolved)
    lens_line: int | None = None  # where defaults.lens is written
    drift_limits: list[DriftLimit] = field(default_factory=list)  # the top-level max_drift_js


def verify_lens(spec: SuiteSpec) -> None:
    """``defaults.lens`` naming a lens directory: the artefact read and verified (digest, shapes, finite
    values) as the run would, as a one-line ``SuiteFileError`` at its line. Imports numpy; loads no model."""
    from ..core.config import LENS_KINDS

    if spec.lens is None or spec.lens in LENS_KINDS:
        return
    from ..lens.learned.artefact import Lens

    try:
        Lens.load(spec.lens)
    except LazarusError as exc:
        raise SuiteFileError(spec.path, spec.lens_line, f"defaults.lens: {exc}") from None


def schema_path() -> Path:
    """The JSON Schema (draft 2020-12) of suite files shipped in the package."""
    return Path(__file__).resolve().parent.parent / "schemas" / "suite.schema.json"


def load_suite(path: str | os.PathLike[str]) -> SuiteSpec:
    """Read and validate a suite file; every problem is a one-line ``SuiteFileError``."""
    shown = os.fspath(path)
    try:
        data = Path(shown).read_bytes()
    except FileNotFoundError:
        raise SuiteFileError(shown, None, "no such file") from None
    except IsADirectoryError:
        raise SuiteFileError(shown, None, "is a directory, not a suite file") from None
    except OSError as exc:
        raise SuiteFileError(shown, None, f"cannot read the file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SuiteFileError(
            shown, line, f"not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None
    return _parse(text, shown, None, hashlib.sha256(data).hexdigest())


def parse_suite(text: str, path: str, fmt: str | None = None) -> SuiteSpec:
    """Validate suite text; ``path`` names it in errors and picks the format (``fmt`` overrides)."""
    return _parse(text, path, fmt, hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest())


# --- located values -------------------------------------------------------------------------


@dataclass
class _Entry:
    key: Any  # normally a str; anything else is reported when the mapping is validated
    key_line: int
    value: _Node


@dataclass
class _Node:
    """A parsed value and the line it starts on. Mappings keep every entry, duplicates included."""

    kind: str  # "scalar" | "seq" | "map"
    value: Any  # scalar: the Python value; seq: list[_Node]; map: list[_Entry]
    line: int


class _NonStringKey:
    """A YAML key that is not a scalar (``? [a, b]``) or a merge key (``<<``)."""

    def __init__(self, description: str) -> None:
        self.description = description


def _yaml_problem(exc: Any) -> str:
    """PyYAML's problem and context in one line, e.g.
    "expected ',' or ']', but got ':' (while parsing a flow sequence started at line 3)"."""
    problem, context = getattr(exc, "problem", None), getattr(exc, "context", None)
    problem_mark, context_mark = getattr(exc, "problem_mark", None), getattr(exc, "context_mark", None)
    moved = context_mark is not None and problem_mark is not None and context_mark.line != problem_mark.line
    if context and context.startswith("while") and moved and context_mark is not None:
        context = f"{context} started at line {context_mark.line + 1}"
    if problem and context:
        text = f"{problem} ({context})" if context.startswith("while") else f"{context}, {problem}"
    else:
        text = problem or context or str(exc)
    return " ".join(str(text).split())


def _yaml_nodes(text: str, path: str) -> _Node | None:
    import yaml  # lazily: only YAML suites need it
    from yaml.constructor import SafeConstructor

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SuiteFileError(path, mark.line + 1 if mark else 1, f"invalid YAML: {_yaml_problem(exc)}") from None
    except yaml.YAMLError as exc:
        raise SuiteFileError(path, 1, f"invalid YAML: {_yaml_problem(exc)}") from None
    if root is None:
        return None
    constructor = SafeConstructor()
    active: set[int] = set()
    # Aliases share nodes, so nine nested anchors of nine aliases each (a few hundred bytes) expand
    # to 9**9 values: refuse to build more values than any alias-free file of this size could hold.
    budget = [MAX_YAML_VALUES + len(text)]

    def convert(node: Any) -> _Node:
        line = node.start_mark.line + 1
        budget[0] -= 1
        if budget[0] < 0:
            raise SuiteFileError(
                path,
                line,
                f"invalid YAML: aliases expand to more than {MAX_YAML_VALUES + len(text)} values "
                "(an alias bomb?); write the values out",
            )
        if isinstance(node, yaml.ScalarNode):
            try:
                value = constructor.construct_object(node, deep=True)
            except yaml.YAMLError as exc:
                raise SuiteFileError(path, line, f"invalid YAML: {_yaml_problem(exc)}") from None
            return _Node("scalar", value, line)
        if id(node) in active:
            raise SuiteFileError(path, line, "invalid YAML: a recursive alias (a value that contains itself)")
        active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return _Node("seq", [convert(item) for item in node.value], line)
            entries = []
            for key_node, value_node in node.value:
                key: Any
                if key_node.tag == "tag:yaml.org,2002:merge":
                    key = _NonStringKey("a YAML merge key '<<' (not supported: write the keys out)")
                elif isinstance(key_node, yaml.ScalarNode):
                    key = convert(key_node).value
                else:
                    key = _NonStringKey("a list" if isinstance(key_node, yaml.SequenceNode) else "a mapping")
                entries.append(_Entry(key, key_node.start_mark.line + 1, convert(value_node)))
            return _Node("map", entries, line)
        finally:
            active.discard(id(node))

    return convert(root)


class _Pairs(list):
    """A JSON object as its (key, value) pairs, duplicates kept."""


def _json_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a valid JSON number")


def _json_node(value: Any, line: int) -> _Node:
    if isinstance(value, _Pairs):
        return _Node("map", [_Entry(k, line, _json_node(v, line)) for k, v in value], line)
    if isinstance(value, list):
        return _Node("seq", [_json_node(v, line) for v in value], line)
    return _Node("scalar", value, line)


def _jsonl_nodes(text: str, path: str) -> list[_Node]:
    nodes = []
    for number, raw_line in enumerate(text.split("\n"), start=1):
        if not raw_line.strip():
            continue
        try:
            value = json.loads(raw_line, object_pairs_hook=_Pairs, parse_constant=_json_constant)
        except json.JSONDecodeError as exc:
            raise SuiteFileError(path, number, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
        except ValueError as exc:
            raise SuiteFileError(path, number, f"invalid JSON: {exc}") from None
        if not isinstance(value, _Pairs):
            raise SuiteFileError(
                path, number, f"each line of a JSONL suite must be one case (a JSON object), got {_describe(value)}"
            )
        nodes.append(_json_node(value, number))
    return nodes


def _sniff(text: str) -> str:
    """JSONL when the first non-blank character is ``{`` and every non-blank line is a JSON object.

    One line holding an object with a ``cases`` key is a whole suite written in JSON: YAML (JSON is YAML).
    """
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines or not lines[0].lstrip().startswith("{"):
        return "yaml"
    value: Any = None
    for line in lines:
        try:
            value = json.loads(line)
        except ValueError:
            return "yaml"
        if not isinstance(value, dict):
            return "yaml"
    return "yaml" if len(lines) == 1 and "cases" in value else "jsonl"


def _describe(value: Any) -> str:
    """A bad value as the user wrote it, in one line."""
    if isinstance(value, _Node):
        if value.kind == "map":
            return "a mapping"
        if value.kind == "seq":
            return "a list"
        value = value.value
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (_Pairs, dict)):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, _NonStringKey):
        return value.description
    if isinstance(value, (int, float, str)):
        return repr(value)
    return f"{type(value).__name__} {str(value)!r}"  # e.g. a YAML timestamp


def _parse(text: str, path: str, fmt: str | None, sha256: str) -> SuiteSpec:
    if text.startswith("\ufeff"):
        text = text[1:]
    if fmt is None:
        suffix = Path(path).suffix.lower()
        fmt = "yaml" if suffix in YAML_SUFFIXES else "jsonl" if suffix in JSONL_SUFFIXES else _sniff(text)
    if fmt not in ("yaml", "jsonl"):
        raise ValueError(f"unknown suite format {fmt!r} (yaml or jsonl)")
    v = _Validator(path)
    stem = Path(path).stem or path
    if not text.strip():
        v.fail(1, "the file is empty (a suite needs at least one case)")
    if fmt == "jsonl":
        cases = v.cases(_jsonl_nodes(text, path), {})
        return SuiteSpec(name=stem, description=None, path=path, sha256=sha256, format="jsonl", cases=cases)
    root = _yaml_nodes(text, path)
    if root is None:
        v.fail(1, "the file has no content, only comments (a suite needs at least one case)")
    name, description, defaults, case_nodes = v.top_level(root)
    return SuiteSpec(
        name=name or stem,
        description=description,
        path=path,
        sha256=sha256,
        format="yaml",
        cases=v.cases(case_nodes, defaults),
        lens=defaults.get("lens"),
        lens_line=v.lens_line,
        drift_limits=v.drift_limits,
    )


# --- validation -----------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _Validator:
    """Checks located values against the format; ``fail`` raises the one error."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.ctx = ""  # "case 'paris': " while a case is being validated
        self.ids: dict[str, int] = {}
        self.lens_line: int | None = None  # where defaults.lens is written
        self.drift_limits: list[DriftLimit] = []  # the top-level max_drift_js

    def fail(self, line: int, message: str) -> NoReturn:
        raise SuiteFileError(self.path, line, self.ctx + message)

    # - structure -

    def mapping(self, node: _Node, what: str, where: str, allowed: tuple[str, ...] | None) -> dict[str, _Entry]:
        """``node`` as key -> entry, rejecting non-mappings, non-string, duplicate and unknown keys."""
        if node.kind != "map":
            self.fail(node.line, f"{what} must be a mapping, got {_describe(node)}")
        out: dict[str, _Entry] = {}
        for entry in node.value:
            key = entry.key
            if not isinstance(key, str):
                hint = " (quote it)" if isinstance(key, (int, float, bool)) or key is None else ""
                self.fail(entry.key_line, f"keys must be strings, got {_describe(key)} {where}{hint}")
            if key in out:
                self.fail(entry.key_line, f"duplicate key {key!r} {where} (first at line {out[key].key_line})")
            if allowed is not None and key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
                self.fail(entry.key_line, f"unknown key {key!r} {where}{hint}")
            out[key] = entry
        return out

    def top_level(self, root: _Node) -> tuple[str | None, str | None, dict[str, Any], list[_Node]]:
        if root.kind == "seq":
            return None, None, {}, self.case_list(root, "the file")
        if root.kind != "map":
            self.fail(
                root.line, f"a suite file must be a mapping with 'cases' or a list of cases, got {_describe(root)}"
            )
        top_keys = {e.key for e in root.value if isinstance(e.key, str)}
        if "cases" not in top_keys and top_keys & {"id", "prompt"}:
            self.fail(
                root.line,
                "this looks like a single case, but a YAML suite is a list of cases (start each with '- ') "
                "or a mapping with 'cases'",
            )
        keys = self.mapping(root, "the suite", "at the top level", TOP_LEVEL_KEYS)
        if "cases" not in keys:
            self.fail(root.line, "missing key 'cases' at the top level (the list of cases)")
        name = description = None
        if "name" in keys:
            name = self.text(keys["name"].value, "name")
        if "description" in keys:
            description = self.string(keys["description"].value, "description")
        defaults = self.defaults(keys["defaults"].value) if "defaults" in keys else {}
        if "max_drift_js" in keys:
            self.drift_limits = self.drift_limits_of(keys["max_drift_js"].value)
        return name, description, defaults, self.case_list(keys["cases"].value, "cases")

    def drift_limits_of(self, node: _Node) -> list[DriftLimit]:
        """``max_drift_js``: one ``{layers, js, stat}`` mapping or a list of them."""
        nodes = list(node.value) if node.kind == "seq" else [node]
        if not nodes:
            self.fail(node.line, "max_drift_js must hold at least one {layers, js} limit")
        out = []
        for i, item in enumerate(nodes):
            what = "max_drift_js" if node.kind != "seq" else f"max_drift_js[{i}]"
            keys = self.mapping(item, what, f"in {what}", DRIFT_LIMIT_KEYS)
            for required in ("layers", "js"):
                if required not in keys:
                    self.fail(item.line, f"{what} needs {required!r} (e.g. {{layers: '10-29', js: 0.05}})")
            layers = self.layer_set(keys["layers"].value, f"{what}.layers")
            js = keys["js"].value
            if js.kind != "scalar" or not _is_number(js.value) or not 0 <= js.value <= math.log(2):
                self.fail(js.line, f"{what}.js must be a JS divergence in nats, 0 to ln 2 (0.693), got {_describe(js)}")
            stat = "mean"
            if "stat" in keys:
                stat_node = keys["stat"].value
                if stat_node.kind != "scalar" or stat_node.value not in DRIFT_STATS:
                    self.fail(
                        stat_node.line,
                        f"{what}.stat must be one of {', '.join(DRIFT_STATS)}, got {_describe(stat_node)}",
                    )
                stat = str(stat_node.value)
            out.append(DriftLimit(layers=layers, js=float(js.value), stat=stat, line=keys["js"].key_line))
        return out

    def case_list(self, node: _Node, what: str) -> list[_Node]:
        if node.kind != "seq":
            self.fail(node.line, f"{what} must be a list of cases, got {_describe(node)}")
        if not node.value:
            self.fail(node.line, f"{what} has no cases (a suite needs at least one)")
        return list(node.value)

    def defaults(self, node: _Node) -> dict[str, Any]:
        keys = self.mapping(node, "defaults", "in defaults", DEFAULTS_KEYS)
        out: dict[str, Any] = {}
        for key, entry in keys.items():
            out[key] = self.setting(key, entry.value, f"defaults.{key}")
        return out

    # - scalars -

    def string(self, node: _Node, what: str) -> str:
        if node.kind != "scalar" or not isinstance(node.value, str):
            self.fail(node.line, f"{what} must be a string, got {_describe(node)}")
        self.unicode(node, what)
        return node.value

    def unicode(self, node: _Node, what: str) -> None:
        """No lone surrogates (``"\\ud800"`` escapes in YAML or JSON): not text, and not encodable."""
        surrogate = _LONE_SURROGATE.search(node.value)
        if surrogate is not None:
            self.fail(
                node.line,
                f"{what} is not valid Unicode text: a lone surrogate U+{ord(surrogate.group()):04X} "
                f"at character {surrogate.start()}",
            )

    def text(self, node: _Node, what: str) -> str:
        """A string with something in it (ids, prompts, names)."""
        value = self.string(node, what)
        if not value.strip():
            self.fail(node.line, f"{what} must not be empty")
        return value

    def token(self, node: _Node, what: str) -> str:
        """A token string: non-empty, whitespace allowed (" " is a token)."""
        if node.kind != "scalar" or not isinstance(node.value, str):
            # YAML reads bare 42, 1.5, yes, no, on, off as numbers and booleans.
            bare = node.kind == "scalar" and (_is_number(node.value) or isinstance(node.value, bool))
            quote = " (quote it)" if bare else ""
            self.fail(node.line, f"{what} must be a token string, got {_describe(node)}{quote}")
        if node.value == "":
            self.fail(node.line, f"{what} must not be an empty string")
        self.unicode(node, what)
        return node.value

    def probability(self, node: _Node, what: str) -> float:
        if node.kind != "scalar" or not _is_number(node.value) or not 0.0 <= node.value <= 1.0:
            self.fail(node.line, f"{what} must be a number between 0 and 1, got {_describe(node)}")
        return float(node.value)

    def tolerance(self, node: _Node, what: str) -> float:
        # A tolerance is a probability or a relative depth: above 1 (100%) it allows anything.
        if node.kind != "scalar" or not _is_number(node.value) or not 0 <= node.value <= 1:
            self.fail(node.line, f"{what} must be a number between 0 and 1 (100%), got {_describe(node)}")
        return float(node.value)

    def setting(self, key: str, node: _Node, what: str) -> Any:
        """``raw``, ``top_k``, ``track`` or ``tolerance`` (in a case or in defaults)."""
        if key == "raw":
            if node.kind != "scalar" or not isinstance(node.value, bool):
                self.fail(node.line, f"{what} must be true or false, got {_describe(node)}")
            return node.value
        if key == "top_k":
            if node.kind != "scalar" or not _is_int(node.value) or node.value < 1:
                self.fail(node.line, f"{what} must be an integer >= 1, got {_describe(node)}")
            return node.value
        if key == "tolerance":
            return self.tolerance(node, what)
        if key == "group":
            return self.text(node, what)
        if key == "changes_only_in_layers":
            return self.layer_set(node, what)
        if key == "lens":
            value = self.text(node, what)
            from ..core.config import LENS_KINDS

            self.lens_line = node.line
            if value in LENS_KINDS:
                return value
            # a lens directory, relative to the suite file
            directory = os.fspath(Path(os.path.dirname(self.path) or ".") / value)
            if not os.path.isdir(directory):
                problem = "is not a directory" if os.path.exists(directory) else "names no lens kind and no directory"
                shown = f" (looked for {directory!r}, relative to the suite file)" if directory != value else ""
                self.fail(
                    node.line,
                    f"{what} {value!r} {problem}{shown}: choose logit, linear, tuned, jacobian or a lens directory",
                )
            return directory
        assert key == "track"
        if node.kind == "scalar":
            return [self.token(node, what)]
        if node.kind != "seq":
            self.fail(node.line, f"{what} must be a token or a list of tokens, got {_describe(node)}")
        tokens: list[str] = []
        for i, item in enumerate(node.value):
            token = self.token(item, f"{what}[{i}]")
            if token in tokens:
                self.fail(item.line, f"{what} lists {token!r} twice")
            tokens.append(token)
        return tokens

    # - cases -

    def cases(self, nodes: list[_Node], defaults: dict[str, Any]) -> list[CaseSpec]:
        if not nodes:
            raise SuiteFileError(self.path, 1, "the file has no cases (a suite needs at least one)")
        out = []
        for index, node in enumerate(nodes, start=1):
            self.ctx = f"case #{index}: "
            out.append(self.case(node, defaults))
            self.ctx = ""
        return out

    def case(self, node: _Node, defaults: dict[str, Any]) -> CaseSpec:
        if node.kind != "map":
            self.fail(node.line, f"a case must be a mapping with 'id' and 'prompt', got {_describe(node)}")
        # The id first, so every later message can name the case.
        for entry in node.value:
            if entry.key == "id" and entry.value.kind == "scalar" and isinstance(entry.value.value, str):
                if entry.value.value.strip():
                    self.ctx = f"case {entry.value.value!r}: "
                break
        keys = self.mapping(node, "a case", "in case", CASE_KEYS)
        for required in ("id", "prompt"):
            if required not in keys:
                self.fail(node.line, f"missing required key {required!r}")
        case_id = self.text(keys["id"].value, "id")
        if case_id in self.ids:
            self.ctx = ""
            self.fail(keys["id"].value.line, f"duplicate case id {case_id!r} (first at line {self.ids[case_id]})")
        self.ids[case_id] = keys["id"].value.line
        prompt = self.text(keys["prompt"].value, "prompt")
        description = self.string(keys["description"].value, "description") if "description" in keys else None
        settings = dict(defaults)
        for key, entry in keys.items():  # file order
            if key in DEFAULTS_KEYS:
                settings[key] = self.setting(key, entry.value, key)
        if "tolerance" in keys and "no_regression_of" not in keys:
            self.fail(keys["tolerance"].key_line, "tolerance is only used by no_regression_of, which this case lacks")
        explicit: list[str] = list(settings.get("track", []))
        target = explicit[0] if explicit else None
        tolerance = settings.get("tolerance", DEFAULT_TOLERANCE)
        expectations: list[Expectation] = []
        named: list[str] = []  # tokens named in mapping forms, in file order
        for entry in node.value:  # file order
            if entry.key in BLOCK_SIDES:
                expectations += self.block(entry, BLOCK_SIDES[entry.key], target, named)
            elif entry.key == "no_regression_of":
                expectations += self.no_regression(entry, target, tolerance)
        if "changes_only_in_layers" in settings:
            line = keys["changes_only_in_layers"].key_line if "changes_only_in_layers" in keys else node.line
            expectations.append(
                Expectation(
                    "changes_only_in_layers", "comparison", None, settings["changes_only_in_layers"], None, line
                )
            )
        track = explicit + [t for t in dict.fromkeys(named) if t not in explicit]
        answer, generate, stop = self.answer_settings(keys, expectations)
        return CaseSpec(
            id=case_id,
            prompt=prompt,
            raw=settings.get("raw", False),
            top_k=settings.get("top_k", DEFAULT_TOP_K),
            track=track,
            description=description,
            expectations=expectations,
            line=node.line,
            group=settings.get("group"),
            answer=answer,
            generate=generate,
            stop=stop,
        )

    def answer_settings(
        self, keys: dict[str, _Entry], expectations: list[Expectation]
    ) -> tuple[str | None, int | None, list[str]]:
        """``answer`` / ``generate`` / ``stop``, and the answer expectations checked against them."""
        answer = generate = None
        stop: list[str] = []
        if "answer" in keys:
            node = keys["answer"].value
            answer = self.string(node, "answer")
            if answer == "":
                self.fail(node.line, "answer must not be an empty string (remove it, or use generate: N)")
        if "generate" in keys:
            node = keys["generate"].value
            if "answer" in keys:
                self.fail(
                    keys["generate"].key_line,
                    "answer and generate exclude each other (answer: a given text read by the lens; "
                    "generate: the model writes its own)",
                )
            if node.kind != "scalar" or not _is_int(node.value) or node.value < 1:
                self.fail(node.line, f"generate must be a whole number of tokens >= 1, got {_describe(node)}")
            generate = int(node.value)
        if "stop" in keys:
            node = keys["stop"].value
            if generate is None:
                self.fail(keys["stop"].key_line, "stop is only used with generate: N, which this case lacks")
            items = node.value if node.kind == "seq" else [node]
            if node.kind == "seq" and not items:
                self.fail(node.line, "stop must be a string or a non-empty list of strings, got an empty list")
            for i, item in enumerate(items):
                stop.append(self.token(item, f"stop[{i}]" if node.kind == "seq" else "stop"))
        for exp in expectations:
            if exp.check in GENERATED_CHECKS and generate is None:
                self.fail(exp.line, f"{exp.check} checks what the model writes: add 'generate: N' to the case")
            if exp.check in ANSWER_CHECKS and answer is None and generate is None:
                self.fail(exp.line, f"{exp.check} is about the case's answer: add 'answer: TEXT' or 'generate: N'")
            if exp.check == "no_regression" and exp.value == "answer_logprob" and answer is None:
                self.fail(
                    exp.line,
                    "no_regression_of answer_logprob compares both models on the same text: add 'answer: TEXT' "
                    "(with generate each model writes its own)",
                )
        return answer, generate, stop

    def block(self, entry: _Entry, side: str, target: str | None, named: list[str]) -> list[Expectation]:
        name = entry.key
        if entry.value.kind == "scalar" and entry.value.value is None:
            self.fail(entry.key_line, f"{name} is empty (give at least one expectation, or remove it)")
        keys = self.mapping(entry.value, name, f"in {name}", EXPECT_KEYS)
        if not keys:
            self.fail(entry.key_line, f"{name} is empty (give at least one expectation, or remove it)")
        out: list[Expectation] = []
        for check, item in keys.items():
            what = f"{name}.{check}"
            node = item.value
            if check == "final_top1":
                out.append(Expectation(check, side, self.token(node, what), None, None, item.key_line))
            elif check in ANSWER_CHECKS or check in GENERATED_CHECKS:
                out.append(Expectation(check, side, None, self.answer_bound(check, node, what), None, item.key_line))
            elif check == "not_top1":
                if node.kind == "seq":
                    if not node.value:
                        self.fail(node.line, f"{what} must be a token or a non-empty list of tokens, got an empty list")
                    for i, sub in enumerate(node.value):
                        out.append(Expectation(check, side, self.token(sub, f"{what}[{i}]"), None, None, sub.line))
                else:
                    out.append(Expectation(check, side, self.token(node, what), None, None, item.key_line))
            else:
                value_of = self.probability if check.startswith("final_prob") else self.layer_bound
                if node.kind == "map":
                    tokens = self.mapping(node, what, f"in {what}", None)
                    if not tokens:
                        self.fail(node.line, f"{what} is an empty mapping (name at least one token)")
                    for token, sub in tokens.items():
                        if token == "":
                            self.fail(sub.key_line, f"{what}: a token must not be an empty string")
                        bound = value_of(sub.value, f"{what}[{token!r}]")
                        named.append(token)
                        out.append(Expectation(check, side, token, bound, None, sub.key_line))
                else:
                    bound = value_of(node, what)
                    if target is None:
                        self.fail(
                            item.key_line,
                            f"{what} without a token is about the case's target (its first tracked token), "
                            f"but the case tracks nothing: add 'track' or write {{TOKEN: value}}",
                        )
                    out.append(Expectation(check, side, target, bound, None, item.key_line))
        return out

    def answer_bound(self, check: str, node: _Node, what: str) -> Any:
        """The value of an ``answer_*`` / ``generated_*`` expectation."""
        if check == "answer_top1":
            if node.kind != "scalar" or node.value is not True:
                self.fail(node.line, f"{what} takes true (remove it to not check), got {_describe(node)}")
            return True
        if check == "answer_logprob_at_least":
            if node.kind != "scalar" or not _is_number(node.value) or node.value > 0:
                self.fail(
                    node.line,
                    f"{what} must be a natural log-probability <= 0 (e.g. -2.5 for a sequence probability of "
                    f"about 8%), got {_describe(node)}",
                )
            return float(node.value)
        if check == "answer_emerges_by_layer":
            return self.layer_bound(node, what)
        text = self.string(node, what)
        if text == "":
            self.fail(node.line, f"{what} must not be an empty string")
        if check == "generated_matches":
            try:
                re.compile(text)
            except re.error as exc:
                self.fail(node.line, f"{what} is not a valid regular expression: {exc.msg} (at character {exc.pos})")
        return text

    def layer_set(self, node: _Node, what: str) -> list[int]:
        """Layers as ``"22-29"``, ``"0-3, 7"``, one integer or a list of integers (sorted, unique)."""
        value: Any = node.value if node.kind == "scalar" else None
        if node.kind == "seq" and all(n.kind == "scalar" and _is_int(n.value) and n.value >= 0 for n in node.value):
            layers = [int(n.value) for n in node.value]
        elif _is_int(value) and value >= 0:
            layers = [int(value)]
        elif isinstance(value, str) and LAYER_SET_RE.match(value):
            layers = []
            for part in value.split(","):
                a, _, b = part.strip().partition("-")
                lo, hi = int(a), int(b or a)
                if hi < lo:
                    self.fail(node.line, f"{what}: the range {part.strip()!r} runs backwards")
                layers += range(lo, hi + 1)
        else:
            layers = []
        if not layers:
            self.fail(
                node.line,
                f"{what} must be layers like '22-29' or '0-3, 7', a layer index or a list, got {_describe(node)}",
            )
        return sorted(set(layers))

    def layer_bound(self, node: _Node, what: str) -> int | float:
        """An absolute layer (int >= 0) or a relative depth (float in [0, 1], or "NN%")."""
        value: Any = node.value if node.kind == "scalar" else None
        if _is_int(value):
            if value < 0:
                self.fail(node.line, f"{what} must be a layer index >= 0, got {value!r}")
            return int(value)
        if _is_number(value):
            if not 0.0 <= value <= 1.0:
                hint = f" (write an integer like {int(value)} for an absolute layer)" if value > 1 else ""
                self.fail(node.line, f"{what}: a relative depth must be between 0.0 and 1.0, got {value!r}{hint}")
            return float(value)
        if isinstance(value, str) and PERCENT_RE.match(value):
            return float(value[:-1]) / 100.0
        self.fail(
            node.line,
            f"{what} must be a layer index (integer >= 0), a relative depth (0.0 to 1.0) "
            f"or a percentage like '75%', got {_describe(node)}",
        )

    def no_regression(self, entry: _Entry, target: str | None, tolerance: float) -> list[Expectation]:
        node = entry.value
        what = "no_regression_of"
        pairs: list[tuple[str, int, float | None, bool]] = []  # metric, line, tolerance, explicit tolerance
        if node.kind == "scalar" and node.value is None:
            self.fail(entry.key_line, f"{what} is empty (name at least one of {', '.join(METRICS)}, or remove it)")
        if node.kind == "map":
            keys = self.mapping(node, what, f"in {what}", METRICS)
            if not keys:
                self.fail(entry.key_line, f"{what} is empty (name at least one of {', '.join(METRICS)}, or remove it)")
            for metric, item in keys.items():
                sub = item.value
                zero = _is_number(sub.value) and sub.value == 0
                no_tolerance = sub.kind == "scalar" and (sub.value is None or zero)
                if metric == "final_top1" and no_tolerance:
                    pairs.append((metric, item.key_line, None, False))
                elif metric == "final_top1":
                    self.fail(sub.line, f"{what}.final_top1 takes no tolerance (write 'final_top1: null' or 0)")
                elif sub.kind == "scalar" and sub.value is None:
                    pairs.append((metric, item.key_line, None, False))
                elif metric == "answer_logprob":
                    if not _is_number(sub.value) or sub.value < 0:
                        self.fail(
                            sub.line,
                            f"{what}.answer_logprob must be a tolerance in nats >= 0 (how far the tuned model's "
                            f"answer log-probability may fall below the base's), got {_describe(sub)}",
                        )
                    pairs.append((metric, item.key_line, float(sub.value), True))
                else:
                    pairs.append((metric, item.key_line, self.tolerance(sub, f"{what}.{metric}"), True))
        else:
            items = node.value if node.kind == "seq" else [node]
            if node.kind == "seq" and not items:
                self.fail(node.line, f"{what} is empty (name at least one of {', '.join(METRICS)}, or remove it)")
            seen: set[str] = set()
            for i, sub in enumerate(items):
                label = f"{what}[{i}]" if node.kind == "seq" else what
                if sub.kind != "scalar" or sub.value not in METRICS:
                    self.fail(sub.line, f"{label} must be one of {', '.join(METRICS)}, got {_describe(sub)}")
                if sub.value in seen:
                    self.fail(sub.line, f"{what} lists {sub.value!r} twice")
                seen.add(sub.value)
                pairs.append((sub.value, sub.line if node.kind == "seq" else entry.key_line, None, False))
        out = []
        for metric, line, given, explicit in pairs:
            if metric == "final_top1":
                out.append(Expectation("no_regression", "comparison", None, metric, None, line))
                continue
            if metric == "answer_logprob":
                given = given if explicit else DEFAULT_ANSWER_LOGPROB_TOLERANCE
                out.append(Expectation("no_regression", "comparison", None, metric, given, line))
                continue
            if target is None:
                self.fail(
                    line,
                    f"{what} {metric} is about the case's target (its first tracked token), "
                    "but the case tracks nothing: add 'track'",
                )
            if not explicit:
                given = tolerance if metric == "final_prob" else DEFAULT_EMERGENCE_TOLERANCE
            out.append(Expectation("no_regression", "comparison", target, metric, given, line))
        return out
