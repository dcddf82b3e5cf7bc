"""CPU time of one network forward pass (1 clip x 20 frames) for every preset of the diffusion and hybrid models.

    python scripts/bench_forward.py [--repeats 5]

Prints parameters and the median forward time; docs/diffusion.md's preset table comes from here. The
"small+st" rows add space-time attention at 8x8 (`Config.spacetime`), the variant docs/diffusion.md compares.
"""

import argparse
import dataclasses
import statistics
import time

import torch

from minivid import hybrid, video_diffusion


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"cpu, {torch.get_num_threads()} threads, one clip of 20 frames, median of {args.repeats}")
    x, t = torch.randn(1, 20, 1, 64, 64), torch.full((1,), 500)
    for family, module in [("diffusion", video_diffusion), ("hybrid", hybrid)]:
        presets = {**module.PRESETS, "small+st": dataclasses.replace(module.PRESETS["small"], spacetime=True)}
        for name, config in presets.items():
            model = module.Model(config).eval()
            times = []
            with torch.no_grad():
                for r in range(args.repeats + 1):  # the first run warms up
                    start = time.perf_counter()
                    model.net(x, t)
                    times.append(time.perf_counter() - start)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            print(f"{family:10s} {name:8s} {params:6.2f} M parameters  {statistics.median(times[1:]):6.3f} s per forward")


if __name__ == "__main__":
    main()
