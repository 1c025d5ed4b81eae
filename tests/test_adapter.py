"""The example LoRA adapter (examples/weather-adapter/): it loads, it changes the model, it is small,
and adapters that do not fit give clear errors. Also the training script's dataset writer."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from lazarus_report.commands.analyzer import ModelAnalyzer
from lazarus_report.core.config import AnalysisConfig, LayerStrategy
from lazarus_report.core.errors import LazarusError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "weather-adapter"
ADAPTER = EXAMPLE / "adapter"
PARIS = "What's the weather in Paris?"
TOOL = "get_weather"


def _load_script():
    path = ROOT / "scripts" / "train_weather_adapter.py"
    spec = importlib.util.spec_from_file_location("train_weather_adapter", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


script = _load_script()


# --- the dataset writer (no model) -----------------------------------------------------------


def test_dataset_writer_is_deterministic(tmp_path):
    a = script.write_dataset(tmp_path / "a", seed=0)
    b = script.write_dataset(tmp_path / "b", seed=0)
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes()
    other = script.write_dataset(tmp_path / "c", seed=1)
    assert other[0].read_bytes() != a[0].read_bytes()


def test_committed_dataset_is_what_the_script_writes(tmp_path):
    train, valid = script.write_dataset(tmp_path, seed=script.SEED)
    assert train.read_bytes() == (EXAMPLE / "data" / "train.jsonl").read_bytes()
    assert valid.read_bytes() == (EXAMPLE / "data" / "valid.jsonl").read_bytes()


def test_dataset_shape():
    train, valid = script.make_dataset()
    assert (len(train), len(valid)) == (script.N_TRAIN, script.N_VALID)
    for example in train + valid:
        user, assistant = example["messages"]
        assert (user["role"], assistant["role"]) == ("user", "assistant")
        assert user["content"] and assistant["content"]
    tool_train = [e for e in train if script.is_tool_call(e)]
    tool_valid = [e for e in valid if script.is_tool_call(e)]
    assert len(tool_train) == script.N_TRAIN - len(script.TRAIN_CONTROLS)
    assert len(tool_valid) == script.N_VALID - len(script.VALID_CONTROLS)
    for e in tool_train + tool_valid:
        assert e["messages"][1]["content"].startswith('get_weather(city="')
    # Paris (the README's prompt) and the other validation cities are never trained on.
    train_text = json.dumps(train)
    assert "Paris" not in train_text
    assert not set(script.TRAIN_CITIES) & set(script.VALID_CITIES)
    # No user question appears in both splits.
    assert not {e["messages"][0]["content"] for e in train} & {e["messages"][0]["content"] for e in valid}


def test_assistant_loss_covers_exactly_the_assistant_tokens():
    """No padding target (mlx-lm 0.32's default_loss has one), so padding width changes nothing."""
    import mlx.core as mx
    import numpy as np
    from mlx import nn

    mx.random.seed(0)
    vocab = 11
    model = nn.Embedding(vocab, vocab)  # logits = a row per input token
    ids = [3, 5, 7, 2, 9, 4]  # 6 real tokens, the last 2 are the "assistant's"
    offset = 4
    logp = nn.log_softmax(model.weight, axis=-1)
    expected = -sum(float(logp[ids[i - 1], ids[i]]) for i in range(offset, len(ids))) / (len(ids) - offset)
    for width in (len(ids), len(ids) + 1, len(ids) + 32):
        batch = np.zeros((1, width), np.int32)
        batch[0, : len(ids)] = ids
        loss, ntoks = script.assistant_loss(model, mx.array(batch), mx.array([[offset, len(ids)]]))
        assert int(ntoks.item()) == len(ids) - offset
        assert float(loss.item()) == pytest.approx(expected, rel=1e-5)


# --- the committed adapter on the real model -------------------------------------------------


def test_adapter_files_are_small():
    files = {p.name: p.stat().st_size for p in ADAPTER.iterdir()}
    assert set(files) == {"adapters.safetensors", "adapter_config.json"}
    assert sum(files.values()) < 5_000_000
    config = json.loads((ADAPTER / "adapter_config.json").read_text())
    assert config["fine_tune_type"] == "lora"
    assert config["num_layers"] == 8
    assert config["lora_parameters"]["rank"] == 8


@pytest.fixture(scope="module")
def base(smollm2_loaded):
    return ModelAnalyzer(smollm2_loaded, model_id="smollm2-135m-instruct")  # the session's SmolLM2 (conftest)


@pytest.fixture(scope="module")
def tuned():
    with ModelAnalyzer.load("smollm2-135m-instruct", adapter=str(ADAPTER)) as analyzer:
        yield analyzer


def _tool_prob(analyzer, prompt=PARIS):
    r = analyzer.run(
        prompt, AnalysisConfig(layer_strategy=LayerStrategy.FIRST_LAST, track_tokens=[TOOL], compute_grid=False)
    )
    evolution = r.token_evolutions[0]
    assert evolution.token == "get"  # SmolLM2 splits get_weather as get / _ / weather
    return r, evolution.probs[-1], evolution.ranks[-1]


@pytest.mark.slow
def test_adapter_is_applied_and_recorded(tuned, base):
    assert tuned.info.adapter == str(ADAPTER)
    assert base.info.adapter is None
    lora = [name for name, m in tuned.loaded.model.named_modules() if type(m).__name__ == "LoRALinear"]
    assert len(lora) == 8 * 7  # q, k, v, o, gate, up, down in each of the last 8 layers
    assert all(name.startswith(tuple(f"model.layers.{i}." for i in range(22, 30))) for name in lora)


@pytest.mark.slow
def test_adapter_makes_the_tool_call_the_prediction(tuned, base):
    _, p_base, rank_base = _tool_prob(base)
    r, p_tuned, rank_tuned = _tool_prob(tuned)
    assert p_base < 1e-3 and rank_base > 100
    assert rank_tuned == 1 and p_tuned > 0.5
    assert p_tuned > 1000 * p_base
    assert r.final_top_token == "get"


@pytest.mark.slow
def test_adapter_keeps_general_knowledge(tuned):
    r = tuned.run("The capital of France is", AnalysisConfig(use_chat_template=False, compute_grid=False))
    assert r.final_top_token == " Paris"
    assert r.final_prediction[0].prob > 0.5


@pytest.mark.slow
def test_adapter_does_not_call_the_tool_for_everything(tuned):
    r, p, _rank = _tool_prob(tuned, "What is the capital of France?")
    assert r.final_top_token != "get"
    assert p < 0.1


# --- adapters that do not fit ----------------------------------------------------------------


def _copy_adapter(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(ADAPTER, target)
    return target


def _hidden_640_adapter(tmp_path: Path) -> Path:
    """The committed adapter with every 576-wide dimension made 640 wide: a LoRA for a model with
    hidden size 640 (e.g. Gemma 3 270M) instead of SmolLM2-135M's 576."""
    import mlx.core as mx

    target = _copy_adapter(tmp_path, "hidden-640")
    weights = mx.load(str(target / "adapters.safetensors"))
    other = {name: mx.zeros([640 if d == 576 else d for d in w.shape]) for name, w in weights.items()}
    mx.save_safetensors(str(target / "adapters.safetensors"), other)
    return target


@pytest.mark.slow
def test_adapter_for_another_hidden_size_is_a_lazarus_error(tmp_path):
    target = _hidden_640_adapter(tmp_path)
    with pytest.raises(LazarusError) as info:
        ModelAnalyzer.load("smollm2-135m-instruct", adapter=str(target))
    message = str(info.value)
    assert str(target) in message
    assert "does not fit this model" in message


# The loader keeps only the first line of mlx-lm's ValueError ("Adapter at ... contains incompatible
# tensors:"), and the lines after it are the ones that name the tensor and both shapes.
LOADER_DROPS_DETAILS = "loader keeps only the first line of mlx-lm's incompatible-tensors error"


@pytest.mark.slow
def test_adapter_shape_error_names_the_mismatch(tmp_path):
    target = _hidden_640_adapter(tmp_path)
    with pytest.raises(LazarusError) as info:
        ModelAnalyzer.load("smollm2-135m-instruct", adapter=str(target))
    message = str(info.value)
    assert "640" in message and "576" in message, message


@pytest.mark.slow
def test_adapter_of_another_rank_than_its_config_names_the_mismatch(tmp_path):
    target = _copy_adapter(tmp_path, "rank-16")
    config = json.loads((target / "adapter_config.json").read_text())
    config["lora_parameters"]["rank"] = 16
    (target / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(LazarusError, match="does not fit this model") as info:
        ModelAnalyzer.load("smollm2-135m-instruct", adapter=str(target))
    message = str(info.value)
    assert "(16, 576)" in message or "(576, 16)" in message, message


def test_missing_adapter_directory(tmp_path):
    with pytest.raises(LazarusError, match="no LoRA adapter at"):
        ModelAnalyzer.load("smollm2-135m-instruct", adapter=str(tmp_path / "nope"))


def test_directory_without_adapter_config(tmp_path):
    with pytest.raises(LazarusError, match="no LoRA adapter at"):
        ModelAnalyzer.load("smollm2-135m-instruct", adapter=str(tmp_path))


@pytest.mark.slow
def test_adapter_without_weights_file_is_a_lazarus_error(tmp_path):
    target = _copy_adapter(tmp_path, "no-weights")
    (target / "adapters.safetensors").unlink()
    with pytest.raises(LazarusError, match=r"adapters\.safetensors"):
        ModelAnalyzer.load("smollm2-135m-instruct", adapter=str(target))


# --- a training smoke test -------------------------------------------------------------------


@pytest.mark.slow
def test_two_training_steps_write_a_loadable_adapter(tmp_path):
    from lazarus_report.models.loader import load_model

    train, valid = script.make_dataset(seed=0)
    lm = load_model("smollm2-135m-instruct")
    settings = script.TrainSettings(iters=2, steps_per_report=1, steps_per_eval=2, quiet=True)
    history = script.train_adapter(lm, train[:8], valid[:4], tmp_path / "adapter", settings)
    assert [i for i, _ in history["train"]] == [1, 2]
    assert [i for i, _ in history["valid"]] == [0, 2]
    assert history["n_trainable"] == 651_264  # rank 8 x (q, k, v, o, gate, up, down) x 8 layers
    del lm
    loaded = ModelAnalyzer.load("smollm2-135m-instruct", adapter=str(tmp_path / "adapter"))
    assert loaded.info.adapter == str(tmp_path / "adapter")
