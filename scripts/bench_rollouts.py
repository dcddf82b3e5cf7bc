"""Error accumulation: every pretrained method rolled out far past its training length, 10 frames at a time.

    python scripts/bench_rollouts.py [--clips 8] [--horizon 60] [--steps 10] [--methods autoregressive,hybrid]
        [--json out.json]

Each method predicts from the last 10 frames (its own after the first chunk); prints MSE and ink ratio
(generated / true brightness) averaged over frame ranges, with the command's wall time.
"""

import argparse
import json
import time

import torch

from minivid import checkpoints, metrics, rollouts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--horizon", type=int, default=60)
    parser.add_argument("--steps", type=int, default=10,
                        help="diffusion and hybrid sampling steps per chunk (started from their guesses, diffusion runs "
                        "those below 0.3 of its schedule, 3 of 10, and the hybrid's pyramid is capped at level 5 of 10)")
    parser.add_argument("--methods", default=None, help="comma-separated pretrained models to roll out (default: every "
                        "shipped diffusion, autoregressive and hybrid model); the two baselines always run, they cost nothing")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    families = ("diffusion", "autoregressive", "hybrid")
    known = [name for name in checkpoints.available() if checkpoints.manifest(name)["family"] in families]
    chosen = known if args.methods is None else list(dict.fromkeys(n.strip() for n in args.methods.split(",") if n.strip()))
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        parser.error(f"--methods takes names from {', '.join(known)}; "
                     + (f"unknown: {', '.join(unknown)}" if unknown else "got none"))
    truth = torch.cat([rollouts.true_clip(i, 10 + args.horizon) for i in range(args.clips)])
    context, future = truth[:, :10], truth[:, 10:]
    methods = {"copy last frame": (metrics.copy_last_frame, {}), "black frames": (metrics.blank_frames, {})}
    for name in chosen:
        model = checkpoints.pretrained(name)
        methods[name] = (model, {"steps": args.steps} if model.family != "autoregressive" else {})
    ranges = [(1, 10), (11, 20), (21, 30), (31, args.horizon)]
    print(f"{args.clips} test clips, {args.horizon} frames after 10 context frames, chunks of 10; cpu, {torch.get_num_threads()} threads")
    print(f"{'method':18s} " + " ".join(f"MSE {a}-{b}".rjust(11) for a, b in ranges) + " " +
          " ".join(f"ink {a}-{b}".rjust(10) for a, b in ranges) + "   seconds")
    rows = {}
    for name, (model, kwargs) in methods.items():
        start = time.perf_counter()
        video = rollouts.rollout(model, context, args.horizon, **kwargs)
        seconds = time.perf_counter() - start
        curves = rollouts.accumulation(video, future)
        mse = [float(curves["mse"][a - 1 : b].mean()) for a, b in ranges]
        ink = [float(curves["ink_ratio"][a - 1 : b].mean()) for a, b in ranges]
        rows[name] = {"mse": curves["mse"].tolist(), "ink_ratio": curves["ink_ratio"].tolist(), "seconds": seconds}
        print(f"{name:18s} " + " ".join(f"{m:11.1f}" for m in mse) + " " + " ".join(f"{i:10.2f}" for i in ink) + f"   {seconds:7.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
