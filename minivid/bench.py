"""`minivid bench`: the standard protocol for every pretrained method (and the baselines), as one table.

    minivid bench --num-clips 256 --json bench.json --csv bench.csv

Columns: MSE, MAE (summed per frame), PSNR, SSIM (means over clips and the 10 future frames),
parameters, network evaluations per generated clip, and wall time per clip on this machine.
"""

from __future__ import annotations

import contextlib
import csv
import json

import torch

from minivid import checkpoints, metrics

GENERATOR_FAMILIES = ("diffusion", "autoregressive", "hybrid", "dit", "student")  # the judge and the tokenizer only read clips
BATCH_SIZE = 32  # clips generated together
BASELINES = {"copy last frame": metrics.copy_last_frame, "black frames": metrics.blank_frames}


def generators() -> list[str]:
    """Shipped models that generate video (the tokenizer ships too, but only encodes and decodes)."""
    return [name for name in checkpoints.available() if checkpoints.manifest(name)["family"] in GENERATOR_FAMILIES]


@contextlib.contextmanager
def counting_calls(model):
    """Count the network's forward calls inside the block: `with counting_calls(m) as calls: ...; len(calls)`.

    A plain function (a baseline) has no network and counts 0.
    """
    calls: list[int] = []
    handles = []
    if isinstance(model, torch.nn.Module):
        network = getattr(model, "transformer", model)  # the AR model's sampler calls its transformer directly
        # a diffusion model's deterministic predictor is a network of its own, called once per prediction
        networks = [network] + [m for m in [getattr(model, "predictor", None)] if isinstance(m, torch.nn.Module)]
        handles = [n.register_forward_pre_hook(lambda module, inputs: calls.append(1)) for n in networks]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def network_evaluations(model, generate_kwargs: dict) -> int:
    """Network calls per generated clip (10 frames after 10), counted with a forward hook on one clip."""
    from minivid import data

    if not isinstance(model, torch.nn.Module):
        return 0
    with counting_calls(model) as calls, torch.no_grad():
        model.generate(data.standard_test_set(1)[:, :10], 10, progress=False, **generate_kwargs)
    return len(calls)


def run(num_clips: int = 256, methods=None, device: str = "cpu", seed: int = 0, generate_kwargs: dict | None = None,
        progress: bool = True) -> list[dict]:
    names = list(BASELINES) + generators()
    if methods:
        unknown = [m for m in methods if m not in names]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; expected some of {names}")
        names = [n for n in names if n in methods]
    rows = []
    for name in names:
        model = BASELINES.get(name) or checkpoints.pretrained(name, device=device)
        kwargs = (generate_kwargs or {}).get(name, {}) if name not in BASELINES else {}
        with counting_calls(model) as calls:  # network calls are per batch, whatever its size
            result = metrics.evaluate(model, num_clips=num_clips, batch_size=BATCH_SIZE, device=device, seed=seed,
                                      progress=progress, generate_kwargs=kwargs)
        batches = -(-num_clips // BATCH_SIZE)
        params = sum(p.numel() for p in model.parameters()) if isinstance(model, torch.nn.Module) else 0
        rows.append({"method": name, "mse": result["mse"], "mae": result["mae"], "psnr": result["psnr"], "ssim": result["ssim"],
                     "parameters": params, "network_evals_per_clip": round(len(calls) / batches),
                     "seconds_per_clip": result["seconds"] / num_clips, "clips": num_clips, "device": device,
                     "mse_per_frame": result["mse_per_frame"]})
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"| {'method':20s} | {'MSE':>6s} | {'MAE':>6s} | {'PSNR':>5s} | {'SSIM':>5s} | {'params':>7s} | {'NFE/clip':>8s} | {'s/clip':>6s} |"
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    for r in rows:
        lines.append(f"| {r['method']:20s} | {r['mse']:6.1f} | {r['mae']:6.1f} | {r['psnr']:5.2f} | {r['ssim']:5.3f} | "
                     f"{r['parameters'] / 1e6:6.2f}M | {r['network_evals_per_clip']:8d} | {r['seconds_per_clip']:6.3f} |")
    return "\n".join(lines)


def run_cli(args) -> int:
    if args.num_clips < 1:
        raise ValueError(f"--num-clips must be >= 1, got {args.num_clips}")
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    rows = run(args.num_clips, methods, args.device, args.seed)
    print(format_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "mse_per_frame"], extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return 0
