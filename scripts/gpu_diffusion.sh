#!/usr/bin/env bash
# How the shipped diffusion weights were made (one H100, about 9 minutes in all):
# an image model on Moving MNIST frames, inflated into the video model, fine-tuned on clips, then scored.
#   OUT=some/folder bash scripts/gpu_diffusion.sh
set -euo pipefail
export PYTHONPATH=.
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
python scripts/bench_data.py --device cuda --json "$OUT/bench_data.json" > "$OUT/bench_data.txt" 2>&1
python scripts/train_shipped.py image --minutes 1.5 --preset small --batch-size 256 --lr 5e-4 --device cuda \
  --out "$OUT/run_image" --export "$OUT/image.pt" > "$OUT/train_image.txt" 2>&1
python scripts/train_shipped.py diffusion --minutes 5.75 --preset small --batch-size 64 --lr 3e-4 --device cuda \
  --init "$OUT/image.pt" --out "$OUT/run_diffusion" --export "$OUT/diffusion.pt" > "$OUT/train_diffusion.txt" 2>&1
python scripts/evaluate_export.py "$OUT/diffusion.pt" --clips 256 --device cuda > "$OUT/eval.txt" 2>&1
python scripts/evaluate_export.py "$OUT/diffusion.pt" --clips 256 --device cuda --kwargs '{"steps": 50}' --name protocol_50_steps >> "$OUT/eval.txt" 2>&1
