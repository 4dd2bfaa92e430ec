#!/usr/bin/env bash
# up.sh: the saga on a local Kubernetes cluster with k3d, as in the original
# demo's k8s/ folder (docs/origin.md), in one script. Needs docker, k3d,
# kubectl and helm.
#
#   bash deploy/k8s/up.sh      # create the cluster and install everything
#   bash deploy/k8s/down.sh    # delete the cluster
#
# Steps: k3d cluster "saga" (localhost:8080 -> Kong's node port 30000);
# Gateway API CRDs; the Kong gateway objects and the kong/ingress chart; the
# RabbitMQ Cluster Operator and a RabbitmqCluster; the five images built and
# imported into the cluster; one `helm install` per service. order and
# payment run their relay as a sidecar, stock as its own Deployment
# (RELAY_MODE_STOCK), to show both modes. RABBITMQ_NODES=3 runs a three-node
# RabbitMQ cluster (deploy/k8s/rabbitmq/rabbitmq-cluster.yaml) and quorum
# queues (the chart's queueType) instead of one node and classic queues.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
K8S=$ROOT/deploy/k8s
CLUSTER=${CLUSTER:-saga}
GATEWAY_API_VERSION=${GATEWAY_API_VERSION:-v1.2.1}
RELAY_MODE_STOCK=${RELAY_MODE_STOCK:-deployment}
TAG=${IMAGE_TAG:-dev}
RABBITMQ_NODES=${RABBITMQ_NODES:-1}
case "$RABBITMQ_NODES" in
1) RABBITMQ_MANIFEST=$K8S/rabbitmq/rabbitmq.yaml QUEUE_TYPE=classic ;;
3) RABBITMQ_MANIFEST=$K8S/rabbitmq/rabbitmq-cluster.yaml QUEUE_TYPE=quorum ;;
*) echo "up.sh: RABBITMQ_NODES=$RABBITMQ_NODES: want 1 (classic queues) or 3 (a cluster, quorum queues)" >&2; exit 2 ;;
esac

for tool in docker k3d kubectl helm; do
	command -v "$tool" >/dev/null 2>&1 || { echo "up.sh: $tool not found; install it first (see docs/deploy.md)" >&2; exit 1; }
done

step() { printf '\n==> %s\n' "$*"; }

if ! k3d cluster list "$CLUSTER" >/dev/null 2>&1; then
	step "creating k3d cluster $CLUSTER (localhost:8080 -> node port 30000)"
	k3d cluster create "$CLUSTER" --port '8080:30000@loadbalancer' --wait
fi
kubectl config use-context "k3d-$CLUSTER" >/dev/null

step "Gateway API CRDs $GATEWAY_API_VERSION"
kubectl apply -f "https://github.com/kubernetes-sigs/gateway-api/releases/download/$GATEWAY_API_VERSION/standard-install.yaml"

step "Kong gateway"
kubectl apply -f "$K8S/kong/kong-gateway.yaml"
helm repo add kong https://charts.konghq.com >/dev/null 2>&1 || true
helm repo update kong >/dev/null
helm upgrade --install kong kong/ingress -n kong --create-namespace -f "$K8S/kong/values.yaml" --wait --timeout 10m

step "RabbitMQ ($RABBITMQ_NODES node(s), $QUEUE_TYPE queues)"
kubectl apply -f https://github.com/rabbitmq/cluster-operator/releases/latest/download/cluster-operator.yml
kubectl -n rabbitmq-system rollout status deploy/rabbitmq-cluster-operator --timeout=5m
# A queue keeps its type: a cluster that runs with another node count holds
# queues of the other type, which the services' declarations would refuse.
current=$(kubectl get rabbitmqcluster rabbitmq -o jsonpath='{.spec.replicas}' 2>/dev/null || true)
if [[ -n "$current" && "$current" != "$RABBITMQ_NODES" ]]; then
	echo "up.sh: the RabbitmqCluster rabbitmq runs $current node(s), not RABBITMQ_NODES=$RABBITMQ_NODES, and its queues keep their type: delete it first (kubectl delete rabbitmqcluster rabbitmq), or start over with bash deploy/k8s/down.sh" >&2
	exit 2
fi
kubectl apply -f "$RABBITMQ_MANIFEST"
until kubectl get statefulset rabbitmq-server >/dev/null 2>&1; do sleep 2; done
kubectl rollout status statefulset/rabbitmq-server --timeout=10m

step "images (tag $TAG)"
for t in order stock payment cdc-relay dashboard; do
	docker build -f "$ROOT/deploy/docker/Dockerfile" --target "$t" -t "saga/$t:$TAG" "$ROOT"
done
k3d image import -c "$CLUSTER" saga/order:"$TAG" saga/stock:"$TAG" saga/payment:"$TAG" saga/cdc-relay:"$TAG" saga/dashboard:"$TAG"

step "saga services"
for svc in order stock payment; do
	mode=sidecar
	[[ "$svc" == stock ]] && mode=$RELAY_MODE_STOCK
	helm upgrade --install "$svc" "$ROOT/deploy/helm/saga" -f "$K8S/services/$svc/values.yaml" \
		--set relay.mode="$mode" --set queueType="$QUEUE_TYPE" --set image.tag="$TAG" --set relay.image.tag="$TAG" --wait --timeout 10m
done
helm upgrade --install dashboard "$ROOT/deploy/helm/dashboard" --set image.tag="$TAG" --wait --timeout 5m

cat <<MSG

The saga runs on k3d cluster $CLUSTER.
  Dashboard      http://localhost:8080/
  API (Kong)     http://localhost:8080/order/api/v1/orders/  /stock/api/v1/stocks/  /payment/api/v1/payments/
  Relay status   http://localhost:8080/relays/order/status  (also stock, payment)
  RabbitMQ UI    kubectl port-forward svc/rabbitmq 15672  ->  http://localhost:15672 (guest/guest)
Delete it with: bash deploy/k8s/down.sh
MSG
