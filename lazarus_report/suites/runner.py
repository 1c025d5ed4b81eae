"""Run a suite: every case on one model, or on two (base = model 1, tuned = model 2).

Each model loads once and runs every case before the next model loads (the first is released
first, so peak memory is the larger model's, not the sum). With the same model on both sides
(``-m1 X -m2 X --adapter2 DIR``) the weights load once and the adapter is applied in place.

A two-model comparison needs both models' lens distributions at the last position
(``[layers, vocab]`` float32 per case: 5.9 MB for SmolLM2, 19 MB for Gemma 3 270M). Model 1's are
spilled to a temporary directory and memory-mapped back when model 2 has run the same case, so a
suite of hundreds of cases does not hold hundreds of distributions in memory.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LazarusError
from ..result import SuiteCase, SuiteResult, distinct_labels

if TYPE_CHECKING:
    from ..engine import LensRun
from .checks import evaluate_case
from .spec import CaseSpec, SuiteSpec

ROLES_TWO = ["base", "tuned"]
ROLES_ONE = ["model"]


def case_config(case: CaseSpec, lens: str = "logit") -> Any:
    """The analysis settings of one case: all layers (emergence needs every layer), no grid."""
    from ..api import AnalysisConfig, LayerStrategy

    return AnalysisConfig(
        layer_strategy=LayerStrategy.ALL,
        top_k=case.top_k,
        track_tokens=list(case.track),
        use_chat_template=not case.raw,
        compute_grid=False,
        lens=lens,
    )


def run_suite(
    spec: SuiteSpec,
    models: Sequence[str],
    *,
    adapters: Sequence[str | None] | None = None,
    embedding_scales: Sequence[float | None] | None = None,
    precision: str = "auto",
    role: str | None = None,
    progress: Callable[[int], None] | None = None,
    lens: str | None = None,
    attribution: bool = False,
) -> SuiteResult:
    """Run every case of ``spec`` on one model (``models=[m]``) or two (``[base, tuned]``).

    ``role`` (one model only): ``"base"`` or ``"tuned"`` to also check that side's expectations on
    the one model. ``progress(n)`` is called after each case on each model (``len(cases) *
    len(models)`` calls in all). A case that cannot run (say, a prompt longer than one model's
    context) is recorded with its error; the other cases still run. ``lens``: the lens every case is
    read through (default: the suite file's ``defaults.lens``, else the logit lens); it is resolved
    once per model, before any case runs, so a missing lens fails the run rather than every case.
    ``attribution`` (two models): attribute each case's change to layers causally
    (``attribution.attribute``, run while model 2 is loaded; model 1's block outputs wait on disk).
    """
    from ..api import each_model
    from ..compare import compare_models_from_runs
    from ..engine import versions

    if len(models) not in (1, 2):
        raise LazarusError("a suite runs on one model or two")
    if role is not None and (len(models) != 1 or role not in ROLES_TWO):
        raise LazarusError("--role base|tuned applies to one-model runs only")
    n_models = len(models)
    if attribution and n_models != 2:
        raise LazarusError("--attribution needs two models (-m1 BASE -m2 TUNED)")
    adapters = list(adapters) if adapters is not None else [None] * n_models
    scales = list(embedding_scales) if embedding_scales is not None else [None] * n_models
    start = time.perf_counter()
    lens = lens or spec.lens or "logit"
    configs = [case_config(case, lens) for case in spec.cases]
    runs: list[list[LensRun | None]] = [[None] * n_models for _ in spec.cases]
    errors: list[str | None] = [None] * len(spec.cases)
    labels: list[str] = []
    load_seconds: list[float] = []
    engine = 0.0
    attributed: list[tuple[Any, str | None]] = [(None, None)] * len(spec.cases)
    attribute_cases = attribution and n_models == 2
    with tempfile.TemporaryDirectory(prefix="lazarus-suite-") as spill:
        for side in each_model(models, adapters, scales, precision):
            try:  # a missing or mismatched lens stops the run here, before any case
                side.analyzer.lens(lens)
            except LazarusError as exc:
                raise LazarusError(
                    f"model {side.number} ({side.model_id}): {exc}" if n_models == 2 else str(exc)
                ) from None
            labels.append(side.analyzer.info.label)
            load_seconds.append(float(side.analyzer.loaded.load_seconds))
            for i, (case, config) in enumerate(zip(spec.cases, configs)):
                if errors[i] is None:
                    try:
                        run = side.run(case.prompt, config, keep_block_outputs=attribute_cases)
                    except LazarusError as exc:
                        errors[i] = f"model {side.number} ({side.model_id}): {exc}" if n_models == 2 else str(exc)
                    else:
                        engine += run.engine_seconds
                        if n_models == 2 and side.number == 1:
                            blocks = run.block_outputs
                            run = dataclasses.replace(
                                run,
                                log_probs=_spill(run.log_probs, Path(spill) / f"{i}.npy"),
                                block_outputs=_spill(blocks, Path(spill) / f"{i}.blocks.npy")
                                if blocks is not None
                                else None,
                            )
                        elif attribute_cases and (first := runs[i][0]) is not None:
                            from ..attribution import attribute

                            attributed[i] = attribute(side.analyzer.loaded, first, run)
                            blocks = run.block_outputs
                            patched = attributed[i][0] is not None and attributed[i][0].method == "activation-patching"
                            run = dataclasses.replace(
                                run,  # the reverse direction needs them once model 1 is back (below)
                                block_outputs=_spill(blocks, Path(spill) / f"{i}.blocks2.npy")
                                if patched and blocks is not None
                                else None,
                            )
                        runs[i][side.number - 1] = run
                if progress is not None:
                    progress(1)
        reverse = [i for i, (a, _) in enumerate(attributed) if a is not None and a.method == "activation-patching"]
        if reverse:
            from ..attribution import reverse_patching

            # Model 2's block outputs patched into model 1: load model 1 again, once for every case.
            for side in each_model(models[:1], adapters[:1], scales[:1], precision):
                for i in reverse:
                    first, second = runs[i]
                    assert first is not None and second is not None
                    attributed[i] = (reverse_patching(side.analyzer.loaded, first, second, attributed[i][0]), None)
                    runs[i][1] = dataclasses.replace(second, block_outputs=None)
        labels = distinct_labels(labels)
        compare_start = time.perf_counter()
        cases = []
        for i, case in enumerate(spec.cases):
            if errors[i] is not None:
                cases.append(SuiteCase(case.id, case.prompt, case.line, None, None, [], errors[i], case.group))
                continue
            if n_models == 2:
                comparison = compare_models_from_runs(
                    [r for r in runs[i] if r is not None],
                    attribution=attributed[i][0],
                    attribution_note=attributed[i][1],
                )
                analysis = None
            else:
                comparison = None
                analysis = runs[i][0].result  # type: ignore[union-attr]
            runs[i] = [None] * n_models  # drop the memory maps before the directory goes
            checks = evaluate_case(case, analysis=analysis, comparison=comparison, role_checked=role)
            cases.append(SuiteCase(case.id, case.prompt, case.line, analysis, comparison, checks, group=case.group))
        compare_seconds = time.perf_counter() - compare_start
    return SuiteResult(
        name=spec.name,
        source=spec.path,
        source_sha256=spec.sha256,
        roles=list(ROLES_TWO if n_models == 2 else ROLES_ONE),
        labels=labels,
        role_checked=role,
        cases=cases,
        load_seconds=[round(x, 4) for x in load_seconds],
        timings={
            "engine": round(engine, 4),
            "compare": round(compare_seconds, 4),
            "total": round(time.perf_counter() - start, 4),
        },
        versions=versions(),
    )


def _spill(array: Any, path: Path) -> Any:
    import numpy as np

    np.save(path, array, allow_pickle=False)
    return np.load(path, mmap_mode="r", allow_pickle=False)
