"""A token ready to show (visible whitespace markers, exact spelling for tooltips): shared by the report model
and the views built beside it (``answer_view``), so neither has to import the other."""

from __future__ import annotations

from dataclasses import dataclass

from lazarus_report.render.formatting import Segment, token_repr, token_segments, visible_token


@dataclass(frozen=True)
class TokenView:
    """A token ready to show: visible whitespace markers, exact spelling for tooltips."""

    visible: str  # one printable line, e.g. "␣Paris"
    segments: list[Segment]
    exact: str  # ASCII-safe exact spelling, e.g. "' Paris'"
    token_id: int | None = None


def token_view(token: str, token_id: int | None = None) -> TokenView:
    return TokenView(visible_token(token), token_segments(token), token_repr(token), token_id)
