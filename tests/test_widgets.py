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
    assert state.timestep(0) == 999 and state.timestep(3) is None  # after the last step: the clean sample
    assert state.step_label(0) == "step 1/4: t = 999" and state.step_label(3) == "step 4/4: clean sample"
    assert state.context_strip().shape == (64, 10 * 64 + 9 * 2)  # the given frames at the same scale as the strip
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
    ex = DenoiseExplorer(model, num_clips=2, zoom=2)
    assert bytes(ex.image.value) == b"" and ex.results.layout.display == "none"  # nothing sampled: no empty image shown
    assert ex.context_image.layout.width == f"{2 * 658}px"  # the given frames, shown before any run
    ex.steps.value = 2
    ex.run.click()
    assert ex.position.max == 2 and ex.state.runs == 1 and ex.results.layout.display is None
    assert ex.position.value == 2 and "clean sample" in ex.step_label.value  # opens on the finished sample
    assert (ex.image.layout.width, ex.image.layout.height) == (f"{2 * 658}px", f"{2 * 132}px")  # integer zoom, no stretch
    assert "minivid-pixels" in ex.image._dom_classes and "t = " not in ex.step_label.value
    last = ex.image.value
    ex.position.value = 0
    assert ex.image.value != last and "t = 999" in ex.step_label.value and bytes(ex.schedule.value).startswith(b"\x89PNG")
    ex.clip.value = 1  # a new clip needs a new run: the old pictures are greyed, the context is the new clip's
    assert "press Sample" in ex.status.value and ex.is_stale()
    ex.clip.value = 0  # back to the cached one: shown at once, no new run
    assert ex.state.runs == 1 and not ex.is_stale() and ex.position.value == 2
    assert bytes(ex.preview().data).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="zoom must be a positive integer"):
        DenoiseExplorer(model, zoom=1.5)


def test_preview_stacks_the_pictures_at_their_size():
    from minivid.widgets import view

    strip = view.png_bytes(torch.zeros(10, 30, dtype=torch.uint8).numpy(), zoom=3)
    assert view.png_size(strip) == (90, 30)
    stacked = view.stack_pngs([("caption", strip), ("", strip)], title="a title")
    width, height = view.png_size(stacked)
    assert width >= 90 and height >= 2 * 30 + 18  # both pictures and the caption line
    with pytest.raises(ValueError, match="not a PNG"):
        view.png_size(b"GIF89a")


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
    assert state.step_label(70) == "frame 2/2, token 7/64"
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
    assert ex.iterations.disabled  # only parallel decoding iterates
    ex.run.click()
    assert ex.position.max == 63 and ex.position.value == 63 and ex.state.runs == 1  # opens on the finished rollout
    assert ex.step_label.value == "frame 1/1, token 64/64"
    assert ex.frames.layout.width == f"{2 * (2 * 64 + 2)}px"  # last context frame + 1 generated, zoom 2
    last = bytes(ex.panels.value)
    ex.position.value = 0
    assert bytes(ex.panels.value) != last and bytes(ex.frames.value).startswith(b"\x89PNG")
    ex.seed.value = 1
    assert "press Sample" in ex.status.value and ex.is_stale()
    ex.seed.value = 0  # cached
    assert ex.state.runs == 1 and ex.position.value == 63 and not ex.is_stale()
    ex.decoding.value = "parallel"
    assert not ex.iterations.disabled
    assert ex.lag.disabled  # only diagonal decoding has a lag
    ex.decoding.value = "diagonal"
    assert ex.iterations.disabled and not ex.lag.disabled and ex.is_stale()
    assert "press Sample" in ex.status.value


