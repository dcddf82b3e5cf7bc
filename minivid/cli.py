"""The `minivid` command: data samples, training, sampling and the method benchmark.

    minivid data --out samples.gif         render Moving MNIST samples and print the data set's facts
    minivid train diffusion --preset nano  train a model with the shared loop (minivid/train.py)
    minivid sample diffusion --out clip.gif   truth above prediction; several families give several rows
    minivid evaluate FILE                  score a weights export; the figures go into its manifest
    minivid recipe NAME                    the commands that trained a shipped model
    minivid bench                          the standard protocol for every pretrained method
    minivid course grade SUBMISSIONS --assignment NAME   grade a class's notebooks (see minivid/course.py)

Each model family registers itself in `minivid.families.FAMILIES`; this file knows none of them.
"""

from __future__ import annotations

import argparse
import sys


def _add_data(sub):
    p = sub.add_parser("data", help="render Moving MNIST samples to a GIF/MP4 and print the data set's facts")
    p.add_argument("--out", default="moving_mnist.gif", help="output file (.gif or .mp4)")
    p.add_argument("--num", type=int, default=8, help="how many clips to render side by side")
    p.add_argument("--set", dest="dataset", default="moving_mnist", help="which toy set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="train", choices=["train", "test"])
    p.add_argument("--num-frames", type=int, default=20)
    p.add_argument("--num-digits", type=int, default=2)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--fps", type=int, default=8)
    p.set_defaults(func=_run_data)


def _run_data(args):
    from minivid import datasets_cli

    return datasets_cli.run(args)


def _add_family_commands(sub):
    from minivid.families import FAMILIES

    names = sorted(FAMILIES)
    p = sub.add_parser("train", help=f"train a model family ({', '.join(names)}) with the shared training loop")
    p.add_argument("family", choices=names)
    p.add_argument("--preset", default=None, help="model size preset (see each model file's PRESETS)")
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps; 0 exports the model as built, with a predictor from --predictor-from")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder for checkpoints and previews (default runs/FAMILY)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the training step (default: on for CUDA, off on the CPU)")
    p.add_argument("--speed", default=None, type=_speed,
                   help="Moving MNIST speed: a number (0.1 is the standard) or a range LOW,HIGH drawn per clip")
    p.add_argument("--warmup", type=int, default=None, help="learning-rate warm-up steps (default 200)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and checkpoint) after this much wall time")
    p.add_argument("--minutes", type=float, default=None,
                   help="train for this many minutes instead of --steps: the step count is fixed from the measured "
                        "rate early on, so the learning-rate schedule completes; the export records it")
    p.add_argument("--init", default=None, help="family-specific initialisation: a checkpoint file to start from, "
                   "or pretrained:NAME for a shipped model (e.g. hybrid from pretrained:diffusion)")
    p.add_argument("--predictor-from", default=None, metavar="FILE",
                   help="diffusion, hybrid or autoregressive with a predictor only: take the predictor's weights from "
                        "this export (e.g. one trained alone with --set predictor_only=True, or a diffusion model's for "
                        "the hybrid or the token model's guide), the rest from --init; it may replace a predictor of "
                        "another shape (give the new shape's --set options; the token model takes it from FILE)")
    p.add_argument("--teacher", default=None, help="student only: the diffusion model to distil, a file or "
                   "pretrained:NAME (default pretrained:diffusion)")
    p.add_argument("--noise", default=None, choices=["nondecreasing", "independent"],
                   help="hybrid only: per-frame training noise, AR-Diffusion's (default) or Diffusion Forcing's")
    p.add_argument("--token-noise", type=float, default=None,
                   help="autoregressive only: each clip's input tokens are replaced by random ones at a rate drawn "
                        "from [0, this) in training, so the model learns to continue from imperfect tokens")
    p.add_argument("--own-tokens", type=float, default=None,
                   help="autoregressive only: each clip's input tokens are replaced by the model's own draws (given "
                        "the true past) at a rate drawn from [0, this) in training: parallel scheduled sampling")
    p.add_argument("--diagonal-lags", default=None, metavar="LAGS",
                   help="autoregressive only: also train on the order diagonal decoding draws tokens in at these lags "
                        "(each 1-64, rows in raster order: row_lag 8; e.g. 32,16,8), meant to narrow the gap between "
                        "diagonal and sequential decoding; a share --diagonal-rate of the steps does so")
    p.add_argument("--diagonal-rate", type=float, default=None,
                   help="autoregressive only: the share of training steps on a diagonal order (default 0.5)")
    p.add_argument("--set", action="append", default=None, metavar="NAME=VALUE",
                   help="diffusion, hybrid, dit and judge: change a field of the preset's Config, e.g. --set "
                        "spacetime=True (repeatable; continuing from weights without the new layers adds them at zero); "
                        "autoregressive: predictor=W only (a guide, with --predictor-from, which also gives the "
                        "predictor's predictor_hidden and predictor_blocks)")
    p.add_argument("--export", default=None, help="after training, write a shippable weights file here")
    p.set_defaults(func=_run_train)

    generators = [name for name in names if FAMILIES[name].generates]
    p = sub.add_parser("sample", help="predict test clips with pretrained (or given) models; truth above prediction, to a GIF/MP4")
    p.add_argument("family", nargs="+", choices=generators, help="one or more families, one row each under the truth")
    p.add_argument("--out", default="sample.gif")
    p.add_argument("--checkpoint", default=None, help="a run checkpoint or weights file (default: the shipped one)")
    p.add_argument("--context", type=int, default=10, help="context frames from the standard test set (0: unconditional)")
    p.add_argument("--num-frames", type=int, default=10, help="frames to generate")
    p.add_argument("--num", type=int, default=4, help="how many clips")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (family default if omitted)")
    p.add_argument("--start", type=float, default=None,
                   help="where diffusion and the hybrid start, a share of the schedule: 1 = pure noise, below 1 = the "
                        "predictor's guess noised that far (family default if omitted: from the guess, given context)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--fps", type=float, default=5, help="frames per second of the written video")
    p.add_argument("--scale", type=int, default=2, help="integer upscaling of the 64x64 frames (crisp pixels)")
    p.set_defaults(func=_run_sample)


