# The project's commands. `make test` runs every test; `make help` lists the
# targets.
#
# Where the tests get Postgres and RabbitMQ (docs/contracts.md, "Where
# Postgres and RabbitMQ come from"):
#   - SAGA_TEST_PG_URL and SAGA_TEST_AMQP_URL, when set;
#   - else containers started by the tests with testcontainers-go, when a
#     Docker engine answers;
#   - else `make test` runs deploy/local/ensure-services.sh first, which
#     installs and starts both from Debian's packages (needs root) and
#     provides the variables for this run.

SHELL := bash
GO    ?= go

# Folders whose main packages `make build` puts in bin/; services/ may not
# exist yet.
CMD_DIRS := $(wildcard cdc-relay/cmd services)

# Whether a Docker engine answers (not just the docker client).
DOCKER_ANSWERS := timeout 5 docker info >/dev/null 2>&1

.PHONY: fuzz help build test test-matrix test-short lint services-up reliability chaos

include deploy/demo.mk
include deploy/bench.mk
.DEFAULT_GOAL := help

help:
	@echo 'make demo         the whole system, gateway on :8080 (compose with Docker, else local processes)'
	@echo 'make demo-down    stop it'
	@echo 'make build        compile everything; binaries into bin/'
	@echo 'make test         go vet, then every test with -race (starts Postgres and RabbitMQ when needed)'
	@echo 'make test-short   unit tests only (go test -short)'
	@echo 'make fuzz         each fuzz target for FUZZTIME (3s) beyond its seed corpus; part of make test'
	@echo 'make test-matrix  the relay suite on Postgres 14, 16, 17 and 18 (part of make test; PG_MATRIX picks)'
	@echo 'make bench        benchmarks (tests/bench): relay vs the machine and a polling relay; writes docs/benchmarks.md'
	@echo 'make reliability  the fault tests, once, writing what each fault costs to docs/reliability.md'
	@echo 'make chaos        the whole system under a long seeded fault schedule (ORDERS, FAULTS, SEED); figures to docs/reliability.md'
	@echo 'make lint         gofmt, go vet, staticcheck and ShellCheck (installed on first use)'
	@echo 'make services-up  install and start Postgres and RabbitMQ from Debian packages (root)'

build:
	$(GO) build ./...
	@mkdir -p bin
	$(if $(CMD_DIRS),$(GO) build -o bin/ $(patsubst %,./%/...,$(CMD_DIRS)))

# WITH_SERVICES prefixes a recipe that needs the test servers: unless
# SAGA_TEST_PG_URL and SAGA_TEST_AMQP_URL are set or a Docker engine answers,
# it runs deploy/local/ensure-services.sh and exports what it prints. A
# variable that is set wins over the one ensure-services.sh prints.
WITH_SERVICES = set -euo pipefail; \
	if { [[ -z "$${SAGA_TEST_PG_URL:-}" ]] || [[ -z "$${SAGA_TEST_AMQP_URL:-}" ]]; } && ! $(DOCKER_ANSWERS); then \
		echo 'make: SAGA_TEST_PG_URL / SAGA_TEST_AMQP_URL unset and no Docker engine: running deploy/local/ensure-services.sh' >&2; \
		pg="$${SAGA_TEST_PG_URL:-}"; amqp="$${SAGA_TEST_AMQP_URL:-}"; \
		eval "$$(bash deploy/local/ensure-services.sh)"; \
		export SAGA_TEST_PG_URL="$${pg:-$$SAGA_TEST_PG_URL}" SAGA_TEST_AMQP_URL="$${amqp:-$$SAGA_TEST_AMQP_URL}"; \
	fi

# The version matrix: after the main run (on the machine's Postgres, 15),
# the relay's suite runs again on each other supported major, each in a
# cluster of its own (deploy/local/pg-major.sh). The long fault tests run on
# 15 and 17 only (testenv.LongFaultTest), the contract tests on every major.
PG_MATRIX   ?= 14 16 17 18
RELAY_SUITE := ./cdc-relay/internal/relay/ ./cdc-relay/internal/admin/ ./cdc-relay/internal/replication/ ./tests/relay/ ./tests/admin/

test:
	@$(WITH_SERVICES); \
	set -x; \
	$(MAKE) --no-print-directory lint; \
	$(GO) test -race -count=1 -timeout 20m ./...; \
	$(MAKE) --no-print-directory fuzz; \
	$(MAKE) --no-print-directory test-matrix

