"""Protocol MSE against the clips each shipped model has seen, from the manifests alone.

    python scripts/plot_campaign.py --out docs/img/campaign.png

Clips seen = steps x whole-job batch, summed over the training stages of the model itself (the stages that trained
another network it was started from are not counted). The scored points are the manifest's `before_stage_N`
entries (the weights a block of stages continued) and `stages_N_to_M.mse_after_stage`.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

WEIGHTS = Path(__file__).resolve().parents[1] / "minivid" / "weights"


def stage_number(name) -> int | None:
    """'stage 7: speeds ...' -> 7; stages named otherwise (early rounds) -> None."""
    match = re.match(r"stage (\d+)", str(name))
    return int(match.group(1)) if match else None


def curve(family: str) -> list[tuple[float, float, str]]:
    """(clips seen, protocol MSE, label) for every scored point of a shipped model, in training order."""
    metrics = json.loads((WEIGHTS / f"{family}.json").read_text())["metrics"]
    clips_after, total = {}, 0  # stage number -> clips seen once it finished
    first_numbered = None
    for stage in metrics["training"]["stages"]:
        if stage.get("model") != family:
            continue
        number = stage_number(stage.get("stage"))
        if number is not None and first_numbered is None:
            first_numbered = total  # clips seen before the first numbered stage
        total += stage["steps"] * stage["batch_size"]
        if number is not None:
            clips_after[number] = total
    points = []
    for key in sorted(metrics, key=lambda k: [int(n) for n in re.findall(r"\d+", k)]):
        if key.startswith("before_stage_"):
            number = int(key.rsplit("_", 1)[1])
            clips = clips_after.get(number - 1, first_numbered)
            points.append((clips, metrics[key]["protocol"]["mse"], f"before stage {number}"))
        elif key.startswith("stages_"):
            for name, mse in metrics[key]["mse_after_stage"].items():
                points.append((clips_after[stage_number(name)], mse, name))
    unique = {}
    for clips, mse, label in points:  # a 'before' point repeats the last stage of the block before it
        unique.setdefault(clips, (clips, mse, label))
    return sorted(unique.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img/campaign.png")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    colours = {}
    for family in ("diffusion", "autoregressive", "hybrid"):
        points = curve(family)
        xs, ys = [p[0] / 1e6 for p in points], [p[1] for p in points]
        colours[family] = ax.plot(xs, ys, "o-", label=family)[0].get_color()
        print(family, ", ".join(f"{label}: {clips / 1e6:.2f} M clips, MSE {mse:.1f}" for clips, mse, label in points))
    for target, label, colour in ((45, "target (diffusion, hybrid)", "grey"), (60, "target (autoregressive)", colours["autoregressive"])):
        ax.axhline(target, color=colour, ls="--", lw=1, alpha=0.7)
        ax.text(0.99, target, label, ha="right", va="bottom", color=colour, fontsize=8, transform=ax.get_yaxis_transform())
    ax.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value:g}")
    ax.xaxis.set_major_formatter(plain)
    # label the minor ticks at 2, 3, 5 of each decade only: all of them crowd together below 1 M
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
        lambda value, _: f"{value:g}" if f"{value:.1e}"[0] in "235" else ""))
    ax.set_xlabel("clips seen (millions, log scale)")
    ax.set_ylabel("protocol MSE (256 clips)")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
