"""Frames per second of the distilled student streaming one clip, against the teacher and the hybrid, in one run.

    python scripts/bench_stream.py [--frames 30] [--device cpu] [--threads N] [--json out.json]

The student streams `--frames` frames after the first protocol clip's 10 context frames, at 1, 2 and 4
steps; each frame is timed as it arrives (twice, the second run kept), so the readout shows whether frame
50 costs what frame 5 did. The teacher (diffusion from pure noise at 20 steps, as it taught the student), the
diffusion model as `generate` runs it by default (from its predictor's guess) and the hybrid (from pure noise,
and by default, from its guess) make one 10-frame clip at once; their time per frame is that clip's time / 10
(after one warm-up clip).
"""

import argparse
import json
import statistics
import time

import torch

import minivid
from minivid import data


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def stream_times(student, context, frames, steps, device):
    times = []
    for _ in range(2):  # the first run warms up; the second is kept
        times = []
        sync(device)
        start = time.perf_counter()
        for _frame in student.stream(context, num_frames=frames, seed=0, steps=steps):
            sync(device)
            now = time.perf_counter()
            times.append(now - start)
            start = now
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.frames < 20:
        parser.error(f"--frames must be >= 20 (the first and last 10 are compared), got {args.frames}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(name)
    context = data.standard_test_set(1)[:, :10].to(device)
    out = {"device": name, "frames": args.frames}
    student = minivid.pretrained("student", device=device)
    for steps in (1, 2, 4):
        times = stream_times(student, context, args.frames, steps, device)
        row = {"fps": 1 / statistics.median(times), "seconds_first_10": statistics.median(times[:10]),
               "seconds_last_10": statistics.median(times[-10:])}
        out[f"student_{steps}_steps"] = row
        print(f"student, {steps} step(s): {row['fps']:5.1f} frames/s; median frame time {row['seconds_first_10']:.3f} s "
              f"over frames 1-10, {row['seconds_last_10']:.3f} s over the last 10")
    rows = (("teacher (diffusion from noise, 20 steps: how the student was taught)", "diffusion", "diffusion", {"start": 1.0}),
            ("diffusion default (from its guess, 6 of 20 steps)", "diffusion_default", "diffusion", {}),
            ("hybrid from noise (pyramid lag 2, 10 steps)", "hybrid_from_noise", "hybrid", {"start": 1.0}),
            ("hybrid default (from its guess, the pyramid capped at 0.5)", "hybrid", "hybrid", {}))
    models = {name: minivid.pretrained(name, device=device) for name in ("diffusion", "hybrid")}
    for label, key, model_name, kwargs in rows:
        model = models[model_name]
        model.generate(context, 10, seed=0, progress=False, **kwargs)
        sync(device)
        start = time.perf_counter()
        model.generate(context, 10, seed=0, progress=False, **kwargs)
        sync(device)
        per_frame = (time.perf_counter() - start) / 10
        out[key] = {"fps": 1 / per_frame, "seconds_per_clip": per_frame * 10}
        print(f"{label}: {1 / per_frame:5.2f} frames/s ({per_frame * 10:.2f} s a 10-frame clip)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
