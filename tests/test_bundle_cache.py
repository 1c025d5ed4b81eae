"""The disk cache of the Vega JavaScript bundle (issue 13): keyed by the vl-convert and Vega-Lite versions,
verified by sha256 before use, written atomically, rebuilt (with a warning) when damaged.

Fault injection as in tests/test_cache_faults.py: bytes flipped in the middle of the cached bundle (size kept),
a truncated record, a missing bundle file, an unwritable cache, leftovers of a killed write. vl-convert's real
``javascript_bundle`` runs once per module; the tests count the builds that reach it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
import vl_convert as vlc

from lazarus_report.core.errors import LazarusWarning
from lazarus_report.render.charts import VL_VERSION
from lazarus_report.render.charts import bundle as bundle_mod

REAL_BUILD = vlc.javascript_bundle


@pytest.fixture(scope="module")
def real_bundle() -> str:
    return REAL_BUILD(vl_version=VL_VERSION)  # type: ignore[call-arg]


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch, real_bundle: str) -> list[str]:
    """Every call that reaches vl-convert's bundle builder (answered with the real bundle, built once per module)."""
    calls: list[str] = []

    def counted(vl_version: str) -> str:
        calls.append(vl_version)
        assert vl_version == VL_VERSION
        return real_bundle

    monkeypatch.setattr(vlc, "javascript_bundle", counted)
    return calls


def _entry(cache: Path) -> tuple[Path, Path]:
    name = bundle_mod.entry_name(bundle_mod.bundle_source(VL_VERSION))
    return cache / "vega-bundle" / f"{name}.js", cache / "vega-bundle" / f"{name}.json"


def test_built_once_then_read_from_the_cache(isolated_cache, builds, real_bundle):
    assert bundle_mod.cached_bundle(VL_VERSION) == real_bundle
    assert len(builds) == 1
    js, record = _entry(isolated_cache)  # under $LAZARUS_CACHE_DIR
    assert js.read_bytes() == real_bundle.encode("utf-8")
    meta = json.loads(record.read_bytes())
    assert meta["sha256"] == hashlib.sha256(js.read_bytes()).hexdigest()
    assert meta["source"]["vega_lite"] == VL_VERSION
    assert meta["source"]["vl_convert_python"] == metadata.version("vl-convert-python")
    assert meta["built_with"] == {
        "vl_convert": vlc.__version__,
        "vega": vlc.get_vega_version(),
        "vega_embed": vlc.get_vega_embed_version(),
    }
    assert bundle_mod.cached_bundle(VL_VERSION) == real_bundle
    assert len(builds) == 1  # read, not rebuilt
    assert sorted(p.name for p in js.parent.iterdir() if p.is_file()) == sorted([js.name, record.name])  # no temp


def test_the_key_names_the_versions():
    source = bundle_mod.bundle_source(VL_VERSION)
    name = bundle_mod.entry_name(source)
    assert name.startswith("vl-convert-") and f"-vega-lite-{VL_VERSION}-" in name
    assert bundle_mod.entry_name({**source, "vega_lite": "5.8"}) != name
    assert bundle_mod.entry_name({**source, "vl_convert_python": "9.9.9"}) != name
    assert bundle_mod.entry_name({**source, "vega": "0.0.1"}) != name  # any part of the key, not only the readable ones


def test_an_entry_is_used_exactly_as_recorded(isolated_cache, builds):
    """A verified entry is what the page gets: a planted bundle with a matching digest is returned as is."""
    bundle_mod.cached_bundle(VL_VERSION)
    js, record = _entry(isolated_cache)
    planted = "/* planted */ var vegaEmbed = 1;"
    js.write_text(planted, encoding="utf-8")
    meta = json.loads(record.read_bytes())
    meta["sha256"] = hashlib.sha256(planted.encode("utf-8")).hexdigest()
    record.write_text(json.dumps(meta), encoding="utf-8")
    assert bundle_mod.cached_bundle(VL_VERSION) == planted
    assert len(builds) == 1


def test_damage_in_the_middle_is_found_and_rebuilt(isolated_cache, builds, real_bundle):
    bundle_mod.cached_bundle(VL_VERSION)
    js, _ = _entry(isolated_cache)
    data = bytearray(js.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped, size kept
    js.write_bytes(bytes(data))
    with pytest.warns(LazarusWarning, match=r"discarding the damaged cache entry .*sha256.*rebuilding"):
        assert bundle_mod.cached_bundle(VL_VERSION) == real_bundle
    assert len(builds) == 2  # rebuilt, not trusted
    assert js.read_bytes() == real_bundle.encode("utf-8")
    bundle_mod.cached_bundle(VL_VERSION)  # the rebuilt entry verifies
    assert len(builds) == 2


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda js, record: record.write_bytes(record.read_bytes()[:20]), "record is not valid"),
        (lambda js, record: record.write_bytes(b"[1, 2]"), "record is not valid"),
        (lambda js, record: js.unlink(), "cannot be read"),
        (lambda js, record: js.write_bytes(b""), "sha256"),
    ],
    ids=["truncated record", "record of another shape", "bundle missing", "bundle emptied"],
)
def test_other_damage_is_rebuilt_with_a_warning(isolated_cache, builds, real_bundle, damage, reason):
    bundle_mod.cached_bundle(VL_VERSION)
    damage(*_entry(isolated_cache))
    with pytest.warns(LazarusWarning, match=f"discarding the damaged cache entry .*{reason}"):
        assert bundle_mod.cached_bundle(VL_VERSION) == real_bundle
    assert len(builds) == 2
    assert bundle_mod.cached_bundle(VL_VERSION) == real_bundle and len(builds) == 2


