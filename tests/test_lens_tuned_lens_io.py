"""Round trip through the tuned-lens checkpoint folder (config.json + params.pt), checked with torch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lazarus_report.core.errors import LazarusError
from lazarus_report.lens.learned.artefact import Lens

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_lens(tmp_path_factory: pytest.TempPathFactory):
    from test_lens_math import tiny_corpus
    from tiny_models import build_tiny_model

    from lazarus_report.lens.learned.fit import fit_lens
    from lazarus_report.models.loader import load_model

    root = tmp_path_factory.mktemp("tuned-lens-io")
    build_tiny_model("llama", root / "model", seed=0)
    loaded = load_model(str(root / "model"))
    return loaded, fit_lens(loaded, "linear", corpus=tiny_corpus(3000))


def test_export_follows_the_tuned_lens_layout_and_imports_back(tiny_lens, tmp_path: Path) -> None:
    from lazarus_report.lens.learned.tuned_lens_io import export_tuned_lens, import_tuned_lens

    loaded, lens = tiny_lens
    out = export_tuned_lens(lens, tmp_path / "ckpt")
    config = json.loads((out / "config.json").read_text())
    assert config["d_model"] == 64 and config["num_hidden_layers"] == 3
    assert config["lens_type"] == "linear_tuned_lens" and config["bias"] is True
    state = torch.load(out / "params.pt", weights_only=True)
    assert sorted(state) == ["0.bias", "0.weight", "1.bias", "1.weight", "2.bias", "2.weight"]
    assert float(state["0.weight"].abs().max()) == 0.0  # the embeddings' translator: identity
    # tuned-lens applies translator i to hidden_states[i] = block i-1's output as h + Linear(h).
    rng = np.random.default_rng(0)
    h = rng.standard_normal((5, 64)).astype(np.float32)
    for layer in (0, 1):
        linear = torch.nn.Linear(64, 64)
        linear.load_state_dict({"weight": state[f"{layer + 1}.weight"], "bias": state[f"{layer + 1}.bias"]})
        with torch.no_grad():
            theirs = (torch.from_numpy(h) + linear(torch.from_numpy(h))).numpy()
        np.testing.assert_allclose(theirs, lens.translate_np(layer, h), atol=2e-4, rtol=1e-4)
    back = import_tuned_lens(out, loaded)
    assert back.kind == "tuned" and back.form == "residual"
    for layer in (0, 1):
        np.testing.assert_allclose(back.translate_np(layer, h), lens.translate_np(layer, h), atol=2e-4, rtol=1e-4)
    assert back.check_compatible(loaded) is None
    saved = Lens.load(back.save(tmp_path / "imported"))
    np.testing.assert_array_equal(saved.weight, back.weight)


def test_import_refuses_another_shape(tiny_lens, tmp_path: Path) -> None:
    from lazarus_report.lens.learned.tuned_lens_io import export_tuned_lens, import_tuned_lens

    loaded, lens = tiny_lens
    out = export_tuned_lens(lens, tmp_path / "ckpt")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "d_model": 32}))
    with pytest.raises(LazarusError, match="d_model 32"):
        import_tuned_lens(out, loaded)
    with pytest.raises(LazarusError, match="not a tuned-lens checkpoint"):
        import_tuned_lens(tmp_path, loaded)
    with pytest.raises(LazarusError, match="not an empty directory"):
        export_tuned_lens(lens, out)
