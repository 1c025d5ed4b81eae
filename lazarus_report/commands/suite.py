"""Run a suite: every case on one model, or on two (base = model 1, tuned = model 2).

Each model loads once and runs every case before the next model loads (the first is released
first, so peak memory is the larger model's, not the sum). With the same model on both sides
(``-m1 X -m2 X --adapter2 DIR``) the weights load once and the adapter is applied in place.

A two-model comparison needs both models' lens distributions at the last position
(``[layers, vocab]`` float32 per case: 5.9 MB for SmolLM2, 19 MB for Gemma 3 270M). Model 1's are
spilled to a temporary directory and memory-mapped back when model 2 has run the same case, so a
suite of hundreds of cases does not hold hundreds of distributions in memory. The spill is bounded
(``SPILL_BUDGET_BYTES``, 256 MiB): a suite whose cases need more runs in rounds, model 1 then model 2 on
as many cases as the budget holds, each round's files removed before the next (each model then loads
once per round). The directory goes on every exit (an error, SIGINT, SIGTERM).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import LazarusError
from ..results.codec import distinct_labels
from ..results.suite import SuiteCase, SuiteExecution, SuiteResult
from ..suites.checks import evaluate_case, evaluate_drift
from ..suites.spec import CaseSpec, SuiteSpec
from .compare import is_patched, reverse_patched

if TYPE_CHECKING:
    from ..engine.run import LensRun

ROLES_TWO = ["base", "tuned"]
# What model 1's spilled runs (``[layers, vocab]`` float32 per case, and block outputs with --attribution)
# may take on disk at once; as much as a comparison's change map (``change_map.POSITION_BUDGET_BYTES``).
SPILL_BUDGET_BYTES = 256 * 2**20
ROLES_ONE = ["model"]


def case_config(case: CaseSpec, lens: str = "logit") -> Any:
    """The analysis settings of one case: all layers (emergence needs every layer), no grid; its answer
    (``answer``, or ``generate`` and ``stop``) when it has one (batched like the others)."""
    from ..core.config import AnalysisConfig, LayerStrategy

    answer: dict[str, Any] = {}
    if case.answer is not None:
        answer["answer"] = case.answer
    if case.generate is not None:
        answer.update(generate=case.generate, stop=list(case.stop))
    return AnalysisConfig(
        **answer,
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
    batch_size: int | None = None,
    max_memory: int | str | None = None,
    drift: DriftRequest | None = None,
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
    ``batch_size``: cases per forward pass (``batched.plan_batches``; ``None``: chosen from the prompts'
    lengths; 1: one case at a time). Per-case results equal running each case alone (within float32
    rounding); ``--attribution`` runs one case at a time (it needs each case's block outputs), and the
    result's ``execution`` says how the cases ran.
    ``drift`` (two models): measure model 2's drift on neutral text once and check ``max_drift_js`` (``_with_drift``).
    """
    from ..engine.batched import check_batch_size
    from .analyzer import each_model

    if len(models) not in (1, 2):
        raise LazarusError("a suite runs on one model or two")
    if role is not None and (len(models) != 1 or role not in ROLES_TWO):
        raise LazarusError("--role base|tuned applies to one-model runs only")
    n_models = len(models)
    if attribution and n_models != 2:
        raise LazarusError("--attribution needs two models (-m1 BASE -m2 TUNED)")
    if drift is not None and n_models != 2:
        raise LazarusError("--drift needs two models (-m1 BASE -m2 TUNED)")
    check_batch_size(batch_size)
    adapters = list(adapters) if adapters is not None else [None] * n_models
    scales = list(embedding_scales) if embedding_scales is not None else [None] * n_models
    start = time.perf_counter()
    lens = lens or spec.lens or "logit"
    attribute_cases = attribution and n_models == 2
    one_by_one = batch_size == 1 or attribute_cases
    state = _SuiteRun.start(spec, n_models, lens, attribute_cases)
    first_round = True
    with tempfile.TemporaryDirectory(prefix="lazarus-suite-") as spill:
        while state.todo or first_round:
            # One round: model 1 runs as many cases as its spill budget holds, then model 2 runs them.
            in_round: list[int] = []  # cases model 1 ran (or that failed on it) this round
            for side in each_model(models, adapters, scales, precision, max_memory):
                state.ready(side, first_round)
                pending = state.pending(side, in_round, progress)
                outcomes = _outcomes(
                    side, spec, state.configs, pending, batch_size, one_by_one, attribute_cases, state.passes
                )
                state.take(side, outcomes, in_round, Path(spill), progress)
            first_round = False
            if not in_round and state.todo:
                raise RuntimeError("a suite round ran no case")
            taken = set(in_round)
            state.todo = [i for i in state.todo if i not in taken]
            state.reverse(in_round, (models[0], adapters[0], scales[0]), precision, max_memory)
            state.compare(in_round, role)
            for path in Path(spill).iterdir():  # the round's spilled runs are no longer needed
                path.unlink()
        labels = distinct_labels(state.labels)
        cases = [state.done[i] for i in range(len(spec.cases))]
    result = _suite_result(state, labels, cases, role, batch_size, one_by_one, start)
    return _with_drift(result, spec, drift, (models, adapters, lens, precision, max_memory))


