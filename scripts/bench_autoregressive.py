"""Sampling cost and quality of the pretrained autoregressive model on this machine, in one run.

    python scripts/bench_autoregressive.py [--clips 32] [--repeats 3] [--json out.json]
        [--only kv,ten,parallel,diagonal,exposure] [--diagonal 32,16,8,15:1] [--threads N] [--device cuda]
        [--model FILE.pt]

1. KV cache: one frame (64 tokens) after 10 context frames, with and without the cache; same tokens.
2. One 10-frame prediction (one clip), token by token with the cache: the CPU time a notebook waits.
3. Parallel (Jacobi) decoding with 1, 2, 4, 8 iterations per frame against token-by-token:
   network passes, seconds and protocol MSE/SSIM on `--clips` test clips (same seed, same noise).
4. Diagonal decoding against token-by-token, each `--diagonal` entry LAG[:ROW_LAG] a setting (row_lag
   8, rows in raster order, unless given; 64 would be token-by-token itself): protocol MSE/SSIM on
   `--clips` test clips, network passes per clip, and the seconds per clip of generating the batch
   (10 frames after 10), the settings taking turns `--repeats` times so that load from other work on a
   shared machine falls on all of them alike.
5. Exposure bias: MSE per future frame when the true past is fed (teacher forcing) and when the
   model is fed its own tokens (free running).
Times are medians of `--repeats` runs after one warm-up. `--only` runs some of the sections.
`--model` measures an export (checked against the manifest beside it) instead of the shipped model.
"""

import argparse
import json
import statistics
import time
from collections import defaultdict

import torch

import minivid
from minivid import bench, checkpoints, data, metrics