def _speed(text: str):
    """'0.1' -> 0.1; '0.07,0.13' -> (0.07, 0.13)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or LOW,HIGH, got {text!r}") from None
    if len(values) not in (1, 2) or min(values) < 0 or values != sorted(values):
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or LOW,HIGH with 0 <= LOW <= HIGH, got {text!r}")
    return values[0] if len(values) == 1 else tuple(values)


def _run_train(args):
    from minivid.families import get_family

    return get_family(args.family).train_cli(args)


def _run_sample(args):
    from minivid.families import sample_cli

    return sample_cli(args)


def _add_bench(sub):
    p = sub.add_parser("bench", help="the standard protocol for every pretrained method; prints a table")
    p.add_argument("--num-clips", type=int, default=64, help="test clips (the table in docs/benchmarks.md uses 32; 256 is the full protocol)")
    p.add_argument("--methods", default=None, help="comma-separated subset of the pretrained methods")
    p.add_argument("--json", default=None, help="also write the table as JSON here")
    p.add_argument("--csv", default=None, help="also write the table as CSV here")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run_bench)


def _run_bench(args):
    from minivid import bench

    return bench.run_cli(args)


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="score a weights export on the standard protocol; the figures go into its manifest")
    p.add_argument("weights", help="an export written by `minivid train ... --export FILE`")
    p.add_argument("--clips", type=int, default=256, help="test clips (256 is the full protocol)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--kwargs", default="{}", help='JSON of generate() keywords, e.g. \'{"steps": 50}\'')
    p.add_argument("--name", default="protocol", help="the key the protocol's result is stored under (and speeds_NAME, samples_NAME beside it)")
    p.add_argument("--speeds", default="", help="also score these other speeds, e.g. 0.07,0.13 (the protocol's is 0.1)")
    p.add_argument("--samples", type=int, default=0, help="also score the mean and the best of this many samples per clip")
    p.add_argument("--schedules", action="store_true", help="hybrid: every inference schedule, and long rollouts")
    p.add_argument("--rollout-clips", type=int, default=32, help="with --schedules: clips rolled out to 60 frames")
    p.add_argument("--judge", default=None, help="dit: instead of the protocol, text faithfulness as this judge export "
                   "(or pretrained:judge) sees it, at each --guidance and without captions")
    p.add_argument("--guidance", default="0,1,3,5", help="with --judge: guidance scales, e.g. 0,1,3,5")
    p.set_defaults(func=_run_evaluate)

    p = sub.add_parser("recipe", help="the commands that trained a shipped model, in order, from its manifest")
    p.add_argument("name", help="a shipped model: diffusion, vqvae, autoregressive, hybrid, ...")
    p.set_defaults(func=_run_recipe)


def _run_evaluate(args):
    from minivid import evaluate

    return evaluate.run_cli(args)


def _run_recipe(args):
    from minivid import checkpoints

    info = checkpoints.manifest(args.name)
    steps = info.get("recipe_steps") or [info["recipe"]]
    training = info["metrics"].get("training", {})
    print(f"# {args.name}: {info['parameters']:,} parameters; run from the repository root, in order")
    if "gpu_minutes" in training:
        print(f"# {training['gpu_minutes']} GPU minutes in all on {', '.join(training.get('gpus', []))}")
    if info.get("recipe_note"):  # what a command's pretrained:NAME or path meant when it ran
        print(f"# {info['recipe_note']}")
    for i, command in enumerate(steps, start=1):
        print(f"{command}  # step {i}")
    return 0


def _add_course(sub):
    p = sub.add_parser("course", help="the course kit: generate exercises, check them, grade submissions")
    p.add_argument("action", choices=["generate", "check", "grade"])
    p.add_argument("submissions", nargs="?", default=None, help="grade: a folder with one submitted notebook per student")
    p.add_argument("--assignment", default=None, help="grade: the exercise name, e.g. 01_forward_process")
    p.add_argument("--solutions", default="solutions", help="the instructor notebooks")
    p.add_argument("--exercises", default="exercises", help="where the learner versions go")
    p.add_argument("--out", default="grades.csv", help="grade: the CSV of points")
    p.add_argument("--feedback", default="feedback", help="grade: a folder for one feedback file per student")
    p.add_argument("--timeout", type=float, default=60, help="grade: seconds allowed per cell and per question; past it the kernel is killed")
    p.set_defaults(func=_run_course)


def _run_course(args):
    from minivid import course

    return course.run_cli(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="minivid", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_data(sub)
    _add_family_commands(sub)
    _add_bench(sub)
    _add_evaluate(sub)
    _add_course(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = ["minivid", *(sys.argv[1:] if argv is None else argv)]  # recorded as the recipe of exports
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"minivid {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # python -m minivid.cli
    sys.exit(main())
