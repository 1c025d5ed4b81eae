"""The compiled-template cache (``render.template_cache``): reports read their templates compiled from the user
cache; an edited template is recompiled, a damaged entry is discarded with a warning and rebuilt, and a cache
that cannot be written only costs the compilation."""

from __future__ import annotations

import warnings
from pathlib import Path

import jinja2
import pytest

from lazarus_report.core.errors import LazarusWarning
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


# issue 24: validation


def test_entries_are_keyed_to_the_installed_package(tmp_path, monkeypatch):
    from lazarus_report.render.template_cache import package_key

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.j2").write_text("Hello {{ name }}!")
    cache = tmp_path / "c"

    def env(key=None):
        return jinja2.Environment(
            loader=jinja2.FileSystemLoader(tmp_path / "t"), bytecode_cache=VerifiedBytecodeCache(cache, key)
        )

    assert env().get_template("a.j2").render(name="x") == "Hello x!"
    (entry,) = cache.iterdir()
    assert package_key() in entry.name  # recomputed from the installed templates, not read from the cache
    compiled = _compiles(monkeypatch)
    # another installation (another key) never reads this one's entry, valid as it is, and vice versa
    assert env("feedfacecafebeef").get_template("a.j2").render(name="y") == "Hello y!"
    assert compiled == ["a.j2"]
    assert env("feedfacecafebeef").get_template("a.j2").render(name="y") == "Hello y!"
    assert compiled == ["a.j2"]  # its own entry, read compiled


def test_the_package_key_follows_the_template_sources(tmp_path, monkeypatch):
    import shutil

    from lazarus_report.render import template_cache, template_files
    from lazarus_report.render.template_files import template_root

    copy = tmp_path / "templates"
    shutil.copytree(template_root(), copy)
    monkeypatch.setattr(template_files, "template_root", lambda: copy)
    template_cache.package_key.cache_clear()
    try:
        before = template_cache.package_key()
        page = copy / "html" / "page.html.j2"
        page.write_text(page.read_text(encoding="utf-8") + "\n", encoding="utf-8")
        template_cache.package_key.cache_clear()
        assert template_cache.package_key() != before
    finally:
        template_cache.package_key.cache_clear()


def test_old_and_superseded_entries_are_removed(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.j2").write_text("A")
    cache = tmp_path / "c"
    cache.mkdir()
    key = jinja2.BytecodeCache().get_cache_key("a.j2", str(tmp_path / "t" / "a.j2"))
    (cache / f"{key}.v1.jinja").write_bytes(b"old format")  # unkeyed: never read again
    (cache / f"{key}-0000000000000000.v2.jinja").write_bytes(b"an earlier package")
    (cache / "someone-else.v2.jinja").write_bytes(b"another template")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(tmp_path / "t"), bytecode_cache=VerifiedBytecodeCache(cache, "1111111111111111")
    )
    assert env.get_template("a.j2").render() == "A"
    assert sorted(p.name for p in cache.iterdir()) == [f"{key}-1111111111111111.v2.jinja", "someone-else.v2.jinja"]
