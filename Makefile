# Two commands set everything up on a fresh machine (Python >= 3.11):
#   make demo   - virtualenv, install, replay the bundled demo stream, print the alerts
#   make test   - virtualenv with the test and training extras, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Training needs torch. Pin the CPU build: an unpinned torch pulls a multi-GB CUDA build.
# Elsewhere: make test TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test types lint clean constraints

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[test,train]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/incident-monitor demo

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n auto

# Types alone (configured in pyproject.toml); `make test` runs the same check before pytest.
types: $(VENV)/.installed-test
	$(BIN)/mypy

# Pin the runtime dependencies the Dockerfile installs (after changing dependencies in pyproject.toml).
constraints: $(VENV)/.installed
	$(BIN)/python .ci/freeze-constraints.py > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache
