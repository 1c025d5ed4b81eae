"""A learned lens's evaluation: fidelity per layer on held-out text, as plain data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .codec import SCHEMA_VERSION, JsonFile, ResultFormatError, build_dataclass, check_header, with_header
from .provenance import LensFidelity, LensRecord, ModelInfo

LENS_EVAL_KIND = "lazarus-report/lens-eval"


@dataclass(frozen=True)
class LensEvalResult(JsonFile):
    """``lazarus lens eval``: the logit lens and one lens side by side on held-out text."""

    model: ModelInfo
    lens: LensRecord  # the lens evaluated (its ``fidelity`` is the one measured here)
    logit: list[LensFidelity]  # the logit lens on the same positions
    corpus: str  # description of the evaluation text
    corpus_sha256: str
    tokens: int  # positions evaluated per layer
    final_cross_entropy: float  # the model's own next-token cross-entropy on those positions
    versions: dict[str, str]
    timings: dict[str, float]
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return with_header(LENS_EVAL_KIND, dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Any) -> LensEvalResult:
        check_header(data, LENS_EVAL_KIND, "lens evaluation")
        try:
            return build_dataclass(cls, data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultFormatError(f"malformed lens evaluation: {exc}") from None
