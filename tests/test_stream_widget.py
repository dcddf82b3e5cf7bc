"""The StreamPlayer widget, driven in Python as a learner's clicks would, with a tiny untrained student."""

import threading

import pytest
import torch

from minivid import data, distill
from minivid.widgets import StreamPlayer, StreamState
from minivid.widgets.view import png_size

WINDOW = dict(num_frames=6, max_context=3)  # a short window, so a stream of 8 frames slides it


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    model = distill.Model(distill.Config(**{**distill.PRESETS["nano"].__dict__, **WINDOW, "teacher_steps": 4}))
    with torch.no_grad():  # random weights everywhere (zero-initialised layers would make every frame alike)
        for p in model.parameters():
            torch.nn.init.normal_(p, std=0.05)
    return model.eval()


@pytest.fixture(scope="module")
def context():
    return data.standard_test_set(1)[:, :3]


def test_stream_makes_the_frames_of_generate(student, context):
    state = StreamState(student, context=context)
    assert state.settings == {"steps": 4, "seed": 0, "num_frames": 30} and state.readout().startswith("no frames")
    state.update(steps=2, seed=3, num_frames=8)
    video = state.run()
    assert video.shape == (8, 1, 64, 64) and video.dtype == torch.float32
    assert len(state.frames) == len(state.seconds) == 8 and not state.running
    assert 0 <= float(video.min()) and float(video.max()) <= 1 and float(video.std()) > 0
    expected = student.generate(context, 8, seed=3, steps=2, progress=False)[0]
    assert torch.allclose(video, expected, atol=1e-5)  # past the window (6) too: the slide is the same
    assert all(s > 0 for s in state.seconds) and state.fps() > 0
    assert state.fps(last=3) == pytest.approx(3 / sum(state.seconds[-3:]))
    assert state.readout().startswith("frame 8/8 (2 steps per frame)") and "frames/s" in state.readout()


def test_same_seed_same_frames_other_seed_or_steps_other_frames(student, context):
    def frames(**settings):
        state = StreamState(student, context=context)
        state.update(num_frames=4, **settings)
        return state.run()

    first = frames(seed=5, steps=1)
    assert torch.equal(first, frames(seed=5, steps=1))
    assert not torch.equal(first, frames(seed=6, steps=1))
    assert not torch.equal(first, frames(seed=5, steps=4))


def test_frames_arrive_one_at_a_time_and_stop_keeps_them(student, context):
    state = StreamState(student, context=context)
    state.update(num_frames=10, steps=1)
    assert state.next_frame() is None  # not started
    state.start()
    for n in range(1, 4):
        frame = state.next_frame()
        assert frame.shape == (1, 64, 64) and len(state.frames) == n and state.running
    state.stop()
    assert not state.running and state.next_frame() is None and len(state.frames) == 3
    stop = threading.Event()
    state.run(on_frame=lambda s: stop.set() if len(s.frames) == 2 else None, stop=stop)
    assert len(state.frames) == 2 and state.runs == 2  # a new stream drops the old frames


def test_bad_settings_get_one_clear_error(student, context):
    state = StreamState(student, context=context)
    for steps in (3, 0, 8, True, 2.5):
        with pytest.raises(ValueError, match=r"steps must be one of \(1, 2, 4\)|steps must be >= 1") as err:
            state.update(steps=steps)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="num_frames must be an integer in 1..200"):
        state.update(num_frames=0)
    with pytest.raises(ValueError, match="unknown setting"):
        state.update(speed=2)
    assert state.settings["steps"] == 4  # nothing changed
    with pytest.raises(ValueError, match="context must be one clip"):
        StreamState(student, context=torch.zeros(2, 3, 1, 64, 64))
    with pytest.raises(ValueError, match="no frames yet"):
        state.frame_png()


def test_pictures_have_their_sizes(student, context):
    state = StreamState(student, context=context)
    state.update(num_frames=12, steps=1)
    state.run()
    assert png_size(state.frame_png(zoom=3)) == (192, 192)
    assert state.strip().shape == (2 * 64 + 4, 10 * 64 + 9 * 2)  # 12 frames: a row of 10, a row of 2
    bars = state.bars(height=48, bar=4)
    assert bars.shape == (48, 48) and (bars[:, :4] < 255).any()
    assert state.summary().startswith("12 frames in")


def test_player_streams_shows_the_readout_and_marks_stale(student, context):
    player = StreamPlayer(student, context=context, zoom=2, max_frames=20)
    assert player.steps.options == (1, 2, 4) and player.stop_button.disabled
    player.num_frames.value, player.steps.value = 10, 1
    player.start(wait=True)
    assert not player.failed and len(player.state.frames) == 10
    assert png_size(player.image.value) == (128, 128) and player.readout.value.startswith("frame 10/10")
    assert player.status.value.startswith("done: 10 frames") and not player.run.disabled and player.stop_button.disabled
    assert not player.is_stale()
    player.seed.value = 1
    assert player.is_stale() and "press Start" in player.status.value
    player.seed.value = 0
    assert not player.is_stale()
    assert player.preview().data.startswith(b"\x89PNG")


def test_player_start_button_streams_in_a_thread_and_stop_ends_it(student, context):
    player = StreamPlayer(student, context=context, max_frames=60)
    player.num_frames.value, player.steps.value = 60, 4
    player._draw = lambda state=None: player._on_stop() if len(player.state.frames) == 2 else None  # Stop after frame 2
    player.run.click()
    player.join(timeout=60)
    assert not player._thread.is_alive() and not player.failed
    assert len(player.state.frames) == 2 and player.status.value.startswith("stopped: 2 frames")
    assert not player.run.disabled and player.stop_button.disabled


def test_player_shows_an_error_inside_itself(student, context):
    player = StreamPlayer(student, context=torch.zeros(1, 3, 1, 32, 32), max_frames=20)  # frames of the wrong size
    player.start(wait=True)
    assert player.failed and player.status.value.startswith("failed") and "ValueError" in player.error.value
    assert "64" in player.error.value and not player.run.disabled
    with pytest.raises(RuntimeError, match="the last run failed"):
        player.preview()
