#!/usr/bin/env bash
# `harness sweep` on a cluster launched from ray_cluster.yaml; the entrypoint for `ray job submit`.
#
#   ray job submit --address http://127.0.0.1:8265 -- bash ~/snn-kd-harness/scripts/cluster_sweep.sh \
#       --space search_spaces/kd.yaml [--resume] [--set key=value ...]
#
# It runs on the head: joins the running cluster, logs to the head's MLflow server as its admin
# (credentials made by ray_cluster.yaml in ~/.harness/mlflow.env, never passed on a command line),
# and keeps checkpoints, Tune state and the teacher cache under $HARNESS_STORAGE, which every node
# must mount at the same path.
set -euo pipefail
cd "$(dirname "$0")/.."
MLFLOW_TRACKING_PASSWORD="$(sed -n 's/^MLFLOW_AUTH_ADMIN_PASSWORD=//p' "$HOME/.harness/mlflow.env")"
export MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD
exec .venv/bin/harness sweep --address auto --tracking-uri http://127.0.0.1:5000 \
    --storage "${HARNESS_STORAGE:-/shared/snn-kd-harness}" "$@"
