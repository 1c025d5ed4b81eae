"""Drift on neutral text (``compare --drift``, issue 20 part 3): ground truth on tiny random models.

* An adapter whose B matrices are all zero changes nothing: JS exactly 0 and no top-1 changed at every layer.
* An adapter acting only from layer k: drift exactly 0 below k, > 0 from k.
* JS per position equals an independent numpy computation (each model's blocks run one by one, the final norm and
  the head applied in numpy, log-softmax and JS in float64) within 1e-5: mean, percentiles and maximum per layer.
* Bad input is one line on stderr and exit 2 before any model loads.
* The result round-trips through JSON and through its HTML page; strings are escaped in every report.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import lazarus
from test_attribution import write_tiny_adapter

from lazarus_report.commands.drift import corpus_sequences, measure_drift
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.results.drift import DriftLayer, DriftPosition, DriftResult, DriftToken, PromotedToken
from lazarus_report.results.provenance import LensRecord, ModelInfo

N_LAYERS = 5
TOKENS = 160


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory):
    model = str(tiny_model_dir("llama", seed=1, num_hidden_layers=N_LAYERS))
    root = tmp_path_factory.mktemp("drift")
    return {
        "model": model,
        "zero": write_tiny_adapter(model, root / "zero", num_layers=N_LAYERS, zero_b=set(range(N_LAYERS))),
        "from3": write_tiny_adapter(model, root / "from3", num_layers=2, zero_b=set()),  # blocks 3 and 4
        "from2": write_tiny_adapter(model, root / "from2", num_layers=4, zero_b={1}),  # acts from block 2
        "root": root,
    }


def test_zero_adapter_has_no_drift_at_any_layer(tiny):
    r = measure_drift(tiny["model"], tiny["model"], adapter2=str(tiny["zero"]), tokens=TOKENS)
    assert [row.layer for row in r.layers] == list(range(N_LAYERS))
    assert r.tokens == TOKENS
    for row in r.layers:
        assert (row.js_mean, row.js_p90, row.js_p99, row.js_max, row.top1_changed) == (0.0, 0.0, 0.0, 0.0, 0.0)
        assert row.identical
    assert r.promoted == [] and r.top_positions == []
    assert all(d.norm == 0.0 and d.top_tokens == [] for d in r.activation_difference)


@pytest.mark.parametrize(("adapter", "k"), [("from3", 3), ("from2", 2)])
def test_drift_is_zero_below_the_first_acting_layer(tiny, adapter, k):
    r = measure_drift(tiny["model"], tiny["model"], adapter2=str(tiny[adapter]), tokens=TOKENS)
    for row in r.layers:
        if row.layer < k:
            assert row.identical and row.js_max == 0.0 and row.top1_changed == 0.0, row
        else:
            assert not row.identical and row.js_mean > 0.0 and row.js_p99 >= row.js_p90 > 0.0, row
    assert r.top_positions and all(p.js > 0 for p in r.top_positions)
    for d in r.activation_difference:  # the activation-difference lens: nothing added below k
        assert (d.norm == 0.0 and not d.top_tokens) if d.layer < k else (d.norm > 0 and len(d.top_tokens) == 10)
    assert [p.js for p in r.top_positions] == sorted((p.js for p in r.top_positions), reverse=True)


def _numpy_lens_logits(loaded, seq):
    """Every block's output at positions 1.. of ``seq`` (the blocks called one by one with a causal mask, no
    capture hooks), read in numpy: RMSNorm with the model's weight and eps, then the head's weight matrix."""
    import mlx.core as mx

    inner = loaded.model.model
    h = inner.embed_tokens(mx.array([seq]))
    mask = "causal"
    outs = []
    for layer in inner.layers:
        h = layer(h, mask, cache=None)
        outs.append(np.asarray(h.astype(mx.float32))[0, 1:].astype(np.float64))
    args = loaded.model.args
    w_norm = np.asarray(inner.norm.weight).astype(np.float64)
    head = loaded.model.lm_head.weight if hasattr(loaded.model, "lm_head") else inner.embed_tokens.weight
    w_head = np.asarray(head).astype(np.float64)
    logits = []
    for x in outs:
        normed = x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + args.rms_norm_eps) * w_norm
        logits.append(normed @ w_head.T)
    return logits


def _js(z1, z2):
    def logsm(z):
        z = z - z.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))

    lp, lq = logsm(z1), logsm(z2)
    p, q = np.exp(lp), np.exp(lq)
    m = (p + q) / 2
    return 0.5 * (p * (lp - np.log(m))).sum(-1) + 0.5 * (q * (lq - np.log(m))).sum(-1)


def test_js_matches_an_independent_numpy_computation(tiny):
    from lazarus_report.lens.learned.corpus import default_corpus
    from lazarus_report.models.loader import load_model

    base = load_model(tiny["model"])
    tuned = load_model(tiny["model"], adapter=str(tiny["from2"]))
    seqs = corpus_sequences(base, default_corpus(), TOKENS)
    per_layer = [[] for _ in range(N_LAYERS)]
    for seq in seqs:
        for j, (z1, z2) in enumerate(zip(_numpy_lens_logits(base, seq), _numpy_lens_logits(tuned, seq))):
            per_layer[j].append(_js(z1, z2))
    r = measure_drift(tiny["model"], tiny["model"], adapter2=str(tiny["from2"]), tokens=TOKENS)
    for row, parts in zip(r.layers, per_layer):
        js = np.concatenate(parts)
        assert len(js) == r.tokens
        p90, p99 = np.percentile(js, [90, 99])
        assert row.js_mean == pytest.approx(js.mean(), abs=1e-5)
        assert row.js_p90 == pytest.approx(p90, abs=1e-5)
        assert row.js_p99 == pytest.approx(p99, abs=1e-5)
        assert row.js_max == pytest.approx(js.max(), abs=1e-5)
    assert r.layers[-1].js_mean > 0.01  # a real drift was measured, not a vacuous 0 == 0


def test_promoted_tokens_count_the_changed_final_top1s(tiny):
    r = measure_drift(tiny["model"], tiny["model"], adapter2=str(tiny["from3"]), tokens=TOKENS)
    changed = round(r.final.top1_changed * r.tokens)
    assert sum(t.count for t in r.promoted) <= changed
    assert r.promoted and all(t.mean_gain > 0 for t in r.promoted)  # the tuned top-1 is its own argmax
    assert [t.count for t in r.promoted] == sorted((t.count for t in r.promoted), reverse=True)
    for p in r.top_positions:
        assert p.base_top1.token_id != p.tuned_top1.token_id or p.js < 0.69


def test_layer_strategy_selects_the_captured_layers(tiny):
    config = AnalysisConfig(layer_strategy=LayerStrategy.CUSTOM, custom_layers=[1, 3])
    r = measure_drift(tiny["model"], tiny["model"], config, adapter2=str(tiny["from3"]), tokens=64)
    assert [row.layer for row in r.layers] == [1, 3, 4]  # the last layer always
    assert r.layers[0].identical and not r.layers[1].identical


# --- the command line ------------------------------------------------------------------------------


def test_cli_writes_json_html_markdown_and_report_render_reads_the_page(tiny, tmp_path):
    out, page, md = tmp_path / "d.json", tmp_path / "d.html", tmp_path / "d.md"
    args = ["-m1", tiny["model"], "-m2", tiny["model"], "--adapter2", str(tiny["from3"]), "--drift"]
    done = lazarus("introspect", "compare", *args, "--drift-tokens", "64", "-o", str(out), "--html", str(page),
                   "--markdown", str(md))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "JS(model 1, model 2) per layer" in done.stdout
    result = DriftResult.load(out)
    html = page.read_text()
    assert result.tokens == 64 and html.count("<script") == 1 and '<script type="application/json"' in html  # static
    again = lazarus("report", "render", str(page), "-q", "--markdown", str(tmp_path / "again.md"))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.md").read_text() == md.read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--drift", "-p", "hello"], "--drift reads a corpus, not a prompt"),
        (["--drift", "--corpus", "{folder}"], "is a directory"),
        (["--drift", "--corpus", "{empty}"], "no text in the corpus"),
        (["--drift", "--drift-tokens", "0"], "--drift-tokens must be at least 1"),
        (["--corpus", "{empty}", "-p", "hi"], "--corpus and --drift-tokens go with --drift"),
        ([], "compare needs a prompt (-p), or --drift"),
        (["--drift", "--attribution"], "--attribution does not go with --drift"),
    ],
)
def test_bad_input_is_one_line_exit_2_before_any_model_loads(tmp_path, extra, message):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    extra = [e.format(folder=tmp_path, empty=empty) for e in extra]
    # The models do not exist: an error about them would mean the drift's own checks came too late.
    done = lazarus("introspect", "compare", "-m1", str(tmp_path / "none1"), "-m2", str(tmp_path / "none2"), *extra)
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


def test_different_depths_are_refused_before_loading(tiny_model_dir):
    a = tiny_model_dir("llama", seed=1, num_hidden_layers=N_LAYERS)
    b = tiny_model_dir("llama", seed=1, num_hidden_layers=3)
    done = lazarus("introspect", "compare", "-m1", str(a), "-m2", str(b), "--drift")
    assert done.returncode == 2 and "same depth" in done.stderr


# --- the result and its reports ----------------------------------------------------------------------


def _hostile_result() -> DriftResult:
    info = ModelInfo(
        model_id="<b>m</b>", source="local", path=None, family="llama", num_layers=2, hidden_size=8, vocab_size=10,
        tied_embeddings=True, embedding_scale=None, precision="float32", device="cpu", blas="x",
        chat_template=False,
    )  # fmt: skip
    bad = "</td><script>alert(1)</script>|`"
    lens = LensRecord("logit", None, None, None, None, None, fidelity=[], unreliable_threshold_nats=2.0)
    return DriftResult(
        models=[info, info],
        labels=["<i>base</i>", bad],
        lens=lens,
        corpus="files: <img src=x>.txt",
        corpus_sha256="0" * 64,
        sequences=1,
        tokens=10,
        sequence_length=11,
        layers=[
            DriftLayer(0, 0.0, 0.0, 0.0, 0.0, 0.0, True),
            DriftLayer(1, 0.1, 0.2, 0.3, 0.4, 0.5, False),
        ],
        final_layer=1,
        promoted=[PromotedToken(3, bad, 5, 0.5, 0.25)],
        top_positions=[
            DriftPosition(0, 4, 0.4, ["<a", " href"], bad, None, DriftToken(1, "<x>", 0.5), DriftToken(3, bad, 0.9))
        ],
        notes=[],
        versions={"lazarus-report": "test"},
        timings={},
    )


def test_strings_are_escaped_in_every_report(tmp_path):
    from lazarus_report.render.drift_text import render_drift_text
    from lazarus_report.render.files import render_report_files
    from lazarus_report.render.packing import load_result_file

    r = _hostile_result()
    assert DriftResult.from_json(r.to_json()) == r
    files = render_report_files(r, html_path=tmp_path / "r.html", markdown_path=tmp_path / "r.md")
    page = files[tmp_path / "r.html"].decode()
    assert "<script>alert" not in page and "<img" not in page and "<b>m</b>" not in page and "<i>base" not in page
    assert "&lt;/td&gt;&lt;script&gt;" in page
    md = files[tmp_path / "r.md"].decode()
    assert "<script>" not in md.replace("`", "") or "`" in md  # tokens sit in code spans
    assert "</td><script>" not in [line.split("|")[1] for line in md.splitlines() if line.startswith("| ")]
    (tmp_path / "r.html").write_bytes(files[tmp_path / "r.html"])
    assert load_result_file(tmp_path / "r.html") == r
    text = render_drift_text(r)
    assert "layer" in text and "\x1b" not in text


def test_a_drift_json_with_missing_fields_is_refused():
    from lazarus_report.results.codec import ResultFormatError
    from lazarus_report.results.loading import load_any_result

    data = json.loads(_hostile_result().to_json())
    del data["layers"]
    with pytest.raises(ResultFormatError, match="layers"):
        load_any_result(data)
    data = json.loads(_hostile_result().to_json())
    data["layers"] = []
    with pytest.raises(ResultFormatError, match="at least one layer"):
        load_any_result(data)


def test_report_render_refuses_a_folder(tmp_path: Path):
    done = lazarus("report", "render", str(tmp_path))
    assert done.returncode == 2 and "is a directory" in done.stderr


# --- suites: max_drift_js and suite --drift ------------------------------------------------------------

SUITE = """\
name: drift suite
max_drift_js:
  - {{layers: "0-{below}", js: 0.0}}
  - {{layers: "{k}-4", js: {limit}, stat: p99}}
