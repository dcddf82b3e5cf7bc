"""Copy the final diffusion export into minivid/weights/ with the whole recipe (every stage) in its manifest.

    python scripts/ship_diffusion.py runs/gpu1 runs/gpu2 [runs/gpu3 ...]

Each folder is one stage's $OUT from scripts/gpu_diffusion.sh (stage 1: image model, then video model)
or scripts/gpu_diffusion_continue.sh (later stages). The last stage's diffusion.pt is shipped as is,
so its SHA-256 stays valid.
"""

import json
import shutil
import sys
from pathlib import Path

from minivid import checkpoints

WEIGHTS = Path(__file__).resolve().parent.parent / "minivid" / "weights"


def main(stages):
    recipe, training = [], []
    for i, folder in enumerate(map(Path, stages), start=1):
        for name in ("image", "diffusion"):
            path = folder / f"{name}.json"
            if not path.exists():
                continue
            info = json.loads(path.read_text())
            command = info["recipe"].replace("/root/out/", f"runs/stage{i}/")
            for j in range(1, len(stages) + 1):
                command = command.replace(f"runs/gpu{j}/", f"runs/stage{j}/")
            recipe.append(command)
            training.append({"stage": i, "model": name, **info["metrics"]["training"]})
    final = json.loads((Path(stages[-1]) / "diffusion.json").read_text())
    gpu_seconds = sum(t["seconds"] for t in training)
    final["recipe"] = " && ".join(recipe)
    final["recipe_steps"] = recipe
    final["metrics"]["training"] = {"stages": training, "gpu_minutes": round(gpu_seconds / 60, 1),
                                    "gpu": training[-1].get("gpu"), "scripts": "scripts/gpu_diffusion.sh, then scripts/gpu_diffusion_continue.sh per later stage"}
    shutil.copyfile(Path(stages[-1]) / "diffusion.pt", WEIGHTS / "diffusion.pt")
    final["sha256"] = checkpoints.sha256(WEIGHTS / "diffusion.pt")
    checkpoints.write_json(final, WEIGHTS / "diffusion.json")
    print(json.dumps({k: v for k, v in final.items() if k != "metrics"}, indent=1))
    print("protocol:", {k: round(v, 3) for k, v in final["metrics"]["protocol"].items() if isinstance(v, float)})


if __name__ == "__main__":
    main(sys.argv[1:])
