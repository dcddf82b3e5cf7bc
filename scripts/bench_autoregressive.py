"""Sampling cost and quality of the pretrained autoregressive model on this machine, in one run.

    python scripts/bench_autoregressive.py [--clips 32] [--repeats 3] [--json out.json]

1. KV cache: one frame (64 tokens) after 10 context frames, with and without the cache; same tokens.
2. One 10-frame prediction (one clip), token by token with the cache: the CPU time a notebook waits.
3. Parallel (Jacobi) decoding with 1, 2, 4, 8 iterations per frame against token-by-token:
   network passes, seconds and protocol MSE/SSIM on `--clips` test clips (same seed, same noise).
4. Exposure bias: MSE per future frame when the true past is fed (teacher forcing) and when the
   model is fed its own tokens (free running).
Times are medians of `--repeats` runs after one warm-up.
"""

import argparse
import json
import statistics
import time

import torch

import minivid
from minivid import bench, data, metrics


def median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    model = minivid.pretrained("autoregressive")
    clips = data.standard_test_set(args.clips)
    one = clips[:1, :10]
    out = {"threads": torch.get_num_threads()}
    print(f"cpu, {out['threads']} threads")

    _, with_cache = model.generate(one, 1, seed=0, progress=False, return_trace=True)
    _, without = model.generate(one, 1, seed=0, progress=False, return_trace=True, use_cache=False)
    cached = median_seconds(lambda: model.generate(one, 1, seed=0, progress=False), args.repeats)
    uncached = median_seconds(lambda: model.generate(one, 1, seed=0, progress=False, use_cache=False), args.repeats)
    out["kv_cache"] = {"seconds_with": cached, "seconds_without": uncached, "speedup": uncached / cached,
                       "same_tokens": bool(torch.equal(with_cache["tokens"], without["tokens"]))}
    print(f"1 frame after 10: with KV cache {cached:.2f} s, without {uncached:.2f} s -> {uncached / cached:.1f}x, "
          f"same tokens: {out['kv_cache']['same_tokens']}")

    ten = median_seconds(lambda: model.generate(one, 10, seed=0, progress=False), args.repeats)
    out["ten_frames_seconds"] = ten
    print(f"one 10-frame prediction (KV cache): {ten:.2f} s")

    rows = []
    for label, kwargs in [("sequential", {}), *((f"parallel x{k}", {"decoding": "parallel", "iterations": k}) for k in (1, 2, 4, 8))]:
        start = time.perf_counter()
        result = metrics.evaluate(model, num_clips=args.clips, batch_size=args.clips, progress=False, generate_kwargs=kwargs)
        seconds = time.perf_counter() - start
        rows.append({"decoding": label, "mse": result["mse"], "ssim": result["ssim"], "seconds": seconds,
                     "passes_per_clip": bench.network_evaluations(model, kwargs)})
        print(f"{label:13s} MSE {result['mse']:6.1f}  SSIM {result['ssim']:.3f}  {rows[-1]['passes_per_clip']:4d} passes/clip  "
              f"{seconds:6.1f} s for {args.clips} clips ({rows[0]['seconds'] / seconds:.1f}x sequential's speed)")
    out["decoding"] = rows

    free = metrics.evaluate(model, num_clips=args.clips, batch_size=args.clips, progress=False)
    forced = metrics.evaluate(lambda ctx, n: model.teacher_forced(clips[: len(ctx)], context=10), num_clips=args.clips,
                              batch_size=args.clips, progress=False)
    out["exposure_bias"] = {"free_running_mse_per_frame": free["mse_per_frame"], "teacher_forced_mse_per_frame": forced["mse_per_frame"]}
    print("MSE per future frame, teacher-forced:", [round(v, 1) for v in forced["mse_per_frame"]])
    print("MSE per future frame, free-running:  ", [round(v, 1) for v in free["mse_per_frame"]])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
