"""AR-Diffusion's non-decreasing training noise against Diffusion Forcing's independent noise, same budget.

    python scripts/compare_training_noise.py TWIN.pt [--base HYBRID.pt] [--clips 256] [--device cuda]

TWIN.pt is a Diffusion Forcing hybrid trained like the base (default: the shipped hybrid) with only
`--noise independent` changed: GPU 3 of each round of scripts/gpu_round.sh trains it beside the shipped one.
On a CPU, a short pair (about half an hour each) is

    minivid train hybrid --preset small --init pretrained:diffusion --steps 200 --warmup 20 --batch-size 8 \\
        --lr 2e-4 --device cpu --out runs/hybrid_ad --export runs/hybrid_ad/ad.pt
    (the same with --noise independent and runs/hybrid_df/df.pt)
    python scripts/compare_training_noise.py runs/hybrid_df/df.pt --base runs/hybrid_ad/ad.pt --clips 8

The script scores both on the standard protocol under two schedules and stores the table in the base's
manifest (metrics.training_noise) with both recipes; the weights file is not touched, so its SHA-256 stays valid.
"""

import argparse
from pathlib import Path

import torch

from minivid import checkpoints, metrics

SETTINGS = [("synchronous, 5 steps", {"schedule": "synchronous", "steps": 5}),
            ("pyramid lag 1, 5 steps", {"schedule": "pyramid", "steps": 5, "lag": 1})]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("twin", help="the Diffusion Forcing export")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--base", default=str(Path(checkpoints.__file__).parent / "weights" / "hybrid.pt"),
                        help="the AR-Diffusion export it is compared with (default: the shipped hybrid)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    models = {"non-decreasing": checkpoints.load_export(args.base, family="hybrid", device=args.device),
              "independent": checkpoints.load_export(args.twin, family="hybrid", device=args.device)}
    rows = []
    print(f"{'training noise':26s} {'schedule':24s} {'MSE':>6s} {'SSIM':>6s}   ({args.clips} test clips)")
    for name, (model, card) in models.items():
        for label, kwargs in SETTINGS:
            result = metrics.evaluate(model, num_clips=args.clips, batch_size=min(args.batch_size, args.clips),
                                      device=args.device, progress=False, generate_kwargs=kwargs)
            rows.append({"training_noise": name, "noise": model.config.noise, "schedule": label, "generate_kwargs": kwargs,
                         "clips": args.clips, "mse": result["mse"], "ssim": result["ssim"], "psnr": result["psnr"],
                         "recipe": card["recipe"]})
            print(f"{name:26s} {label:24s} {result['mse']:6.1f} {result['ssim']:6.3f}")
    checkpoints.record_metrics(args.base, training_noise=rows)


if __name__ == "__main__":
    main()
