# `make bench`: the benchmarks of tests/bench in one run, about forty
# minutes on a 2-core machine. Prints one table and writes
# docs/benchmarks.md. Postgres and RabbitMQ come as for `make test`:
# SAGA_TEST_PG_URL / SAGA_TEST_AMQP_URL, else a Docker engine, else
# deploy/local/ensure-services.sh. Included from the Makefile.

.PHONY: bench

bench:
	@set -euo pipefail; \
	if { [[ -z "$${SAGA_TEST_PG_URL:-}" ]] || [[ -z "$${SAGA_TEST_AMQP_URL:-}" ]]; } && ! timeout 5 docker info >/dev/null 2>&1; then \
		echo 'make bench: SAGA_TEST_PG_URL / SAGA_TEST_AMQP_URL unset and no Docker engine: running deploy/local/ensure-services.sh' >&2; \
		pg="$${SAGA_TEST_PG_URL:-}"; amqp="$${SAGA_TEST_AMQP_URL:-}"; \
		eval "$$(bash deploy/local/ensure-services.sh)"; \
		export SAGA_TEST_PG_URL="$${pg:-$$SAGA_TEST_PG_URL}" SAGA_TEST_AMQP_URL="$${amqp:-$$SAGA_TEST_AMQP_URL}"; \
	fi; \
	set -x; \
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m ./tests/bench/
