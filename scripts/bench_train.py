"""Training throughput of every family: clips/s, ms/step, peak memory and % of the GPU's bf16 peak.

    python scripts/bench_train.py                                   # this code, eager and compiled, one GPU
    python scripts/bench_train.py --before OLD --json bench.json    # and the code in OLD/minivid, side by side
    python scripts/bench_train.py --gpus 4                          # and one compiled DDP job over 4 GPUs
    python scripts/bench_train.py --families diffusion,diffusion@frame_attention_from=1   # a config change, side by side
    python scripts/bench_train.py --curve --steps 300 --seed 0      # a loss curve (JSON line), for parity plots
    python scripts/bench_train.py --plot a.json b.json --out parity.png

Each measurement runs in its own process (so an older copy of the package can be imported from
`--before`, and compiled graphs never leak between rows). A row times `--windows` windows of
`--steps` optimizer steps after warm-up (compilation included in the warm-up) and reports the median
window. A family may carry `--set` overrides after `@`, joined by `+` (e.g.
`diffusion@spacetime=True+heads=8`). FLOPs per step come from torch's FLOP counter on one eager
forward + backward; the peak they are compared with is a large bf16 matrix product measured on the
same GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("diffusion", "hybrid", "autoregressive")


def measure_peak_tflops() -> float:
    import torch

    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        start = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 2 * 8192**3 / statistics.median(times) / 1e12


def trainer_for(family_name: str, preset: str, batch_size: int, compile: bool, log_every: int = 50, seed: int = 0,
                steps: int = 10**6, device: str = "cuda"):
    import torch

    from minivid import data
    from minivid.families import get_family
    from minivid.train import TrainConfig, Trainer

    torch.manual_seed(seed)
    name, _, overrides = family_name.partition("@")  # e.g. diffusion@frame_attention_from=1
    family = get_family(name)
    model = family.build(preset, argparse.Namespace(set=overrides.split("+"))) if overrides else family.build(preset)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=family.default_lr, device=device, compile=compile,
                      progress=False, log_every=log_every, seed=seed, warmup_steps=100)
    return Trainer(model, cfg, make_batch=data.training_batch)


def code_label() -> str:
    """'before' for the copy of older code that --before points at, else 'after' (this checkout)."""
    import minivid

    return "after" if Path(minivid.__file__).resolve().parent.parent == ROOT else "before"


def one_row(args) -> dict:
    """Time one (family, compiled or not) configuration of whatever `minivid` is importable."""
    import torch

    from minivid import data
    from minivid.train import LossOf

    trainer = trainer_for(args.family, args.preset, args.batch_size, args.compiled, device=args.device)
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    rank, world = getattr(trainer, "rank", 0), getattr(trainer, "world", 1)
    for _ in range(args.warmup):
        trainer.train_step()
    sync()
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.windows):
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.train_step()
        sync()
        times.append((time.perf_counter() - start) / args.steps)
    step_seconds = statistics.median(times)
    # Before this code, the batch size was per GPU; now it is the whole job's. Count the clips actually used.
    clips_per_step = getattr(trainer, "local_batch", args.batch_size) * world
    row = {"family": args.family, "preset": args.preset, "code": code_label(),
           "compiled": bool(args.compiled), "gpus": world, "clips_per_step": clips_per_step,
           "ms_per_step": 1e3 * step_seconds, "clips_per_second": clips_per_step / step_seconds,
           "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else 0.0,
           "gpu": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
           "torch": torch.__version__, "window_ms": [1e3 * t for t in times]}
    if rank == 0 and world == 1 and args.device == "cuda":
        from torch.utils.flop_counter import FlopCounterMode

        batch = data.training_batch(0, clips_per_step, device=trainer.device)
        with torch.autocast("cuda", dtype=torch.bfloat16), FlopCounterMode(display=False) as counter:
            LossOf(trainer.model)(batch).backward()
        trainer.opt.zero_grad(set_to_none=True)
        row["tflop_per_step"] = counter.get_total_flops() / 1e12
        row["tflops"] = row["tflop_per_step"] / step_seconds
        row["peak_tflops"] = measure_peak_tflops()
        row["percent_of_peak"] = 100 * row["tflops"] / row["peak_tflops"]
    if hasattr(trainer, "close"):
        trainer.close()
    return row if rank == 0 else {}


def curve(args) -> dict:
    """The loss every 10 steps of a short run from scratch: diffusion `small`, the trainer's defaults on CUDA."""
    trainer = trainer_for("diffusion", args.preset, args.batch_size, args.compiled, log_every=10, seed=args.seed,
                          steps=args.steps, device=args.device)
    history = trainer.fit()
    return {"code": code_label(), "seed": args.seed, "compiled": bool(args.compiled),
            "steps": [r["step"] for r in history], "loss": [r["loss_smooth"] for r in history]}


