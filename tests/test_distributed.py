"""MLX's distributed engine: two ranks on localhost (``mlx.launch --backend ring -n 2``) give the same lens
as one process, with the model sharded tensor-parallel or as a pipeline; rank 0 alone writes; models that
cannot be sharded fail with one line and exit 2 on every rank."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lazarus_report.cli.main import main
from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.results.analysis import AnalysisResult
from lazarus_report.results.comparison import ComparisonResult

HERE = Path(__file__).resolve().parent
ADAPTER = HERE.parent / "examples" / "weather-adapter" / "adapter"
PROMPT = "The capital of France is"
TOLERANCE = 1e-4


# --- launching two ranks -------------------------------------------------------------------------


def launcher() -> list[str]:
    """``mlx.launch`` of this interpreter's environment (its console script, else its module)."""
    script = Path(sys.executable).parent / "mlx.launch"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from mlx._distributed_utils.launch import main; sys.exit(main())"]


def _free_port_pair() -> int:
    """A port p with p and p + 1 free (the ring backend listens on one port per rank)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


def launch(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` as two ranks of the ring backend on localhost."""
    cmd = [
        *launcher(),
        "--backend",
        "ring",
        "-n",
        "2",
        "--starting-port",
        str(_free_port_pair()),
        "--python",
        sys.executable,
        "--",
        *args,
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def rank_exit_codes(proc: subprocess.CompletedProcess[str]) -> dict[int, int]:
    """Non-zero exit codes per rank: mlx.launch itself exits 0 and reports them on stderr."""
    return {int(r): int(c) for r, c in re.findall(r"Node with rank (\d+) exited with code (-?\d+)", proc.stderr)}


# --- comparing with one process --------------------------------------------------------------------


def assert_same_lens(single: AnalysisResult, dist: AnalysisResult) -> None:
    """Same captured layers, same top-1 at every layer (and grid cell), probabilities within 1e-4."""
    assert dist.captured_layers == single.captured_layers
    assert dist.token_ids == single.token_ids
    for a, b in zip(single.layer_predictions, dist.layer_predictions, strict=True):
        assert b.top_tokens[0].token_id == a.top_tokens[0].token_id, f"layer {a.layer_idx}"
        probs = {t.token_id: t.prob for t in b.top_tokens}
        for t in a.top_tokens:
            if t.token_id in probs:
                assert probs[t.token_id] == pytest.approx(t.prob, abs=TOLERANCE)
        assert b.entropy == pytest.approx(a.entropy, abs=1e-3)
        for x, y in zip(a.tracked, b.tracked, strict=True):
            assert y.prob == pytest.approx(x.prob, abs=TOLERANCE)
    if single.grid is not None:
        assert dist.grid is not None
        assert dist.grid.top_token_ids == single.grid.top_token_ids
        for row_a, row_b in zip(single.grid.top_probs, dist.grid.top_probs, strict=True):
            assert row_b == pytest.approx(row_a, abs=TOLERANCE)


def single_process(model: str, *, adapter: str | None = None, track: list[str] | None = None) -> AnalysisResult:
    config = AnalysisConfig(
        layer_strategy=LayerStrategy.ALL, top_k=5, track_tokens=track or [], use_chat_template=False, compute_grid=True
    )
    with ModelAnalyzer.load(model, adapter=adapter) as analyzer:
        return analyzer.run(PROMPT, config)


def run_worker(tmp_path: Path, jobs: list[dict]) -> dict[str, dict]:
    out = tmp_path / "out"
    out.mkdir()
    proc = launch([str(HERE / "distributed_worker.py"), str(out), json.dumps(jobs)], cwd=tmp_path)
    assert not rank_exit_codes(proc), proc.stderr
    assert proc.stdout == ""
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{j['name']}.json" for j in jobs), proc.stderr
    return {j["name"]: json.loads((out / f"{j['name']}.json").read_text()) for j in jobs}


# --- tiny models, one launch for every mode -------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tiny_models import build_tiny_model

    path = tmp_path_factory.mktemp("tiny-llama") / "llama"
    build_tiny_model("llama", path, seed=3)
    return path


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> dict[str, Path]:
    from tiny_models import build_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    out = {"llama": tiny_llama}
    for family in ("qwen2", "qwen3", "gemma3_text"):
        build_tiny_model(family, root / family, seed=3)
        out[family] = root / family
    build_tiny_model("llama", root / "llama-b", seed=4)
    out["llama-b"] = root / "llama-b"
    build_tiny_model("phi3", root / "phi3-one-block", seed=3, num_hidden_layers=1)
    out["phi3-one-block"] = root / "phi3-one-block"
    return out


@pytest.mark.slow  # two ranks: processes, imports and loads twice
@pytest.mark.distributed  # mlx.launch: on its own (`make test`)
def test_two_ranks_equal_one_process_in_every_mode(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    jobs = [
        {"name": "llama-tensor", "model": str(tiny_dirs["llama"]), "mode": "tensor"},
        {"name": "llama-pipeline", "model": str(tiny_dirs["llama"]), "mode": "pipeline"},
        {"name": "qwen2-pipeline", "model": str(tiny_dirs["qwen2"]), "mode": "pipeline"},
        {"name": "qwen3-auto", "model": str(tiny_dirs["qwen3"]), "mode": "auto"},
        {"name": "gemma3-auto", "model": str(tiny_dirs["gemma3_text"]), "mode": "auto"},
        {"name": "gemma3-tensor", "model": str(tiny_dirs["gemma3_text"]), "mode": "tensor"},
        {"name": "phi3-neither", "model": str(tiny_dirs["phi3-one-block"]), "mode": "auto"},
    ]
    for job in jobs:
        job.update(prompt=PROMPT, track=[" Paris"])
    got = run_worker(tmp_path, jobs)

    expected_runs = {
        "llama-tensor": ("llama", "tensor", "mlx-lm Model.shard", None),
        "llama-pipeline": ("llama", "pipeline", "lazarus pipeline", [[1, 3], [0, 1]]),
        "qwen2-pipeline": ("qwen2", "pipeline", "mlx-lm pipeline", [[1, 3], [0, 1]]),
        "qwen3-auto": ("qwen3", "tensor", "mlx-lm Model.shard", None),
        "gemma3-auto": ("gemma3_text", "pipeline", "lazarus pipeline", [[3, 6], [0, 3]]),
    }
    singles = {
        f: single_process(str(tiny_dirs[f]), track=[" Paris"]) for f in ("llama", "qwen2", "qwen3", "gemma3_text")
    }
    for name, (family, mode, implementation, ranges) in expected_runs.items():
        dist = AnalysisResult.from_dict(got[name])
        info = dist.model.distributed
        assert info is not None, name
        assert (info.ranks, info.mode, info.implementation, info.rank_layers) == (2, mode, implementation, ranges)
        single = singles[family]
        assert_same_lens(single, dist)
        # Each rank holds less than the whole model, and together at least all of it.
        whole = _weight_bytes(str(tiny_dirs[family]))
        assert all(0 < b < whole for b in info.rank_weight_bytes), (name, info.rank_weight_bytes, whole)
        assert sum(info.rank_weight_bytes) >= whole
    assert got["gemma3-tensor"] == {
        "error": "cannot shard this model with tensor parallelism over 2 ranks: "
        "mlx-lm has no tensor-parallel sharding for the gemma3_text family"
    }
    assert got["phi3-neither"] == {
        "error": "cannot shard this phi3 model over 2 ranks: pipeline parallelism needs at least one of its 1 "
        "blocks per rank; tensor parallelism: mlx-lm has no tensor-parallel sharding for the phi3 family"
    }


def _weight_bytes(model: str) -> int:
    from lazarus_report.models.loader import weight_bytes

    with ModelAnalyzer.load(model) as analyzer:
        return weight_bytes(analyzer.loaded.model)


@pytest.mark.slow  # two ranks: processes, imports and loads twice
@pytest.mark.distributed  # mlx.launch: on its own (`make test`)
def test_cli_rank_zero_alone_prints_and_writes(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    args = [
        "-m",
        "lazarus_report.cli.main",
        "introspect",
        "analyze",
        "-m",
        str(tiny_dirs["llama"]),
        "-p",
        PROMPT,
        "--raw",
    ]
    args += ["--all-layers", "-o", "r.json", "--markdown", "r.md"]
    proc = launch(args, cwd=tmp_path)
    assert not rank_exit_codes(proc), proc.stderr
    assert proc.stdout.count("=== Final Prediction ===") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md"]
    dist = AnalysisResult.load(tmp_path / "r.json")
    assert dist.model.distributed is not None and dist.model.distributed.mode == "tensor"
    assert_same_lens(single_process(str(tiny_dirs["llama"])), dist)


@pytest.mark.slow  # two ranks: processes, imports and loads twice
@pytest.mark.distributed  # mlx.launch: on its own (`make test`)
def test_cli_compare_and_suite_under_two_ranks(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    """Compare with causal attribution (tensor parallel: its extra forward passes run on both ranks in step)."""
    m1, m2 = str(tiny_dirs["llama"]), str(tiny_dirs["llama-b"])
    compare = ["-m", "lazarus_report.cli.main", "introspect", "compare", "-m1", m1, "-m2", m2, "-p", PROMPT, "--raw"]
    compare += ["--attribution"]
    proc = launch([*compare, "-q", "-o", "c.json"], cwd=tmp_path)
    assert not rank_exit_codes(proc), proc.stderr
    single = CliRunner().invoke(main, [*compare[2:], "-q", "-o", str(tmp_path / "single.json")])
    assert single.exit_code == 0, single.output
    a = ComparisonResult.load(tmp_path / "single.json")
    b = ComparisonResult.load(tmp_path / "c.json")
    assert [r.model.distributed.mode for r in b.results] == ["tensor", "tensor"]
    assert [d.top1_agree for d in b.divergences] == [d.top1_agree for d in a.divergences]
    for x, y in zip(a.divergences, b.divergences, strict=True):
        assert y.js == pytest.approx(x.js, abs=TOLERANCE)
    assert a.attribution is not None and b.attribution is not None
    assert (b.attribution.method, b.attribution.carriers, b.attribution.passes) == (
        a.attribution.method,
        a.attribution.carriers,
        a.attribution.passes,
    )
    for x, y in zip(a.attribution.layers, b.attribution.layers, strict=True):
        assert y.effect == pytest.approx(x.effect, abs=1e-3)

    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "cases:\n  - id: capital\n    prompt: The capital of France is\n    raw: true\n"
        "    expect:\n      not_top1: ['zzzz']\n",
        encoding="utf-8",
    )
    proc = launch(
        ["-m", "lazarus_report.cli.main", "introspect", "suite", str(suite), "-m", m1, "--junit", "j.xml"], tmp_path
    )
    assert not rank_exit_codes(proc), proc.stderr
    assert (tmp_path / "j.xml").is_file()
    assert proc.stdout.count("capital") >= 1


@pytest.mark.slow  # two ranks: processes, imports and loads twice
@pytest.mark.distributed  # mlx.launch: on its own (`make test`)
def test_cli_model_that_cannot_be_sharded_fails_on_every_rank(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    args = ["-m", "lazarus_report.cli.main", "introspect", "analyze", "-m", str(tiny_dirs["gemma3_text"]), "-p", PROMPT]
    proc = launch([*args, "--distributed", "tensor", "-o", "r.json"], cwd=tmp_path)
    # Each rank exits 2, unless mlx.launch stopped it first (SIGTERM: -15, or 143 when the rank handles it) because the other one had.
    codes = rank_exit_codes(proc)
    assert sorted(codes) == [0, 1] and set(codes.values()) <= {2, -15, 143} and 2 in codes.values(), proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    message = "cannot shard this model with tensor parallelism over 2 ranks: mlx-lm has no tensor-parallel "
    # A rank stopped by mlx.launch says so (it handles SIGTERM: issue 24); every other error line is the refusal.
    stopped = {
        f"Error: {f'rank {rank}: ' if rank else ''}terminated (SIGTERM)" for rank, code in codes.items() if code == 143
    }
    refusals = [line for line in errors if line not in stopped]
    assert refusals and all(re.match(f"Error: (rank 1: )?{message}", line) for line in refusals), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r.json").exists()


# --- without a launcher ----------------------------------------------------------------------------


def test_a_mode_without_mlx_launch_is_refused() -> None:
    result = CliRunner().invoke(
        main, ["introspect", "analyze", "-m", "smollm2-135m-instruct", "-p", PROMPT, "--distributed", "pipeline"]
    )
    assert result.exit_code == 2
    assert result.output.strip() == (
        "Error: --distributed pipeline needs several ranks: start the command with mlx.launch (docs/distributed.md)"
    )


def test_a_stray_rank_variable_in_a_group_of_one_acts_as_rank_0(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLX_RANK=1 left set outside mlx.launch (issue 24): the group has one process, so it is rank 0 and
    prints and writes (a real rank 1 writes nothing: test_cli_rank_zero_alone_prints_and_writes)."""
    from lazarus_report.models import distributed

    monkeypatch.setattr(distributed, "_alone", False)  # restored afterwards: the flag outlives the command
    monkeypatch.setenv("MLX_RANK", "1")
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["introspect", "analyze", "-m", str(tiny_llama), "-p", PROMPT, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "=== Final Prediction ===" in result.output
    assert out.is_file()


def test_split_is_mlx_lms_pipeline_split() -> None:
    from mlx_lm.models.pipeline import PipelineMixin

    from lazarus_report.models.distributed import _split

    class Group:
        def __init__(self, rank: int, size: int):
            self._rank, self._size = rank, size

        def rank(self) -> int:
            return self._rank

        def size(self) -> int:
            return self._size

    for n_layers, size in [(30, 2), (3, 2), (7, 3), (4, 4)]:
        expected = []
        for rank in range(size):
            mixin = PipelineMixin()
            mixin.layers = list(range(n_layers))
            mixin.pipeline(Group(rank, size))
            expected.append((mixin.start_idx, mixin.end_idx))
        assert _split(n_layers, size) == expected


# --- SmolLM2 (GGUF), with and without its LoRA adapter ----------------------------------------------


@pytest.mark.slow
@pytest.mark.distributed  # mlx.launch: on its own (`make test`)
def test_smollm2_gguf_on_two_ranks_equals_one_process(smollm2_gguf: Path, tmp_path: Path) -> None:
    jobs = [
        {"name": "base", "model": str(smollm2_gguf), "mode": "auto"},
        {"name": "adapter", "model": str(smollm2_gguf), "mode": "auto", "adapter": str(ADAPTER)},
        {"name": "adapter-tensor", "model": str(smollm2_gguf), "mode": "tensor", "adapter": str(ADAPTER)},
        {"name": "base-tensor", "model": str(smollm2_gguf), "mode": "tensor"},
    ]
    for job in jobs:
        job.update(prompt=PROMPT, track=[" Paris"])
    got = run_worker(tmp_path, jobs)
    for name, adapter in (("base", None), ("adapter", str(ADAPTER))):
        dist = AnalysisResult.from_dict(got[name])
        info = dist.model.distributed
        # 9 attention heads do not split over 2 ranks, and mlx-lm's llama has no pipeline: ours runs.
        assert (info.mode, info.implementation, info.rank_layers) == (
            "pipeline",
            "lazarus pipeline",
            [[15, 30], [0, 15]],
        )
        assert_same_lens(single_process(str(smollm2_gguf), adapter=adapter, track=[" Paris"]), dist)
    assert got["adapter-tensor"]["error"].endswith(
        "mlx-lm cannot shard LoRA adapter layers (use --distributed pipeline, or auto)"
    )
    assert got["base-tensor"]["error"].endswith("its 9 attention heads do not divide into 2 equal parts")
