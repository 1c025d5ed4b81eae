"""Lens evaluations: every lens fitted for a model side by side per layer on held-out text, as plain data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .codec import READABLE_SCHEMA_VERSIONS, JsonFile, ResultFormatError, build_dataclass, check_header, with_header
from .provenance import LensFidelity, LensRecord, ModelInfo

LENS_EVAL_KIND = "lazarus-report/lens-eval"

# Version 4 added every lens side by side (``entries``, each with a confidence interval per layer) and
# ``interval_method`` / ``sequences``; a version-3 file (the logit lens and one lens, no intervals) reads
# with ``entries`` rebuilt from ``logit`` and ``lens`` (``all_entries``).
LENS_EVAL_SCHEMA_VERSION = 4
LENS_EVAL_READABLE = tuple(dict.fromkeys((*READABLE_SCHEMA_VERSIONS, LENS_EVAL_SCHEMA_VERSION)))


@dataclass(frozen=True)
class LayerInterval:
    """A 95% confidence interval ``[low, high]`` for each of a lens's held-out means at one layer."""

    layer: int
    kl_to_final: list[float]
    top1_agreement: list[float]
    cross_entropy: list[float]


@dataclass(frozen=True)
class LensEvalEntry:
    """One lens evaluated: its record (``fidelity`` measured here) and an interval per layer (empty: unknown)."""

    lens: LensRecord
    intervals: list[LayerInterval] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class LensEvalResult(JsonFile):
    """``lazarus lens eval``: the logit lens and every other lens evaluated, side by side on held-out text.

    ``lens`` and ``logit`` are kept for readers of version 3: ``lens`` is the best lens other than the logit
    lens (lowest mean KL; the logit lens itself when it is the only one), ``logit`` the logit lens's fidelity.
    """

    model: ModelInfo
    lens: LensRecord  # the best non-logit lens evaluated (its ``fidelity`` is the one measured here)
    logit: list[LensFidelity]  # the logit lens on the same positions
    corpus: str  # description of the evaluation text
    corpus_sha256: str
    tokens: int  # positions evaluated per layer
    final_cross_entropy: float  # the model's own next-token cross-entropy on those positions
    versions: dict[str, str]
    timings: dict[str, float]
    schema_version: int = LENS_EVAL_SCHEMA_VERSION
    entries: list[LensEvalEntry] = dataclasses.field(default_factory=list)  # logit first, then each lens
    interval_method: str = ""  # how the intervals were computed (empty: none)
    sequences: int = 0  # held-out sequences the positions come from (0: unknown)

    def all_entries(self) -> list[LensEvalEntry]:
        """Every lens evaluated, the logit lens first (a version-3 file: the logit lens and ``lens``, no intervals)."""
        if self.entries:
            return list(self.entries)
        logit = LensRecord(
            kind="logit",
            source=None,
            digest=None,
            fitted_for=None,
            corpus=None,
            tokens=None,
            fidelity=list(self.logit),
            unreliable_threshold_nats=self.lens.unreliable_threshold_nats,
        )
        if self.lens.kind == "logit":
            return [LensEvalEntry(self.lens)]
        return [LensEvalEntry(logit), LensEvalEntry(self.lens)]

    def to_dict(self) -> dict[str, Any]:
        return with_header(LENS_EVAL_KIND, dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: Any) -> LensEvalResult:
        check_header(data, LENS_EVAL_KIND, "lens evaluation", readable=LENS_EVAL_READABLE)
        try:
            return build_dataclass(cls, data)
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultFormatError(f"malformed lens evaluation: {exc}") from None