def _with_drift(result: SuiteResult, spec: SuiteSpec, drift: DriftRequest | None, run: tuple[Any, ...]) -> SuiteResult:
    """``result`` with the drift measured (``suite --drift``: ``run`` is the models, adapters, lens, precision and
    memory budget) and the suite's ``max_drift_js`` checked against it (skipped without ``--drift``)."""
    if drift is None and not spec.drift_limits:
        return result
    why = "run the suite with --drift (two models)" if drift is None else ""
    measured = None if drift is None else drift.measure(*run)
    return dataclasses.replace(result, drift=measured, drift_checks=evaluate_drift(spec.drift_limits, measured, why))


@dataclass(frozen=True)
class DriftRequest:
    """``suite --drift``: the corpus (default: the built-in one's held-out split) and how many positions."""

    corpus: Any = None  # lens.learned.corpus.Corpus
    tokens: int | None = None

    def measure(
        self,
        models: Sequence[str],
        adapters: Sequence[str | None],
        lens: str,
        precision: str,
        max_memory: int | str | None,
    ) -> Any:
        from ..core.config import AnalysisConfig, LayerStrategy
        from .drift import DRIFT_TOKENS, measure_drift

        return measure_drift(
            models[0],
            models[1],
            AnalysisConfig(layer_strategy=LayerStrategy.ALL, lens=lens),
            adapter1=adapters[0],
            adapter2=adapters[1],
            corpus=self.corpus,
            tokens=DRIFT_TOKENS if self.tokens is None else self.tokens,
            precision=precision,
            max_memory=max_memory,
        )


