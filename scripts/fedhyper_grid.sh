#!/usr/bin/env bash
# FedHyper robustness grid: 5 initial local rates x 5 initial global rates, each method run as
# one `fedplat -m` sweep (25 runs, one after another, inline backend).
#
#   scripts/fedhyper_grid.sh EXPERIMENT OUT METHOD [extra overrides...]
#     METHOD: fedavg           FedAvg (plain mean) with server_lr = global rate
#             fedhyper         FedHyper-G+CL with eta_g0 = global rate (released constants)
#             fedhyper_scaled  the same with both hypergradient steps = $BETA (default 735)
#   e.g. scripts/fedhyper_grid.sh fedhyper_mnist1d multirun/fedhyper_grid_mnist1d fedavg
#        python scripts/fedhyper_report.py grid multirun/fedhyper_grid_mnist1d --out docs/fedhyper
set -euo pipefail
EXP=$1; OUT=$2; METHOD=$3; shift 3
LOCAL=${LOCAL:-0.001,0.005,0.01,0.05,0.1}
GLOBAL=${GLOBAL:-0.5,0.75,1.0,1.5,2.0}
BETA=${BETA:-735}
FEDPLAT=${FEDPLAT:-.venv/bin/fedplat}
COMMON=(-m "experiment=$EXP" "client.lr=$LOCAL" simulation.backend=inline
        simulation.torch_threads=1 "hydra.sweep.dir=$OUT/$METHOD")
case "$METHOD" in
  fedavg) exec "$FEDPLAT" "${COMMON[@]}" strategy=fedavg strategy.weighted=false \
            "strategy.server_lr=$GLOBAL" "$@" ;;
  fedhyper) exec "$FEDPLAT" "${COMMON[@]}" strategy=fedhyper strategy.variant=G+CL \
              "strategy.eta_g0=$GLOBAL" "$@" ;;
  fedhyper_scaled) exec "$FEDPLAT" "${COMMON[@]}" strategy=fedhyper strategy.variant=G+CL \
                     "strategy.eta_g0=$GLOBAL" "strategy.hyper_lr=$BETA" \
                     "strategy.cl.hyper_lr=$BETA" "$@" ;;
  *) echo "unknown method '$METHOD' (fedavg | fedhyper | fedhyper_scaled)" >&2; exit 2 ;;
esac
