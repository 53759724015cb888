# `make demo` runs the main job on this machine; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test unit lint lock bench clean

$(BIN)/handoff: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

demo: $(BIN)/handoff
	$(BIN)/handoff demo

test: $(BIN)/handoff lint
	$(BIN)/python -m pytest -ra

unit: $(BIN)/handoff
	$(BIN)/python -m pytest -q tests/unit

lint: $(BIN)/handoff
	$(BIN)/ruff check handoff outbox worker api schema tests
	$(BIN)/mypy

# Rewrites requirements.lock from pyproject.toml's lower bounds (needs `pip install uv`).
lock:
	$(BIN)/uv pip compile pyproject.toml --extra embedded --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .handoff-demo .pytest_cache .mypy_cache .ruff_cache