@dataclass
class _SuiteRun:
    """What ``run_suite`` keeps across rounds: per case (indexed like ``spec.cases``) and per model."""

    spec: SuiteSpec
    n_models: int
    lens: str
    attribute_cases: bool
    configs: list[Any]
    runs: list[list[LensRun | None]]
    analyses: list[Any]  # one model: the result alone (not its [L, V] log-probs)
    errors: list[str | None]
    attributed: list[tuple[Any, str | None]]
    todo: list[int]
    labels: list[str] = field(default_factory=list)
    load_seconds: list[float] = field(default_factory=list)
    passes: list[int] = field(default_factory=list)
    done: dict[int, SuiteCase] = field(default_factory=dict)
    engine: float = 0.0
    compare_seconds: float = 0.0
    per_case: int = 0  # bytes model 1 spills for one case (known once a case has run)

    @classmethod
    def start(cls, spec: SuiteSpec, n_models: int, lens: str, attribute_cases: bool) -> _SuiteRun:
        n = len(spec.cases)
        return cls(
            spec=spec,
            n_models=n_models,
            lens=lens,
            attribute_cases=attribute_cases,
            configs=[case_config(case, lens) for case in spec.cases],
            runs=[[None] * n_models for _ in spec.cases],
            analyses=[None] * n,
            errors=[None] * n,
            attributed=[(None, None)] * n,
            todo=list(range(n)),
            load_seconds=[0.0] * n_models,
            passes=[0] * n_models,
        )

    def on_model(self, side: Any, exc: LazarusError) -> str:
        """An error message naming the model when there are two."""
        return f"model {side.number} ({side.model_id}): {exc}" if self.n_models == 2 else str(exc)

    def ready(self, side: Any, first_round: bool) -> None:
        """A freshly loaded side: its lens resolved (a missing or mismatched lens stops the run here, before
        any case), its label and load time recorded."""
        try:
            side.analyzer.lens(self.lens)
        except LazarusError as exc:
            raise LazarusError(self.on_model(side, exc)) from None
        if first_round:
            self.labels.append(side.analyzer.info.label)
        self.load_seconds[side.number - 1] += float(side.analyzer.loaded.load_seconds)

    def pending(self, side: Any, in_round: list[int], progress: Callable[[int], None] | None) -> list[int]:
        """The cases ``side`` runs this round: model 1 as many as the spill budget holds, model 2 those model 1
        ran without an error (the others count as done for ``progress``)."""
        if side.number == 1:
            if self.n_models == 1:
                return self.todo
            info = side.analyzer.info
            self.per_case = max(self.per_case, 4 * int(info.num_layers) * int(info.vocab_size))
            return self.todo[: max(1, SPILL_BUDGET_BYTES // self.per_case)]
        pending = [i for i in in_round if self.errors[i] is None]
        if progress is not None and len(pending) < len(in_round):
            progress(len(in_round) - len(pending))  # cases that already failed on model 1
        return pending

    def take(
        self,
        side: Any,
        outcomes: Generator[tuple[int, LensRun | LazarusError], None, None],
        in_round: list[int],
        spill: Path,
        progress: Callable[[int], None] | None,
    ) -> None:
        """Record each case's outcome on ``side``; model 1's runs go to disk until the budget is spent."""
        spilled = 0
        for i, outcome in outcomes:
            if isinstance(outcome, LazarusError):
                self.errors[i] = self.on_model(side, outcome)
            else:
                run = outcome
                if self.n_models == 2 and side.number == 1:
                    blocks = run.block_outputs
                    # the blocks count twice: model 2's wait on disk too when its case is patched
                    size = run.log_probs.nbytes + (2 * blocks.nbytes if blocks is not None else 0)
                    self.per_case = max(self.per_case, size)
                    if in_round and spilled + size > SPILL_BUDGET_BYTES:
                        break  # the budget is spent: this case runs again in the next round
                    spilled += size
                    run = dataclasses.replace(
                        run,
                        log_probs=_spill(run.log_probs, spill / f"{i}.npy"),
                        block_outputs=_spill(blocks, spill / f"{i}.blocks.npy") if blocks is not None else None,
                    )
                elif self.attribute_cases and (first := self.runs[i][0]) is not None:
                    run = self.attribute(side, i, first, run, spill)
                self.engine += run.engine_seconds
                if self.n_models == 1:
                    self.analyses[i] = run.result
                else:
                    self.runs[i][side.number - 1] = run
            if side.number == 1:
                in_round.append(i)
            if progress is not None:
                progress(1)
        outcomes.close()

    def attribute(self, side: Any, i: int, first: LensRun, run: LensRun, spill: Path) -> LensRun:
        """Case ``i``'s change attributed to layers with model 2 loaded; ``run`` without its block outputs,
        or with them on disk when the reverse direction needs them once model 1 is back (``reverse``)."""
        from ..compare.attribution import attribute

        self.attributed[i] = attribute(side.analyzer.loaded, first, run)
        blocks = run.block_outputs
        return dataclasses.replace(
            run,
            block_outputs=_spill(blocks, spill / f"{i}.blocks2.npy")
            if is_patched(self.attributed[i]) and blocks is not None
            else None,
        )

    def reverse(
        self,
        in_round: list[int],
        model1: tuple[str, str | None, float | None],
        precision: str,
        max_memory: int | str | None,
    ) -> None:
        """The reverse direction of the round's activation patching (model 1 loads again, once for them all)."""
        reverse = [i for i in in_round if is_patched(self.attributed[i])]
        if not reverse:
            return
        patched = [(*_both(self.runs[i]), self.attributed[i][0]) for i in reverse]
        for i, both_ways in zip(reverse, reverse_patched(model1, precision, max_memory, patched)):
            self.attributed[i] = (both_ways, None)
            self.runs[i][1] = dataclasses.replace(_both(self.runs[i])[1], block_outputs=None)

    def compare(self, in_round: list[int], role: str | None) -> None:
        """The round's cases compared (two models) and checked; their runs dropped (memory maps before their
        files go)."""
        compare_start = time.perf_counter()
        for i in in_round:
            self.done[i] = _case_outcome(
                self.spec.cases[i],
                self.errors[i],
                self.analyses[i],
                self.runs[i],
                self.attributed[i],
                role,
                self.n_models,
            )
            self.runs[i] = [None] * self.n_models
            self.analyses[i] = None
        self.compare_seconds += time.perf_counter() - compare_start


def _suite_result(
    state: _SuiteRun,
    labels: list[str],
    cases: list[SuiteCase],
    role: str | None,
    batch_size: int | None,
    one_by_one: bool,
    start: float,
) -> SuiteResult:
    from ..core.runtime import versions

    spec = state.spec
    return SuiteResult(
        name=spec.name,
        source=spec.path,
        source_sha256=spec.sha256,
        roles=list(ROLES_TWO if state.n_models == 2 else ROLES_ONE),
        labels=labels,
        role_checked=role,
        cases=cases,
        load_seconds=[round(x, 4) for x in state.load_seconds],
        timings={
            "engine": round(state.engine, 4),
            "compare": round(state.compare_seconds, 4),
            "total": round(time.perf_counter() - start, 4),
        },
        versions=versions(),
        execution=SuiteExecution(
            batched=not one_by_one,
            batch_size=batch_size,
            forward_passes=state.passes,
            note="one case at a time: --attribution needs every block's output of each case"
            if state.attribute_cases and batch_size != 1
            else None,
        ),
    )


def _both(runs: list[LensRun | None]) -> tuple[LensRun, LensRun]:
    first, second = runs
    assert first is not None and second is not None
    return first, second


def _outcomes(
    side: Any,
    spec: SuiteSpec,
    configs: list[Any],
    pending: list[int],
    batch_size: int | None,
    one_by_one: bool,
    keep_block_outputs: bool,
    passes: list[int],
) -> Generator[tuple[int, LensRun | LazarusError], None, None]:
    """Each pending case's run on ``side`` (or its error): batched (``batched.analyze_many``), or one case
    per forward pass. ``passes[side.number - 1]`` counts this side's forward passes (over every round)."""

    def count(_: int = 1) -> None:
        passes[side.number - 1] += 1

    if one_by_one:
        for i in pending:
            try:
                run = side.run(spec.cases[i].prompt, configs[i], keep_block_outputs=keep_block_outputs)
            except LazarusError as exc:
                yield i, exc
            else:
                count()
                yield i, run
        return
    from ..engine.batched import analyze_many

    if not pending:
        return
    scaled = [dataclasses.replace(configs[i], embedding_scale=side.embedding_scale) for i in pending]
    batch = analyze_many(
        side.analyzer.loaded,
        [spec.cases[i].prompt for i in pending],
        scaled,
        lens=side.analyzer.lens(scaled[0].lens),
        batch_size=batch_size,
        on_pass=count,
    )
    for j, outcome in batch:
        yield pending[j], outcome


def _case_outcome(
    case: CaseSpec,
    error: str | None,
    analysis: Any,
    runs: list[LensRun | None],
    attributed: tuple[Any, str | None],
    role: str | None,
    n_models: int,
) -> SuiteCase:
    """One case's ``SuiteCase``: its comparison (two models) or analysis (one), and its checks."""
    if error is not None:
        return SuiteCase(case.id, case.prompt, case.line, None, None, [], error, case.group)
    comparison = None
    if n_models == 2:
        from ..compare.layers import compare_models_from_runs

        comparison = compare_models_from_runs(
            [r for r in runs if r is not None], attribution=attributed[0], attribution_note=attributed[1]
        )
        analysis = None
    checks = evaluate_case(case, analysis=analysis, comparison=comparison, role_checked=role)
    return SuiteCase(case.id, case.prompt, case.line, analysis, comparison, checks, group=case.group)


def _spill(array: Any, path: Path) -> Any:
    import numpy as np

    from ..engine.spill import spill_errors

    with spill_errors(path):
        np.save(path, array, allow_pickle=False)
    return np.load(path, mmap_mode="r", allow_pickle=False)
