"""Saving and loading sets, showing videos, and the evaluation protocol's metrics."""

import math

import numpy as np
import pytest
import torch

from minivid import data, io, metrics, viz


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIVID_DATA", str(tmp_path))
    return tmp_path


def test_hf_datasets_round_trip(data_home):
    clips = data.moving_mnist(range(6), seed=0, split="test", num_frames=8)
    ds = io.to_hf_dataset(clips)
    assert len(ds) == 6 and ds.features["video"].shape == (8, 1, 64, 64)
    path = io.save_hf(clips, "six")
    assert path.parent == data_home / "hf"
    assert torch.equal(io.load_hf("six"), clips)


def test_hf_load_missing_and_wrong(data_home):
    with pytest.raises(FileNotFoundError, match="save_hf"):
        io.load_hf("nothing_here")
    import datasets

    with pytest.raises(ValueError, match="'video' column"):
        io.from_hf_dataset(datasets.Dataset.from_dict({"x": [1, 2]}))


def _write_seq(path, clips):
    np.save(path, (clips[:, :, 0].permute(1, 0, 2, 3).numpy() * 255).round().astype(np.uint8))


def test_mnist_test_seq_loads(tmp_path):
    clips = data.moving_mnist(range(5), seed=0, split="test")
    _write_seq(tmp_path / "mnist_test_seq.npy", clips)
    assert torch.equal(io.load_mnist_test_seq(tmp_path / "mnist_test_seq.npy"), clips)
    assert io.load_mnist_test_seq(tmp_path / "mnist_test_seq.npy", num_clips=2).shape == (2, 20, 1, 64, 64)


def test_mnist_test_seq_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="standard_test_set"):
        io.load_mnist_test_seq(tmp_path / "missing.npy")
    good = tmp_path / "good.npy"
    _write_seq(good, data.moving_mnist(range(2), seed=0))
    corrupt = tmp_path / "corrupt.npy"
    corrupt.write_bytes(good.read_bytes()[:500])
    with pytest.raises(ValueError, match="corrupt"):
        io.load_mnist_test_seq(corrupt)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((10, 3, 64, 64), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(20, 10000, 64, 64\)"):
        io.load_mnist_test_seq(wrong)


def test_metrics_hand_worked():
    target = torch.zeros(1, 2, 1, 4, 4)
    pred = target.clone()
    pred[0, 1, 0, 0, :2] = 0.5  # two pixels off by 0.5 in the second frame
    assert metrics.mse_per_frame(pred, target).tolist() == [[0.0, 0.5]]  # summed over pixels: 2 * 0.25
    assert metrics.mae_per_frame(pred, target).tolist() == [[0.0, 1.0]]
    psnr = metrics.psnr_per_frame(pred, target)
    assert math.isinf(psnr[0, 0]) and psnr[0, 1].item() == pytest.approx(10 * math.log10(16 / 0.5), rel=1e-5)


def test_ssim_is_one_for_identical_and_lower_otherwise():
    clips = data.moving_mnist(range(2), seed=0, num_frames=3)
    assert torch.allclose(metrics.ssim_per_frame(clips, clips), torch.ones(2, 3))
    assert (metrics.ssim_per_frame(clips.flip(-1), clips) < 0.9).all()


def test_protocol_with_baselines():
    copy = metrics.evaluate(metrics.copy_last_frame, num_clips=8, batch_size=4, progress=False)
    blank = metrics.evaluate(metrics.blank_frames, num_clips=8, batch_size=4, progress=False)
    assert len(copy["mse_per_frame"]) == 10
    assert copy["mse_per_frame"][0] < copy["mse_per_frame"][-1]  # errors grow with the horizon
    # Predicting black scores exactly the ink of the true future: the MSE is the sum of squared pixels.
    future = data.standard_test_set(8)[:, 10:20]
    assert blank["mse"] == pytest.approx(future.pow(2).sum(dim=(-3, -2, -1)).mean().item(), rel=1e-5)
    # Moving digits make copy-last pay twice (ink where the digit was and where it now is), so on this
    # protocol it scores worse than black from the first future frame on; README's baseline table says so.
    assert copy["mse_per_frame"][0] > blank["mse_per_frame"][0]
    assert blank["ssim"] > 0.7  # SSIM's known soft spot: mostly-black frames score high even when empty
    oracle = metrics.evaluate(lambda ctx, n: data.standard_test_set(8)[: len(ctx), 10 : 10 + n], num_clips=8, batch_size=8, progress=False)
    assert oracle["mse"] == 0 and oracle["ssim"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((1, 2, 1, 8, 8)), "torch.Tensor"),
        (torch.zeros(2, 1, 8, 8), "5 axes"),
        (torch.zeros(1, 2, 1, 8, 8, dtype=torch.uint8), "float"),
        (torch.full((1, 2, 1, 8, 8), 2.0), r"\[0, 1\]"),
        (torch.full((1, 2, 1, 8, 8), float("nan")), "finite"),
    ],
)
def test_validate_video_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        metrics.validate_video(bad)


