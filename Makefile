# Two-command quick start: `make demo` runs the whole job on synthetic data, `make test` runs the tests.
# Both create/update the virtual environment first. torch is pinned to the CPU wheel on this kind of
# machine *before* anything that depends on it, so pip never pulls a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
# two test processes (pytest-xdist), each test file on one so its module fixtures are built once;
# plain `pytest` runs serially
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: venv demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "$(TORCH_PIN)"
	$(BIN)/python -m pip install -q -e ".[test,cluster]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/neurotask demo --out demo-output

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/lint-imports

bench: venv
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf demo-output .pytest_cache
