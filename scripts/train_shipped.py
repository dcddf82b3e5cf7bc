"""Train a model for a fixed wall-time budget with a step count fixed up front (how the shipped weights were made).

    python scripts/train_shipped.py diffusion --minutes 6 --preset small --batch-size 64 --export out/diffusion.pt

It times a few optimizer steps of the same model and batch size, picks the number of steps that
fits the budget, and then runs exactly `minivid train FAMILY --steps N ...`, so the learning-rate
schedule completes and the export's recorded recipe is a plain command anyone can rerun.
"""

import argparse
import sys
import time

import torch

from minivid import cli, data
from minivid.families import get_family
from minivid.train import TrainConfig, Trainer


def measure_steps_per_second(family_name: str, train_args: list[str], timed_steps: int = 20) -> float:
    args = cli.build_parser().parse_args(["train", family_name, *train_args])
    family = get_family(family_name)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = family.build(args.preset or family.default_preset, args)
    make_batch = getattr(family.load(), "make_batch", None) or data.training_batch
    trainer = Trainer(model, TrainConfig(steps=10_000, batch_size=args.batch_size or family.default_batch_size,
                                         device=device, compile=args.compile, progress=False), make_batch=make_batch)
    for _ in range(5):
        trainer.train_step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(timed_steps):
        trainer.train_step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return timed_steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("family")
    parser.add_argument("--minutes", type=float, required=True, help="training wall-time budget")
    args, train_args = parser.parse_known_args()  # the rest (after --) goes to `minivid train`
    train_args = [a for a in train_args if a != "--"]
    rate = measure_steps_per_second(args.family, train_args)
    steps = max(100, int(args.minutes * 60 * rate * 0.97) // 100 * 100)
    print(f"{rate:.2f} steps/s -> {steps} steps in {args.minutes} min", flush=True)
    sys.exit(cli.main(["train", args.family, "--steps", str(steps), *train_args]))


if __name__ == "__main__":
    main()