def test_a_bundle_without_its_record_is_rewritten_silently(isolated_cache, builds, real_bundle, recwarn):
    """A write killed between the bundle and its record: the bundle is never trusted, nothing to warn about."""
    bundle_mod.cached_bundle(VL_VERSION)
    js, record = _entry(isolated_cache)
    record.unlink()
    js.write_bytes(b"half")
    assert bundle_mod.cached_bundle(VL_VERSION) == real_bundle
    assert len(builds) == 2 and not [w for w in recwarn if issubclass(w.category, LazarusWarning)]
    assert js.read_bytes() == real_bundle.encode("utf-8")


def test_an_unwritable_cache_still_gives_the_bundle(tmp_path, monkeypatch, builds, real_bundle, recwarn):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory would be", encoding="utf-8")
    monkeypatch.setenv("LAZARUS_CACHE_DIR", str(blocker))
    assert bundle_mod.cached_bundle(VL_VERSION) == real_bundle
    assert bundle_mod.cached_bundle(VL_VERSION) == real_bundle
    assert len(builds) == 2  # nothing could be stored: built each time, no error
    assert not [w for w in recwarn if issubclass(w.category, LazarusWarning)]  # and nothing called damaged


_READER = textwrap.dedent(
    """
    import sys
    import vl_convert as vlc

    def refuse(**kwargs):
        raise SystemExit("javascript_bundle was called")

    vlc.javascript_bundle = refuse
    from lazarus_report.render.charts import vega_bundle
    sys.stdout.write(vega_bundle())
    """
)


def test_leftovers_of_a_killed_write_are_removed(isolated_cache, builds):
    js, _ = _entry(isolated_cache)
    js.parent.mkdir(parents=True)
    leftover = js.parent / f".{js.name}.k1ll3d.tmp"
    leftover.write_bytes(b"partial")
    bundle_mod.cached_bundle(VL_VERSION)
    assert not leftover.exists() and js.exists()


@pytest.mark.slow  # a process
def test_a_fresh_process_reads_the_entry_without_building(isolated_cache, builds, real_bundle):
    """Across processes: one process builds and stores, a fresh one only reads (its builder refuses to run)."""
    bundle_mod.cached_bundle(VL_VERSION)
    assert len(builds) == 1
    proc = subprocess.run(
        [sys.executable, "-c", _READER],
        capture_output=True,
        env={**os.environ, "LAZARUS_CACHE_DIR": str(isolated_cache)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode("utf-8") == real_bundle


# issue 24: validation


def test_the_key_is_the_installation_recomputed_not_read(isolated_cache, builds, real_bundle, monkeypatch):
    source = bundle_mod.bundle_source(VL_VERSION)
    record = metadata.distribution("vl-convert-python").read_text("RECORD") or ""
    assert source["installed"] == hashlib.sha256(record.encode("utf-8")).hexdigest()[:16]
    assert bundle_mod.cached_bundle(VL_VERSION) == real_bundle and len(builds) == 1
    # another build of the same vl-convert version (other files installed): its own entry, built afresh
    monkeypatch.setattr(bundle_mod, "installed_digest", lambda dist: "0123456789abcdef")
    assert bundle_mod.cached_bundle(VL_VERSION) == real_bundle and len(builds) == 2
    assert len(list((isolated_cache / "vega-bundle").glob("*.js"))) == 2


def test_entries_of_an_older_format_are_removed(isolated_cache, builds):
    cache = isolated_cache / "vega-bundle"
    cache.mkdir(parents=True)
    current = bundle_mod.bundle_source(VL_VERSION)
    old = {"format": bundle_mod.BUNDLE_CACHE_FORMAT - 1, "vl_convert_python": "1.0.0", "vega_lite": VL_VERSION}
    other = {**current, "vega_lite": "5.8"}  # the current format for another Vega-Lite: another caller's entry
    for source in (old, other):
        name = bundle_mod.entry_name(source)
        (cache / f"{name}.js").write_text("x", encoding="utf-8")
        record = {"source": source, "sha256": hashlib.sha256(b"x").hexdigest()}
        (cache / f"{name}.json").write_text(json.dumps(record), encoding="utf-8")
    (cache / "notes.json").write_text("{}", encoding="utf-8")  # not a name this cache writes
    bundle_mod.cached_bundle(VL_VERSION)
    js, record_path = _entry(isolated_cache)
    other_name = bundle_mod.entry_name(other)
    expected = [js.name, record_path.name, f"{other_name}.js", f"{other_name}.json", "notes.json"]
    assert sorted(p.name for p in cache.iterdir() if p.is_file()) == sorted(expected)