def child(argv: list[str], python_path: Path, gpus: int = 1) -> dict:
    env = {**os.environ, "PYTHONPATH": str(python_path)}
    launcher = [sys.executable] if gpus == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                   f"--nproc_per_node={gpus}"]
    out = subprocess.run([*launcher, __file__, *argv], env=env, capture_output=True, text=True)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{") and line.strip() != "{}"]
    if out.returncode or not rows:
        return {"error": (out.stderr or out.stdout)[-1500:], "argv": argv}
    return rows[-1]


def plot(paths: list[str], out: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    for path in paths:
        for line in Path(path).read_text().splitlines():
            r = json.loads(line)
            ax.plot(r["steps"], r["loss"], label=f"{r['code']} ({'compiled' if r['compiled'] else 'eager'}), seed {r['seed']}")
    ax.set(xlabel="step", ylabel="training loss (smoothed)", yscale="log", title="diffusion small: loss at equal steps")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--families", default=",".join(FAMILIES))
    p.add_argument("--preset", default="small")
    p.add_argument("--batch-size", type=int, default=64, help="clips per step on one GPU (DDP rows: this times --gpus)")
    p.add_argument("--steps", type=int, default=20, help="steps per timed window (--curve: steps of the run)")
    p.add_argument("--windows", type=int, default=5)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--before", default=None, help="a folder holding an older minivid/ to time side by side")
    p.add_argument("--modes", default="eager,compiled", help="one-GPU rows to time (empty: only the DDP row)")
    p.add_argument("--gpus", type=int, default=1, help="also time one DDP job over this many GPUs")
    p.add_argument("--ddp-mode", default="compiled", choices=["eager", "compiled"], help="how the DDP row runs")
    p.add_argument("--json", default=None, help="append every row as a JSON line here")
    p.add_argument("--one", nargs=2, metavar=("FAMILY", "MODE"), help=argparse.SUPPRESS)
    p.add_argument("--curve", action="store_true")
    p.add_argument("--compiled", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda", help="cuda (the figures that matter) or cpu (a smoke test)")
    p.add_argument("--plot", nargs="+", default=None)
    p.add_argument("--out", default="parity.png")
    args = p.parse_args()
    if args.plot:
        return plot(args.plot, args.out)
    if args.one:
        args.family, args.compiled = args.one[0], args.one[1] == "compiled"
        return print(json.dumps(one_row(args)), flush=True)
    if args.curve:
        return print(json.dumps(curve(args)), flush=True)

    common = ["--device", args.device, "--preset", args.preset, "--steps", str(args.steps), "--windows", str(args.windows), "--warmup", str(args.warmup)]
    codes = [("before", Path(args.before).resolve())] if args.before else []
    codes.append(("after", ROOT))
    rows = []
    for family in args.families.split(","):
        for label, path in codes:
            for mode in [m for m in args.modes.split(",") if m]:
                rows.append({"label": label, **child(["--one", family, mode, "--batch-size", str(args.batch_size), *common], path)})
                print(json.dumps(rows[-1]), flush=True)
        if args.gpus > 1:
            batch = str(args.batch_size * args.gpus)
            rows.append({"label": "after", **child(["--one", family, args.ddp_mode, "--batch-size", batch, *common], ROOT, args.gpus)})
            print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    print(f"\n{'family':15s} {'code':7s} {'mode':9s} {'GPUs':>4s} {'clips/s':>9s} {'ms/step':>8s} {'peak GB':>8s} {'% bf16':>7s}  ratio")
    for family in args.families.split(","):
        mine = [r for r in rows if r.get("family") == family]
        base = next((r["clips_per_second"] for r in mine if r["label"] == codes[0][0] and not r["compiled"]), None)
        for r in mine:
            pct = f"{r['percent_of_peak']:.1f}" if "percent_of_peak" in r else ""
            print(f"{family:15s} {r['label']:7s} {'compiled' if r['compiled'] else 'eager':9s} {r['gpus']:4d} "
                  f"{r['clips_per_second']:9.0f} {r['ms_per_step']:8.1f} {r['peak_memory_gb']:8.2f} {pct:>7s}  "
                  f"{r['clips_per_second'] / base:.2f}x" if base else "")
    errors = [r for r in rows if "error" in r]
    for r in errors:
        print("error:", r["argv"], r["error"], file=sys.stderr)
    if rows:
        print(f"GPU: {next((r['gpu'] for r in rows if 'gpu' in r), '?')}")


if __name__ == "__main__":
    main()
