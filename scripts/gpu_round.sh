#!/usr/bin/env bash
# One round of GPU training for the shipped weights: four single-GPU jobs side by side on a 4-GPU machine,
# each trained for MINUTES of wall time (scripts/train_shipped.py turns that into a fixed step count) and
# then scored on the standard protocol:
#   GPU 0  diffusion       continues DIFFUSION_INIT           -> evaluate_export.py
#   GPU 1  autoregressive  continues AR_INIT                  -> evaluate_export.py
#   GPU 2  hybrid          AR-Diffusion noise, from HYBRID_INIT  -> evaluate_hybrid.py
#   GPU 3  hybrid twin     Diffusion Forcing noise, from DF_INIT -> compare_training_noise.py (against GPU 2's)
# Exports, manifests and logs go to OUT. Round 1 starts from the weights shipped before it; round 2 from
# round 1's exports once they are copied into minivid/weights (see the *.json recipes):
#   OUT=runs/round1 MINUTES=6.5 bash scripts/gpu_round.sh
#   OUT=runs/round2 MINUTES=7 HYBRID_INIT=pretrained:hybrid DF_INIT=runs/round1/hybrid_df.pt LR_SCALE=0.5 bash scripts/gpu_round.sh
set -uo pipefail
export PYTHONPATH=.
OUT=${OUT:-runs/round}
M=${MINUTES:-6.5}
CLIPS=${CLIPS:-256}
S=${LR_SCALE:-1}
DIFFUSION_INIT=${DIFFUSION_INIT:-pretrained:diffusion}
AR_INIT=${AR_INIT:-pretrained:autoregressive}
HYBRID_INIT=${HYBRID_INIT:-pretrained:diffusion}
DF_INIT=${DF_INIT:-pretrained:diffusion}
lr() { python -c "print($1 * $S)"; }
mkdir -p "$OUT"
settings="MINUTES=$M"
[ "$S" != 1 ] && settings+=" LR_SCALE=$S"
for v in DIFFUSION_INIT AR_INIT HYBRID_INIT DF_INIT; do
  case ${!v} in pretrained:*) ;; *) settings+=" $v=${!v}" ;; esac
done
printf '{"settings": "%s"}\n' "$settings" > "$OUT/round.json"  # read by scripts/ship_round.py
nvidia-smi --query-gpu=name,memory.total --format=csv > "$OUT/gpus.txt" 2>&1

train() {  # family, name, minutes, then `minivid train` arguments
  local family=$1 name=$2 minutes=$3; shift 3
  python scripts/train_shipped.py "$family" --minutes "$minutes" --device cuda --out "$OUT/run_$name" \
    --export "$OUT/$name.pt" "$@"
}

(export CUDA_VISIBLE_DEVICES=0
 train diffusion diffusion "$M" --preset small --batch-size 64 --lr "$(lr 2e-4)" --warmup 100 --init "$DIFFUSION_INIT" &&
 python scripts/evaluate_export.py "$OUT/diffusion.pt" --clips "$CLIPS" --device cuda) > "$OUT/diffusion.log" 2>&1 &

(export CUDA_VISIBLE_DEVICES=1
 train autoregressive autoregressive "$M" --preset small --batch-size 64 --lr "$(lr 4e-4)" --warmup 100 --init "$AR_INIT" &&
 python scripts/evaluate_export.py "$OUT/autoregressive.pt" --clips "$CLIPS" --batch-size 256 --device cuda) \
  > "$OUT/autoregressive.log" 2>&1 &

(export CUDA_VISIBLE_DEVICES=2
 train hybrid hybrid "$M" --preset small --batch-size 32 --lr "$(lr 2e-4)" --warmup 100 --init "$HYBRID_INIT" &&
 python scripts/evaluate_hybrid.py --weights "$OUT/hybrid.pt" --clips "$CLIPS" --rollout-clips 32 --device cuda) \
  > "$OUT/hybrid.log" 2>&1 &

(export CUDA_VISIBLE_DEVICES=3
 train hybrid hybrid_df "$M" --preset small --batch-size 32 --lr "$(lr 2e-4)" --warmup 100 --init "$DF_INIT" --noise independent &&
 for _ in $(seq 240); do [ -f "$OUT/hybrid.pt" ] && break; sleep 1; done &&
 sleep 5 &&
 python scripts/compare_training_noise.py "$OUT/hybrid_df.pt" --base "$OUT/hybrid.pt" --clips "$CLIPS" --device cuda) \
  > "$OUT/hybrid_df.log" 2>&1 &

wait
tail -n 3 "$OUT"/*.log
