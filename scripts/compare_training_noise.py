"""AR-Diffusion's non-decreasing training noise against Diffusion Forcing's independent noise, same budget.

    minivid train hybrid --preset small --init pretrained:diffusion --noise independent --steps 200 --warmup 20 \\
        --batch-size 8 --lr 2e-4 --device cpu --out runs/hybrid_df --export runs/hybrid_df/df.pt
    python scripts/compare_training_noise.py runs/hybrid_df/df.pt [--clips 8]

The first command trains the Diffusion Forcing twin of the shipped hybrid: the same start, steps, batch and
learning rate as the shipped model's recipe, only `--noise` differs. The script scores both on the standard
protocol under two schedules and stores the table in the shipped hybrid's manifest (metrics.training_noise),
with the twin's recipe; the weights file is not touched, so its SHA-256 stays valid.
"""

import argparse
import json
from pathlib import Path

from minivid import checkpoints, metrics

SETTINGS = [("synchronous, 5 steps", {"schedule": "synchronous", "steps": 5}),
            ("pyramid lag 1, 5 steps", {"schedule": "pyramid", "steps": 5, "lag": 1})]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("twin", help="the Diffusion Forcing export")
    parser.add_argument("--clips", type=int, default=8)
    args = parser.parse_args()
    manifest_path = Path(checkpoints.__file__).parent / "weights" / "hybrid.json"
    manifest = json.loads(manifest_path.read_text())
    twin_path = Path(args.twin)
    twin_card = json.loads(twin_path.with_suffix(".json").read_text())
    models = {"non-decreasing (shipped)": (checkpoints.pretrained("hybrid"), manifest),
              "independent": (checkpoints.load(twin_path, family="hybrid"), twin_card)}
    rows = []
    print(f"{'training noise':26s} {'schedule':24s} {'MSE':>6s} {'SSIM':>6s}   ({args.clips} test clips)")
    for name, (model, card) in models.items():
        for label, kwargs in SETTINGS:
            result = metrics.evaluate(model, num_clips=args.clips, batch_size=args.clips, progress=False, generate_kwargs=kwargs)
            rows.append({"training_noise": name, "noise": model.config.noise, "schedule": label, "generate_kwargs": kwargs,
                         "clips": args.clips, "mse": result["mse"], "ssim": result["ssim"], "psnr": result["psnr"],
                         "recipe": card["recipe"]})
            print(f"{name:26s} {label:24s} {result['mse']:6.1f} {result['ssim']:6.3f}")
    manifest["metrics"]["training_noise"] = rows
    checkpoints.write_json(manifest, manifest_path)


if __name__ == "__main__":
    main()
