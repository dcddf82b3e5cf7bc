"""`minivid evaluate FILE`: score a shippable export and record the figures in its JSON manifest.

    minivid evaluate runs/x/diffusion.pt --clips 256 --device cuda      # the standard protocol
    minivid evaluate runs/x/diffusion.pt --speeds 0.07,0.13 --samples 8  # other speeds; mean and best of 8
    minivid evaluate runs/x/hybrid.pt --schedules                        # every inference schedule, long rollouts
    minivid evaluate runs/x/vqvae.pt                                     # a tokenizer: reconstruction, codebook use
    minivid evaluate runs/x/judge.pt --clips 2000                        # the judge on real clips
    minivid evaluate runs/x/dit.pt --judge runs/x/judge.pt --guidance 0,1,3,5   # text faithfulness

Each result goes into the manifest beside the weights (`checkpoints.record_metrics`, which re-reads the
manifest just before writing, so several evaluations of one file may run side by side). The weights
file is not touched, so its SHA-256 stays valid.
"""

from __future__ import annotations

import json
import math
import time

import torch

from minivid import bench, checkpoints, data, judge, metrics, rollouts

# (label, generate keyword arguments) for the hybrid: full-sequence diffusion at several step counts,
# pyramids, and fully autoregressive, each from pure noise (start=1), so that the grids alone differ
HYBRID_SCHEDULES = [
    ("synchronous, 5 steps", {"schedule": "synchronous", "steps": 5, "start": 1.0}),
    ("synchronous, 10 steps", {"schedule": "synchronous", "steps": 10, "start": 1.0}),
    ("synchronous, 20 steps", {"schedule": "synchronous", "steps": 20, "start": 1.0}),
    ("pyramid lag 1, 5 steps", {"schedule": "pyramid", "steps": 5, "lag": 1, "start": 1.0}),
    ("pyramid lag 2, 10 steps", {"schedule": "pyramid", "steps": 10, "lag": 2, "start": 1.0}),
    ("autoregressive, 5 steps", {"schedule": "autoregressive", "steps": 5, "start": 1.0}),
]


def tokenizer_report(model, clips: torch.Tensor, batch_size: int = 64) -> dict:
    """Per-frame MSE / SSIM / PSNR of encode -> decode on `clips`, and codebook usage over all of them.

    Reconstruction is the ceiling of every token model built on this tokenizer: no rollout can be
    scored better than encode -> decode of the true future.
    """
    device = next(model.parameters()).device
    recon = torch.cat([model.reconstruct(clips[i : i + batch_size].to(device)).cpu() for i in range(0, len(clips), batch_size)])
    tokens = torch.cat([model.encode(clips[i : i + batch_size].to(device)).cpu() for i in range(0, len(clips), batch_size)])
    counts = torch.bincount(tokens.flatten(), minlength=model.config.codebook_size).float()
    probs = counts[counts > 0] / counts.sum()
    return {
        "clips": len(clips),
        "mse": metrics.mse_per_frame(recon, clips).mean().item(),
        "ssim": metrics.ssim_per_frame(recon, clips).mean().item(),
        "psnr": metrics.psnr_per_frame(recon, clips).mean().item(),
        "codebook_used": int((counts > 0).sum()),
        "codebook_size": model.config.codebook_size,
        "perplexity": float(torch.exp(-(probs * probs.log()).sum())),
    }


def hybrid_schedules(model, clips: int, batch_size: int, device, rollout_clips: int, horizon: int = 60,
                     context_noise: int = 50) -> tuple[list[dict], list[dict]]:
    """The hybrid under each schedule of HYBRID_SCHEDULES, then long rollouts with and without context noise."""
    where = torch.cuda.get_device_name() if str(device).startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"
    batch = min(batch_size, clips)
    batches = math.ceil(clips / batch)
    print(f"{where}; {clips} test clips, 10 context -> 10 frames")
    print(f"{'schedule':26s} {'MSE':>6s} {'SSIM':>6s} {'PSNR':>6s} {'NFE/frame':>9s} {'s/clip':>7s}")
    table = []
    for label, kwargs in HYBRID_SCHEDULES:
        with bench.counting_calls(model) as calls:  # a batch's network calls are those of one clip
            result = metrics.evaluate(model, num_clips=clips, batch_size=batch, device=device, progress=False,
                                      generate_kwargs=kwargs)
        nfe = len(calls) / batches / 10
        row = {"schedule": label, "generate_kwargs": kwargs, "clips": clips, "mse": result["mse"], "ssim": result["ssim"],
               "psnr": result["psnr"], "network_evals_per_frame": nfe, "seconds_per_clip": result["seconds"] / clips,
               "mse_per_frame": result["mse_per_frame"], "device": where}
        table.append(row)
        print(f"{label:26s} {row['mse']:6.1f} {row['ssim']:6.3f} {row['psnr']:6.2f} {nfe:9.1f} {row['seconds_per_clip']:7.2f}")
    truth = torch.cat([rollouts.true_clip(i, 10 + horizon) for i in range(rollout_clips)]).to(device)
    context, future = truth[:, :10], truth[:, 10:]
    print(f"\nrollouts: {rollout_clips} clips, {horizon} frames, pyramid lag 1, 5 steps, from noise; frames 30-{horizon}")
    noise_rows = []
    for noise in (0, context_noise):
        start = time.perf_counter()
        video = rollouts.rollout(model, context, horizon, schedule="pyramid", steps=5, lag=1, context_noise=noise,
                                 start=1.0)
        seconds = time.perf_counter() - start
        curves = rollouts.accumulation(video, future)
        late = slice(29, horizon)
        row = {"context_noise": noise, "mse_30_60": float(curves["mse"][late].mean()),
               "ink_30_60": float(curves["ink_ratio"][late].mean()), "mse": curves["mse"].tolist(),
               "ink_ratio": curves["ink_ratio"].tolist(), "seconds": seconds, "clips": rollout_clips, "device": where}
        noise_rows.append(row)
        print(f"context noise {noise:4d}: MSE {row['mse_30_60']:6.1f}  ink {row['ink_30_60']:.2f}  ({seconds:.0f} s)")
    return table, noise_rows


