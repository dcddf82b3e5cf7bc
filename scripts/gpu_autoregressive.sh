#!/usr/bin/env bash
# How the shipped VQ-VAE tokenizer and autoregressive transformer were made (one H100):
# the tokenizer on Moving MNIST frames, then the transformer on its tokens, then both scored.
#   OUT=some/folder VQ_MINUTES=1 AR_MINUTES=1.8 bash scripts/gpu_autoregressive.sh
set -euo pipefail
export PYTHONPATH=.
OUT=${OUT:-runs/gpu_ar}
mkdir -p "$OUT"
python scripts/train_shipped.py vqvae --minutes "${VQ_MINUTES:-1}" --preset small --batch-size 256 --lr 1e-3 --device cuda \
  --out "$OUT/run_vqvae" --export "$OUT/vqvae.pt" > "$OUT/train_vqvae.txt" 2>&1
python scripts/evaluate_tokenizer.py "$OUT/vqvae.pt" --clips 256 --device cuda > "$OUT/eval_vqvae.txt" 2>&1
python scripts/train_shipped.py autoregressive --minutes "${AR_MINUTES:-1.8}" --preset small --batch-size 32 --lr 5e-4 --device cuda \
  --init "$OUT/vqvae.pt" --out "$OUT/run_autoregressive" --export "$OUT/autoregressive.pt" > "$OUT/train_autoregressive.txt" 2>&1
python scripts/evaluate_export.py "$OUT/autoregressive.pt" --clips 256 --batch-size 256 --device cuda > "$OUT/eval_autoregressive.txt" 2>&1
