"""The compiled-template cache (``render.template_cache``): reports read their templates compiled from the user
cache; an edited template is recompiled, a damaged entry is discarded with a warning and rebuilt, and a cache
that cannot be written only costs the compilation."""

from __future__ import annotations

import warnings
from pathlib import Path

import jinja2
import pytest

from lazarus_report.errors import LazarusWarning
from lazarus_report.render.template_cache import VerifiedBytecodeCache


def _env(templates: Path, cache: Path) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(templates), bytecode_cache=VerifiedBytecodeCache(cache))


def _compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Template names compiled from source from now on."""
    seen: list[str] = []
    real = jinja2.Environment.compile

    def compile(self, source, name=None, filename=None, raw=False, defer_init=False):
        seen.append(name)
        return real(self, source, name, filename, raw, defer_init)

    monkeypatch.setattr(jinja2.Environment, "compile", compile)
    return seen


def test_a_template_compiles_once_then_loads_from_the_cache(tmp_path, monkeypatch):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.j2").write_text("Hello {{ name }}!")
    compiled = _compiles(monkeypatch)
    assert _env(tmp_path / "t", tmp_path / "c").get_template("a.j2").render(name="x") == "Hello x!"
    assert compiled == ["a.j2"] and len(list((tmp_path / "c").iterdir())) == 1
    assert _env(tmp_path / "t", tmp_path / "c").get_template("a.j2").render(name="y") == "Hello y!"
    assert compiled == ["a.j2"]  # the second environment (a new process) read it compiled
    (tmp_path / "t" / "a.j2").write_text("Bye {{ name }}!")  # edited: the entry no longer matches its source
    assert _env(tmp_path / "t", tmp_path / "c").get_template("a.j2").render(name="z") == "Bye z!"
    assert compiled == ["a.j2", "a.j2"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_a_damaged_entry_is_discarded_with_a_warning_and_rebuilt(tmp_path, monkeypatch, damage):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.j2").write_text("{% for i in range(3) %}{{ i }}{% endfor %}")
    _env(tmp_path / "t", tmp_path / "c").get_template("a.j2")
    (entry,) = (tmp_path / "c").iterdir()
    data = bytearray(entry.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    entry.write_bytes(bytes(data[: len(data) // 2] if damage == "truncate" else b"" if damage == "empty" else data))
    compiled = _compiles(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _env(tmp_path / "t", tmp_path / "c").get_template("a.j2").render() == "012"
    assert compiled == ["a.j2"]
    assert next(str(w.message) for w in caught if issubclass(w.category, LazarusWarning)).startswith(
        f"discarding the damaged cache entry {entry}"
    )
    compiled.clear()
    assert _env(tmp_path / "t", tmp_path / "c").get_template("a.j2").render() == "012"
    assert compiled == []  # rebuilt: read compiled again


def test_an_unwritable_cache_only_costs_the_compilation(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.j2").write_text("ok")
    (tmp_path / "c").write_text("a file where the cache directory would be")
    assert _env(tmp_path / "t", tmp_path / "c").get_template("a.j2").render() == "ok"


def test_reports_use_the_cache_under_the_cache_directory(isolated_cache, monkeypatch):
    from factories import make_result

    from lazarus_report.render import environment
    from lazarus_report.render.html import render_html

    environment.html_environment.cache_clear()
    environment.markdown_environment.cache_clear()
    try:
        page = render_html(make_result(), static=True)
        entries = list((isolated_cache / "templates").iterdir())
        assert len(entries) >= 5  # the page and what it includes
        environment.html_environment.cache_clear()
        compiled = _compiles(monkeypatch)
        assert render_html(make_result(), static=True) == page  # the same bytes from the compiled entries
        assert compiled == []
    finally:
        environment.html_environment.cache_clear()
        environment.markdown_environment.cache_clear()
