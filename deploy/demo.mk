# Targets to run the system (docs/deploy.md; docs/contracts.md, "The
# newcomer's two commands"). The Makefile includes this file; it also works
# alone: make -f deploy/demo.mk demo.
#
#   make demo          the whole system with the gateway on :8080: the compose
#                      demo when a Docker engine answers, else plain processes
#                      (deploy/local/demo.sh) with Debian's Postgres and RabbitMQ
#   make demo-down     stop whichever demo runs (data and slots are kept)
#   make demo-status   what runs
#   make demo-logs     follow the logs
#   make demo-purge    stop, then drop the demo's data (databases, slots, volumes)
#   make helm-lint     helm lint the chart in both relay modes
#   make helm-test     render the chart and check it (tests/deploy), installing helm if needed
#   make helm-template print the chart as installed for the order service
#   make images        build the five container images (Docker)
#
# SAGA_DEMO_MODE=local or compose forces a mode.

SHELL := bash
GO    ?= go

DEMO_COMPOSE  := docker compose -f deploy/compose/compose.yaml
DEMO_LOCAL    := bash deploy/local/demo.sh
# Where helm goes when it is not on PATH; `go install` builds it from the
# module proxy (about three minutes the first time).
HELM_VERSION  := v3.22.0
DEMO_TOOLS    := $(CURDIR)/.demo/tools
HELM          ?= $(shell command -v helm 2>/dev/null || echo $(DEMO_TOOLS)/helm)
IMAGE_PREFIX  ?= saga
IMAGE_TAG     ?= dev

# demo_mode prints local or compose.
demo_mode = if [[ -n "$${SAGA_DEMO_MODE:-}" ]]; then echo "$$SAGA_DEMO_MODE"; \
	elif timeout 5 docker info >/dev/null 2>&1; then echo compose; else echo local; fi

.PHONY: demo demo-down demo-status demo-logs demo-purge helm helm-lint helm-test helm-template images

demo:
	@mode="$$($(demo_mode))"; \
	case "$$mode" in \
	compose) echo "make demo: a Docker engine answers: starting the compose demo"; \
		$(DEMO_COMPOSE) up --build --detach --wait && \
		printf '%s\n' '' 'The saga demo runs in Docker compose.' \
		'  Dashboard          http://localhost:8080/' \
		'  API (Kong)         http://localhost:8080  (/order/api/v1/orders/, /stock/api/v1/stocks/, /payment/api/v1/payments/)' \
		'  Relay status       http://localhost:8080/relays/order/status  (also stock, payment)' \
		'  Kong Admin         http://localhost:8081  Kong Manager http://localhost:8082' \
		'  RabbitMQ UI        http://localhost:15672  (guest/guest)' \
		'  Services           http://localhost:8000  :8001  :8002' \
		'' 'Stop with: make demo-down' ;; \
	local) $(DEMO_LOCAL) up ;; \
	*) echo "SAGA_DEMO_MODE=$$mode: want local or compose" >&2; exit 2 ;; \
	esac

# Stops the local demo when its processes run, and the compose demo when a
# Docker engine answers; both may run (on different ports, they cannot).
demo-down:
	@$(DEMO_LOCAL) down
	@if [[ "$${SAGA_DEMO_MODE:-}" != local ]] && timeout 5 docker info >/dev/null 2>&1; then $(DEMO_COMPOSE) down; fi

demo-status:
	@$(DEMO_LOCAL) status || true
	@if [[ "$${SAGA_DEMO_MODE:-}" != local ]] && timeout 5 docker info >/dev/null 2>&1; then $(DEMO_COMPOSE) ps; fi

demo-logs:
	@if [[ "$$($(demo_mode))" == compose ]]; then $(DEMO_COMPOSE) logs --follow; else $(DEMO_LOCAL) logs; fi

demo-purge:
	@$(DEMO_LOCAL) purge
	@if [[ "$${SAGA_DEMO_MODE:-}" != local ]] && timeout 5 docker info >/dev/null 2>&1; then $(DEMO_COMPOSE) down --volumes; fi

# helm: the helm binary, built with go install when neither PATH nor
# .demo/tools has it.
helm:
	@if [[ ! -x "$(HELM)" ]]; then \
		echo "installing helm $(HELM_VERSION) into $(DEMO_TOOLS) (go install, a few minutes)"; \
		mkdir -p "$(DEMO_TOOLS)" && GOBIN="$(DEMO_TOOLS)" GOFLAGS=-mod=mod $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); \
	fi

helm-lint: helm
	$(HELM) lint --strict deploy/helm/saga -f deploy/k8s/services/order/values.yaml
	$(HELM) lint --strict deploy/helm/saga -f deploy/k8s/services/stock/values.yaml --set relay.mode=deployment
	$(HELM) lint --strict deploy/helm/dashboard

helm-template: helm
	$(HELM) template order deploy/helm/saga -f deploy/k8s/services/order/values.yaml

helm-test: helm
	SAGA_HELM="$(HELM)" $(GO) test -count=1 -run 'Helm|Chart' ./tests/deploy/

images:
	for t in order stock payment cdc-relay gateway dashboard; do \
		docker build -f deploy/docker/Dockerfile --target "$$t" -t "$(IMAGE_PREFIX)/$$t:$(IMAGE_TAG)" . || exit 1; \
	done
