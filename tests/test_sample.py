"""`minivid sample`: truth above prediction, a red border on predicted frames, and a time estimate up front."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from minivid import autoregressive, bench, checkpoints, cli, data, hybrid, image_diffusion, metrics, video_diffusion, viz
from minivid.models import transformer as tfm
from minivid.models import vqvae


def _ring(frame: np.ndarray, top: int, left: int, size: int, border: int) -> np.ndarray:
    """The pixels of the `border`-wide frame around a size x size picture at (top, left): (n, 3)."""
    outer = frame[top - border : top + size + border, left - border : left + size + border]
    mask = np.ones(outer.shape[:2], dtype=bool)
    mask[border:-border, border:-border] = False
    return outer[mask]


def test_truth_over_predictions_shows_the_data_and_marks_predicted_frames():
    truth = data.moving_mnist(range(2), seed=0, split="test", num_frames=6)  # (2, 6, 1, 64, 64)
    context = 4
    predictions = {"first": 1 - truth[:, context:], "second": torch.zeros(2, 2, 1, 64, 64)}
    frames, boxes = viz.truth_over_predictions(truth, predictions, context=context)
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[0] == 6 and frames.shape[-1] == 3
    assert set(boxes) == {(row, clip) for row in range(3) for clip in range(2)}

    true_pixels = viz.to_uint8(truth)  # (2, 6, 64, 64, 1)
    for row, prediction in enumerate([None, *predictions.values()]):
        shown = true_pixels if prediction is None else viz.to_uint8(torch.cat([truth[:, :context], prediction], 1))
        for clip in range(2):
            top, left = boxes[(row, clip)]
            picture = frames[:, top : top + 64, left : left + 64]  # (t, 64, 64, 3)
            assert np.array_equal(picture, np.broadcast_to(shown[clip], picture.shape)), (row, clip)
            if prediction is not None:  # the context frames under the truth are the truth itself
                assert np.array_equal(picture[:context], np.broadcast_to(true_pixels[clip, :context], picture[:context].shape))

    red = np.array(viz.PREDICTED_RGB, dtype=np.uint8)
    for f in range(6):
        for (row, clip), (top, left) in boxes.items():
            ring = _ring(frames[f], top, left, 64, border=2)
            marked = row > 0 and f >= context
            assert (ring == red).all(axis=1).all() == marked, (f, row, clip)
            assert (ring == red).all(axis=1).any() == marked, (f, row, clip)


def test_truth_over_predictions_rejects_mismatched_predictions():
    truth = data.moving_mnist(range(2), seed=0, num_frames=6)
    with pytest.raises(ValueError, match="expected"):
        viz.truth_over_predictions(truth, {"short": truth[:, :1]}, context=4)
    with pytest.raises(ValueError, match="context"):
        viz.truth_over_predictions(truth, {}, context=6)


def _tiny(family: str):
    if family == "diffusion":
        return video_diffusion.Model(video_diffusion.PRESETS["nano"])
    if family == "image":
        return image_diffusion.Model(image_diffusion.PRESETS["nano"])
    if family == "hybrid":  # a 6-frame window that keeps 2 frames when it slides
        return hybrid.Model(dataclasses.replace(hybrid.PRESETS["nano"], num_frames=6, max_context=2))
    window = tfm.Config(vocab_size=16, grid=8, max_frames=4, layers=1, width=32, heads=4)  # a 4-frame window
    return autoregressive.Model(autoregressive.Config(vqvae.Config(hidden=8, codebook_size=16, code_dim=4), window))


@pytest.mark.parametrize("family, num_context, num_frames, kwargs", [
    ("diffusion", 2, 2, {"steps": 3}),
    ("diffusion", 2, 2, {"steps": 2, "guidance": 1.0}),    # classifier-free guidance: two calls per step
    ("image", 2, 2, {"steps": 2}),                         # all the images in one call per step
    ("hybrid", 2, 4, {"steps": 3}),                        # pyramid, lag 2: 3 + 2 * 3 evaluations
    ("hybrid", 2, 6, {"steps": 2, "lag": 1}),              # past the 6-frame window: two chunks
    ("hybrid", 0, 3, {"schedule": "autoregressive", "steps": 2}),
    ("autoregressive", 2, 1, {}),                          # one read of the context, then one pass per token
    ("autoregressive", 3, 3, {}),                          # past the 4-frame window: the cache is refilled
    ("autoregressive", 0, 2, {"use_cache": False}),
    ("autoregressive", 1, 2, {"decoding": "parallel", "iterations": 1}),
    ("autoregressive", 2, 2, {"decoding": "diagonal", "lag": 16}),        # one pass per step: 16 + 64, plus the read
    ("autoregressive", 2, 4, {"decoding": "diagonal", "lag": 8, "row_lag": 1}),   # rows overlap; the window slides
])
def test_network_evaluations_are_what_generate_does(family, num_context, num_frames, kwargs):
    model = _tiny(family).eval()
    context = metrics.test_clips(1, max(num_context, 1))[:, :num_context]
    with bench.counting_calls(model) as calls, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the autoregressive model warns when its window slides
        model.generate(context, num_frames, progress=False, **kwargs)
    if kwargs.get("decoding") == "parallel":  # a frame that settles early saves passes
        assert model.network_evaluations(num_context, num_frames, **kwargs) >= len(calls)
    else:
        assert model.network_evaluations(num_context, num_frames, **kwargs) == len(calls)


def test_cli_sample_writes_truth_over_prediction_and_says_how_long(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    models = {"diffusion": _tiny("diffusion"), "hybrid": hybrid.Model(hybrid.PRESETS["nano"])}
    monkeypatch.setattr(checkpoints, "pretrained", lambda name, device=None: models[name])
    out = tmp_path / "s.gif"
    assert cli.main(["sample", "diffusion", "hybrid", "--num", "2", "--context", "3", "--num-frames", "2",
                     "--steps", "3", "--scale", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "diffusion: 2 clips, 3 context + 2 new frames: 3 network evaluations" in printed
    assert "hybrid: 2 clips, 3 context + 2 new frames: 5 network evaluations" in printed  # pyramid, lag 2
    assert "about" in printed and "rows: truth, diffusion, hybrid" in printed

    truth = metrics.test_clips(2, 5)
    expected, boxes = viz.truth_over_predictions(truth, {"diffusion": truth[:, 3:], "hybrid": truth[:, 3:]}, context=3)
    with Image.open(out) as gif:
        assert gif.n_frames == 5 and gif.size == (expected.shape[2], expected.shape[1])
        gif.seek(4)  # the last frame: predicted
        last = np.asarray(gif.convert("RGB")).astype(int)
    top, left = boxes[(0, 1)]  # the truth row, second clip: the data, up to the GIF's palette
    assert np.abs(last[top : top + 64, left : left + 64] - viz.to_uint8(truth)[1, 4].astype(int)).mean() < 2
    for row in (1, 2):
        top, left = boxes[(row, 0)]
        assert np.abs(_ring(last, top, left, 64, 2) - np.array(viz.PREDICTED_RGB)).max() <= 8


def test_cli_sample_refuses_what_it_cannot_do(tmp_path, capsys):
    with pytest.raises(SystemExit):  # argparse: the tokenizer is not among the choices
        cli.main(["sample", "vqvae"])
    assert "invalid choice" in capsys.readouterr().err
    assert cli.main(["sample", "diffusion", "hybrid", "--checkpoint", str(tmp_path / "x.pt")]) == 2
    assert "--checkpoint names one model" in capsys.readouterr().err


def test_cli_sample_passes_start_where_a_model_takes_it(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    models = {"hybrid": _tiny("hybrid").eval(), "autoregressive": _tiny("autoregressive").eval()}
    monkeypatch.setattr(checkpoints, "pretrained", lambda name, device=None: models[name])
    assert cli.main(["sample", "hybrid", "autoregressive", "--num", "1", "--context", "2", "--num-frames", "1",
                     "--steps", "2", "--start", "1", "--scale", "1", "--out", str(tmp_path / "s.gif")]) == 0
    printed = capsys.readouterr().out
    assert "hybrid: 1 clip, 2 context + 1 new frames: 2 network evaluations" in printed
    assert "autoregressive: --start does not apply (it does not start from a guess)" in printed
    # a start below 1 needs a predictor: one clear error, no traceback
    assert cli.main(["sample", "hybrid", "--num", "1", "--context", "2", "--num-frames", "1", "--steps", "4",
                     "--start", "0.5", "--out", str(tmp_path / "t.gif")]) == 2
    assert "this hybrid has no predictor" in capsys.readouterr().err
