#!/usr/bin/env bash
# FED-PUB reproductions (docs/fedpub.md): every run on the inline backend, one at a time,
# one torch thread, results in results/fedpub/<run>/ and logs in results/fedpub/<run>.log.
# Usage: bash scripts/fedpub_reproduce.sh [group ...]   groups: d10 sbm o30 d5 d20 (default all)
set -u
cd "$(dirname "$0")/.."
OUT=${FEDPUB_OUT:-results/fedpub}
mkdir -p "$OUT"
run() {  # run NAME OVERRIDES...
  local name=$1; shift
  if [ -f "$OUT/$name/summary.json" ] && grep -q '"status": "completed"' "$OUT/$name/summary.json"; then
    echo "skip $name (done)"; return
  fi
  echo "$(date +%T) start $name: fedplat $*"
  .venv/bin/python -m fedplat.cli simulation.backend=inline simulation.torch_threads=1 "$@" \
      hydra.run.dir="$OUT/$name" overwrite=true > "$OUT/$name.log" 2>&1
  echo "$(date +%T) done  $name (exit $?)"
}
groups=${*:-d10 sbm o30 d5 d20}
for g in $groups; do
  case $g in
    d10)
      run fedpub_d10 experiment=fedpub_cora_disjoint_10
      run fedpub_d10_l1e-4 experiment=fedpub_cora_disjoint_10 strategy.l1=1e-4
      run fedpub_d10_as_released experiment=fedpub_cora_disjoint_10_as_released
      for s in fedavg local fedper; do run ${s}_d10 experiment=gcn_cora_disjoint_10 strategy=$s; done
      run fedpub_d10_l1e-3 experiment=fedpub_cora_disjoint_10 strategy.l1=1e-3 ;;
    sbm)
      run fedpub_sbm experiment=fedpub_sbm
      run fedavg_sbm experiment=gcn_sbm strategy=fedavg
      run local_sbm experiment=gcn_sbm strategy=local ;;
    o30|d5|d20)
      setting=$( [ $g = o30 ] && echo cora_overlapping_30 || echo cora_disjoint_${g#d} )
      run fedavg_$g experiment=gcn_$setting strategy=fedavg
      run fedpub_${g}_as_released experiment=fedpub_${setting}_as_released
      run fedpub_$g experiment=fedpub_$setting ;;
  esac
done
