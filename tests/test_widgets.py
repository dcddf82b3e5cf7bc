"""Widget logic, driven in Python as a user's clicks and slider moves would."""

import pytest
import torch

from minivid import video_diffusion
from minivid.widgets import DenoiseExplorer, DenoiseState


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return video_diffusion.Model(video_diffusion.PRESETS["nano"])


def test_state_caches_trajectories(model):
    state = DenoiseState(model, num_clips=2)
    state.update(steps=3)
    trace = state.sample()
    assert len(trace) == 4 and state.runs == 1  # 3 steps + the final sample
    strip = state.strip(0)
    assert strip.shape == (64 * 2 + 4, 10 * 64 + 9 * 2)  # x_t row + gap + x0 row, 10 frames side by side
    assert state.timestep(0) == 999 and state.timestep(3) == -1
    state.update(steps=2)
    state.sample()
    state.update(steps=3)
    state.sample()
    assert state.runs == 2  # going back to 3 steps came from the cache
    with pytest.raises(ValueError, match="expected one of"):
        state.update(sampler="euler")
    with pytest.raises(ValueError, match="step must be"):
        state.strip(9)


def test_explorer_callbacks_drive_the_images(model):
    ex = DenoiseExplorer(model, num_clips=2)
    assert bytes(ex.image.value) == b""  # nothing sampled yet
    ex.steps.value = 2
    ex.run.click()
    assert ex.position.max == 2 and ex.state.runs == 1
    first = ex.image.value
    ex.position.value = 2
    assert ex.image.value != first and bytes(ex.schedule.value).startswith(b"\x89PNG")
    ex.clip.value = 1  # a new clip needs a new run
    assert "press Sample" in ex.status.value
    ex.clip.value = 0  # back to the cached one: shown at once, no new run
    assert ex.state.runs == 1 and ex.position.value == 0


# -- the token rollout viewer ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ar_model():
    from minivid import autoregressive

    torch.manual_seed(0)
    return autoregressive.Model(autoregressive.PRESETS["tiny"]).eval()


def test_token_state_positions_order_and_frames(ar_model):
    from minivid.widgets import TokenRolloutState

    state = TokenRolloutState(ar_model, num_clips=2, num_frames=2)
    state.sample()
    assert state.num_positions() == 2 * 64 and state.runs == 1  # token by token: 64 steps a frame
    frame, grid = state.grid_at(70)
    assert frame == 1 and (grid >= 0).sum() == 70 - 64 + 1  # the 7th token of the second frame was just drawn
    assert torch.equal(state.order(0).flatten(), torch.arange(64))  # raster order
    frames = state.frames_at(10)
    assert frames.shape == (2, 1, 64, 64) and frames[1].abs().sum() == 0  # the second frame not started yet
    assert state.strip(0).shape == (64, 3 * 64 + 2 * 2)
    assert bytes(state.panels_png(5, heatmap="prob")).startswith(b"\x89PNG")
    state.update(decoding="parallel", iterations=3)
    state.sample()
    assert state.runs == 2 and state.num_positions() <= 2 * 3
    assert int(state.order(0).max()) < len(state.sample()["trace"]["steps"][0])
    with pytest.raises(ValueError, match="temperature"):
        state.update(temperature=0)
    with pytest.raises(ValueError, match="position must be"):
        state.grid_at(999)


def test_token_widget_callbacks(ar_model):
    from minivid.widgets import TokenRollout

    ex = TokenRollout(ar_model, num_clips=2, num_frames=1)
    ex.run.click()
    assert ex.position.max == 63 and ex.state.runs == 1
    first = bytes(ex.panels.value)
    ex.position.value = 63
    assert bytes(ex.panels.value) != first and bytes(ex.frames.value).startswith(b"\x89PNG")
    ex.seed.value = 1
    assert "press Sample" in ex.status.value
    ex.seed.value = 0  # cached
    assert ex.state.runs == 1 and ex.position.value == 0