def test_token_state_diagonal_overlaps_frames(ar_model):
    from minivid.widgets import TokenRolloutState

    state = TokenRolloutState(ar_model, num_clips=2, num_frames=2)
    sequential = state.sample()
    state.update(decoding="diagonal", lag=16)
    diagonal = state.sample()
    assert state.runs == 2 and state.key()[-1] == ("lag", 16)
    # one pass reads the context, then one per step: frame 2 starts 16 steps after frame 1, which takes 64
    assert state.num_positions() == 16 + 64 and diagonal["passes"] == 1 + 16 + 64
    assert diagonal["passes"] < sequential["passes"] == 1 + 2 * 64
    assert diagonal["passes"] == ar_model.network_evaluations(10, 2, decoding="diagonal", lag=16)
    assert "81 network passes" in state.passes_label() and "lag 16" in state.passes_label()
    # frame 1 never sees frame 2 (a later position): with the same seed it is token by token's frame 1
    assert torch.equal(diagonal["trace"]["tokens"][0, 0], sequential["trace"]["tokens"][0, 0])

    # step 41: frame 1 draws its 41st token and frame 2 its 25th, in the same network pass
    assert state.active(15) == [0] and state.active(40) == [0, 1] and state.active(64) == [1]
    assert state.step_label(40) == "step 41/80: frame 1/2, token 41/64 and frame 2/2, token 25/64"
    (f1, g1), (f2, g2) = state.grid_at(40, 0), state.grid_at(40, 1)
    assert (f1, f2) == (0, 1) and int((g1 >= 0).sum()) == 41 and int((g2 >= 0).sum()) == 25  # both partly drawn
    assert state.grid_at(40)[0] == 1  # the default: the newest frame drawing
    assert [int(state.new_at(40, f).sum()) for f in (0, 1)] == [1, 1] and bool(state.new_at(40, 0)[5, 0])  # token 41 = row 6
    assert int(state.new_at(70, 0).sum()) == 0 and int((state.grid_at(70, 0)[1] >= 0).sum()) == 64  # frame 1 done
    assert int((state.grid_at(10, 1)[1] >= 0).sum()) == 0  # frame 2 not started
    # every token fixed once, at step frame * lag + its raster index: the two frames' diagonals share colours
    assert torch.equal(state.fixed_at(1).flatten(), 16 + torch.arange(64))
    frames = state.frames_at(40)
    assert frames[1].abs().sum() > 0 and not torch.equal(frames[0], state.frames_at(79)[0])  # frame 2 shows while 1 fills
    assert torch.equal(state.frames_at(79), diagonal["video"])  # the last step: the finished rollout
    assert state.shown_frames(0) == state.shown_frames(79) == [0, 1]  # two grids throughout: the panel keeps its size
    assert bytes(state.panels_png(40)).startswith(b"\x89PNG")

    # the same seed gives the same tokens in a fresh state; lag 64 is token by token, token for token
    again = TokenRolloutState(ar_model, num_clips=2, num_frames=2)
    again.update(decoding="diagonal", lag=16)
    assert torch.equal(again.sample()["trace"]["tokens"], diagonal["trace"]["tokens"])
    state.update(lag=64)
    assert torch.equal(state.sample()["trace"]["tokens"], sequential["trace"]["tokens"])
    assert max(len(state.active(p)) for p in range(state.num_positions())) == 1  # frames one after another
    state.update(iterations=7)  # not a diagonal setting: still cached
    assert state.rollout is not None and state.runs == 3
    for bad in (0, 65, 2.5, True):
        with pytest.raises(ValueError, match="lag must be an integer from 1 to 64"):
            state.update(lag=bad)


def test_token_widget_diagonal(ar_model):
    from minivid.widgets import TokenRollout

    ex = TokenRollout(ar_model, num_clips=2, num_frames=2)
    ex.decoding.value = "diagonal"
    ex.lag.value = 8
    ex.run.click()
    assert ex.position.max == 8 + 63 and "73 network passes" in ex.passes.value  # sequential: 129
    ex.position.value = 20
    assert ex.step_label.value == "step 21/72: frame 1/2, token 21/64 and frame 2/2, token 13/64"
    ex.lag.value = 16
    assert ex.is_stale() and "press Sample" in ex.status.value
    ex.lag.value = 8  # cached
    assert not ex.is_stale() and ex.state.runs == 1
    assert bytes(ex.preview().data).startswith(b"\x89PNG")
