"""Per-frame noise levels: the AR-diffusion constraint, the sampling grids, and their errors."""

import pytest
import torch

from minivid import schedules


def test_nondecreasing_timesteps_are_sorted_and_in_range():
    g = torch.Generator().manual_seed(0)
    t = schedules.nondecreasing_timesteps(64, 10, 1000, generator=g)
    assert t.shape == (64, 10) and t.dtype == torch.int64
    assert int(t.min()) >= 0 and int(t.max()) < 1000
    assert bool((t[:, 1:] >= t[:, :-1]).all())
    schedules.check_nondecreasing(t)  # passes without error


def test_independent_timesteps_are_not_sorted_and_seeded():
    t1 = schedules.independent_timesteps(64, 10, 1000, generator=torch.Generator().manual_seed(1))
    t2 = schedules.independent_timesteps(64, 10, 1000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(t1, t2)
    assert not bool((t1[:, 1:] >= t1[:, :-1]).all())  # 64 random rows of 10 are not all sorted
    # sorting the same draw gives exactly the non-decreasing version
    t3 = schedules.nondecreasing_timesteps(64, 10, 1000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(t1.sort(dim=1).values, t3)


@pytest.mark.parametrize("lag", [0, 1, 3, 5])
def test_pyramid_grid_shape_ends_and_monotonicity(lag):
    frames, steps = 6, 5
    grid = schedules.pyramid_grid(frames, steps, lag)
    assert grid.shape == (steps + lag * (frames - 1) + 1, frames)
    assert bool((grid[0] == steps).all()) and bool((grid[-1] == 0).all())
    assert bool((grid[1:] <= grid[:-1]).all())  # every frame only gets cleaner, one level at a time at most
    assert bool(((grid[:-1] - grid[1:]) <= 1).all())
    schedules.check_nondecreasing(grid)
    # every frame gets exactly `steps` denoising steps
    assert bool(((grid[:-1] - grid[1:]).sum(0) == steps).all())


def test_pyramid_grid_extremes():
    sync = schedules.pyramid_grid(4, 3, 0)  # full-sequence diffusion: all frames share one level
    assert bool((sync == sync[:, :1]).all())
    ar = schedules.pyramid_grid(3, 2, 2)  # fully autoregressive: a frame is clean before the next moves
    assert ar.tolist() == [[2, 2, 2], [1, 2, 2], [0, 2, 2], [0, 1, 2], [0, 0, 2], [0, 0, 1], [0, 0, 0]]


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="lag"):
        schedules.pyramid_grid(4, 3, -1)
    with pytest.raises(ValueError, match="num_frames"):
        schedules.pyramid_grid(0, 3, 1)
    with pytest.raises(ValueError, match="num_steps"):
        schedules.nondecreasing_timesteps(2, 3, 0)
    with pytest.raises(ValueError, match="row 0 has frame 1"):
        schedules.check_nondecreasing(torch.tensor([[3, 1, 2]]))
    with pytest.raises(ValueError, match="2-D"):
        schedules.check_nondecreasing(torch.tensor([1, 2, 3]))
