"""Does a video diffusion network use its context frames? Its clean-frame guess with and without them.

    python scripts/probe_context.py pretrained:diffusion
    python scripts/probe_context.py runs/dit.pt --clips 64 --timesteps 300,600,900,999

For each noise level t, the protocol's test clips are noised at t (all frames, one shared noise draw), and the
network predicts the clean future frames twice: once given the 10 context frames (masked conditioning, as in
training) and once with the context mask cleared, as in its unconditional training. The script prints the MSE
of both predictions against the true future frames (summed over a frame's pixels in [0, 1], as the protocol
does) and their ratio. A network that uses its context guesses much better with it (ratio well above 1 at high
noise, where the noisy frames alone say little); a ratio near 1 means the context is ignored.

Works for the families whose network takes (x_t, t, cond, cond_mask): diffusion and dit (which also gets no
caption here, so the context is all it has).
"""

from __future__ import annotations

import argparse

import torch

from minivid import checkpoints, data, diffusion


@torch.no_grad()
def probe(model, clips: torch.Tensor, timesteps: list[int], context: int = 10, seed: int = 0) -> list[dict]:
    """[{t, mse_with, mse_without, ratio}] for clips (b, T, 1, 64, 64) in [0, 1]."""
    for name in ("alpha_bar", "config"):
        if not hasattr(model, name):
            raise ValueError(f"probe_context needs a diffusion-style model with `{name}`; got {type(model).__name__}")
    device = model.alpha_bar.device
    frames = model.config.num_frames
    x0 = diffusion.to_model_range(clips[:, :frames].to(device))
    b, t_total = x0.shape[:2]
    if not 0 < context < t_total:
        raise ValueError(f"context must be between 1 and {t_total - 1} frames, got {context}")
    given = torch.zeros(b, t_total, device=device)
    given[:, :context] = 1
    generator = torch.Generator(device).manual_seed(seed)
    eps = torch.randn(x0.shape, generator=generator, device=device)
    rows = []
    for level in timesteps:
        t = torch.full((b,), int(level), device=device)
        x_t = diffusion.q_sample(x0, t, eps, model.alpha_bar)
        errors = {}
        for label, mask in (("with", given), ("without", torch.zeros_like(given))):
            out = model(x_t, t, cond=x0, cond_mask=mask)
            guess, _ = diffusion.x0_eps_from(model.config.prediction, out.float(), x_t, t, model.alpha_bar)
            future = (diffusion.from_model_range(guess[:, context:]) - diffusion.from_model_range(x0[:, context:])) ** 2
            errors[label] = future.sum(dim=(2, 3, 4)).mean().item()  # summed over pixels, mean over frames and clips
        rows.append({"t": int(level), "mse_with": errors["with"], "mse_without": errors["without"],
                     "ratio": errors["without"] / max(errors["with"], 1e-12)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="an export file or pretrained:NAME")
    parser.add_argument("--clips", type=int, default=32, help="protocol test clips (the first N)")
    parser.add_argument("--timesteps", default="100,300,600,900,999", help="noise levels, comma-separated")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    model = checkpoints.resolve(args.weights).to(args.device).eval()
    clips = data.standard_test_set(args.clips)
    levels = [int(x) for x in args.timesteps.split(",")]
    print(f"{args.weights}: x0 guess of the 10 future frames, {args.clips} protocol clips")
    print(f"{'t':>5s} {'MSE with context':>17s} {'without':>9s} {'ratio':>6s}")
    for row in probe(model, clips, levels):
        print(f"{row['t']:5d} {row['mse_with']:17.1f} {row['mse_without']:9.1f} {row['ratio']:6.2f}")


if __name__ == "__main__":
    main()
