"""The hybrid under each inference schedule, and its long rollouts with and without context noise.

    python scripts/evaluate_hybrid.py [--weights minivid/weights/hybrid.pt] [--clips 256] [--rollout-clips 32] [--device cuda]

1. The standard protocol (10 context -> 10 frames) on the first `--clips` test clips, for each schedule
   and number of steps: MSE, SSIM, PSNR, network evaluations per generated frame, seconds per clip.
2. Rollouts to `--horizon` frames (pyramid schedule), with clean context and with context noise: MSE and
   ink ratio over frames 30-60, where errors have had time to accumulate.

Prints both tables and stores them in the weights' JSON manifest (under metrics.schedules and
metrics.context_noise); the weights file is not touched, so its SHA-256 stays valid.
"""

import argparse
import math
import time
from pathlib import Path

import torch

from minivid import bench, checkpoints, metrics, rollouts

# (label, generate keyword arguments): full-sequence diffusion at several step counts, pyramids, fully AR
SETTINGS = [
    ("synchronous, 5 steps", {"schedule": "synchronous", "steps": 5}),
    ("synchronous, 10 steps", {"schedule": "synchronous", "steps": 10}),
    ("synchronous, 20 steps", {"schedule": "synchronous", "steps": 20}),
    ("pyramid lag 1, 5 steps", {"schedule": "pyramid", "steps": 5, "lag": 1}),
    ("pyramid lag 2, 10 steps", {"schedule": "pyramid", "steps": 10, "lag": 2}),
    ("autoregressive, 5 steps", {"schedule": "autoregressive", "steps": 5}),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=str(Path(checkpoints.__file__).parent / "weights" / "hybrid.pt"))
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--rollout-clips", type=int, default=4)
    parser.add_argument("--horizon", type=int, default=60)
    parser.add_argument("--context-noise", type=int, default=50, help="training timestep the context is noised to")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    model, _ = checkpoints.load_export(args.weights, family="hybrid", device=args.device)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"
    print(f"{where}; {args.clips} test clips, 10 context -> 10 frames")
    batch = min(args.batch_size, args.clips)
    batches = math.ceil(args.clips / batch)
    print(f"{'schedule':26s} {'MSE':>6s} {'SSIM':>6s} {'PSNR':>6s} {'NFE/frame':>9s} {'s/clip':>7s}")
    table = []
    for label, kwargs in SETTINGS:
        with bench.counting_calls(model) as calls:  # a batch's network calls are those of one clip
            result = metrics.evaluate(model, num_clips=args.clips, batch_size=batch, device=args.device, progress=False,
                                      generate_kwargs=kwargs)
        nfe = len(calls) / batches / 10
        row = {"schedule": label, "generate_kwargs": kwargs, "clips": args.clips, "mse": result["mse"],
               "ssim": result["ssim"], "psnr": result["psnr"], "network_evals_per_frame": nfe,
               "seconds_per_clip": result["seconds"] / args.clips, "mse_per_frame": result["mse_per_frame"],
               "device": where}
        table.append(row)
        print(f"{label:26s} {row['mse']:6.1f} {row['ssim']:6.3f} {row['psnr']:6.2f} {nfe:9.1f} {row['seconds_per_clip']:7.2f}")

    truth = torch.cat([rollouts.true_clip(i, 10 + args.horizon) for i in range(args.rollout_clips)]).to(args.device)
    context, future = truth[:, :10], truth[:, 10:]
    print(f"\nrollouts: {args.rollout_clips} clips, {args.horizon} frames, pyramid lag 1, 5 steps; frames 30-{args.horizon}")
    noise_rows = []
    for noise in (0, args.context_noise):
        start = time.perf_counter()
        video = rollouts.rollout(model, context, args.horizon, schedule="pyramid", steps=5, lag=1, context_noise=noise)
        seconds = time.perf_counter() - start
        curves = rollouts.accumulation(video, future)
        late = slice(29, args.horizon)
        row = {"context_noise": noise, "mse_30_60": float(curves["mse"][late].mean()),
               "ink_30_60": float(curves["ink_ratio"][late].mean()), "mse": curves["mse"].tolist(),
               "ink_ratio": curves["ink_ratio"].tolist(), "seconds": seconds, "clips": args.rollout_clips,
               "device": where}
        noise_rows.append(row)
        print(f"context noise {noise:4d}: MSE {row['mse_30_60']:6.1f}  ink {row['ink_30_60']:.2f}  ({seconds:.0f} s)")
    checkpoints.record_metrics(args.weights, schedules=table, context_noise=noise_rows)


if __name__ == "__main__":
    main()
