"""CPU (or GPU) time for one 10-frame prediction by the pretrained diffusion model: median of repeats.

    python scripts/bench_sampling.py [--device cpu] [--steps 10 20] [--repeats 3]

Each step count is timed twice: as `generate` runs by default (from the predictor's guess, part-way down the
schedule) and from pure noise (start=1), the whole reverse process.
"""

import argparse
import statistics
import time

import torch

import minivid
from minivid import data


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = minivid.pretrained("diffusion", device=args.device)
    context = data.standard_test_set(1)[:, :10].to(args.device)
    print(f"{args.device}, {torch.get_num_threads()} threads, one clip: 10 context -> 10 predicted frames")
    for steps in args.steps:
        for label, kwargs in (("default", {}), ("from noise", {"start": 1.0})):
            times = []
            for r in range(args.repeats + 1):
                began = time.perf_counter()
                model.generate(context, 10, seed=r, steps=steps, progress=False, **kwargs)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - began)
            med = statistics.median(times[1:])  # the first run warms caches up
            calls = model.network_evaluations(10, 10, steps=steps, **kwargs)
            print(f"  {steps:3d} DDIM steps, {label:10s}: median {med:6.2f} s, {calls:2d} network evaluations "
                  f"({med / calls * 1e3:.0f} ms each)")


if __name__ == "__main__":
    main()