cases:
  - id: paris
    prompt: "The capital of France is"
    raw: true
    track: [" Paris"]
    expect:
      final_prob_at_least: 0.0
"""


def _suite_file(tmp_path, text, name="s.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_max_drift_js_is_parsed_with_its_lines(tmp_path):
    from lazarus_report.suites.spec import DriftLimit, load_suite

    spec = load_suite(_suite_file(tmp_path, SUITE.format(below=1, k=2, limit=0.5)))
    assert spec.drift_limits == [DriftLimit([0, 1], 0.0, "mean", 3), DriftLimit([2, 3, 4], 0.5, "p99", 4)]
    one = load_suite(_suite_file(tmp_path, "max_drift_js: {layers: 7, js: 0.1}\ncases:\n  - {id: a, prompt: hi}\n"))
    assert one.drift_limits == [DriftLimit([7], 0.1, "mean", 1)]


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("{layers: '1-2', js: 0.9}", ":2: max_drift_js.js must be a JS divergence in nats, 0 to ln 2"),
        ("{layers: '1-2'}", ":2: max_drift_js needs 'js'"),
        ("{js: 0.1}", ":2: max_drift_js needs 'layers'"),
        ("{layers: '1-2', js: 0.1, stat: p50}", ":2: max_drift_js.stat must be one of mean, p90, p99, max"),
        ("{layers: '1-2', js: 0.1, max: 3}", ":2: unknown key 'max' in max_drift_js"),
        ("[]", ":2: max_drift_js must hold at least one"),
        ("{layers: '5-2', js: 0.1}", "the range '5-2' runs backwards"),
    ],
)
def test_bad_max_drift_js_is_one_located_error(tmp_path, limit, message):
    from lazarus_report.suites.spec import SuiteFileError, load_suite

    text = f"name: x\nmax_drift_js:\n  {limit}\ncases:\n  - {{id: a, prompt: hi}}\n".replace("\n  [", " [")
    text = text.replace("max_drift_js:\n  {", "max_drift_js: {") if limit.startswith("{") else text
    with pytest.raises(SuiteFileError, match=None) as err:
        load_suite(_suite_file(tmp_path, text))
    assert message.split(":", 2)[-1].strip() in str(err.value), str(err.value)


def test_evaluate_drift_passes_fails_skips_and_errors():
    from lazarus_report.suites.checks import evaluate_drift
    from lazarus_report.suites.spec import DriftLimit

    r = _hostile_result()  # layer 0: 0 everywhere; layer 1: mean 0.1, p90 0.2, p99 0.3, max 0.4
    limits = [
        DriftLimit([0], 0.0, "mean", 3),
        DriftLimit([0, 1], 0.25, "p90", 4),
        DriftLimit([1], 0.25, "p99", 5),
        DriftLimit([9], 0.1, "mean", 6),
    ]
    out = evaluate_drift(limits, r)
    assert [c.status for c in out] == ["passed", "passed", "failed", "error"]
    assert "layer 1" in out[2].message and out[2].line == 5 and out[2].side == "drift"
    assert len({c.name for c in out}) == 4
    skipped = evaluate_drift(limits, None, "run the suite with --drift")
    assert {c.status for c in skipped} == {"skipped"} and "--drift" in skipped[0].message


@pytest.mark.parametrize(("adapter", "k"), [("from3", 3)])
def test_suite_drift_checks_the_limits_once_per_run(tiny, tmp_path, adapter, k):
    from lazarus_report.commands.suite import DriftRequest, run_suite
    from lazarus_report.results.suite import SuiteResult
    from lazarus_report.suites.spec import load_suite

    spec = load_suite(_suite_file(tmp_path, SUITE.format(below=k - 1, k=k, limit=0.01)))
    models, adapters = [tiny["model"], tiny["model"]], [None, str(tiny[adapter])]
    result = run_suite(spec, models, adapters=adapters, drift=DriftRequest(tokens=64))
    assert result.drift is not None and result.drift.tokens == 64
    assert [c.status for c in result.drift_checks] == ["passed", "failed"]  # 0 below k exactly; > 0.01 from k
    assert result.status == "failed" and result.counts()["failed"] == 1
    again = SuiteResult.from_json(result.to_json())
    assert again == result
    plain = run_suite(spec, models, adapters=adapters)
    assert plain.drift is None and [c.status for c in plain.drift_checks] == ["skipped", "skipped"]
    assert plain.status == "passed"


def test_a_suite_without_drift_writes_the_same_json_as_before(tiny, tmp_path):
    from lazarus_report.commands.suite import run_suite
    from lazarus_report.suites.spec import load_suite

    text = SUITE.split("cases:")[1]
    spec = load_suite(_suite_file(tmp_path, "name: plain\ncases:" + text))
    result = run_suite(spec, [tiny["model"]])
    data = json.loads(result.to_json())
    assert "drift" not in data and "drift_checks" not in data


def test_suite_cli_drift_reports(tiny, tmp_path):
    path = _suite_file(tmp_path, SUITE.format(below=2, k=3, limit=0.69))
    out, page, md, junit = (tmp_path / f"s.{x}" for x in ("json", "html", "md", "xml"))
    done = lazarus(
        "introspect", "suite", str(path), "-m1", tiny["model"], "-m2", tiny["model"], "--adapter2",
        str(tiny["from3"]), "--drift", "--drift-tokens", "48", "-o", str(out), "--html", str(page),
        "--markdown", str(md), "--junit", str(junit),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Drift on neutral text" in done.stdout and "Drift on neutral text" in page.read_text()
    assert "### Drift on neutral text" in md.read_text() and "max_drift_js" in junit.read_text()
    assert page.read_text().count("</main>") == 1
    bad = lazarus("introspect", "suite", str(path), "-m", tiny["model"], "--drift")
    assert bad.returncode == 2 and "--drift needs two models" in bad.stderr
    loose = lazarus("introspect", "suite", str(path), "-m", tiny["model"], "--drift-tokens", "5")
    assert loose.returncode == 2 and "go with --drift" in loose.stderr


def test_two_different_models_drift_from_the_first_layer(tiny_model_dir):
    """Two models (not base + adapter): model 1 is released before model 2 loads, its head kept; the heads differ,
    so every layer is compared (none is identical) and the JS matches the numpy computation there too."""
    a = str(tiny_model_dir("llama", seed=1, num_hidden_layers=N_LAYERS))
    b = str(tiny_model_dir("llama", seed=2, num_hidden_layers=N_LAYERS))
    r = measure_drift(a, b, tokens=48)
    assert not any(row.identical for row in r.layers) and all(row.js_mean > 0 for row in r.layers)
    from lazarus_report.lens.learned.corpus import default_corpus
    from lazarus_report.models.loader import load_model

    m1, m2 = load_model(a), load_model(b)
    seq = corpus_sequences(m1, default_corpus(), 48)[0]
    js = _js(_numpy_lens_logits(m1, seq)[0], _numpy_lens_logits(m2, seq)[0])
    assert r.layers[0].js_mean == pytest.approx(js.mean(), abs=1e-5)


def test_model_2_starting_from_the_shared_blocks_gives_the_full_runs_numbers(tiny):
    """Base vs base + adapter: model 2 skips the blocks before the adapter's first (model 1's output there is
    reused). The same model spelled differently loads twice and runs every block: the same figures."""
    shortcut = measure_drift(tiny["model"], tiny["model"], adapter2=str(tiny["from3"]), tokens=96)
    full = measure_drift(tiny["model"], tiny["model"] + "/.", adapter2=str(tiny["from3"]), tokens=96)
    assert [r.layer for r in shortcut.layers] == [r.layer for r in full.layers]
    for a, b in zip(shortcut.layers, full.layers):
        assert a.identical == b.identical
        for name in ("js_mean", "js_p90", "js_p99", "js_max", "top1_changed"):
            assert getattr(a, name) == pytest.approx(getattr(b, name), abs=1e-7), (a.layer, name)
    assert shortcut.promoted == full.promoted
