"""The TextToVideo widget, driven in Python as a user's typing and clicks would, with tiny untrained models."""

import pytest
import torch

from minivid import captions, dit_video, judge
from minivid.widgets import TextToVideo, TextToVideoState
from minivid.widgets.text_to_video import DEFAULT_CAPTION, verdict_rows


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = dit_video.Model(dit_video.PRESETS["nano"])
    with torch.no_grad():  # untrained DiTs output exactly 0 (adaLN-zero): small random weights let the caption matter
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def critic():
    torch.manual_seed(0)
    return judge.Model(judge.PRESETS["nano"]).eval()


def test_default_caption_reads_and_steps_follow_the_model(model):
    state = TextToVideoState(model)
    assert captions.parse(DEFAULT_CAPTION) == [(3, "right"), (7, "up-left")]
    assert state.caption_error() is None
    assert state.settings == {"caption": DEFAULT_CAPTION, "guidance": 3.0, "seed": 0, "steps": model.config.sample_steps}


def test_generate_shapes_cache_and_evaluations(model, critic):
    state = TextToVideoState(model, judge=critic)
    state.update(steps=3)
    r = state.generate()
    assert r["video"].shape == (model.config.num_frames, 1, 64, 64) and r["video"].dtype == torch.float32
    assert 0 <= float(r["video"].min()) and float(r["video"].max()) <= 1
    assert r["evaluations"] == 6  # 3 steps, two passes each with guidance
    assert state.strip().shape == (2 * 64 + 4, 10 * 64 + 9 * 2)  # 20 frames in two rows of 10
    state.update(caption="A 3 moving RIGHT  and a 7 moving up-left")  # the same caption, written otherwise: cached
    assert state.result is r and state.generate() is r and state.runs == 1
    state.update(guidance=0.0)
    assert state.result is None and state.generate()["evaluations"] == 3 and state.runs == 2


def test_same_seed_same_clip(model):
    state = TextToVideoState(model)
    state.update(steps=3, seed=5)
    first = state.generate()["video"]
    again = TextToVideoState(model)
    again.update(steps=3, seed=5)
    assert torch.equal(first, again.generate()["video"])
    again.update(seed=6)
    assert not torch.equal(first, again.generate()["video"])
    again.update(seed=5, caption="an 8 moving down")
    assert not torch.equal(first, again.generate()["video"])  # the caption reaches the clip


@pytest.mark.parametrize("caption, expected", [
    ("a 3 jumping left", "unknown word 'jumping'"),
    ("", "the caption is empty"),
    ("a 3 moving left and " * 4 + "a 1 moving up", "at most 14 are allowed"),
    ("a 3 left moving", "word 3 is 'left', expected 'moving' there"),
    ("a 3 moving", "it ends where a direction"),
])
def test_bad_captions_give_the_parsers_error(model, caption, expected):
    state = TextToVideoState(model)
    state.update(caption=caption)
    message = state.caption_error()
    assert expected in message
    with pytest.raises(ValueError) as err:
        captions.parse(caption)
    assert message == str(err.value)  # the parser's own error, not a second wording
    assert state.result is None
    with pytest.raises(ValueError) as err:
        state.generate()
    assert str(err.value) == message


def test_unknown_word_error_lists_the_vocabulary(model):
    state = TextToVideoState(model)
    state.update(caption="a 3 jumping left")
    assert "the vocabulary is: " + ", ".join(captions.VOCAB[1:]) in state.caption_error()


def test_other_bad_settings(model, critic):
    state = TextToVideoState(model)
    with pytest.raises(ValueError, match="guidance must be >= 0"):
        state.update(guidance=-1.0)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        state.update(steps=0)
    with pytest.raises(ValueError, match="unknown setting"):
        state.update(temperature=1.0)
    with pytest.raises(ValueError, match="caption must be a string"):
        state.update(caption=None)
    with pytest.raises(ValueError, match="the judge reads 10 frames"):
        TextToVideoState(model, judge=critic, num_frames=4)


def test_verdict_structure(model, critic):
    state = TextToVideoState(model, judge=critic)
    state.update(steps=2)
    v = state.generate()["verdict"]
    assert set(v) == {"caption", "seen", "digits", "directions", "faithful", "phrases", "unexpected"}
    assert v["caption"] == DEFAULT_CAPTION
    assert v["seen"] is None or captions.parse(v["seen"])  # what the judge sees, itself a caption
    assert all(isinstance(v[k], bool) for k in ("digits", "directions", "faithful"))
    assert v["faithful"] == (v["digits"] and v["directions"])
    assert [(p["digit"], p["direction"]) for p in v["phrases"]] == [(3, "right"), (7, "up-left")]
    for p in v["phrases"]:
        assert isinstance(p["digit_seen"], bool) and isinstance(p["direction_seen"], bool)
        assert set(p["seen_directions"]) <= set(captions.DIRECTIONS)
        assert p["direction_seen"] == (p["direction"] in p["seen_directions"])  # each named once
    assert all(0 <= d <= 9 for d in v["unexpected"])
    rows = verdict_rows(v)
    assert rows[0][0] == "the caption asks for" and rows[1][0] == "a 3 moving right"
    assert len(rows) == 1 + 2 + len(v["unexpected"])
    assert TextToVideoState(model).generate()["verdict"] is None  # no judge, no verdict


def test_widget_error_greying_and_preview(model, critic):
    w = TextToVideo(model, judge=critic)
    assert w.results.layout.display == "none" and w.error.layout.display == "none"
    w.steps.value = 2
    w.run.click()
    assert w.state.runs == 1 and w.results.layout.display is None and not w.is_stale()
    assert "match" in w.verdict.value and "a 3 moving right" in w.verdict.value
    assert (w.image.layout.width, w.image.layout.height) == ("658px", "132px")
    w.seed.value = 1  # new settings, not generated yet: the old clip is greyed
    assert w.is_stale() and "settings changed: press Generate" in w.status.value
    w.seed.value = 0  # back to the cached one: shown at once, no new run
    assert not w.is_stale() and w.state.runs == 1
    w.caption.value = "a 3 jumping left"  # one clear error inside the widget; Generate is off
    assert w.error.layout.display is None and w.error.value.count("unknown word") == 1
    assert "the vocabulary is: a, an, moving, and, 0, 1" in w.error.value
    assert w.run.disabled and w.is_stale() and "fix the caption" in w.status.value
    w.run.click()  # a click from code does nothing
    assert w.state.runs == 1
    w.caption.value = "a 3 moving right and a 7 moving up-left"
    assert w.error.layout.display == "none" and not w.run.disabled and not w.is_stale()
    assert bytes(w.preview().data).startswith(b"\x89PNG")
