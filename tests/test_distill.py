"""The frame cache of the causal 3D UNet: frame by frame equals the whole clip; what it refuses."""

import pytest
import torch

from minivid import hybrid, video_diffusion
from minivid.models import frame_cache

WINDOW = dict(num_frames=6, max_context=3)  # short clips keep every test fast


def randomise(model, std=0.05):
    """Every weight drawn at random: zero-initialised temporal layers would hide a wrong cache."""
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=std)
    return model


def causal_net(spacetime=False):
    return randomise(hybrid.Model(hybrid.Config(**{**hybrid.PRESETS["nano"].__dict__, **WINDOW, "spacetime": spacetime})).net)


# -- the frame cache ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spacetime", [False, True])
def test_cached_frames_equal_the_whole_clip(spacetime):
    net = causal_net(spacetime)
    x, t = torch.randn(2, 6, 1, 64, 64), torch.tensor([[-1, -1, 999, 500, 20, 0], [-1, 10, 300, 300, 900, 999]])
    with torch.no_grad():
        whole = net(x, t)
        cache = frame_cache.FrameCache(6)
        parts = [frame_cache.forward(net, x[:, :2], t[:, :2], cache)]  # a context read in one call
        for i in range(2, 6):  # then one frame at a time
            peek = frame_cache.forward(net, x[:, i : i + 1], t[:, i : i + 1], cache, write=False)
            assert cache.length == i  # reading leaves the cache as it was
            parts.append(frame_cache.forward(net, x[:, i : i + 1], t[:, i : i + 1], cache))
            assert torch.equal(peek, parts[-1])
        alone = torch.cat([frame_cache.forward(net, x[:, i : i + 1], t[:, i : i + 1], frame_cache.FrameCache(6))
                           for i in range(6)], dim=1)
    assert whole.abs().max() > 0.05
    assert (torch.cat(parts, dim=1) - whole).abs().max() < 1e-5  # the key invariant
    assert (alone[:, 1:] - whole[:, 1:]).abs().max() > 1e-3  # without the cache the past is missed
    assert cache.length == 6 and len(cache.layers) > 0


def test_beside_mode_is_each_frame_after_its_clean_past():
    net = causal_net()
    clean, noisy = torch.randn(2, 6, 1, 64, 64), torch.randn(2, 6, 1, 64, 64)
    t_clean, t_noisy = torch.full((2, 6), -1), torch.randint(0, 1000, (2, 6))
    with torch.no_grad():
        cache = frame_cache.FrameCache(6)
        frame_cache.forward(net, clean, t_clean, cache)
        beside = frame_cache.forward(net, noisy, t_noisy, cache, mode="beside", write=False)
        for i in range(6):
            alone = net(torch.cat([clean[:, :i], noisy[:, i : i + 1]], 1), torch.cat([t_clean[:, :i], t_noisy[:, i : i + 1]], 1))
            assert (beside[:, i] - alone[:, -1]).abs().max() < 1e-5


def test_the_cache_refuses_what_it_cannot_do():
    net = causal_net()
    x, t = torch.randn(1, 6, 1, 64, 64), torch.zeros(1, 6, dtype=torch.long)
    cache = frame_cache.FrameCache(6)
    with torch.no_grad():
        frame_cache.forward(net, x[:, :4], t[:, :4], cache)
        with pytest.raises(ValueError, match="window holds at most 6 frames: 4 cached \\+ 3 new"):
            frame_cache.forward(net, x[:, :3], t[:, :3], cache)
        with pytest.raises(ValueError, match="need 5 cached ones"):
            frame_cache.forward(net, x[:, :5], t[:, :5], cache, mode="beside", write=False)
        with pytest.raises(ValueError, match="never writes"):
            frame_cache.forward(net, x[:, :2], t[:, :2], cache, mode="beside")
        with pytest.raises(ValueError, match="causal network"):
            frame_cache.forward(video_diffusion.Model(video_diffusion.Config(**{**video_diffusion.PRESETS['nano'].__dict__, **WINDOW})).net, x[:, :1], t[:, :1], frame_cache.FrameCache(6))