def sync():
    """Wait for queued GPU work, so that a clock read after it counts it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_seconds(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


SECTIONS = ("kv", "ten", "parallel", "diagonal", "exposure")


def diagonal_settings(text):
    """'32,16,8,15:1' -> [{'decoding': 'diagonal', 'lag': 32, 'row_lag': 8}, ..., {... 'lag': 15, 'row_lag': 1}]."""
    settings = []
    for entry in text.split(","):
        lag, _, row_lag = entry.strip().partition(":")
        settings.append({"decoding": "diagonal", "lag": int(lag), "row_lag": int(row_lag or 8)})
    return settings


def diagonal_table(model, clips, settings, repeats, device="cpu"):
    """Sequential and each diagonal setting: MSE/SSIM from one protocol run, seconds from runs taken in turns."""
    runs = [("sequential", {})] + [(f"diagonal lag {k['lag']}, row_lag {k['row_lag']}", k) for k in settings]
    rows = []
    for label, kwargs in runs:  # also the warm-up
        result = metrics.evaluate(model, num_clips=len(clips), batch_size=len(clips), progress=False,
                                  generate_kwargs=kwargs, device=device)
        rows.append({"decoding": label, "kwargs": kwargs, "mse": result["mse"], "ssim": result["ssim"],
                     "passes_per_clip": bench.network_evaluations(model, kwargs)})
    seconds = defaultdict(list)
    for _ in range(repeats):
        for label, kwargs in runs:
            sync()
            start = time.perf_counter()
            model.generate(clips[:, :10], 10, seed=0, progress=False, **kwargs)
            sync()
            seconds[label].append(time.perf_counter() - start)
    for row in rows:
        row["seconds_per_clip"] = statistics.median(seconds[row["decoding"]]) / len(clips)
        row["seconds_per_clip_runs"] = [t / len(clips) for t in seconds[row["decoding"]]]
        row["speedup"] = rows[0]["seconds_per_clip"] / row["seconds_per_clip"]
        row["fewer_passes"] = rows[0]["passes_per_clip"] / row["passes_per_clip"]
        print(f"{row['decoding']:26s} MSE {row['mse']:6.1f}  SSIM {row['ssim']:.3f}  {row['passes_per_clip']:4d} passes/clip "
              f"({row['fewer_passes']:.1f}x fewer)  {row['seconds_per_clip'] * 1000:.2f} ms/clip, median of {repeats} "
              f"({row['speedup']:.2f}x sequential's speed)")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=None)
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections, of {SECTIONS}")
    parser.add_argument("--diagonal", default="32,16,8,15:1", help="diagonal settings LAG[:ROW_LAG], comma-separated")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the diagonal table; other sections stay on the CPU)")
    parser.add_argument("--model", default=None, help="an autoregressive export (FILE.pt beside FILE.json); default: the shipped one")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    only = [name.strip() for name in args.only.split(",")]
    if any(name not in SECTIONS for name in only):
        parser.error(f"--only takes some of {SECTIONS}, got {args.only!r}")
    if args.model is None:
        model = minivid.pretrained("autoregressive")
    else:
        model, _ = checkpoints.load_export(args.model, family="autoregressive")
    clips = data.standard_test_set(args.clips)
    one = clips[:1, :10]
    out = {"threads": torch.get_num_threads(), "clips": args.clips, "repeats": args.repeats, "device": args.device,
           "model": args.model or "pretrained:autoregressive"}
    if args.device == "cpu":
        print(f"cpu, {out['threads']} threads")
    else:
        out["device_name"] = torch.cuda.get_device_name(args.device)
        print(out["device_name"])

    if "kv" in only:
        kv_cache(model, one, args.repeats, out)
    if "ten" in only:
        out["ten_frames_seconds"] = median_seconds(lambda: model.generate(one, 10, seed=0, progress=False), args.repeats)
        print(f"one 10-frame prediction (KV cache): {out['ten_frames_seconds']:.2f} s")
    if "parallel" in only:
        out["decoding"] = parallel_table(model, args.clips)
    if "diagonal" in only:
        on = model.to(args.device)
        out["diagonal"] = diagonal_table(on, clips.to(args.device), diagonal_settings(args.diagonal), args.repeats, args.device)
        model = on.to("cpu")
    if "exposure" in only:
        out["exposure_bias"] = exposure_bias(model, clips)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


def kv_cache(model, one, repeats, out):
    _, with_cache = model.generate(one, 1, seed=0, progress=False, return_trace=True)
    _, without = model.generate(one, 1, seed=0, progress=False, return_trace=True, use_cache=False)
    cached = median_seconds(lambda: model.generate(one, 1, seed=0, progress=False), repeats)
    uncached = median_seconds(lambda: model.generate(one, 1, seed=0, progress=False, use_cache=False), repeats)
    out["kv_cache"] = {"seconds_with": cached, "seconds_without": uncached, "speedup": uncached / cached,
                       "same_tokens": bool(torch.equal(with_cache["tokens"], without["tokens"]))}
    print(f"1 frame after 10: with KV cache {cached:.2f} s, without {uncached:.2f} s -> {uncached / cached:.1f}x, "
          f"same tokens: {out['kv_cache']['same_tokens']}")


def parallel_table(model, num_clips):
    rows = []
    for label, kwargs in [("sequential", {}), *((f"parallel x{k}", {"decoding": "parallel", "iterations": k}) for k in (1, 2, 4, 8))]:
        start = time.perf_counter()
        result = metrics.evaluate(model, num_clips=num_clips, batch_size=num_clips, progress=False, generate_kwargs=kwargs)
        seconds = time.perf_counter() - start
        rows.append({"decoding": label, "mse": result["mse"], "ssim": result["ssim"], "seconds": seconds,
                     "passes_per_clip": bench.network_evaluations(model, kwargs)})
        print(f"{label:13s} MSE {result['mse']:6.1f}  SSIM {result['ssim']:.3f}  {rows[-1]['passes_per_clip']:4d} passes/clip  "
              f"{seconds:6.1f} s for {num_clips} clips ({rows[0]['seconds'] / seconds:.1f}x sequential's speed)")
    return rows


def exposure_bias(model, clips):
    free = metrics.evaluate(model, num_clips=len(clips), batch_size=len(clips), progress=False)
    forced = metrics.evaluate(lambda ctx, n: model.teacher_forced(clips[: len(ctx)], context=10), num_clips=len(clips),
                              batch_size=len(clips), progress=False)
    print("MSE per future frame, teacher-forced:", [round(v, 1) for v in forced["mse_per_frame"]])
    print("MSE per future frame, free-running:  ", [round(v, 1) for v in free["mse_per_frame"]])
    return {"free_running_mse_per_frame": free["mse_per_frame"], "teacher_forced_mse_per_frame": forced["mse_per_frame"]}


if __name__ == "__main__":
    main()
