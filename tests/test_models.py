"""The 3D UNet, inflation from the image model, and the video diffusion model's API."""

import dataclasses

import pytest
import torch

from minivid import image_diffusion, video_diffusion
from minivid.models.unet2d import image_config, inflate
from minivid.models.unet3d import UNet3D, UNetConfig

NANO = dict(base_channels=16, channel_mults=(1, 2), attention_levels=(1,), blocks_per_level=1)


def _randomize(module):
    torch.manual_seed(0)
    for p in module.parameters():  # zero-initialised layers would make equalities trivial
        torch.nn.init.normal_(p, std=0.05)


def test_unet_shapes_and_per_frame_timesteps():
    net = UNet3D(UNetConfig(in_channels=3, **NANO))
    x = torch.randn(2, 5, 1, 32, 32)
    assert net(x, torch.tensor([3, 700])).shape == x.shape
    assert net(x, torch.randint(0, 1000, (2, 5)), cond=x, cond_mask=torch.ones(2, 5)).shape == x.shape


@pytest.mark.parametrize("frame_attention_from", [0, 1])
def test_causal_network_never_sees_the_future(frame_attention_from):
    net = UNet3D(UNetConfig(in_channels=1, causal=True, frame_attention_from=frame_attention_from, **NANO))
    _randomize(net)
    x = torch.randn(1, 6, 1, 16, 16)
    y = x.clone()
    y[:, 4:] = torch.randn_like(y[:, 4:])  # change frames 4 and 5 only
    t = torch.full((1,), 500)
    with torch.no_grad():
        a, b = net(x, t), net(y, t)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-5)
    assert not torch.allclose(a[:, 4:], b[:, 4:], atol=1e-3)


def test_frame_attention_only_from_a_level_leaves_the_temporal_conv_everywhere():
    full = UNet3D(UNetConfig(in_channels=1, **NANO))
    cheap = UNet3D(UNetConfig(in_channels=1, frame_attention_from=1, **NANO))
    blocks = [m for m in cheap.modules() if hasattr(m, "temporal") and m.temporal is not None]
    by_width = {(m.temporal.conv.in_channels, m.temporal.attention) for m in blocks}
    assert by_width == {(16, False), (32, True)}  # NANO: level 0 is 16 wide, level 1 (and the middle) 32
    assert all(hasattr(m.temporal, "qkv") == m.temporal.attention for m in blocks)
    assert all(m.temporal.attention for m in full.modules() if hasattr(m, "temporal") and m.temporal is not None)
    assert sum(p.numel() for p in cheap.parameters()) < sum(p.numel() for p in full.parameters())
    # the shared weights are the same names and shapes: the cheap network is the full one with layers left out
    shared = cheap.state_dict()
    assert all(full.state_dict()[k].shape == v.shape for k, v in shared.items())
    _randomize(cheap)
    x = torch.randn(1, 6, 1, 16, 16)
    y = x.clone()
    y[:, 5] = torch.randn_like(y[:, 5])
    with torch.no_grad():  # still a video network: frame 0 sees frame 5 (through the lower levels' attention)
        a, b = cheap(x, torch.tensor([500]))[:, 0], cheap(y, torch.tensor([500]))[:, 0]
    assert (a - b).abs().max() > 0
    model = video_diffusion.Model(dataclasses.replace(video_diffusion.PRESETS["nano"], num_frames=6, frame_attention_from=1))
    loss = model.loss(torch.rand(2, 6, 1, 64, 64))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


def test_full_network_does_see_the_future():
    net = UNet3D(UNetConfig(in_channels=1, **NANO))
    _randomize(net)
    x = torch.randn(1, 6, 1, 16, 16)
    y = x.clone()
    y[:, 5] = torch.randn_like(y[:, 5])
    with torch.no_grad():
        assert not torch.allclose(net(x, torch.tensor([500]))[:, 0], net(y, torch.tensor([500]))[:, 0], atol=1e-4)


