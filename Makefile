# Quartermaster — `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STATE_DIR ?= .cluster
export GOTOOLCHAIN := local
# The CI machine and fresh checkouts have nothing installed: every target below installs what it needs.

##@ Setup
.PHONY: venv
venv: $(VENV)/.installed ## Create .venv and install the package with its dev extra (pinned).

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

.PHONY: binaries
binaries: ## Build the control-plane binaries from Go modules into ~/.cache/quartermaster (only if missing).
	@bash hack/build-binaries.sh

.PHONY: tools-gomod
tools-gomod: ## Regenerate hack/tools/*/go.mod and go.sum from hack/versions.env.
	bash hack/gen-tools-gomod.sh

##@ Development
.PHONY: lint
lint: venv ## ruff (lint + format check), mypy (strict) and the import-layering contract.
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

.PHONY: fmt
fmt: venv ## Format and autofix with ruff.
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

.PHONY: test
test: venv binaries lint ## The README's test command: lint, then unit + integration tests on a local control plane.
	@status=0; $(BIN)/pytest $(PYTEST_ARGS) || status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: treating as failure"; status=1; fi; \
	exit $$status

.PHONY: test-unit
test-unit: venv ## Unit tests only (no control plane).
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

##@ Demo
.PHONY: demo
demo: venv binaries ## The main job: local control plane + chart + operator + examples/, prints the plans.
	$(BIN)/quartermaster dev-cluster demo --state-dir $(STATE_DIR)

##@ Benchmarks
.PHONY: bench
bench: venv binaries ## Run every benchmark (full: hours on 2 cores); BENCH_ARGS=--quick for a short run.
	for b in clustering planner routing router operator; do $(BIN)/python -m benchmarks.$$b.run $(BENCH_ARGS); done

##@ Manifests
.PHONY: manifests
manifests: venv ## Generate the CRDs from the pydantic models into crds/ (a test diffs the committed copy).
	$(BIN)/python -m quartermaster.api.crds crds
	$(BIN)/python hack/chart_crds.py

##@ Local control plane
.PHONY: cluster-up
cluster-up: venv binaries ## Start etcd, kube-apiserver, controller-manager, scheduler, kwok + fake GPU nodes.
	$(BIN)/quartermaster dev-cluster up --state-dir $(STATE_DIR)

.PHONY: cluster-down
cluster-down: venv ## Stop everything cluster-up started (by PID) and remove its state.
	$(BIN)/quartermaster dev-cluster down --state-dir $(STATE_DIR)

.PHONY: clean-binaries
clean-binaries: venv ## Remove the cached control-plane binaries for the pinned versions.
	rm -rf "$$($(BIN)/python hack/cache_dir.py)/.."

##@ Help
.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)
