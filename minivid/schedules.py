"""Per-frame noise levels for AR-diffusion style video models, as small pure functions.

Training draws one timestep per frame:

* `nondecreasing_timesteps`: AR-Diffusion's constraint (Sun et al. 2025): later frames are at least
  as noisy as earlier ones, t_1 <= t_2 <= ... <= t_F. Here: sorted independent uniform draws.
* `independent_timesteps`: Diffusion Forcing (Chen et al. 2024): every frame its own level.

Sampling follows a grid of noise levels, one row per denoising iteration and one column per frame,
counted in sampler steps (`steps` = pure noise, 0 = clean):

* `pyramid_grid(num_frames, steps, lag)`: frame f starts `lag` iterations after frame f - 1.
  lag = 0 is synchronous (full-sequence diffusion: all frames at one level), lag = steps is fully
  autoregressive (each frame clean before the next starts), in between a diagonal "pyramid".
"""

from __future__ import annotations

import torch


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def nondecreasing_timesteps(batch: int, num_frames: int, num_steps: int, generator: torch.Generator | None = None,
                            device=None) -> torch.Tensor:
    """(batch, num_frames) integer timesteps in [0, num_steps), non-decreasing along frames."""
    t = independent_timesteps(batch, num_frames, num_steps, generator, device)
    return t.sort(dim=1).values


def independent_timesteps(batch: int, num_frames: int, num_steps: int, generator: torch.Generator | None = None,
                          device=None) -> torch.Tensor:
    """(batch, num_frames) integer timesteps in [0, num_steps), each frame drawn on its own."""
    shape = (_positive_int("batch", batch), _positive_int("num_frames", num_frames))
    return torch.randint(0, _positive_int("num_steps", num_steps), shape, generator=generator, device=device)


def pyramid_grid(num_frames: int, steps: int, lag: int) -> torch.Tensor:
    """(iterations + 1, num_frames) noise levels in sampler steps: row 0 all `steps` (noise), last row all 0.

    Row s holds every frame's level after s iterations: frame f has had max(0, s - f * lag) steps.
    """
    num_frames, steps = _positive_int("num_frames", num_frames), _positive_int("steps", steps)
    if isinstance(lag, bool) or int(lag) != lag or lag < 0:
        raise ValueError(f"lag must be an integer >= 0, got {lag!r}")
    iterations = steps + lag * (num_frames - 1)
    s = torch.arange(iterations + 1)[:, None]  # (rows, 1)
    f = torch.arange(num_frames)[None, :]  # (1, frames)
    return (steps - (s - f * lag)).clamp(0, steps)


def check_nondecreasing(grid: torch.Tensor) -> torch.Tensor:
    """Raise a clear error unless every row of a noise-level grid is non-decreasing along frames."""
    if not isinstance(grid, torch.Tensor) or grid.ndim != 2:
        raise ValueError(f"a schedule grid must be a 2-D tensor (iterations, frames), got {getattr(grid, 'shape', type(grid))}")
    bad = (grid[:, 1:] < grid[:, :-1]).nonzero()
    if len(bad):
        row, frame = bad[0].tolist()
        raise ValueError(f"the grid is not non-decreasing along frames: row {row} has frame {frame + 1} at level "
                         f"{int(grid[row, frame + 1])} below frame {frame} at {int(grid[row, frame])}")
    return grid
