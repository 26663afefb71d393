#!/usr/bin/env bash
# FedHyper rounds-to-target comparison: every method once per seed on one setting, inline
# backend, one run after another; then
#   python scripts/fedhyper_report.py speed OUT --targets 0.4,0.5,0.55 --out docs/fedhyper
#
#   scripts/fedhyper_speed.sh EXPERIMENT OUT [common overrides...]
#   e.g. scripts/fedhyper_speed.sh fedhyper_mnist1d multirun/fedhyper_speed_mnist1d \
#          num_rounds=60 eval_every=1 client.lr=0.05 seed=0
# FEDADAM_ETA sets the server rate of FedAdam and FedHyper-Adam (default 0.1, the best of
# 0.003/0.01/0.03/0.1 in a 50-round MNIST-1D run at client.lr=0.05, docs/fedhyper.md).
set -euo pipefail
EXP=$1; OUT=$2; shift 2
FEDPLAT=${FEDPLAT:-.venv/bin/fedplat}
ETA=${FEDADAM_ETA:-0.1}
run() {  # run NAME overrides...
  local name=$1; shift
  "$FEDPLAT" "experiment=$EXP" simulation.backend=inline simulation.torch_threads=1 \
    "hydra.run.dir=$OUT/$name" "$@"
}
# the baselines the table compares against first, then the FedHyper variants, then extras
run fedavg strategy=fedavg strategy.weighted=false "$@"
run fedadam strategy=fedadam "strategy.eta=$ETA" "$@"
run fedexp strategy=fedexp "$@"
for v in G GM SL CL G+CL FULL; do
  run "fedhyper_${v/+/_}" strategy=fedhyper "strategy.variant=$v" "$@"
done
run fedhyper_adam strategy=fedhyper_adam "strategy.eta=$ETA" "$@"
run decay_g strategy=decay_g "$@"
