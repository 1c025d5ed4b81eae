"""The JSON codec every result family shares: headers and schema versions, rounding, strict rebuilding of
dataclass trees with errors that name the field."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.files import write_text_atomic

SCHEMA_VERSION = 4


# Version 2 added which lens produced a result (``AnalysisResult.lens``, ``AnalysisConfigRecord.lens``);
# a version-1 file reads as the logit lens. Version 3 added whole answers (``AnalysisResult.answer``, the
# ``answer`` / ``generate`` / ``stop`` settings, ``ComparisonResult.answer_cross``); older files read without one.
# Version 4 generalised ``AnalysisResult.logit_view`` into ``lens_views`` (one per lens read beside the primary,
# ``--lens tuned,linear``) and added ``config.extra_lenses``; an older file's ``logit_view`` reads as one view.
READABLE_SCHEMA_VERSIONS = (1, 2, 3, 4)


class ResultFormatError(ValueError):
    """A file that is not an analysis result of the supported schema version."""


def with_header(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A result's JSON object: ``kind`` and ``schema_version`` first, then its fields."""
    version = fields.pop("schema_version")
    return {"kind": kind, "schema_version": version, **fields}


def check_header(data: Any, kind: str, what: str, readable: tuple[int, ...] = READABLE_SCHEMA_VERSIONS) -> None:
    """Raise ``ResultFormatError`` unless ``data`` is a JSON object of ``kind`` in a ``readable`` version."""
    if not isinstance(data, dict) or data.get("kind") != kind:
        raise ResultFormatError(f"not a lazarus-report {what} result")
    version = data.get("schema_version")
    if version not in readable:
        readable_text = ", ".join(str(v) for v in readable)
        raise ResultFormatError(
            f"result schema version {version!r} is not supported (this lazarus reads versions {readable_text})"
        )


def first_layer_where(layers: list[int], flags: list[bool]) -> int | None:
    """The first layer whose flag is true (e.g. where a token first becomes top-1), or None."""
    return next((layer for layer, flag in zip(layers, flags) if flag), None)


def true_from_layer(layers: list[int], flags: list[bool]) -> int | None:
    """The layer from which the flag stays true through the last layer (e.g. "stays top-1 from"), or None."""
    start = None
    for layer, flag in reversed(list(zip(layers, flags))):
        if not flag:
            break
        start = layer
    return start


def distinct_labels(labels: list[str]) -> list[str]:
    """Two sides' labels, numbered when they would read the same."""
    if len(labels) == 2 and labels[0] == labels[1]:
        return [f"{labels[0]} (1)", f"{labels[1]} (2)"]
    return list(labels)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_dict(value)
    return value


