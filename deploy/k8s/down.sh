#!/usr/bin/env bash
# down.sh deletes the k3d cluster that up.sh created, with everything in it.
set -euo pipefail
k3d cluster delete "${CLUSTER:-saga}"
