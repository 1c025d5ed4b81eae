"""The lens artefact: save/load round trip, refusal of damaged files and of lenses for other models,
the user cache and ``resolve_lens``, the plain-data record."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from test_lens_math import tiny_corpus

from lazarus_report.core.errors import LazarusError
from lazarus_report.lens.learned.artefact import META_FILE, WEIGHTS_FILE, Lens
from lazarus_report.lens.learned.fit import fit_lens
from lazarus_report.lens.learned.store import cache_path, resolve_lens
from lazarus_report.results.provenance import LensRecord


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tiny_models import build_tiny_model

    root = tmp_path_factory.mktemp("tiny-artefact")
    build_tiny_model("llama", root / "base", seed=0)
    build_tiny_model("llama", root / "other-weights", seed=1)
    build_tiny_model("llama", root / "deeper", seed=0, num_hidden_layers=4)
    build_tiny_model("qwen2", root / "qwen2", seed=0)
    return {p.name: p for p in root.iterdir()}


def _load(path: Path):
    from lazarus_report.models.loader import load_model

    return load_model(str(path))


@pytest.fixture(scope="module")
def fitted(tiny: dict[str, Path]) -> Lens:
    return fit_lens(_load(tiny["base"]), "linear", corpus=tiny_corpus(3000))


def test_save_load_round_trip(fitted: Lens, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "lens")
    assert sorted(p.name for p in path.iterdir()) == [META_FILE, WEIGHTS_FILE]
    back = Lens.load(path)
    assert back.kind == "linear" and back.form == "affine"
    np.testing.assert_array_equal(back.weight, fitted.weight)
    np.testing.assert_array_equal(back.bias, fitted.bias)
    meta = json.loads((path / META_FILE).read_text())
    assert meta["model"]["num_layers"] == 3 and meta["model"]["hidden_size"] == 64
    assert meta["tokens"] > 1000 and meta["heldout_tokens"] > 0
    assert len(meta["fidelity"]) == 2 and meta["fit_seconds"] > 0
    assert meta["corpus"]["sha256"] == "0" * 64
    # Overwriting a lens replaces it whole; nothing temporary is left next to it.
    fitted.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lens"]


def test_save_never_clobbers_other_things(fitted: Lens, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("mine")
    with pytest.raises(LazarusError, match="not a lens directory"):
        fitted.save(tmp_path / "file")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "x").write_text("mine")
    with pytest.raises(LazarusError, match="not a lens directory"):
        fitted.save(tmp_path / "dir")
    assert (tmp_path / "file").read_text() == "mine" and (tmp_path / "dir" / "x").read_text() == "mine"


def test_failed_save_keeps_the_old_lens(fitted: Lens, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = fitted.save(tmp_path / "lens")
    before = (path / WEIGHTS_FILE).read_bytes()
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the new lens moving into place
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    other = Lens(kind="linear", weight=fitted.weight * 2, bias=fitted.bias, meta=dict(fitted.meta))
    with pytest.raises(KeyboardInterrupt):
        other.save(path)
    monkeypatch.undo()
    assert (path / WEIGHTS_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lens"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / WEIGHTS_FILE).write_bytes((d / WEIGHTS_FILE).read_bytes()[:-10]), "damaged"),
        (lambda d: _flip_byte(d / WEIGHTS_FILE), "damaged"),
        (lambda d: (d / WEIGHTS_FILE).unlink(), "incomplete"),
        (lambda d: (d / META_FILE).write_text("{not json"), "damaged: not valid JSON"),
        (lambda d: _edit_meta(d, format_version=99), "format version 99"),
        (lambda d: _edit_meta(d, format="something/else"), "not a lazarus-report lens"),
        (lambda d: (d / META_FILE).unlink(), "is not a lens"),
    ],
)
def test_damaged_lens_is_refused(fitted: Lens, tmp_path: Path, damage, message: str) -> None:
    path = fitted.save(tmp_path / "lens")
    damage(path)
    with pytest.raises(LazarusError, match=message):
        Lens.load(path)


def test_lens_with_consistent_digest_but_wrong_shapes_is_refused(fitted: Lens, tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "lens")
    _edit_meta(path, model={**fitted.meta["model"], "hidden_size": 32})
    with pytest.raises(LazarusError, match="expected weight"):
        Lens.load(path)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_meta(directory: Path, **changes) -> None:
    meta = json.loads((directory / META_FILE).read_text())
    meta.update(changes)
    (directory / META_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "other, message",
    [
        ("other-weights", "the weights differ"),
        ("deeper", "layer count 3 (lens) vs 4"),
        ("qwen2", "family llama (lens) vs qwen2"),
    ],
)
def test_lens_for_another_model_is_refused(fitted: Lens, tiny: dict[str, Path], other: str, message: str) -> None:
    with pytest.raises(LazarusError, match="fitted for another model") as exc:
        fitted.check_compatible(_load(tiny[other]))
    assert message in str(exc.value)


def test_tokenizer_mismatch_is_named(fitted: Lens, tiny: dict[str, Path], tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "lens")
    _edit_meta(path, model={**fitted.meta["model"], "tokenizer": "f" * 64})
    lens = Lens.load(path)
    with pytest.raises(LazarusError, match="tokenizer differs"):
        lens.check_compatible(_load(tiny["base"]))


def test_same_model_is_compatible_without_a_note(fitted: Lens, tiny: dict[str, Path]) -> None:
    assert fitted.check_compatible(_load(tiny["base"])) is None


def test_resolve_lens_from_the_cache(fitted: Lens, tiny: dict[str, Path], isolated_cache: Path) -> None:
    loaded = _load(tiny["base"])
    with pytest.raises(LazarusError, match=r"run `lazarus lens fit -m .* --kind linear` first"):
        resolve_lens("linear", loaded)
    with pytest.raises(LazarusError, match="unknown --lens 'sideways'"):
        resolve_lens("sideways", loaded)
    target = cache_path(loaded, "linear")
    target.parent.mkdir(parents=True)
    fitted.save(target)
    assert str(target).startswith(str(isolated_cache))
    lens = resolve_lens("linear", loaded)
    assert lens.source == "cache" and lens.kind == "linear"
    np.testing.assert_array_equal(lens.weight, fitted.weight)
    # A path works too; and the logit lens needs nothing.
    assert resolve_lens(str(target), loaded).source == str(target)
    assert resolve_lens("logit", loaded).kind == "logit"
    # Another model does not find this model's lens.
    with pytest.raises(LazarusError, match="no fitted linear lens"):
        resolve_lens("linear", _load(tiny["other-weights"]))


def test_record_is_plain_data_with_a_json_round_trip(fitted: Lens) -> None:
    record = fitted.record()
    assert record.kind == "linear" and record.digest == fitted.meta.get("weights_sha256")
    assert [f.layer for f in record.fidelity] == [0, 1]
    data = json.loads(json.dumps(record.to_dict()))
    assert LensRecord.from_dict(data) == record
    strict = LensRecord(**{**record.__dict__, "unreliable_threshold_nats": -1.0})
    assert strict.unreliable_layers() == [0, 1]
    assert Lens.logit().record().fidelity == []


# --- issue 18: one version lookup (core/runtime.package_version) ---


def test_package_version_is_the_one_version_lookup() -> None:
    from lazarus_report import __version__
    from lazarus_report.core.runtime import package_version, versions

    assert package_version("lazarus-report") == __version__ == versions()["lazarus-report"]
    assert package_version("no-such-distribution-lazarus") is None
    assert {"python", "platform", "lazarus-report"} <= set(versions())
