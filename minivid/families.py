"""The model families minivid knows, so the CLI, `pretrained()` and the benchmark treat them alike.

A family names the module that holds its model. That module defines:

    Config             a frozen dataclass; the model's whole description
    Model              an nn.Module built as Model(Config(...)); it answers
                       loss(batch) -> scalar  and  generate(context, num_frames, seed=0, ...)
    PRESETS            {name: Config} with parameter counts in comments (minGPT model types)

and may define, to take over a step the generic version below does differently:

    make_batch(step, batch_size, seed, device) -> batch      (default: Moving MNIST clips)
    build(preset, args) -> Model                             (default: Model(PRESETS[preset]))
    train_cli(args)                                          (default: default_train_cli below)

`minivid sample` is the same for every family that generates video (`sample_cli` below): it relies only
on `generate`, and on `Model.network_evaluations(num_context, num_frames, **kwargs)` where a model has
it, to say before sampling how long it will take.

Families are imported lazily, so `minivid --help` stays fast.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    module: str  # imported on first use
    default_preset: str
    default_steps: int
    default_batch_size: int
    default_lr: float
    generates: bool = True  # False for the tokenizer (encodes and decodes frames) and the judge (reads clips)

    def load(self):
        return importlib.import_module(self.module)

    def build(self, preset: str | None = None, args=None):
        mod = self.load()
        preset = preset or self.default_preset
        if hasattr(mod, "build"):
            return mod.build(preset, args)
        if preset not in mod.PRESETS:
            raise ValueError(f"unknown preset {preset!r} for {self.name}; expected one of {sorted(mod.PRESETS)}")
        return mod.Model(mod.PRESETS[preset])

    def train_cli(self, args):
        mod = self.load()
        if hasattr(mod, "train_cli"):
            return mod.train_cli(args)
        return default_train_cli(self, args)


FAMILIES: dict[str, Family] = {
    "diffusion": Family("diffusion", "minivid.video_diffusion", "small", 6_000, 64, 3e-4),
    "image": Family("image", "minivid.image_diffusion", "small", 2_000, 256, 5e-4),
    "vqvae": Family("vqvae", "minivid.models.vqvae", "small", 3_000, 256, 1e-3, generates=False),
    "autoregressive": Family("autoregressive", "minivid.autoregressive", "small", 6_000, 32, 5e-4),
    "hybrid": Family("hybrid", "minivid.hybrid", "small", 6_000, 64, 3e-4),
    "dit": Family("dit", "minivid.dit_video", "small", 20_000, 64, 3e-4),
    "judge": Family("judge", "minivid.judge", "small", 5_000, 128, 1e-3, generates=False),
    "student": Family("student", "minivid.distill", "small", 2_000, 32, 1e-4),  # needs a teacher: see distill.build
}


def with_overrides(config, args):
    """`config` with the `--set NAME=VALUE` fields of `args` replaced (values read as Python literals)."""
    import ast
    import dataclasses

    pairs = getattr(args, "set", None) or []
    names = {f.name for f in dataclasses.fields(config)}
    changes = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or name not in names:
            raise ValueError(f"--set expects NAME=VALUE with NAME one of {sorted(names)}, got {pair!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a plain word, e.g. --set schedule=linear
        old = getattr(config, name)
        if isinstance(old, tuple) and isinstance(value, (list, tuple, int)):
            value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
        expected = (int, float) if isinstance(old, float) else type(old)  # 5 is fine where 5.0 is expected
        if isinstance(old, bool) != isinstance(value, bool) or not isinstance(value, expected):
            raise ValueError(f"--set {name}: expected a value like {old!r}, got {text!r}")
        changes[name] = value
    return dataclasses.replace(config, **changes)


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; expected one of {sorted(FAMILIES)}")
    return FAMILIES[name]


def default_train_cli(family: Family, args) -> int:
    """`minivid train FAMILY`: the shared loop on Moving MNIST, then (optionally) a shippable export."""
    import dataclasses
    import functools

    import torch

    from minivid import checkpoints, data
    from minivid.train import TrainConfig, Trainer

    mod = family.load()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    preset = args.preset or family.default_preset
    if getattr(args, "predictor_from", None) and family.name not in ("diffusion", "hybrid", "autoregressive"):
        raise ValueError(f"--predictor-from is for diffusion, hybrid and autoregressive models with a predictor, "
                         f"not {family.name}")
    if args.steps is not None and args.steps < 0:
        raise ValueError(f"--steps must be 0 or more, got {args.steps}")
    if args.steps == 0 and (not getattr(args, "init", None) or not getattr(args, "predictor_from", None)
                            or not args.export or getattr(args, "minutes", None) is not None):
        raise ValueError("--steps 0 assembles a model without training: --init MODEL, a predictor from "
                         "--predictor-from FILE and --export OUT (no --minutes)")
    model = family.build(preset, args)
    if args.steps == 0:  # assemble only: a model that takes a predictor trained alone (--predictor-from)
        return _export_as_built(family, model, preset, args)
    make_batch = getattr(mod, "make_batch", None) or data.training_batch
    if getattr(args, "speed", None) is not None:
        data.check_speed(args.speed)
        make_batch = functools.partial(make_batch, speed=args.speed)
    cfg = TrainConfig(
        steps=args.steps or (10**9 if getattr(args, "minutes", None) else family.default_steps),
        batch_size=args.batch_size or family.default_batch_size,
        lr=args.lr or family.default_lr,
        seed=args.seed,
        device=device,
        compile=args.compile,
        out_dir=args.out or f"runs/{family.name}",
        max_minutes=getattr(args, "max_minutes", None),
        minutes=getattr(args, "minutes", None),
    )
    if getattr(args, "warmup", None) is not None:
        cfg = dataclasses.replace(cfg, warmup_steps=args.warmup)
    trainer = Trainer(model, cfg, make_batch=make_batch)
    try:
        trainer.fit()
        if args.export and trainer.rank == 0:
            training = {"steps": trainer.step, "batch_size": cfg.batch_size, "seconds": round(trainer.seconds, 1),
                        "clips_per_second": round(trainer.clips_per_second, 1), "device": device,
                        "processes": trainer.world, "compiled": trainer.compile,
                        "final_loss": trainer.history[-1]["loss_smooth"] if trainer.history else None}
            if getattr(args, "speed", None) is not None:
                training["speed"] = args.speed
            if device.startswith("cuda"):
                training["gpu"] = torch.cuda.get_device_name()
            checkpoints.export(trainer.ema_model(), family.name, args.export, preset=preset,
                               recipe=" ".join(getattr(args, "argv", None) or _argv()), metrics={"training": training})
            print(f"wrote {args.export}")
    except BaseException:
        trainer.close(wait=False)
        raise
    trainer.close()
    return 0


def _export_as_built(family: Family, model, preset: str, args) -> int:
    """`minivid train FAMILY --init MODEL --predictor-from FILE --steps 0 --export OUT`: the model as `build` made
    it, exported untrained."""
    import os

    from minivid import checkpoints

    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 writes
        checkpoints.export(model.eval(), family.name, args.export, preset=preset,
                           recipe=" ".join(getattr(args, "argv", None) or _argv()), metrics={"training": {"steps": 0}})
        print(f"wrote {args.export} (no training steps: the model as built)")
    return 0


def sample_cli(args) -> int:
    """`minivid sample FAMILY [FAMILY ...]`: the standard test clips, each model's prediction under the truth.

    Writes a GIF/MP4 (`viz.truth_over_predictions`): one column per clip, the true clip on top, then one
    row per model, whose predicted frames wear a red border. Before each model samples, it prints the
    number of network evaluations and, once the first few are timed, how long the rest will take;
    a progress bar counts the evaluations.
    """
    import inspect

    import torch

    from minivid import checkpoints, metrics, viz

    families = [get_family(name) for name in dict.fromkeys(args.family)]  # in order, without repeats
    for family in families:
        if not family.generates:
            raise ValueError(f"{family.name} does not generate video (it encodes and decodes frames); "
                             f"sample 'autoregressive', which predicts its tokens")
    if args.checkpoint and len(families) > 1:
        raise ValueError("--checkpoint names one model: give one family with it")
    for name, value, least in (("--num", args.num, 1), ("--context", args.context, 0), ("--num-frames", args.num_frames, 1)):
        if value < least:
            raise ValueError(f"{name} must be >= {least}, got {value}")
    truth = metrics.test_clips(args.num, args.context + args.num_frames)  # (b, context + num_frames, 1, 64, 64)
    context = truth[:, : args.context]
    predictions = {}
    for family in families:
        if args.checkpoint:
            model = checkpoints.load(args.checkpoint, family=family.name)
        else:
            model = checkpoints.pretrained(family.name)
        model = model.to(args.device).eval()
        kwargs = {}
        for option, value, why in (("steps", args.steps, "it has no denoising steps"),
                                   ("start", getattr(args, "start", None), "it does not start from a guess")):
            if value is None:
                continue
            if option in inspect.signature(model.generate).parameters:
                kwargs[option] = value
            else:
                print(f"{family.name}: --{option} does not apply ({why})")
        with sampling_progress(model, family.name, args.context, args.num_frames, args.num, kwargs), torch.no_grad():
            video = model.generate(context.to(args.device), args.num_frames, seed=args.seed, progress=False, **kwargs)
        predictions[family.name] = video.cpu()
    frames, _ = viz.truth_over_predictions(truth, predictions, context=args.context)
    viz.save_frames(frames, args.out, fps=args.fps, scale=args.scale)
    rows = ", ".join(["truth", *predictions])
    print(f"wrote {args.out}: {args.num} clips side by side; rows: {rows}. Frames 1-{args.context} are the true "
          f"context, frames {args.context + 1}-{args.context + args.num_frames} are predicted (red border).")
    return 0


@contextlib.contextmanager
def sampling_progress(model, name: str, num_context: int, num_frames: int, num_clips: int, generate_kwargs: dict):
    """A progress bar over the model's network evaluations while the block samples, with a time estimate.

    The estimate is printed after the first tenth of the evaluations (at least 2, at most 20): the rest
    are assumed to cost the median of those, the first left out, since it may cost more (the
    autoregressive model reads the whole context in its first pass, then one token per pass). It is a
    guide, not a promise: the hybrid's first evaluations denoise fewer frames than its later ones.
    """
    import statistics
    import time

    from tqdm.auto import tqdm

    count = getattr(model, "network_evaluations", None)
    total = count(num_context, num_frames, **generate_kwargs) if count is not None else None
    timed = min(max(total // 10, 2), 20) if total else None
    network = getattr(model, "transformer", model)  # the autoregressive sampler calls its transformer directly
    plan = (f"{total} network evaluations; the first {timed} are timed for an estimate" if total and total > timed else
            f"{total} network evaluations" if total else "network evaluations counted as they run")
    print(f"{name}: {num_clips} clip{'s' if num_clips != 1 else ''}, {num_context} context + {num_frames} new frames: {plan}")
    bar = tqdm(total=total, desc=name, unit="eval")
    times = []
    start = time.perf_counter()

    def before(module, inputs):
        times.append(time.perf_counter())

    def after(module, inputs, output):
        times[-1] = time.perf_counter() - times[-1]
        bar.update(1)
        if total and len(times) == timed < total:
            each = statistics.median(times[1:])
            left = each * (total - timed)
            bar.write(f"{name}: about {_duration(time.perf_counter() - start + left)} in all "
                      f"({each:.2f} s per evaluation), {_duration(left)} to go")

    handles = [network.register_forward_pre_hook(before), network.register_forward_hook(after)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        bar.close()
    print(f"{name}: done in {_duration(time.perf_counter() - start)}")


def _duration(seconds: float) -> str:
    """12.3 -> '12 s', 135 -> '2 min 15 s'."""
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 60 else f"{seconds // 60} min {seconds % 60:02d} s"


def _argv() -> list[str]:
    import sys

    return ["minivid", *sys.argv[1:]]
