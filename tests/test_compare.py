"""The comparison widget's logic: one context through every method, scores, table, cache."""

import pytest
import torch

from minivid import data, metrics, video_diffusion
from minivid.widgets import Compare, CompareState


def perfect(context, num_frames, seed=0):
    """An oracle for test clip 0: returns its true future (to check the scoring end to end)."""
    return data.standard_test_set(1)[:, 10 : 10 + num_frames]


@pytest.fixture(scope="module")
def nano():
    torch.manual_seed(0)
    return video_diffusion.Model(video_diffusion.PRESETS["nano"])


def test_state_scores_counts_and_caches(nano):
    state = CompareState({"oracle": perfect, "copy": metrics.copy_last_frame, "diffusion": nano}, num_clips=2)
    assert state.accepted("diffusion") == ["steps"] and state.accepted("copy") == []
    state.update(steps=2)
    rows = {r["method"]: r for r in state.table()}
    assert rows["oracle"]["mse"] == 0 and rows["oracle"]["ssim"] == pytest.approx(1.0, abs=1e-4)
    assert rows["copy"]["mse"] > 0 and rows["copy"]["evaluations"] == 0 and rows["copy"]["parameters"] == 0
    assert rows["diffusion"]["evaluations"] == 2  # one network call per DDIM step
    assert rows["diffusion"]["parameters"] == sum(p.numel() for p in nano.parameters())
    assert state.runs == 3
    state.update(steps=3)  # only the method that takes steps runs again
    state.run()
    assert state.runs == 4 and state.cache[state.key("diffusion")]["evaluations"] == 3
    videos = state.videos()
    assert list(videos) == ["truth", "oracle", "copy", "diffusion"]
    assert all(v.shape == (10, 1, 64, 64) for v in videos.values())
    assert "<table" in state.table_html() and bytes(state.figure_png()).startswith(b"\x89PNG")
    with pytest.raises(ValueError, match="clip must be"):
        state.update(clip=5)
    with pytest.raises(ValueError, match="unknown setting"):
        state.update(guidance=1.0)


def test_widget_callbacks():
    ex = Compare({"oracle": perfect, "copy": metrics.copy_last_frame}, num_clips=2)
    assert ex.table.value == "" and ex.results.layout.display == "none"  # no empty plot before the first run
    ex.run.click()
    assert "<table" in ex.table.value and ex.state.runs == 2 and ex.results.layout.display is None
    assert ex.plot.layout.width == "640px"  # the figure at its own size (8 in x 80 dpi), not stretched
    ex.clip.value = 1
    assert "press Compare" in ex.status.value and ex.is_stale()
    ex.clip.value = 0  # cached: shown at once
    assert ex.state.runs == 2 and "cached" in ex.status.value and not ex.is_stale()
    assert bytes(ex.preview().data).startswith(b"\x89PNG")


def broken(context, num_frames, seed=0):
    raise RuntimeError("this method is broken")


def test_a_failed_run_says_so():
    ex = Compare({"copy": metrics.copy_last_frame, "broken": broken}, num_clips=2)
    ex.run.click()  # the error goes to the widget's output area in a notebook; here the callback logs it
    assert ex.status.value.startswith("failed") and not ex.run.disabled
    with pytest.raises(RuntimeError, match="the last run failed"):
        ex.preview()
