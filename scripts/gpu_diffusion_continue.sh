#!/usr/bin/env bash
# Second stage of the shipped diffusion weights: continue from stage one (scripts/gpu_diffusion.sh)
# with a smaller batch for more optimizer steps, then score on the standard protocol.
#   INIT=runs/gpu1/diffusion.pt OUT=some/folder [MINUTES=7.4] [LR=3e-4] bash scripts/gpu_diffusion_continue.sh
set -euo pipefail
export PYTHONPATH=.
OUT=${OUT:-runs/gpu2}
INIT=${INIT:-runs/gpu1/diffusion.pt}
mkdir -p "$OUT"
python scripts/train_shipped.py diffusion --minutes "${MINUTES:-7.4}" --preset small --batch-size 32 --lr "${LR:-3e-4}" --device cuda \
  --init "$INIT" --out "$OUT/run_diffusion" --export "$OUT/diffusion.pt" > "$OUT/train_diffusion.txt" 2>&1
python scripts/evaluate_export.py "$OUT/diffusion.pt" --clips 256 --device cuda > "$OUT/eval.txt" 2>&1
