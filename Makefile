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
	$(BIN)/ruff check handoff outbox worker api schema tests bench chaos
	$(BIN)/mypy

# Rewrites requirements.lock from pyproject.toml's lower bounds (needs `pip install uv`).
lock:
	$(BIN)/uv pip compile pyproject.toml --extra embedded --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .handoff-demo .pytest_cache .mypy_cache .ruff_cache

# Fault injection against private Postgres and Redis (docs/reliability.md); the suite stops
# itself within its 10-minute budget, and `timeout` is the last resort if its teardown hangs.
.PHONY: chaos
chaos: $(BIN)/handoff
	timeout --kill-after=10 600 $(BIN)/python -m chaos.run $(CHAOS_ARGS)

# Throughput, latency and CPU of the pipeline against its limits (about 6 minutes; not in CI).
# It installs nginx-light with apt-get when nginx is missing and it runs as root.
bench: $(BIN)/handoff
	$(BIN)/python -m bench.run

# Worker memory over 50,000 deliveries, too long to fit in `make bench`.
.PHONY: bench-soak
bench-soak: $(BIN)/handoff
	$(BIN)/python -m bench.run --soak
