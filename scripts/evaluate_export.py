"""Score a shippable export on the standard protocol and record the figures in its JSON manifest.

    python scripts/evaluate_export.py runs/gpu/diffusion.pt --clips 256 --device cuda [--kwargs '{"steps": 50}']
        [--speeds 0.07,0.13] [--samples 8]

--speeds adds the protocol at other speeds (metrics.speeds); --samples adds the MSE of one sample, of
the mean of N samples and of the best of N (metrics.samples).

The weights file is not touched, so its SHA-256 in the manifest stays valid.
"""

import argparse
import json

import torch

from minivid import checkpoints, metrics


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights")
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--kwargs", default="{}", help="JSON of generate() keyword arguments")
    parser.add_argument("--name", default="protocol", help="key under which the result is stored")
    parser.add_argument("--speeds", default="", help="comma-separated other speeds to score too (e.g. 0.07,0.13)")
    parser.add_argument("--samples", type=int, default=0, help="also score the mean and the best of this many samples")
    args = parser.parse_args()
    model, _ = checkpoints.load_export(args.weights, device=args.device)
    kwargs = json.loads(args.kwargs)
    result = metrics.evaluate(model, num_clips=args.clips, batch_size=args.batch_size, device=args.device, generate_kwargs=kwargs)
    result["generate_kwargs"] = kwargs
    result["device"] = args.device
    checkpoints.record_metrics(args.weights, **{args.name: result})
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("_per_frame")}, indent=1))
    print("MSE per future frame:", [round(v, 1) for v in result["mse_per_frame"]])
    if args.speeds:
        speeds = {}
        for speed in [float(v) for v in args.speeds.split(",")]:
            r = metrics.evaluate(model, num_clips=args.clips, batch_size=args.batch_size, device=args.device,
                                 generate_kwargs=kwargs, speed=speed, progress=False)
            speeds[str(speed)] = {k: r[k] for k in ("mse", "ssim", "psnr", "mse_per_frame")}
            print(f"speed {speed}: MSE {r['mse']:.1f}, SSIM {r['ssim']:.3f}")
        speeds["0.1"] = {k: result[k] for k in ("mse", "ssim", "psnr", "mse_per_frame")}
        checkpoints.record_metrics(args.weights, speeds=speeds)
    if args.samples:
        spread = metrics.sample_spread(model, args.samples, num_clips=args.clips, batch_size=args.batch_size,
                                       device=args.device, generate_kwargs=kwargs, progress=False)
        checkpoints.record_metrics(args.weights, samples=spread)
        print(json.dumps(spread))


if __name__ == "__main__":
    main()