@pytest.mark.parametrize("preset", ["nano", "small"])
def test_inflated_video_model_equals_image_model_per_frame(preset):
    image = image_diffusion.Model(image_diffusion.PRESETS[preset])
    _randomize(image)
    video = video_diffusion.from_image_model(image, video_diffusion.PRESETS[preset])
    x, cond = torch.randn(2, 4, 1, 64, 64), torch.rand(2, 4, 1, 64, 64)
    t = torch.tensor([10, 600])
    with torch.no_grad():
        got = video(x, t, cond, torch.tensor([[1.0, 1, 0, 0], [0, 0, 0, 0]]))
        want = image(x.flatten(0, 1)[:, None], t.repeat_interleave(4)).view_as(got)
    assert torch.equal(got, want)


def test_inflate_refuses_mismatched_networks():
    with pytest.raises(ValueError, match="share widths"):
        inflate(UNet3D(image_config(**NANO)), UNet3D(UNetConfig(in_channels=3)))
    with pytest.raises(ValueError, match="image network"):
        inflate(UNet3D(UNetConfig(**NANO)), UNet3D(UNetConfig(**NANO)))


@pytest.mark.parametrize("preset, low, high", [("nano", 0.1e6, 0.4e6), ("tiny", 1e6, 3e6), ("small", 3e6, 6e6), ("base", 6e6, 10e6)])
def test_preset_sizes(preset, low, high):
    n = sum(p.numel() for p in video_diffusion.Model(video_diffusion.PRESETS[preset]).parameters())
    assert low < n <= high


@pytest.fixture(scope="module")
def nano_video():
    torch.manual_seed(0)
    return video_diffusion.Model(video_diffusion.PRESETS["nano"]).eval()


def test_generate_api(nano_video):
    context = torch.rand(2, 3, 1, 64, 64)
    video = nano_video.generate(context, 4, seed=1, steps=2, progress=False)
    assert video.shape == (2, 4, 1, 64, 64) and video.min() >= 0 and video.max() <= 1
    again, trace = nano_video.generate(context, 4, seed=1, steps=2, progress=False, return_trace=True)
    assert torch.equal(video, again) and len(trace) == 2
    assert trace[0]["x_t"].shape == (2, 4, 1, 64, 64) and trace[0]["x0"].shape == (2, 4, 1, 64, 64)
    unconditional = nano_video.generate(torch.zeros(1, 0, 1, 64, 64), 3, steps=1, progress=False, guidance=1.0)
    assert unconditional.shape == (1, 3, 1, 64, 64)


def test_loss_is_finite_and_differentiable(nano_video):
    model = video_diffusion.Model(video_diffusion.PRESETS["nano"])
    loss = model.loss(torch.rand(2, 20, 1, 64, 64))
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize(
    "context, kwargs, message",
    [
        (torch.rand(1, 3, 1, 32, 32), {}, "64x64"),
        (torch.rand(1, 3, 64, 64), {}, "5 axes"),
        (torch.rand(1, 3, 1, 64, 64) * 3, {}, r"\[0, 1\]"),
        (torch.rand(1, 15, 1, 64, 64), {}, "at most 20"),
        (torch.rand(1, 3, 1, 64, 64), {"steps": 0}, "positive integer"),
        (torch.rand(1, 3, 1, 64, 64), {"sampler": "euler"}, "expected one of"),
        (torch.rand(1, 3, 1, 64, 64), {"guidance": -1.0}, "guidance"),
    ],
)
def test_generate_bad_input(nano_video, context, kwargs, message):
    with pytest.raises(ValueError, match=message):
        nano_video.generate(context, 10, progress=False, **kwargs)


def test_unknown_preset():
    with pytest.raises(ValueError, match="expected one of"):
        video_diffusion.build("huge")


def test_image_model_generates_images():
    model = image_diffusion.Model(image_diffusion.PRESETS["nano"]).eval()
    images = model.generate(torch.zeros(2, 0, 1, 32, 32), 3, steps=2, progress=False)
    assert images.shape == (2, 3, 1, 32, 32)
    batch = image_diffusion.make_batch(0, 10, seed=0)
    assert batch.shape == (10, 1, 1, 64, 64)


