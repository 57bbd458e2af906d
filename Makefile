# Every target a developer or CI runs. CI (`.ci/run`) calls `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
STACK ?= local
SETUP_STAMP := $(VENV)/.setup-stamp

.PHONY: help setup setup-deploy lint lint-workflows format typecheck test test-fast run stop synth check-manifests up preview bench closed-loop alerts settings-doc clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# The stamp makes `setup` cheap when nothing changed, while any change to the
# lock file or the set-up scripts re-runs it.
$(SETUP_STAMP): uv.lock pyproject.toml scripts/setup.sh scripts/setup-deploy.sh scripts/install-system-packages.sh $(wildcard scripts/install-checkov.sh)
	bash scripts/setup.sh
	@touch $@

setup: $(SETUP_STAMP) ## Install system packages and the virtualenvs (idempotent)
	@bash scripts/install-system-packages.sh

# Deploying needs only the project virtualenv (and the Pulumi CLI on PATH): no
# apt, no Postgres or Redis, so it works on macOS and any CI image with Python 3.11.
DEPLOY_STAMP := $(VENV)/.deploy-stamp
$(DEPLOY_STAMP): uv.lock pyproject.toml scripts/setup-deploy.sh
	bash scripts/setup-deploy.sh
	@touch $@

setup-deploy: $(DEPLOY_STAMP) ## The virtualenv alone, for synth/preview/up (no system packages)

lint: setup ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# ZIZMOR_OFFLINE as well as --offline: with GH_TOKEN set zizmor would go online.
lint-workflows: setup ## actionlint and zizmor (offline) over .github, hadolint over the Dockerfile
	$(VENV)/bin/actionlint -ignore node20 .github/workflows/*.yml
	ZIZMOR_OFFLINE=true $(VENV)/bin/zizmor --offline --no-progress .github
	$(VENV)/bin/hadolint --no-color Dockerfile

format: setup ## Apply ruff formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: setup ## mypy over infra, services, localrun, benchmarks, policies and alerts
	$(VENV)/bin/mypy

test: lint lint-workflows typecheck ## Everything: lint, workflow lint, type check and the whole test suite
	$(VENV)/bin/pytest --cov --cov-report=term

test-fast: setup ## The test suite alone, stopping at the first failure
	$(VENV)/bin/pytest -x -q

run: setup ## The whole platform on this machine (Postgres, Redis, services, Prometheus, Alertmanager, demo data)
	$(PY) -m localrun

stop: ## Stop a `make run` started elsewhere (another terminal, the background)
	$(PY) -m localrun stop

synth: setup-deploy ## Offline synthesis of STACK into build/synth/STACK
	$(PY) -m infra.synth --stack $(STACK) --out build/synth/$(STACK)

check-manifests: setup-deploy ## Synthesize STACK and validate its manifests (schemas; checkov for production)
	bash scripts/check-manifests.sh $(STACK)

preview: setup-deploy ## pulumi preview of STACK (needs the Pulumi CLI and credentials)
	bash scripts/pulumi.sh preview $(STACK)

up: setup-deploy ## pulumi up of STACK (needs the Pulumi CLI and a reachable cluster/cloud)
	bash scripts/pulumi.sh up $(STACK)

alerts: setup ## Regenerate the SLO rule files and write the dashboards to build/dashboards
	$(PY) -m alerts render
	$(PY) -m alerts dashboards --out build/dashboards

settings-doc: setup ## Regenerate docs/settings.md from the services' settings classes
	$(PY) -m services.settings_reference

closed-loop: setup ## W7: fault -> alert -> rollback-handler -> flag off, on loopback (about 3 min)
	$(PY) -m benchmarks.closed_loop --scenario errors
	$(PY) -m benchmarks.closed_loop --scenario latency

bench: setup ## W6 synthesis, W2 lead scoring and W1 feed benchmarks (long; the others: docs/benchmarks.md)
	$(PY) -m benchmarks.synth
	$(PY) -m benchmarks.lead_scoring
	$(PY) -m benchmarks.realtime_feed

clean: ## Remove build output and caches (keeps the virtualenvs)
	rm -rf build .pytest_cache .mypy_cache .ruff_cache .coverage var
