"""Packaging: the wheel builds without warnings, holds every package and its data, installs into a fresh
environment and renders a saved result from there; a plain checkout (nothing installed) renders too.

Offline: the wheel is built with the test environment's setuptools (no build isolation) and installed with
``--no-deps``; the fresh environment reaches the dependencies through a ``.pth`` file pointing at the test
environment's site-packages.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from lazarus_report.render.markdown import render_markdown
from lazarus_report.render.packing import load_result_file
from lazarus_report.results.loading import without_timings
from lazarus_report.suites.spec import schema_path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_reports" / "analyze-capital-raw.json"
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "lazarus_report", "templates"]


def _setuptools_version() -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in importlib.metadata.version("setuptools").split(".")[:2])
    except importlib.metadata.PackageNotFoundError:
        return (0,)


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that would put this checkout on sys.path or silence warnings."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONWARNINGS")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory) -> Path:
    """The files a build reads, copied (a build writes build/ and *.egg-info next to them)."""
    root = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, root / name)
    return root


@pytest.fixture(scope="module")
def wheel_build(source_copy, tmp_path_factory) -> tuple[Path, str]:
    if _setuptools_version() < (77,):
        pytest.skip("setuptools>=77 is not installed (it is in the test extra)")
    out = tmp_path_factory.mktemp("dist")
    code = "import sys, setuptools.build_meta as b; print(b.build_wheel(sys.argv[1]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=source_copy,
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    wheel = out / proc.stdout.strip().splitlines()[-1]
    return wheel, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def wheel(wheel_build) -> Path:
    return wheel_build[0]


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory) -> Path:
    """A new virtual environment without lazarus_report, reaching the test environment's dependencies."""
    root = tmp_path_factory.mktemp("venv")
    venv.create(root, with_pip=False)
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ours = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    ours.append(sysconfig.get_paths()["purelib"])
    (Path(site) / "test-deps.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n", encoding="utf-8")
    return python


def _run(python: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), *args], cwd=cwd, capture_output=True, text=True, env=_clean_env(**env), timeout=300
    )


@pytest.mark.slow  # processes (a wheel build, a venv)
def test_wheel_builds_without_warnings(wheel_build):
    _, log = wheel_build
    warnings = [line for line in log.splitlines() if re.search(r"warn", line, re.IGNORECASE)]
    assert not warnings, "\n".join(warnings)


@pytest.mark.slow  # processes (a wheel build, a venv)
def test_wheel_holds_every_package_and_its_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    # Every package directory under lazarus_report/ (pyproject lists them by hand).
    for init in (REPO / "lazarus_report").rglob("__init__.py"):
        assert init.relative_to(REPO).as_posix() in names, f"{init.parent} is not in pyproject's packages"
    templates = [p for p in (REPO / "templates").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert len(templates) > 20
    for path in templates:
        assert "lazarus_report/templates/" + path.relative_to(REPO / "templates").as_posix() in names
    assert "lazarus_report/schemas/suite.schema.json" in names
    assert "lazarus_report/py.typed" in names
    assert "lazarus_report/lens/learned/data/default_corpus.jsonl.gz" in names  # the default lens corpus
    assert "lazarus_report/__main__.py" in names
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert f"{dist_info}/licenses/LICENSE" in names
    metadata = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata
    requires = {r.name.lower(): r for r in map(Requirement, re.findall(r"^Requires-Dist: (.*)$", metadata, re.M))}
    assert requires["jinja2"].specifier == SpecifierSet(">=3.1,<4")  # ranges; exact pins live in constraints.txt
    assert all(not any(s.operator == "==" for s in r.specifier) for r in requires.values()), requires


@pytest.mark.slow  # processes (a wheel build, a venv)
def test_schema_ships_in_the_wheel(wheel):
    data = zipfile.ZipFile(wheel).read("lazarus_report/schemas/suite.schema.json")
    assert data == schema_path().read_bytes()


@pytest.mark.slow  # processes (a wheel build, a venv)
def test_a_plain_checkout_renders_without_an_install(fresh_venv, source_copy, tmp_path):
    # No lazarus_report in the environment: only PYTHONPATH points at the sources (templates/ at the top).
    out = tmp_path / "out.md"
    proc = _run(
        fresh_venv, "-m", "lazarus_report", "report", "render", str(SAMPLE), "--markdown", str(out),
        cwd=tmp_path, PYTHONPATH=str(source_copy),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert out.read_text(encoding="utf-8") == render_markdown(
        without_timings(load_result_file(SAMPLE))
    )  # the CLI: no --timings


@pytest.mark.slow  # processes (a wheel build, a venv)
def test_installed_wheel_renders_a_saved_result(wheel, fresh_venv, tmp_path):
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(fresh_venv), "install", "-q", "--no-deps", "--no-index", wheel],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    where = _run(fresh_venv, "-c", "import lazarus_report; print(lazarus_report.__file__)", cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(fresh_venv.parent.parent), where.stdout  # not this checkout
    out = tmp_path / "out.md"
    proc = _run(
        fresh_venv, "-m", "lazarus_report", "report", "render", str(SAMPLE), "--markdown", str(out), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text(encoding="utf-8") == render_markdown(
        without_timings(load_result_file(SAMPLE))
    )  # the CLI: no --timings
    assert "Paris" in proc.stdout  # the text report on stdout
    script = fresh_venv.parent / ("lazarus.exe" if os.name == "nt" else "lazarus")
    help_text = subprocess.run([script, "--help"], capture_output=True, text=True, env=_clean_env(), cwd=tmp_path)
    assert help_text.returncode == 0 and "report" in help_text.stdout  # the console script


# --- shipped lenses (issue 21) ---------------------------------------------------------------------


@pytest.mark.slow  # processes (a wheel build, a venv)
def test_wheel_ships_the_lenses_within_the_budget(wheel):
    shipped = sorted(p.name for p in (REPO / "lazarus_report" / "lens" / "shipped").iterdir() if p.suffix != ".py")
    assert any(n.endswith("-tuned.safetensors") for n in shipped) and any(n.endswith(".json") for n in shipped)
    infos = {i.filename: i for i in zipfile.ZipFile(wheel).infolist()}
    entries = [infos.get(f"lazarus_report/lens/shipped/{name}") for name in shipped]
    assert all(entries), [n for n, e in zip(shipped, entries, strict=True) if e is None]
    # the wheel's growth: the shipped files as the wheel stores them (compressed)
    growth = sum(e.compress_size for e in entries if e is not None)
    print(f"shipped lenses: {len(shipped)} files, {growth / 1e6:.1f} MB in the wheel")
    assert growth <= 25 * 1024 * 1024
