"""benchmarks/run.py's named sections (`make bench SECTIONS=a,b`) and their blocks in RESULTS.md (no model)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    if name == "sections":  # run.py imports it by this name
        return importlib.import_module("sections")
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run():
    return _module("run")


@pytest.fixture(scope="module")
def sections():
    return _module("sections")


def test_registry_names_are_unique_and_plain(run, sections) -> None:
    names = [s.name for s in run.SECTIONS]
    assert len(names) == len(set(names))
    assert set(run.REGISTRY) == set(names)
    assert {"limit", "peers"} <= set(names)
    assert all(sections.NAME.match(n) for n in names)
    # the check itself refuses a second entry of a name
    with pytest.raises(ValueError, match="twice"):
        sections.check_registry([*run.SECTIONS, run.SECTIONS[0]])


def test_every_section_but_the_tuned_fit_is_under_15_minutes(run) -> None:
    assert [s.name for s in run.SECTIONS if s.minutes >= 15] == ["lens-fit-tuned"]


def test_unknown_section_exits_2_with_one_line(run, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        run.main(["--sections", "grid,nope"])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: unknown section nope (choose from: ")
    with pytest.raises(SystemExit) as e:
        run.main(["--only", "limit", "--sections", "limit"])
    assert e.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_select_keeps_the_order_given(run, sections) -> None:
    chosen = sections.select("peers, limit,peers", run.REGISTRY)
    assert [s.name for s in chosen] == ["peers", "limit"]
    assert len(sections.select("all", run.REGISTRY)) == len(run.SECTIONS)


def test_replacing_a_block_keeps_every_other_byte(sections) -> None:
    text = (BENCH / "RESULTS.md").read_text(encoding="utf-8")
    names = sections.block_names(text)
    assert len(names) == len(set(names)) and "grid" in names
    new = sections.block_text("grid", "Full grid", "_Measured now._", "note", ["| a |", "|---|", "| 1 |"])
    out = sections.replace_block(text, "grid", new)
    start, end = "<!-- section:grid -->\n", "<!-- /section:grid -->\n"
    before, after = text[: text.index(start)], text[text.index(end) + len(end) :]
    assert out == before + new + after
    assert sections.block_names(out) == names
    # idempotent, and the old block's rows are gone
    assert sections.replace_block(out, "grid", new) == out
    assert "14.10 s" in text and "14.10 s" not in out


def test_a_new_block_is_appended_and_the_rest_kept(sections) -> None:
    text = "# B\n\n<!-- section:a -->\n## A\n<!-- /section:a -->\n"
    block = sections.block_text("b", "B", "_stamp_", "", ["x"])
    out = sections.replace_block(text, "b", block)
    assert out == text + "\n" + block
    assert sections.block_names(out) == ["a", "b"]
    # a marker not at the start of a line is no block
    assert sections.replace_block("say <!-- section:b -->\n", "b", block).endswith("\n\n" + block)


def test_write_block_creates_the_file_with_its_header(sections, tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    sections.write_block(path, "a", sections.block_text("a", "A", "_s_", "", ["1"]), "# H\n")
    sections.write_block(path, "b", sections.block_text("b", "B", "_s_", "", ["2"]), "# H\n")
    sections.write_block(path, "a", sections.block_text("a", "A", "_s_", "", ["3"]), "# H\n")
    text = path.read_text()
    assert text.startswith("# H\n") and sections.block_names(text) == ["a", "b"]
    assert "\n3\n" in text and "\n1\n" not in text
    assert [p.name for p in tmp_path.iterdir()] == ["RESULTS.md"]


# --- the peers section's cache: it deletes only what it made -------------------------------------------------


def test_peers_cache_removes_only_its_own_folders(tmp_path: Path) -> None:
    peers = _module("peers")
    user = tmp_path / "user"
    user.mkdir()
    (user / "keep.txt").write_text("x")
    with pytest.raises(peers.PeerUnavailable, match="not made by the peers benchmark"):
        peers._remove_ours(user)
    link = tmp_path / "link"
    link.symlink_to(user)
    with pytest.raises(peers.PeerUnavailable):
        peers._remove_ours(link)
    assert (user / "keep.txt").read_text() == "x" and link.is_symlink()
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / peers.MARKER).write_text("")
    peers._remove_ours(ours)
    assert not ours.exists()


def test_peers_agreement_counts_layers_and_cells() -> None:
    peers = _module("peers")
    ours = {"final_p": 0.77253, "top1_layers": [1, 2, 3], "grid_top1": [[1, 2], [3, 4]]}
    same = {"final_p": 0.77254, "top1_layers": [1, 2, 3], "grid_top1": [[1, 2], [3, 4]]}
    a = peers.agreement(ours, same)
    assert (a["layers"], a["n_layers"], a["cells"], a["n_cells"]) == (3, 3, 4, 4) and peers.agrees(a)
    off = peers.agreement(ours, {**same, "top1_layers": [1, 9, 3]})
    assert off["layers"] == 2 and not peers.agrees(off)
    assert not peers.agrees(peers.agreement(ours, {**same, "final_p": 0.8}))
