"""Run a suite against a base at every training checkpoint (``lazarus introspect sweep``).

The sweep is ``run_suite`` with one base and many tuned sides: the base runs every case once (its lens
distributions spilled to disk as for a two-model suite, in rounds when they exceed ``SPILL_BUDGET_BYTES``),
then each checkpoint runs the same cases and is compared with the spilled base runs and checked, exactly as
``suite -m1 BASE -m2 BASE --adapter2 CHECKPOINT`` would (the same ``_SuiteRun`` code compares and checks).
The base loads once per round; the first checkpoint is applied in place and each later checkpoint of the same
adapter folder only replaces the adapter weights (``each_model``). Steps already in an earlier sweep's JSON
(same suite, base, lens, attribution and lazarus version; matched by the checkpoint file's sha256) are read
from it and not run again.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import LazarusError
from ..engine.replay import BlockReplay, replaying
from ..models.checkpoints import Checkpoint, check_checkpoints
from ..results.codec import distinct_labels
from ..results.diff import digest_result
from ..results.suite import SuiteResult
from ..results.sweep import FAIL_ON, StepCase, SweepCase, SweepResult, SweepStep
from ..suites.spec import SuiteSpec
from .suite import _outcomes, _suite_result, _SuiteRun


def run_sweep(
    spec: SuiteSpec,
    base: str,
    steps: Sequence[Checkpoint],
    *,
    embedding_scale: float | None = None,
    precision: str = "auto",
    lens: str | None = None,
    attribution: bool = False,
    batch_size: int | None = None,
    max_memory: int | str | None = None,
    fail_on: str = "last",
    resume: SweepResult | None = None,
    progress: Callable[[int], None] | None = None,
) -> SweepResult:
    """The suite ``spec`` against ``base`` at each of ``steps`` (checkpoints or models), in order.

    ``resume``: an earlier sweep; its steps whose checkpoint digest matches are reused when it was made with
    the same suite, base, lens, attribution and lazarus version (``resumable``), else it is ignored.
    ``progress(n)``: called as cases finish (``len(cases) * (1 + steps run)`` in all)."""
    from ..core.runtime import versions

    if fail_on not in FAIL_ON:
        raise LazarusError(f"--fail-on must be one of {', '.join(FAIL_ON)}")
    steps = list(steps)
    check_checkpoints(steps)
    lens = lens or spec.lens or "logit"
    start = time.perf_counter()
    done: dict[str, SweepStep] = {}
    if resume is not None and resumable(resume, spec, base, lens, attribution):
        done = {s.sha256: s for s in resume.steps if s.sha256 is not None}
    todo = [s for s in steps if s.sha256 is None or s.sha256 not in done]
    if todo:
        cases, base_label, ran, load_seconds, base_seconds = _run_steps(
            spec, base, todo, embedding_scale, precision, lens, attribution, batch_size, max_memory, progress
        )
    else:
        assert resume is not None
        cases, base_label, ran, load_seconds, base_seconds = resume.cases, resume.base_label, [], [], 0.0
    fresh = iter(ran)
    result_steps = [
        dataclasses.replace(
            next(fresh) if s in todo else done[s.sha256 or ""], label=s.label, step=s.step, adapter=s.adapter
        )
        for s in steps
    ]
    total = time.perf_counter() - start
    return SweepResult(
        name=spec.name,
        source=spec.path,
        source_sha256=spec.sha256,
        base=base,
        base_label=base_label,
        lens=lens,
        attribution=attribution,
        cases=cases,
        steps=result_steps,
        fail_on=fail_on,
        load_seconds=[round(x, 4) for x in load_seconds],
        timings={"base": round(base_seconds, 4), "steps": round(total - base_seconds, 4), "total": round(total, 4)},
        versions=versions(),
    )


def resumable(previous: SweepResult, spec: SuiteSpec, base: str, lens: str, attribution: bool) -> bool:
    """Whether ``previous``'s steps can stand for this sweep's: the same suite file (by digest), base, lens,
    attribution and lazarus-report version."""
    from ..core.runtime import versions

    return (
        previous.source_sha256 == spec.sha256
        and previous.base == base
        and previous.lens == lens
        and previous.attribution == attribution
        and previous.versions.get("lazarus-report") == versions().get("lazarus-report")
        and [c.id for c in previous.cases] == [c.id for c in spec.cases]
    )


def _run_steps(
    spec: SuiteSpec,
    base: str,
    todo: list[Checkpoint],
    scale: float | None,
    precision: str,
    lens: str,
    attribution: bool,
    batch_size: int | None,
    max_memory: int | str | None,
    progress: Callable[[int], None] | None,
) -> tuple[list[SweepCase], str, list[SweepStep], list[float], float]:
    """The base and each step of ``todo``, in rounds as ``run_suite`` (the base's spill bounded)."""
    from ..engine.batched import check_batch_size
    from .analyzer import each_model

    check_batch_size(batch_size)
    one_by_one = batch_size == 1 or attribution
    base_state = _SuiteRun.start(spec, 2, lens, attribution)
    states = [_SuiteRun.start(spec, 2, lens, attribution) for _ in todo]
    seconds = [0.0] * len(todo)
    base_seconds = 0.0
    models = [base] + [s.model or base for s in todo]
    adapters = [None] + [s.adapter for s in todo]
    scales = [scale] * len(models)
    first_round = True
    replay: BlockReplay | None = None
    with tempfile.TemporaryDirectory(prefix="lazarus-sweep-") as spill_dir:
        spill = Path(spill_dir)
        while base_state.todo or first_round:
            in_round: list[int] = []
            clock = time.perf_counter()
            for side in each_model(models, adapters, scales, precision, max_memory):
                if side.number == 1:
                    base_state.ready(side, first_round)
                    replay = None if one_by_one else _replay_for(todo, side.analyzer.info.num_layers)
                    pending = base_state.pending(side, in_round, progress)
                    outcomes = _outcomes(
                        side, spec, base_state.configs, pending, batch_size, one_by_one, attribution, base_state.passes
                    )
                    with replaying(replay):  # the base's hidden states below the adapters, recorded
                        base_state.take(side, outcomes, in_round, spill, progress)
                    base_seconds += time.perf_counter() - clock
                else:
                    k = side.number - 2
                    as_tuned = dataclasses.replace(side, number=2)
                    _run_step(states[k], base_state, as_tuned, in_round, first_round)
                    if replay is not None:
                        replay.recording = False
                    with replaying(replay if todo[k].adapter is not None else None):
                        _step_cases(
                            states[k], as_tuned, spec, in_round, spill / f"step{k}", batch_size, one_by_one, progress
                        )
                    states[k].reverse(in_round, (base, None, scale), precision, max_memory)
                    states[k].compare(in_round, None)
                    shutil.rmtree(spill / f"step{k}", ignore_errors=True)
                    seconds[k] += time.perf_counter() - clock
                clock = time.perf_counter()
            first_round = False
            if not in_round and base_state.todo:
                raise RuntimeError("a sweep round ran no case")
            taken = set(in_round)
            base_state.todo = [i for i in base_state.todo if i not in taken]
            for path in spill.iterdir():
                path.unlink()
    now = time.perf_counter()
    cases_of = [[st.done[i] for i in range(len(spec.cases))] for st in states]
    suites = [
        _suite_result(st, distinct_labels(st.labels), c, None, batch_size, one_by_one, now)
        for st, c in zip(states, cases_of)
    ]
    cases = _sweep_cases(suites[0])
    load_seconds = base_state.load_seconds[:1] + [st.load_seconds[1] for st in states]
    ran = [_sweep_step(s, suite, seconds[k]) for k, (s, suite) in enumerate(zip(todo, suites))]
    return cases, suites[0].labels[0], ran, load_seconds, base_seconds


def _replay_for(steps: list[Checkpoint], n_layers: int) -> BlockReplay | None:
    """A replay of the base's blocks below every step's adapter (``engine.replay``), or None when some step is a
    whole model or adapts the first block (a full fine-tune adapts them all)."""
    from ..models.adapter_config import adapted_layers
    from ..models.adapters import adapter_files

    firsts = []
    for step in steps:
        layers = adapted_layers(str(adapter_files(step.adapter)[0]), n_layers) if step.adapter is not None else []
        if not layers:
            return None
        firsts.append(min(layers))
    start = min(firsts)
    return BlockReplay(start) if start >= 1 else None


def _run_step(state: _SuiteRun, base_state: _SuiteRun, side: Any, in_round: list[int], first_round: bool) -> None:
    """A step's suite state, given the base's runs of this round's cases; ``side`` (as model 2) made ready."""
    if first_round:
        state.labels = list(base_state.labels[:1])
        state.load_seconds[0] = base_state.load_seconds[0]
    for i in in_round:
        state.errors[i] = base_state.errors[i]
        state.runs[i][0] = base_state.runs[i][0]
    state.ready(side, first_round)


def _step_cases(
    state: _SuiteRun,
    side: Any,
    spec: SuiteSpec,
    in_round: list[int],
    spill: Path,
    batch_size: int | None,
    one_by_one: bool,
    progress: Callable[[int], None] | None,
) -> None:
    """The step's run of this round's cases (on ``side``, the checkpoint as model 2), taken into ``state``."""
    spill.mkdir()
    pending = state.pending(side, in_round, progress)
    outcomes = _outcomes(
        side, spec, state.configs, pending, batch_size, one_by_one, state.attribute_cases, state.passes
    )
    state.take(side, outcomes, in_round, spill, progress)


def _sweep_cases(suite: SuiteResult) -> list[SweepCase]:
    """The suite's cases as the base sees them (read from a step's suite result: the base side)."""
    digest = digest_result(suite)
    out = []
    for case, reading in zip(suite.cases, digest.cases):
        base_side = reading.sides[0] if reading.sides else None
        out.append(
            SweepCase(
                id=case.id,
                prompt=case.prompt,
                group=case.group,
                target=base_side.target if base_side is not None else None,
                base_p_target=base_side.prob if base_side is not None else None,
                base_emergence_layer=base_side.emergence if base_side is not None else None,
            )
        )
    return out


def _sweep_step(checkpoint: Checkpoint, suite: SuiteResult, seconds: float) -> SweepStep:
    """A step's record, read from its suite result as ``report diff`` reads one (``results.diff.digest_result``)."""
    digest = digest_result(suite)
    cases = []
    for case, reading in zip(suite.cases, digest.cases):
        tuned = reading.sides[1] if len(reading.sides) > 1 else None
        cases.append(
            StepCase(
                id=case.id,
                status=case.status,
                checks=list(case.checks),
                p_target=tuned.prob if tuned is not None else None,
                rank=tuned.rank if tuned is not None else None,
                emergence_layer=tuned.emergence if tuned is not None else None,
                final_js=reading.js,
                carriers=reading.carriers,
                top1=tuned.top1 if tuned is not None else None,
                error=case.error,
            )
        )
    return SweepStep(
        label=checkpoint.label,
        step=checkpoint.step,
        adapter=checkpoint.adapter,
        model=checkpoint.model,
        sha256=checkpoint.sha256,
        model_label=suite.labels[1] if len(suite.labels) > 1 else checkpoint.label,
        cases=cases,
        seconds=round(seconds, 4),
    )
