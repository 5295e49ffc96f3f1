# The single source of truth for checks: CI runs `make ci`, people run the same targets.
SHELL := /bin/bash
CARGO ?= cargo

FUZZ_CASES ?= 20000
API_FUZZ_EXAMPLES ?= 100
CHAOS_MESSAGES ?= 20000
API_FUZZ_VENV := tests/api-fuzz/.venv

.PHONY: chaos chaos-short api-fuzz api-fuzz-short api-fuzz-venv corpus fuzz help build fmt fmt-check lint test ci run migrate services sandbox status bench deploy-check console-speed console-e2e console-screenshots

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

build: ## Build every crate
	$(CARGO) build --workspace --locked

fmt: ## Format the code
	$(CARGO) fmt --all

fmt-check: ## Fail if the code is not formatted
	$(CARGO) fmt --all -- --check

lint: ## Clippy on everything, warnings are errors
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

test: services ## Run every test against the local RabbitMQ and PostgreSQL
	$(CARGO) test --workspace --locked

ci: fmt-check lint deploy-check test corpus api-fuzz-short console-e2e chaos-short ## What CI runs

services: ## Check that PostgreSQL and RabbitMQ answer (and say how to start them)
	@scripts/check-services.sh

migrate: services ## Create the database and apply migrations
	$(CARGO) run --quiet --locked -p commsctl -- migrate

status: ## Broker, database, queue depths and messages by state
	$(CARGO) run --quiet --locked -p commsctl -- status

run: migrate ## Run the whole fleet (and the sandbox provider) in one process, logs in the foreground
	$(CARGO) run --locked -p comms-fleet -- --with-sandbox

sandbox: ## Run only the sandbox provider on 127.0.0.1:8025
	$(CARGO) run --locked -p comms-sandbox

corpus: services ## The 10,000-input malformed-request corpus over AMQP and HTTP (docs/reliability.md), apart from the other tests
	$(CARGO) test --locked -p comms-tests --test it bad_input::corpus -- --ignored

fuzz: services ## Long fuzz run: FUZZ_CASES (20000) cases per property, and the 10,000-input bad-request corpus twice over
	FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --locked --release -p comms-tests --test fuzz
	CORPUS_SIZE=10000 $(CARGO) test --locked --release -p comms-tests --test it bad_input::corpus -- --ignored

api-fuzz-venv: ## Install schemathesis (PyPI) in tests/api-fuzz/.venv
	@test -x $(API_FUZZ_VENV)/bin/python || python3 -m venv $(API_FUZZ_VENV)
	@$(API_FUZZ_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/api-fuzz/requirements.txt

api-fuzz: services api-fuzz-venv ## Fuzz the gateway from docs/openapi.json: API_FUZZ_EXAMPLES (100) per operation, 0 server errors, every answer as documented
	API_FUZZ_EXAMPLES=$(API_FUZZ_EXAMPLES) $(CARGO) test --locked -p comms-tests --test it gateway::api_fuzz -- --ignored --nocapture

api-fuzz-short: services api-fuzz-venv ## The same with 5 examples per operation, about 2 min (in make ci)
	API_FUZZ_EXAMPLES=5 $(CARGO) test --locked -p comms-tests --test it gateway::api_fuzz -- --ignored --nocapture

# The chaos targets build the binaries with `--tests` so that they get the features `make test`
# gives them (dev-dependencies included) and reuse its build instead of compiling again.
chaos: ## The chaos run: CHAOS_MESSAGES (20000) through the whole fleet as processes under every fault, on a private broker and database; fails on a lost, stuck or unexplained duplicate message or a personal value in a log (docs/reliability.md)
	$(CARGO) build --locked --workspace --bins --tests
	CHAOS_MESSAGES=$(CHAOS_MESSAGES) CHAOS_RATE=100 $(CARGO) test --locked -p comms-tests --test chaos -- --ignored --nocapture

chaos-short: ## The same with 2,000 messages and every fault, 4 to 5 minutes (for make ci)
	$(CARGO) build --locked --workspace --bins --tests
	CHAOS_MESSAGES=2000 CHAOS_RATE=40 $(CARGO) test --locked -p comms-tests --test chaos -- --ignored --nocapture

BENCH_BINS := -p comms-bench -p comms-sender -p comms-sandbox -p comms-gateway -p comms-status -p comms-events -p comms-digest -p comms-incidents

bench: services ## Benchmarks: broker baseline, send throughput, latency, pause propagation, digest batching (docs/benchmarks.md)
	$(CARGO) build --release --locked $(BENCH_BINS)
	./target/release/comms-bench

DEPLOY_VENV := deploy/validate/.venv

deploy-check: ## Render every Kustomize overlay and validate it, the Dockerfile, alerts and dashboard
	@command -v promtool >/dev/null || { echo "promtool is missing: apt-get install prometheus"; exit 1; }
	@test -x $(DEPLOY_VENV)/bin/python || python3 -m venv $(DEPLOY_VENV)
	@$(DEPLOY_VENV)/bin/pip install --quiet --disable-pip-version-check -r deploy/validate/requirements.txt
	@npm ci --prefix deploy/validate --no-audit --no-fund --loglevel=error >/dev/null
	PATH="$(CURDIR)/$(DEPLOY_VENV)/bin:$$PATH" $(DEPLOY_VENV)/bin/python deploy/validate/validate.py

console-speed: services ## The console home page with a million messages must render in under 100 ms (docs/console.md)
	$(CARGO) test --locked -p comms-tests --test it console::speed -- --ignored --nocapture

console-e2e: services ## The console end to end in headless Chromium with axe-core (needs chromium, chromium-driver, npm)
	npm ci --prefix tests/e2e --no-audit --no-fund
	$(CARGO) test --locked -p comms-tests --test it console::browser -- --ignored --nocapture

console-screenshots: services ## Refresh the console screenshots in docs/console/ (desktop and phone)
	npm ci --prefix tests/e2e --no-audit --no-fund
	mkdir -p docs/console
	CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console $(CARGO) test --locked -p comms-tests --test it console::browser -- --ignored
