# Two entry points: `make run` (local stack, embedded defaults) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed

.PHONY: run test lint typecheck unit bench clean

# The suite's slow scenarios mostly wait (alert timings, chain confirmations): two workers overlap them.
PYTEST_WORKERS ?= 2

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# anvil (the local chain) and solc, pinned by package.json/package-lock.json; never installed globally.
# Without npm the chain tests skip locally (CI=true makes that an error), so a missing npm only warns here and
# leaves the stamp absent to try again next time. The .gitignore keeps git away from node_modules, as
# virtualenv does for a venv.
$(NODE_STAMP): package.json package-lock.json
	@if ! command -v npm >/dev/null 2>&1; then \
	  echo "npm not found: anvil and solc not installed (chain and rpc proxy tests will skip)"; \
	  case "$${CI:-}" in 1|true|yes) exit 1;; esac; exit 0; \
	fi; \
	npm ci --no-audit --no-fund && printf '*\n' > node_modules/.gitignore && touch $(NODE_STAMP)

# The platform's Prometheus and Alertmanager are Debian packages: installed when missing and possible (root or
# sudo, apt); otherwise `musdpay dev` says how and runs everything else. RUN_ARGS passes flags (ports, ...).
run: $(STAMP) $(NODE_STAMP)
	@bash scripts/ensure-tools.sh prometheus:prometheus prometheus-alertmanager:prometheus-alertmanager
	$(BIN)/musdpay dev $(RUN_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) $(NODE_STAMP) lint typecheck
	bash scripts/ensure-services.sh
	bash scripts/ensure-tools.sh
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/api.py

clean:
	rm -rf $(VENV) node_modules .mypy_cache .ruff_cache .pytest_cache .musdpay dev.sqlite*
