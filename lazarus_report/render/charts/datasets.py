"""How chart data sits in a spec: named datasets, column-stored rows, lookups (rounding is in ``scales``)."""

from __future__ import annotations

from typing import Any

import altair as alt

__all__ = ["dataset_chart", "lookup_fields", "stored_rows"]


def stored_rows(rows: list[dict[str, Any]], columns: bool) -> list[dict[str, Any]]:
    """A dataset as stored in the spec: its rows, or (``columns``, for pages with many charts) one row
    of columns, which ``dataset_chart`` flattens back in the browser (about half the bytes)."""
    if not columns or not rows:
        return rows
    return [{key: [row.get(key) for row in rows] for key in rows[0]}]


def dataset_chart(name: str, rows: list[dict[str, Any]], columns: bool) -> alt.Chart:
    """A chart over the named dataset stored by ``stored_rows(rows, columns)``."""
    chart = alt.Chart(alt.NamedData(name))
    return chart.transform_flatten(list(rows[0])) if columns and rows else chart


def lookup_fields(chart: alt.Chart, dataset: str, fields: list[str]) -> alt.Chart:
    """``chart`` with ``fields`` joined in from the named ``dataset`` by the rows' key ``k``: rows carry a
    small key; the long strings (model labels, tokens) sit once in ``dataset``."""
    return chart.transform_lookup(lookup="k", from_=alt.LookupData(data=alt.NamedData(dataset), key="k", fields=fields))