def test_spacetime_attention_grows_from_a_trained_network_exactly():
    from argparse import Namespace

    from minivid.families import with_overrides

    plain = video_diffusion.Model(video_diffusion.PRESETS["nano"]).eval()
    _randomize(plain)
    config = with_overrides(video_diffusion.PRESETS["nano"], Namespace(set=["spacetime=True"]))
    grown = video_diffusion.continued(plain, config).eval()
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in plain.parameters())
    x, cond = torch.randn(2, 4, 1, 32, 32), torch.rand(2, 4, 1, 32, 32)
    mask, t = torch.tensor([[1.0, 1, 0, 0], [1, 0, 0, 0]]), torch.tensor([5, 800])
    with torch.no_grad():  # the new layers start at zero output: the same function
        assert torch.equal(plain(x, t, cond, mask), grown(x, t, cond, mask))
    with pytest.raises(ValueError, match="base_channels"):
        video_diffusion.continued(plain, video_diffusion.PRESETS["tiny"])
    with pytest.raises(ValueError, match="spacetime=True"):  # growing never drops layers
        video_diffusion.continued(grown, video_diffusion.PRESETS["nano"])


def test_spacetime_attention_is_block_causal():
    net = UNet3D(UNetConfig(in_channels=1, causal=True, spacetime=True, **NANO))
    _randomize(net)
    x = torch.randn(1, 6, 1, 16, 16)
    y = x.clone()
    y[:, 3:] = torch.randn_like(y[:, 3:])
    with torch.no_grad():
        a, b = net(x, torch.full((1,), 500)), net(y, torch.full((1,), 500))
    assert torch.allclose(a[:, :3], b[:, :3], atol=1e-5)
    assert not torch.allclose(a[:, 3:], b[:, 3:], atol=1e-3)


@pytest.mark.parametrize("pair, message", [(["spacetime"], "NAME=VALUE"), (["width=3"], "NAME=VALUE"),
                                           (["spacetime=3"], "expected a value like False"),
                                           (["channel_mults=(1,2)"], None), (["min_snr_gamma=5"], None),
                                           (["frame_attention_from=1"], None)])
def test_config_overrides(pair, message):
    from argparse import Namespace

    from minivid.families import with_overrides

    if message:
        with pytest.raises(ValueError, match=message):
            with_overrides(video_diffusion.PRESETS["nano"], Namespace(set=pair))
    else:
        name, value = pair[0].split("=")
        assert getattr(with_overrides(video_diffusion.PRESETS["nano"], Namespace(set=pair)), name) == eval(value)


def _with_predictor(width=8, net="unet"):
    from argparse import Namespace

    from minivid.families import with_overrides

    return with_overrides(video_diffusion.PRESETS["nano"], Namespace(set=[f"predictor={width}", f"predictor_net={net}"]))


