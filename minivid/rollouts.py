"""Long rollouts: roll any generator far past its training length and watch the errors accumulate.

Every generator answers `generate(context, num_frames, ...)`, so one loop serves them all: predict a
chunk of frames from the last `context` frames, append it, and repeat, feeding the model its own
output. The truth to compare against is the same test clip, generated for as long as needed (a
Moving MNIST clip is a pure function of (seed, index), and its first 20 frames are the protocol's).

Two measures per future frame:

* `mse`: squared error against the true frame, as in the protocol;
* `ink_ratio`: the generated frame's total brightness over the true frame's. A model that keeps the
  digits has a ratio near 1; digits that fade or dissolve into blur push it below 1, smearing and
  ghost strokes above. It measures whether the content survives, even where positions have drifted
  and the MSE has saturated.
"""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from minivid import metrics


def true_clip(index: int, num_frames: int) -> torch.Tensor:
    """Test clip `index` of the standard set, `num_frames` long: (1, num_frames, 1, 64, 64)."""
    if isinstance(index, bool) or int(index) != index or index < 0:
        raise ValueError(f"clip index must be an integer >= 0, got {index!r}")
    if int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    return metrics.test_clips(int(index) + 1, int(num_frames))[int(index):]


def rollout(model, context: torch.Tensor, horizon: int, chunk: int = 10, seed: int = 0, progress: bool = False,
            **generate_kwargs) -> torch.Tensor:
    """`horizon` frames after `context` (b, t0, c, h, w), `chunk` at a time, each chunk conditioned on the
    last t0 frames (true ones first, then the model's own). Chunk k is drawn with seed `seed + k`.

    model: anything with `generate(context, num_frames, seed=...)`, or such a function itself."""
    metrics.validate_video(context, "context", channels=1, size=64)
    if isinstance(horizon, bool) or int(horizon) != horizon or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    if isinstance(chunk, bool) or int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    generate = metrics.as_generate(model, generate_kwargs)  # a model, or a plain function like copy_last_frame
    keep = context.shape[1]
    frames, done, k = context, 0, 0
    out = []
    with tqdm(total=int(horizon), desc="rollout", disable=not progress, leave=False) as bar:
        while done < horizon:
            n = min(int(chunk), int(horizon) - done)
            new = generate(frames[:, frames.shape[1] - keep:], n, seed + k)
            out.append(new.to(context.device))
            frames = torch.cat([frames, out[-1]], dim=1)
            done, k = done + n, k + 1
            bar.update(n)
    return torch.cat(out, dim=1)


def ink_ratio(pred: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """(b, t): total brightness of each predicted frame over the true frame's (pixels in [0, 1])."""
    pred, target = metrics.validate_video(pred, "pred"), metrics.validate_video(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must have the same shape")
    return pred.sum(dim=(2, 3, 4)) / (target.sum(dim=(2, 3, 4)) + eps)


def accumulation(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-frame curves for one rollout: {'mse': (t,), 'ink_ratio': (t,)}, averaged over the batch."""
    return {"mse": metrics.mse_per_frame(pred, target).mean(0), "ink_ratio": ink_ratio(pred, target).mean(0)}
