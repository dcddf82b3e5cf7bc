"""The model families minivid knows, so the CLI, `pretrained()` and the benchmark treat them alike.

A family names the module that holds its model. That module defines:

    Config             a frozen dataclass; the model's whole description
    Model              an nn.Module built as Model(Config(...)); it answers
                       loss(batch) -> scalar  and  generate(context, num_frames, seed=0, ...)
    PRESETS            {name: Config} with parameter counts in comments (minGPT model types)

and may define, to take over a step the generic version below does differently:

    make_batch(step, batch_size, seed, device) -> batch      (default: Moving MNIST clips)
    build(preset, args) -> Model                             (default: Model(PRESETS[preset]))
    train_cli(args) / sample_cli(args)                       (default: the functions below)

Families are imported lazily, so `minivid --help` stays fast.
"""

from __future__ import annotations

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

    def sample_cli(self, args):
        mod = self.load()
        if hasattr(mod, "sample_cli"):
            return mod.sample_cli(args)
        return default_sample_cli(self, args)


FAMILIES: dict[str, Family] = {
    "diffusion": Family("diffusion", "minivid.video_diffusion", "small", 6_000, 64, 3e-4),
    "image": Family("image", "minivid.image_diffusion", "small", 2_000, 256, 5e-4),
    "vqvae": Family("vqvae", "minivid.models.vqvae", "small", 3_000, 256, 1e-3),
    "autoregressive": Family("autoregressive", "minivid.autoregressive", "small", 6_000, 32, 5e-4),
    "hybrid": Family("hybrid", "minivid.hybrid", "small", 6_000, 64, 3e-4),
}


def with_overrides(config, args):
    """`config` with the `--set NAME=VALUE` fields of `args` replaced (values read as Python literals)."""
    import ast
    import dataclasses

    pairs = getattr(args, "set", None) or []
    names = {f.name: f for f in dataclasses.fields(config)}
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
        if isinstance(old, bool) != isinstance(value, bool) or not isinstance(value, type(old) if not isinstance(old, float) else (int, float)):
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
    model = family.build(preset, args)
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


def default_sample_cli(family: Family, args) -> int:
    """`minivid sample FAMILY`: context from the standard test set, generated frames to a GIF/MP4."""
    import torch

    from minivid import checkpoints, data, viz

    model = checkpoints.load(args.checkpoint, family=family.name) if args.checkpoint else checkpoints.pretrained(family.name)
    model = model.to(args.device).eval()
    clips = data.standard_test_set(args.num)
    context = clips[:, : args.context]
    kwargs = {} if args.steps is None else {"steps": args.steps}
    with torch.no_grad():
        video = model.generate(context.to(args.device), args.num_frames, seed=args.seed, progress=True, **kwargs)
    viz.save_video(torch.cat([context, video.cpu()], dim=1), args.out)
    print(f"wrote {args.out}: {args.num} clips, {args.context} context + {args.num_frames} generated frames")
    return 0


def _argv() -> list[str]:
    import sys

    return ["minivid", *sys.argv[1:]]
