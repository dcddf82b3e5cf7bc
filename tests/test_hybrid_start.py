"""The hybrid from its predictor's guess: `generate(..., start=s)` starts every new frame at the guess noised to a
share s of the schedule, the grid capped there. The capped grids, the default, the counts and the errors."""

import pytest
import torch

from minivid import bench, data, evaluate, hybrid, schedules


@pytest.fixture(scope="module")
def model():
    base = dict(hybrid.PRESETS["nano"].__dict__)
    base.update(num_frames=6, max_context=3, predictor=8)
    torch.manual_seed(0)
    m = hybrid.Model(hybrid.Config(**base)).eval()
    for p in m.parameters():  # zero-initialised layers (the guess channel's stem weights) would hide the guess
        torch.nn.init.normal_(p, std=0.05)
    return m


def test_a_capped_grid_starts_every_frame_at_the_cap_and_keeps_the_order():
    grid = schedules.pyramid_grid(4, 10, 2)
    assert torch.equal(hybrid.cap_grid(grid, None), grid)
    capped = hybrid.cap_grid(grid, 3)
    assert bool((capped[0] == 3).all()) and bool((capped[-1] == 0).all()) and int(capped.max()) == 3
    schedules.check_nondecreasing(capped)
    assert bool((capped[1:] <= capped[:-1]).all()) and bool((capped[1:] != capped[:-1]).any(dim=1).all())  # every row moves
    assert len(capped) - 1 == 3 + 2 * 3  # each frame's 3 steps, frames 2 rows apart: steps + lag × (frames − 1)
    assert len(hybrid.cap_grid(schedules.pyramid_grid(4, 10, 0), 3)) - 1 == 3  # synchronous: 3 rows


def test_start_levels_follow_the_samplers_timesteps(model):
    assert model.start_level(1.0, 10) is None
    assert model.start_level(0.5, 10) == 5  # 444, 333, 222, 111, 0 lie at or below 500
    assert model.start_level(0.3, 10) == 3 and model.start_level(0.05, 10) == 1
    for bad in (0, -0.1, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match=r"start must be in \(0, 1\]"):
            model.start_level(bad, 10)
    plain = hybrid.Model(hybrid.Config(**{**hybrid.PRESETS["nano"].__dict__, "num_frames": 6, "max_context": 3}))
    with pytest.raises(ValueError, match="this hybrid has no predictor"):
        plain.generate(data.standard_test_set(1)[:, :3], 2, steps=4, start=0.5, progress=False)
    assert plain.default_start(3, 10) == 1.0


def test_the_default_starts_from_the_guess_given_context_and_from_noise_otherwise(model):
    assert model.default_start(3, 10) == hybrid.START_FROM_GUESS < 1
    assert model.default_start(0, 10) == 1.0  # nothing to guess from
    assert model.default_start(3, 2) == 1.0 and model.default_start(3, 1) == 1.0  # one level below 0.5: the guess back
    assert model.default_start(3, 4) == hybrid.START_FROM_GUESS  # 333 and 0 lie below 500
    context = data.standard_test_set(2)[:, :3]
    default = model.generate(context, 3, seed=1, steps=10, progress=False)
    assert torch.equal(default, model.generate(context, 3, seed=1, steps=10, start=hybrid.START_FROM_GUESS, progress=False))
    assert not torch.equal(default, model.generate(context, 3, seed=1, steps=10, start=1.0, progress=False))
    # `minivid evaluate --schedules` compares the grids alone: every row from pure noise
    assert all(kwargs["start"] == 1.0 for _, kwargs in evaluate.HYBRID_SCHEDULES)


def test_a_low_start_stays_near_the_guess_and_costs_fewer_evaluations(model):
    context = data.standard_test_set(2)[:, :3]
    guess = model.predict_mean(context, 3)
    window = torch.cat([context * 2 - 1, torch.zeros(2, 3, 1, 64, 64)], dim=1)  # the guess is the predictor's, as given
    assert torch.equal(guess, ((model.guess(window, (torch.arange(6) < 3).expand(2, 6))[:, 3:] + 1) / 2).clamp(0, 1))
    near = model.generate(context, 3, seed=0, steps=20, start=0.03, progress=False)  # only the last level, from t = 0
    far = model.generate(context, 3, seed=0, steps=20, start=1.0, progress=False)
    assert near.shape == far.shape == (2, 3, 1, 64, 64)
    assert (far - guess).abs().mean() > 5 * (near - guess).abs().mean()
    with pytest.raises(ValueError, match=r"num_frames must fit the window: 3 context \+ 4 > 6 frames"):
        model.predict_mean(context, 4)
    for start in (1.0, 0.5, 0.3):
        with bench.counting_calls(model) as calls, torch.no_grad():
            _, trace = model.generate(context, 5, seed=0, steps=10, start=start, progress=False, return_trace=True)
        assert model.network_evaluations(3, 5, steps=10, start=start) == len(calls)
        top = model.start_level(start, 10) or 10
        assert all(int(chunk["grid"].max()) == top for chunk in trace)  # every window starts at the cap
    assert model.network_evaluations(3, 3, steps=10, start=0.3) < model.network_evaluations(3, 3, steps=10, start=1.0)


def test_each_window_decides_its_own_start(model):
    # from nothing, the first window (6 frames) has no context: pure noise; the next has 3 of its frames: its guess
    with torch.no_grad():
        _, trace = model.generate(torch.zeros(1, 0, 1, 64, 64), 8, seed=0, steps=10, progress=False, return_trace=True)
    assert [chunk["start_level"] for chunk in trace] == [None, model.start_level(hybrid.START_FROM_GUESS, 10)]
    with bench.counting_calls(model) as calls, torch.no_grad():
        model.generate(torch.zeros(1, 0, 1, 64, 64), 8, seed=0, steps=10, progress=False)
    assert model.network_evaluations(0, 8, steps=10) == len(calls)
    # context noise and a grid of your own combine with a start: the grid is capped, the context noised
    context = data.standard_test_set(1)[:, :3]
    grid = schedules.pyramid_grid(3, 4, 1)
    with torch.no_grad():
        video, trace = model.generate(context, 3, seed=0, steps=4, schedule=grid, start=0.5, context_noise=50,
                                      progress=False, return_trace=True)
    assert video.shape == (1, 3, 1, 64, 64) and int(trace[0]["grid"].max()) == model.start_level(0.5, 4) == 2
    assert not torch.equal(video, model.generate(context, 3, seed=0, steps=4, schedule=grid, start=0.5, progress=False))
    with pytest.raises(ValueError, match="needs a schedule with a step at or below"):
        model.generate(context, 2, steps=1, start=0.5, progress=False)
