"""`minivid data`: render samples of a toy set to a GIF/MP4 and print the set's facts."""

from __future__ import annotations

import time

import torch

from minivid import data, toysets, viz


def facts(name: str, clips: torch.Tensor, seconds: float, seed: int, split: str) -> str:
    toy = toysets.get(name)
    b, t, c, h, w = clips.shape
    lines = [
        f"set           {name}: {toy.skill}",
        f"clips         {b} x {t} frames x {c} channel(s) x {h}x{w}, float32 in [0, 1] "
        f"(min {clips.min():.2f}, max {clips.max():.2f}, mean {clips.mean():.3f})",
        f"made          seed {seed}, split {split!r}; clip i is a pure function of (seed, split, i)",
        f"speed         {b / max(seconds, 1e-9):,.0f} clips/s here ({seconds * 1e3:.0f} ms for this batch)",
    ]
    if name == "moving_mnist":
        pool = data.digit_pool(split)
        lines += [
            f"digits        {len(pool):,} real MNIST digits in the {split!r} pool (shipped inside minivid; "
            "train and test pools are disjoint); digits='full' uses all of MNIST via `datasets`",
            f"protocol      {data.STANDARD_CONTEXT} context -> {data.STANDARD_FUTURE} predicted frames on "
            f"data.standard_test_set() (seed {data.STANDARD_TEST_SEED}, split 'test')",
        ]
    return "\n".join(lines)


def run(args) -> int:
    kwargs = {}
    if args.dataset == "moving_mnist":
        kwargs["num_objects"] = args.num_digits
    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    start = time.perf_counter()
    clips = toysets.generate(args.dataset, range(args.num), seed=args.seed, split=args.split,
                             num_frames=args.num_frames, size=args.size, **kwargs)
    seconds = time.perf_counter() - start
    path = viz.save_video(clips, args.out, fps=args.fps, scale=2 if args.size <= 64 else 1)
    print(facts(args.dataset, clips, seconds, args.seed, args.split))
    print(f"wrote         {path} ({args.num} clips side by side)")
    return 0
