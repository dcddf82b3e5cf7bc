"""Ship the exports of GPU training rounds (scripts/gpu_round.sh) with the whole recipe in each manifest.

    python scripts/ship_round.py runs/round1 runs/round2 runs/round3

For diffusion and autoregressive, the rounds continue the weights shipped before them, so the recipe is the
earlier one followed by each round's `minivid train` command. The hybrid starts from those earlier diffusion
weights. A `pretrained:NAME` in round 1's commands is rewritten to the file the earlier recipe exports, so the
recipe stays valid after the shipped file changes. The last round's files are copied as they are, so their
SHA-256 stays valid; its scores (written by the evaluation scripts in the same round) are kept.
"""

import json
import re
import shutil
import sys
from pathlib import Path

from minivid import checkpoints

WEIGHTS = Path(__file__).resolve().parent.parent / "minivid" / "weights"
DRIVER = "OUT=runs/round{i} {settings} bash scripts/gpu_round.sh  (runs the round's commands below, four GPUs side by side)"


def earlier(name: str) -> tuple[list[str], list[dict], str]:
    """The recipe steps, training stages and final export path of the weights shipped before the rounds."""
    info = json.loads((WEIGHTS / f"{name}.json").read_text())
    steps = info.get("recipe_steps") or [info["recipe"]]
    training = info["metrics"]["training"]
    stages = training["stages"] if "stages" in training else [dict(training, stage="1", model=name)]
    exports = [m.group(1) for s in steps for m in [re.search(r"--export (\S+)", s)] if m and f"/{name}.pt" in m.group(1)]
    return steps, stages, exports[-1]


def chain(name: str, rounds: list[Path], settings: list[str], base: tuple[list[str], list[dict], str]) -> dict:
    """The last round's manifest of `name`, with the recipe and training stages of every round before it."""
    steps, stages, start = base
    steps, stages = list(steps), list(stages)
    gpu_seconds = sum(s["seconds"] for s in stages if s.get("device") == "cuda")
    for i, folder in enumerate(rounds, start=1):
        info = json.loads((folder / f"{name}.json").read_text())
        command = re.sub(r"--init pretrained:\w+", f"--init {start}", info["recipe"])
        steps += [DRIVER.format(i=i, settings=settings[i - 1]), command]
        training = info["metrics"]["training"]
        stages.append({"stage": f"round {i}", "model": name, **training})
        gpu_seconds += training["seconds"]
        start = f"{folder.as_posix()}/{name}.pt"
    final = json.loads((rounds[-1] / f"{name}.json").read_text())
    final["recipe"] = " && ".join(s for s in steps if s.startswith("minivid "))
    final["recipe_steps"] = steps
    final["metrics"]["training"] = {
        "stages": stages, "gpu_minutes": round(gpu_seconds / 60, 1),
        "gpus": list(dict.fromkeys(s["gpu"] for s in stages if s.get("gpu"))),  # in training order
        "scripts": "the earlier stages' scripts (see recipe_steps), then scripts/gpu_round.sh per round",
    }
    return final


def ship(final: dict, source: Path):
    """Copy the export `source` to minivid/weights/ under the manifest's family name, with the manifest."""
    name = final["family"]
    final["file"] = f"{name}.pt"
    shutil.copyfile(source, WEIGHTS / f"{name}.pt")
    final["sha256"] = checkpoints.sha256(WEIGHTS / f"{name}.pt")
    checkpoints.write_json(final, WEIGHTS / f"{name}.json")


def main(folders):
    rounds = [Path(f) for f in folders]
    settings = [json.loads((f / "round.json").read_text())["settings"] for f in rounds]
    diffusion_before, ar_before = earlier("diffusion"), earlier("autoregressive")
    shipped = {"diffusion": chain("diffusion", rounds, settings, diffusion_before),
               "autoregressive": chain("autoregressive", rounds, settings, ar_before),
               "hybrid": chain("hybrid", rounds, settings, diffusion_before)}
    twin_recipe = chain("hybrid_df", rounds, settings, diffusion_before)["recipe_steps"]
    for row in shipped["hybrid"]["metrics"].get("training_noise", []):  # the recipes of both sides of the comparison
        row["recipe"] = shipped["hybrid"]["recipe_steps"] if row["noise"] == "nondecreasing" else twin_recipe
    for name, final in shipped.items():
        ship(final, rounds[-1] / f"{name}.pt")
        protocol = final["metrics"].get("protocol") or min(final["metrics"]["schedules"], key=lambda r: r["mse"])
        print(final["file"], final["metrics"]["training"]["gpu_minutes"], "GPU min;",
              {k: round(protocol[k], 3) for k in ("mse", "ssim", "psnr")})


if __name__ == "__main__":
    main(sys.argv[1:])
