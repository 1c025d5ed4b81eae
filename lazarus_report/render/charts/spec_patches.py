"""Compact storage of many similar specs: one shared base spec and a patch per chart."""

from __future__ import annotations

import json
from typing import Any

from lazarus_report.render.charts.background import PendingChart


def shared_specs(charts: list[PendingChart], base_id: str) -> dict[str, Any]:
    """Specs for the page, stored compactly: ``{base_id: the first chart's spec, chart id: patch}``, where a
    patch is ``{"lazarus-patch": {"base": "spec-<base_id>", "ops": [...]}}`` (see ``spec_patch``). The
    page script rebuilds each spec from the base before drawing it. Charts of one kind share most of
    their spec; only their data and a few scale domains differ."""
    if not charts:
        return {}
    base = charts[0].spec
    out: dict[str, Any] = {base_id: base}
    for chart in charts:
        out[chart.chart_id] = {"lazarus-patch": {"base": f"spec-{base_id}", "ops": spec_patch(base, chart.spec)}}
    return out


def spec_patch(base: Any, spec: Any, path: tuple[Any, ...] = ()) -> list[list[Any]]:
    """Operations that turn ``base`` into ``spec``: ``[path, value]`` sets the value at ``path`` (a list
    of object keys and array indices; ``[]`` is the whole spec), ``[path]`` deletes an object key.
    Objects are patched key by key; an array of the same length element by element when that is
    shorter than replacing it whole."""
    if base == spec:
        return []
    whole: list[list[Any]] = [[list(path), spec]]
    if isinstance(base, dict) and isinstance(spec, dict):
        ops: list[list[Any]] = []
        for key, value in spec.items():
            ops += spec_patch(base[key], value, (*path, key)) if key in base else [[[*path, key], value]]
        ops += [[[*path, key]] for key in base if key not in spec]
    elif isinstance(base, list) and isinstance(spec, list) and len(base) == len(spec):
        ops = [op for i, (b, s) in enumerate(zip(base, spec)) for op in spec_patch(b, s, (*path, i))]
    else:
        return whole
    return ops if _json_size(ops) < _json_size(whole) else whole


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))