def test_evaluate_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="expected"):
        metrics.evaluate(lambda ctx, n: ctx[:, :1], num_clips=2, progress=False)


def test_save_video_gif_and_mp4(tmp_path):
    clips = data.moving_mnist(range(2), seed=0, num_frames=4)
    gif = viz.save_video(clips, tmp_path / "a.gif", scale=2)
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames == 4 and im.size[1] == 128
    mp4 = viz.save_video(clips[0], tmp_path / "a.mp4")
    assert mp4.stat().st_size > 0
    with pytest.raises(ValueError, match=".gif"):
        viz.save_video(clips, tmp_path / "a.avi")


def test_show_videos_html_and_plots():
    clips = data.moving_mnist(range(3), seed=0, num_frames=4)
    html = viz.show_videos({"a": clips[0], "b": clips[1]}, return_html=True)
    assert "<img" in html or "<video" in html
    fig = viz.frame_grid(clips, context=2)
    assert fig is not None
    fig2 = viz.plot_per_frame({"copy": [1.0, 2.0, 3.0]}, ylabel="MSE")
    assert fig2 is not None


def test_protocol_at_other_speeds_and_several_samples():
    blank = metrics.evaluate(metrics.blank_frames, num_clips=4, batch_size=4, progress=False)
    slow = metrics.evaluate(metrics.blank_frames, num_clips=4, batch_size=4, progress=False, speed=0.05)
    assert slow["speed"] == 0.05 and "speed" not in blank
    slow_future = metrics.test_clips(4, speed=0.05)[:, 10:]
    assert slow["mse"] == pytest.approx(slow_future.pow(2).sum(dim=(-3, -2, -1)).mean().item(), rel=1e-5)
    assert torch.equal(metrics.test_clips(4, speed=0.05)[:, 0], metrics.test_clips(4)[:, 0])  # same starts

    def noisy(ctx, n, seed=0):  # the truth plus seeded noise: averaging samples removes most of it
        g = torch.Generator().manual_seed(seed)
        truth = metrics.test_clips(len(ctx))[:, 10 : 10 + n]
        return (truth + 0.2 * torch.randn(truth.shape, generator=g)).clamp(0, 1)

    spread = metrics.sample_spread(noisy, samples=4, num_clips=4, batch_size=4, progress=False)
    assert spread["mse_mean_of_samples"] < spread["mse_best_of_samples"] <= spread["mse_one"]
    same = metrics.sample_spread(metrics.copy_last_frame, samples=3, num_clips=4, batch_size=4, progress=False)
    assert same["mse_one"] == pytest.approx(same["mse_mean_of_samples"]) == pytest.approx(same["mse_best_of_samples"])
    with pytest.raises(ValueError, match="samples"):
        metrics.sample_spread(noisy, samples=0, num_clips=4)