def text_faithfulness(model, judge_model, guidances: list[float], clips: int, batch_size: int, kwargs: dict) -> list[dict]:
    """`judge.faithfulness` at each guidance scale, then without captions (the baseline chance gives)."""
    print(f"{clips} captions of test clips, generated from nothing; judged on their first "
          f"{judge_model.config.num_frames} frames")
    print(f"{'guidance':>10s} {'faithful':>9s} {'digits':>7s} {'directions':>11s} {'s/clip':>7s}")
    rows = []
    for guidance in [*guidances, None]:
        row = judge.faithfulness(model, judge_model, num_clips=clips, guidance=guidance or 0.0,
                                 conditional=guidance is not None, batch_size=batch_size, **kwargs)
        rows.append(row)
        label = "no caption" if guidance is None else f"{guidance:g}"
        print(f"{label:>10s} {row['faithful']:9.3f} {row['digits']:7.3f} {row['directions']:11.3f} "
              f"{row['seconds'] / clips:7.2f}")
    return rows


def _numbers(text: str, flag: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} expects numbers separated by commas, e.g. 0,1,3,5; got {text!r}") from None
    if any(v < 0 for v in values):
        raise ValueError(f"{flag} values must be >= 0, got {text!r}")
    return values


def _speeds(text: str) -> list[float]:
    try:
        speeds = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--speeds expects numbers separated by commas, e.g. 0.07,0.13; got {text!r}") from None
    for speed in speeds:
        data.check_speed(speed)
    return speeds


def run_cli(args) -> int:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    speeds = _speeds(args.speeds)  # checked before anything slow starts
    kwargs = json.loads(args.kwargs)
    if not isinstance(kwargs, dict):
        raise ValueError(f"--kwargs must be a JSON object of generate() keywords, got {args.kwargs!r}")
    model, info = checkpoints.load_export(args.weights, device=device)
    family = info["family"]
    if family == "vqvae":
        result = tokenizer_report(model, data.standard_test_set(args.clips), batch_size=args.batch_size)
        checkpoints.record_metrics(args.weights, reconstruction=result)
        print(json.dumps(result, indent=1))
        return 0
    if family == "judge":
        result = judge.accuracy(model, num_clips=args.clips, batch_size=args.batch_size)
        checkpoints.record_metrics(args.weights, accuracy=result)
        print(json.dumps(result, indent=1))
        return 0
    if getattr(args, "judge", None):
        if family != "dit":
            raise ValueError(f"--judge scores text-to-video models (dit); {args.weights} holds a {family!r} model")
        guidances = _numbers(args.guidance, "--guidance")
        judge_model = checkpoints.resolve(args.judge, device=device)
        if getattr(judge_model, "family", None) != "judge":
            raise ValueError(f"--judge expects a judge export or pretrained:judge, got a "
                             f"{getattr(judge_model, 'family', None)!r} model")
        table = text_faithfulness(model, judge_model, guidances, args.clips, args.batch_size, kwargs)
        checkpoints.record_metrics(args.weights, faithfulness=table)
        return 0
    if args.schedules:
        if family != "hybrid":
            raise ValueError(f"--schedules is for hybrid models; {args.weights} holds a {family!r} model")
        table, noise_rows = hybrid_schedules(model, args.clips, args.batch_size, device, args.rollout_clips)
        checkpoints.record_metrics(args.weights, schedules=table, context_noise=noise_rows)
        return 0
    result = metrics.evaluate(model, num_clips=args.clips, batch_size=args.batch_size, device=device, generate_kwargs=kwargs)
    result.update(generate_kwargs=kwargs, device=device)
    checkpoints.record_metrics(args.weights, **{args.name: result})
    # a named run (e.g. other generate() keywords) keeps its speeds and samples beside it, not over the default's
    suffix = "" if args.name == "protocol" else f"_{args.name}"
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("_per_frame")}, indent=1))
    print("MSE per future frame:", [round(v, 1) for v in result["mse_per_frame"]])
    if speeds:
        table = {"0.1": {k: result[k] for k in ("mse", "ssim", "psnr", "mse_per_frame")}}
        for speed in speeds:
            r = metrics.evaluate(model, num_clips=args.clips, batch_size=args.batch_size, device=device,
                                 generate_kwargs=kwargs, speed=speed, progress=False)
            table[str(speed)] = {k: r[k] for k in ("mse", "ssim", "psnr", "mse_per_frame")}
            print(f"speed {speed}: MSE {r['mse']:.1f}, SSIM {r['ssim']:.3f}")
        checkpoints.record_metrics(args.weights, **{f"speeds{suffix}": table})
    if args.samples:
        spread = metrics.sample_spread(model, args.samples, num_clips=args.clips, batch_size=args.batch_size,
                                       device=device, generate_kwargs=kwargs, progress=False)
        checkpoints.record_metrics(args.weights, **{f"samples{suffix}": spread})
        print(json.dumps(spread))
    return 0