# The fuzz targets of hostile input (pgoutput messages, outbox rows, HTTP
# bodies, broker messages), each run for FUZZTIME beyond its seed corpus
# (which `go test` runs every time). A failing input is written under the
# package's testdata/fuzz/: commit it with the fix.
FUZZTIME ?= 3s
FUZZ_TARGETS := \
	./cdc-relay/internal/replication:FuzzDecode \
	./cdc-relay/internal/outbox:FuzzMap \
	./cdc-relay/internal/outbox:FuzzHeadersScanner \
	./cdc-relay/internal/outbox:FuzzParseTimestamptz \
	./services/internal/platform:FuzzReadObject \
	./services/stock/internal/consumer:FuzzParse \
	./services/payment/internal/consumer:FuzzParse

fuzz:
	@set -euo pipefail; for t in $(FUZZ_TARGETS); do \
		echo "== fuzz $${t#*:} in $${t%%:*} for $(FUZZTIME)" >&2; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}"; \
	done

test-matrix:
	@$(WITH_SERVICES); \
	for major in $(PG_MATRIX); do \
		dir=$$(mktemp -d); chmod 755 "$$dir"; \
		trap 'bash deploy/local/pg-major.sh stop "$$dir/pg"' EXIT; \
		url=$$(bash deploy/local/pg-major.sh start "$$major" "$$dir/pg"); \
		echo "== the relay's suite on Postgres $$major" >&2; \
		SAGA_TEST_PG_URL="$$url" SAGA_TEST_PG_MAJOR="$$major" $(GO) test -race -count=1 -timeout 20m $(RELAY_SUITE); \
		bash deploy/local/pg-major.sh stop "$$dir/pg"; trap - EXIT; rm -rf "$$dir"; \
	done

# The fault tests that measure what each fault costs; `make reliability`
# runs them once with SAGA_RELIABILITY_OUT set and writes their figures to
# docs/reliability.md. They are part of `make test` too, which checks the
# same bounds without writing.
RELIABILITY_TESTS := TestServerFaults|TestNackedRowsWaitForRoom|TestRowsAfterAReturnedMessageWaitForIt|TestUnroutableMessagesAreParked|TestCleanStopsResendNothing|TestRelayRecoversWhenTheBrokerConnectionIsCut|TestSIGKILLMidStreamLosesNothing|TestSIGTERMDrainsAndExitsZero|TestStandbyTakesOverWhenTheActiveRelayDies|TestLostSlotStopsTheRelayAndTheRepairDeliversEverything|TestFailoverKeepsTheSlotOnPostgres17|TestFailoverOnPostgres15StopsWithTheRepair

reliability:
	@$(WITH_SERVICES); \
	out="$(CURDIR)/tmp/reliability.jsonl"; mkdir -p tmp; rm -f "$$out"; \
	set -x; \
	SAGA_RELIABILITY_OUT="$$out" $(GO) test -count=1 -timeout 30m -run '^($(RELIABILITY_TESTS)|TestChaos)$$' ./cdc-relay/internal/relay/ ./tests/relay/ ./tests/chaos/; \
	$(GO) run ./tests/reliability -figures docs/reliability-figures.jsonl -new "$$out" -out docs/reliability.md

# The long chaos run: SEED and ORDERS and FAULTS pick it (SEED defaults to the
# clock, printed; SAGA_CHAOS_SEED=<it> replays a run). Its figures go to the
# saga section of docs/reliability.md.
ORDERS ?= 3000
FAULTS ?= 30
chaos:
	@$(WITH_SERVICES); \
	out="$(CURDIR)/tmp/chaos.jsonl"; mkdir -p tmp; rm -f "$$out"; \
	set -x; \
	SAGA_RELIABILITY_OUT="$$out" SAGA_CHAOS_ORDERS=$(ORDERS) SAGA_CHAOS_FAULTS=$(FAULTS) $(if $(SEED),SAGA_CHAOS_SEED=$(SEED)) \
		$(GO) test -count=1 -v -timeout 90m -run '^TestChaos$$' ./tests/chaos/ | grep -v '^=== '; \
	$(GO) run ./tests/reliability -figures docs/reliability-figures.jsonl -new "$$out" -out docs/reliability.md

test-short:
	$(GO) test -short ./...

# gofmt, go vet, staticcheck and ShellCheck, the tools installed by the
# script on first use (deploy/local/lint.sh); `make test` runs it first.
lint:
	GO=$(GO) bash deploy/local/lint.sh

services-up:
	bash deploy/local/ensure-services.sh
