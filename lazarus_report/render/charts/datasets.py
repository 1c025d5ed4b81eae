"""How chart data sits in a spec: rounded values, named datasets, column-stored rows, lookups."""

from __future__ import annotations

from typing import Any

import altair as alt

from lazarus_report.render.charts.scales import _round, _round_prob

__all__ = ["_lookup", "_round", "_round_prob", "_rows", "_stored"]


def _stored(rows: list[dict[str, Any]], columns: bool) -> list[dict[str, Any]]:
    """A dataset as stored in the spec: its rows, or (``columns``, for pages with many charts) one row
    of columns, which ``_rows`` flattens back in the browser (about half the bytes)."""
    if not columns or not rows:
        return rows
    return [{key: [row.get(key) for row in rows] for key in rows[0]}]


def _rows(name: str, rows: list[dict[str, Any]], columns: bool) -> alt.Chart:
    """A chart over the named dataset stored by ``_stored(rows, columns)``."""
    chart = alt.Chart(alt.NamedData(name))
    return chart.transform_flatten(list(rows[0])) if columns and rows else chart


def _lookup(chart: alt.Chart, dataset: str, fields: list[str]) -> alt.Chart:
    # Rows carry a small key ("k"); the long strings (model labels, tokens) sit once in ``dataset``.
    return chart.transform_lookup(lookup="k", from_=alt.LookupData(data=alt.NamedData(dataset), key="k", fields=fields))