@pytest.mark.parametrize("net", video_diffusion.PREDICTOR_NETS)
def test_a_predictor_grows_from_a_trained_model_exactly_and_sees_only_the_context(net):
    plain = video_diffusion.Model(video_diffusion.PRESETS["nano"]).eval()
    _randomize(plain)
    grown = video_diffusion.continued(plain, _with_predictor(net=net)).eval()
    assert grown.net.config.in_channels == 4 and grown.predictor is not None
    _randomize(grown.predictor)  # a trained predictor: its guess still enters through zero stem weights
    context = torch.rand(2, 3, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(plain.generate(context, 2, seed=3, steps=2, progress=False),
                           grown.generate(context, 2, seed=3, steps=2, start=1.0, progress=False))  # from noise
    # the guess keeps the given frames and depends on nothing else: not on the frames to be generated
    cond, mask = torch.rand(2, 5, 1, 64, 64) * 2 - 1, torch.tensor([[1.0, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    other = cond.clone()
    other[0, 3:], other[1, 1:] = 0.5, -0.3
    with torch.no_grad():
        guess = grown.guess(cond, mask)
        assert torch.equal(guess[0, :3], cond[0, :3]) and torch.equal(guess[1, :1], cond[1, :1])
        assert torch.equal(guess, grown.guess(other, mask))
    mean = grown.predict_mean(context, 2)
    assert mean.shape == (2, 2, 1, 64, 64) and 0 <= mean.min() and mean.max() <= 1
    assert torch.equal(grown.generate(context, 2, sampler="predictor"), mean)  # what the protocol can score
    assert grown.network_evaluations(3, 2, sampler="predictor") == 1
    with pytest.raises(ValueError, match="no denoising trace"):
        grown.generate(context, 2, sampler="predictor", return_trace=True)
    with pytest.raises(ValueError, match="unknown sampler"):
        plain.generate(context, 2, sampler="predictor")
    assert grown.network_evaluations(3, 2, steps=5, start=1.0) == 6  # 5 steps from noise + the predictor's call
    assert grown.network_evaluations(3, 2, steps=5, start=1.0, guidance=1.0) == 12
    assert grown.network_evaluations(3, 2, steps=5) == 3  # by default from the guess: steps 250 and 0 of 5
    with pytest.raises(ValueError, match="predictor=8"):  # growing never drops the predictor
        video_diffusion.continued(grown, video_diffusion.PRESETS["nano"])
    other_net = next(n for n in video_diffusion.PREDICTOR_NETS if n != net)
    with pytest.raises(ValueError, match=f"predictor_net={net}"):  # nor swaps it for another kind
        video_diffusion.continued(grown, _with_predictor(net=other_net))
    # growing something else keeps what the predictor learned
    kept = video_diffusion.continued(grown, dataclasses.replace(grown.config, min_snr_gamma=5.0)).eval()
    with torch.no_grad():
        assert torch.equal(kept.guess(cond, mask), guess)
    with pytest.raises(ValueError, match="no predictor"):
        plain.predict_mean(context, 2)
    with pytest.raises(ValueError, match="no guess channel"):
        plain(torch.randn(1, 4, 1, 64, 64), torch.tensor([5]), guess=torch.zeros(1, 4, 1, 64, 64))


@pytest.mark.parametrize("net", video_diffusion.PREDICTOR_NETS)
def test_the_predictor_learns_the_future_with_plain_mse_and_round_trips(tmp_path, net):
    from minivid import checkpoints, data

    torch.manual_seed(0)
    model = video_diffusion.Model(_with_predictor(8, net))
    clips = data.moving_mnist(range(2), seed=0, num_frames=12)
    given = torch.zeros(2, 12)
    given[:, :10] = 1
    x0 = clips * 2 - 1

    def guess_mse():
        with torch.no_grad():
            return ((model.guess(x0, given) - x0)[:, 10:] ** 2).mean().item()

    before = guess_mse()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(15):  # the loss includes the predictor's MSE, so its guess must improve on one batch
        loss = model.loss(clips)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss) and guess_mse() < 0.7 * before
    path = tmp_path / "with_predictor.pt"
    checkpoints.export(model, "diffusion", path)
    again = checkpoints.load(path)
    assert (again.config.predictor, again.config.predictor_net) == (8, net)  # stored in half precision: equal to within that
    torch.testing.assert_close(again.predict_mean(clips[:1, :10], 3), model.eval().predict_mean(clips[:1, :10], 3),
                               atol=2e-2, rtol=0)


def test_predictor_only_trains_the_predictor_alone_and_then_grows_into_joint_training(tmp_path):
    from argparse import Namespace

    from minivid import checkpoints, data

    torch.manual_seed(0)
    plain = video_diffusion.Model(video_diffusion.PRESETS["nano"])
    _randomize(plain)
    path = tmp_path / "plain.pt"
    checkpoints.export(plain, "diffusion", path)
    sets = ["predictor=8", "predictor_net=framestack"]
    alone = video_diffusion.build("nano", Namespace(set=[*sets, "predictor_only=True"], init=str(path)))
    assert not any(p.requires_grad for p in alone.net.parameters())
    assert all(p.requires_grad for p in alone.predictor.parameters())
    clips = data.moving_mnist(range(2), seed=0, num_frames=20)
    loss = alone.loss(clips)
    loss.backward()  # the loss is the predictor's MSE on the frames to be generated, nothing of the denoiser
    assert all(p.grad is None for p in alone.net.parameters())
    assert all(p.grad is not None for p in alone.predictor.parameters())
    x0 = clips * 2 - 1
    torch.manual_seed(1)
    again = alone.loss(clips)
    torch.manual_seed(1)  # the same context lengths drawn: the loss is the guess's MSE where nothing is given
    k = torch.where(torch.rand(2) < 0.5, 10, torch.randint(1, 11, (2,)))
    k = torch.where(torch.rand(2) < alone.config.p_uncond, 0, k)
    given = (torch.arange(20)[None] < k[:, None]).float()
    per_frame = ((alone.guess(x0, given) - x0) ** 2).mean(dim=(2, 3, 4))
    torch.testing.assert_close(again, (per_frame * (1 - given)).sum() / (1 - given).sum())
    # the pre-trained predictor then continues with the denoiser, which still samples as before it was grown
    out = tmp_path / "alone.pt"
    checkpoints.export(alone, "diffusion", out)
    joint = video_diffusion.build("nano", Namespace(set=sets, init=str(out))).eval()
    assert not joint.config.predictor_only and all(p.requires_grad for p in joint.parameters())
    context = torch.rand(1, 3, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(joint.predict_mean(context, 2), checkpoints.load(out).predict_mean(context, 2))
        assert torch.equal(joint.generate(context, 2, seed=3, steps=2, start=1.0, progress=False),
                           checkpoints.load(path).generate(context, 2, seed=3, steps=2, progress=False))
    # or a denoiser trained with a guess takes a predictor trained alone for longer (--predictor-from)
    fresh = tmp_path / "fresh.pt"
    checkpoints.export(video_diffusion.Model(dataclasses.replace(joint.config, predictor_only=True)), "diffusion", fresh)
    both = video_diffusion.build("nano", Namespace(set=sets, init=str(fresh), predictor_from=str(out))).eval()
    with torch.no_grad():
        assert torch.equal(both.guess(x0, given), joint.guess(x0, given))
        assert torch.equal(both.net.stem.weight, checkpoints.load(fresh).net.stem.weight)  # the denoiser: --init's
    with pytest.raises(ValueError, match="--predictor-from needs a diffusion or hybrid export whose predictor matches"):
        video_diffusion.build("nano", Namespace(set=sets, init=str(fresh), predictor_from=str(path)))
    with pytest.raises(ValueError, match="predictor_only trains the predictor alone"):
        video_diffusion.Model(dataclasses.replace(video_diffusion.PRESETS["nano"], predictor_only=True))


def test_the_context_probe_gives_a_predictor_model_its_guess_as_sampling_does():
    from minivid import data, diffusion

    model = video_diffusion.continued(video_diffusion.Model(video_diffusion.PRESETS["nano"]), _with_predictor(net="framestack")).eval()
    _randomize(model)  # the guess channel's stem weights too: the guess now changes the output
    clips = data.moving_mnist(range(2), seed=0, num_frames=20)
    rows = diffusion.context_probe(model, clips, [600], context=10, seed=0)
    x0 = diffusion.to_model_range(clips)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((2,), 600)
    x_t = diffusion.q_sample(x0, t, eps, model.alpha_bar)
    given = torch.zeros(2, 20)
    given[:, :10] = 1
    with torch.no_grad():
        for mask, key in ((given, "mse_with"), (torch.zeros_like(given), "mse_without")):
            out = model(x_t, t, cond=x0, cond_mask=mask, guess=model.guess(x0, mask))
            x0_hat, _ = diffusion.x0_eps_from(model.config.prediction, out, x_t, t, model.alpha_bar)
            error = ((diffusion.from_model_range(x0_hat[:, 10:]) - clips[:, 10:]) ** 2).sum(dim=(2, 3, 4)).mean()
            assert rows[0][key] == pytest.approx(error.item(), rel=1e-5)


def test_a_predictor_model_makes_its_guess_when_a_caller_leaves_it_out():
    """A hand-written sampler (exercise 02) calls model(x, t, cond, mask): it must see what generate's loop sees."""
    model = video_diffusion.continued(video_diffusion.Model(video_diffusion.PRESETS["nano"]), _with_predictor(net="framestack")).eval()
    _randomize(model)  # the guess channel's stem weights too: a missing guess would change the output
    x, cond = torch.randn(2, 4, 1, 64, 64), torch.rand(2, 4, 1, 64, 64) * 2 - 1
    mask, t = torch.tensor([[1.0, 1, 0, 0], [1, 0, 0, 0]]), torch.tensor([500, 900])
    with torch.no_grad():
        given = model(x, t, cond, mask, model.guess(cond, mask))
        assert torch.equal(model(x, t, cond, mask), given)
        assert not torch.equal(model.net(x, t, cond, mask), given)  # the network alone reads zeros: not the same