def plain_dict(obj: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """``dataclasses.asdict(obj)`` without its deep copies (results hold only plain values): a 1,000-case suite
    converts in a second instead of eight. ``skip``: fields left ``None`` (in field order) for the caller."""
    return {name: None if name in skip else _plain(getattr(obj, name)) for name in _field_names(type(obj))}


# Results sit below the renderers and never import them: the package registers the HTML renderer here
# (``lazarus_report/__init__.py``) so that a result shows as its report in Jupyter.
_NOTEBOOK_HTML: Callable[[Any], str] | None = None


def register_notebook_html(render: Callable[[Any], str]) -> None:
    """Set the function that turns a result into the HTML Jupyter shows for it."""
    global _NOTEBOOK_HTML
    _NOTEBOOK_HTML = render


class JsonFile:
    """JSON text and files for a result class with ``to_dict`` / ``from_dict``."""

    def to_json(self, indent: int | None = 1) -> str:
        return dumps_json(self.to_dict(), indent)  # type: ignore[attr-defined]

    @classmethod
    def from_json(cls, text: str) -> Any:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ResultFormatError(f"not JSON: {exc}") from None
        return cls.from_dict(data)  # type: ignore[attr-defined]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the JSON atomically: a failure never leaves a partial file."""
        write_text_atomic(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Any:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def _repr_html_(self) -> str | None:
        """Jupyter shows the result as its HTML report (the renderer registered by ``register_notebook_html``)."""
        return None if _NOTEBOOK_HTML is None else _NOTEBOOK_HTML(self)


def nested_result(cls: Any, data: Any, where: str) -> Any:
    """``cls.from_dict(data)`` for a result inside another, its errors prefixed with where it sits."""
    try:
        return cls.from_dict(data)
    except ResultFormatError as exc:
        detail = str(exc).split(": ", 1)[-1]
        raise MalformedField(f"{where}: {detail}") from None


def build_dataclass(tp: Any, data: Any, where: str = "") -> Any:
    """Rebuild a dataclass tree from ``dataclasses.asdict`` output, checking field names and types.

    Errors say where: ``field 'model' is missing``, ``layer_predictions[2].entropy: expected a number``.
    """

    try:
        return _build_value(tp, data, where)
    except MalformedField:
        raise
    except (TypeError, ValueError) as exc:
        raise MalformedField(f"{where}: {exc}" if where else str(exc)) from None


class MalformedField(ValueError):
    """A result field that is missing or of the wrong type; the message names the field's path."""


_SHAPES: dict[type, list[tuple[str, Any, bool]]] = {}  # per result class: (field, type, required)


_PLAIN = (float, int, str, bool)  # a value of exactly this type needs no conversion and no check


def _build_value(tp: Any, data: Any, where: str) -> Any:
    import typing

    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise TypeError(f"expected an object ({tp.__name__}), got {type(data).__name__}")
        shape = _SHAPES.get(tp)
        if shape is None:  # resolving string annotations costs ~0.1 ms per class: once per class, not per value
            hints = typing.get_type_hints(tp)
            shape = _SHAPES[tp] = [
                (f.name, hints[f.name], f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
                for f in dataclasses.fields(tp)
            ]
        kwargs = {}
        for name, hint, required in shape:
            if name in data:
                value = data[name]
                # Fast path (a suite of 1,000 cases holds millions of these): a plain value of the plain type.
                if hint in _PLAIN and type(value) is hint:
                    kwargs[name] = value
                else:
                    kwargs[name] = build_dataclass(hint, value, f"{where}.{name}" if where else name)
            elif required:
                path = f"{where}.{name}" if where else name
                raise MalformedField(f"field {path!r} is missing")
        return tp(**kwargs)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is list:
        if not isinstance(data, list):
            raise TypeError(f"expected a list, got {type(data).__name__}")
        if args[0] in _PLAIN and all(type(x) is args[0] for x in data):
            return list(data)
        return [build_dataclass(args[0], x, f"{where}[{i}]") for i, x in enumerate(data)]
    if origin is dict:
        if not isinstance(data, dict):
            raise TypeError(f"expected an object, got {type(data).__name__}")
        return {str(k): build_dataclass(args[1], v, f"{where}.{k}") for k, v in data.items()}
    if origin is not None and type(None) in args:  # Optional[X]
        if data is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return build_dataclass(inner[0], data, where)
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise TypeError(f"expected a number, got {data!r}")
        return float(data)
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise TypeError(f"expected an integer, got {data!r}")
        return data
    if tp is str:
        if not isinstance(data, str):
            raise TypeError(f"expected a string, got {data!r}")
        return data
    if tp is bool:
        if not isinstance(data, bool):
            raise TypeError(f"expected true/false, got {data!r}")
        return data
    return data


SIGNIFICANT_DIGITS = 8


def rounded(values: Any) -> Any:
    """Floats (or nested lists of them) to 8 significant digits.

    The lens computes from float32 logits (about 7 significant digits); more digits in a result
    would be noise, and they cost report size. Applied where results are made, so a result and its
    JSON are equal.
    """
    if isinstance(values, list):
        return [rounded(v) for v in values]
    return float(f"{values:.{SIGNIFICANT_DIGITS}g}")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps_json(data: Any, indent: int | None = 1) -> str:
    """JSON that is always valid UTF-8: readable non-ASCII text, lone surrogates (possible in user
    prompts from undecodable argv bytes) escaped as ``\\udXXX``; never NaN (strict parsers reject it)."""
    text = json.dumps(data, indent=indent, ensure_ascii=False, allow_nan=False)
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
