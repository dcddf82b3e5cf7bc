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
caption here, so the context is all it has). The measurement is `minivid.diffusion.context_probe`; notebook 02
shows it on the shipped model.
"""

from __future__ import annotations

import argparse

from minivid import checkpoints, data
from minivid.diffusion import context_probe


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
    for row in context_probe(model, clips, levels):
        print(f"{row['t']:5d} {row['mse_with']:17.1f} {row['mse_without']:9.1f} {row['ratio']:6.2f}")


if __name__ == "__main__":
    main()
