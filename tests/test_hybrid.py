"""The AR-diffusion hybrid: per-frame noise in training, causality, schedules, sliding windows, errors."""

import pytest
import torch

from minivid import data, diffusion, hybrid, schedules


def nano(**changes):
    base = dict(hybrid.PRESETS["nano"].__dict__)
    base.update(num_frames=6, max_context=3, **changes)
    torch.manual_seed(0)
    return hybrid.Model(hybrid.Config(**base)).eval()


def test_training_timesteps_respect_the_constraint():
    model = nano()
    g = torch.Generator().manual_seed(0)
    t, mask = model.training_timesteps(256, generator=g)
    assert t.shape == mask.shape == (256, 6)
    assert int(t.min()) >= -1 and int(t.max()) < 1000
    schedules.check_nondecreasing(t)  # later frames at least as noisy, the given prefix included
    given = mask == 0
    assert given.any() and (~given).any()
    assert bool((t[given] < model.config.context_noise).all())  # the prefix is clean or lightly noised
    # a given prefix is a prefix: once a frame counts, every later one does
    assert bool((mask[:, 1:] >= mask[:, :-1]).all())
    independent = nano(noise="independent")
    t2, _ = independent.training_timesteps(256, generator=torch.Generator().manual_seed(0))
    assert not bool((t2[:, 1:] >= t2[:, :-1]).all())


def test_loss_is_finite_and_trains():
    model = nano().train()
    clips = data.moving_mnist(range(4), seed=0, num_frames=6)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    torch.manual_seed(0)
    first = model.loss(clips)
    assert first.ndim == 0 and torch.isfinite(first)
    for _ in range(30):
        opt.zero_grad()
        model.loss(clips).backward()
        opt.step()
    torch.manual_seed(0)
    with torch.no_grad():
        assert float(model.loss(clips)) < float(first)


def test_the_network_is_causal_in_time():
    model = nano()
    for p in model.parameters():  # zero-initialised layers would hide a leak
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(1, 6, 1, 64, 64)
    t = torch.tensor([[0, 100, 200, 300, 400, 500]])
    y = model(x, t)
    x2 = x.clone()
    x2[:, 4:] = torch.randn(1, 2, 1, 64, 64)
    t2 = t.clone()
    t2[:, 4:] = 999
    y2 = model(x2, t2)
    assert torch.allclose(y[:, :4], y2[:, :4], atol=1e-5)  # the past never sees the future
    assert not torch.allclose(y[:, 4:], y2[:, 4:], atol=1e-3)


def test_schedule_grids_and_network_evaluations():
    model = nano()
    assert model.schedule_grid(3, "synchronous", steps=4).shape == (5, 3)
    assert model.schedule_grid(3, "autoregressive", steps=4).shape == (13, 3)
    assert model.schedule_grid(3, "pyramid", steps=4, lag=1).shape == (7, 3)
    context = data.standard_test_set(2)[:, :3]
    for name, expected in [("synchronous", 4), ("autoregressive", 12), ("pyramid", 6)]:
        video, trace = model.generate(context, 3, steps=4, lag=1, schedule=name, progress=False, return_trace=True)
        assert video.shape == (2, 3, 1, 64, 64)
        assert 0 <= float(video.min()) and float(video.max()) <= 1
        assert [chunk["evaluations"] for chunk in trace] == [expected]
        assert trace[0]["timesteps"][-1].tolist() == [-1, -1, -1]  # every frame ends clean


def test_generate_is_seeded_and_context_matters():
    model = nano()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    clips = data.standard_test_set(2)
    a = model.generate(clips[:, :3], 3, seed=1, steps=3, progress=False)
    b = model.generate(clips[:, :3], 3, seed=1, steps=3, progress=False)
    c = model.generate(clips[:, :3], 3, seed=2, steps=3, progress=False)
    d = model.generate(clips[:, 3:6], 3, seed=1, steps=3, progress=False)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)
    noisy = model.generate(clips[:, :3], 3, seed=1, steps=3, context_noise=50, progress=False)
    assert not torch.equal(a, noisy)


def test_long_rollouts_slide_the_window():
    model = nano()
    video, trace = model.generate(data.standard_test_set(1)[:, :3], 8, steps=2, schedule="synchronous",
                                  progress=False, return_trace=True)
    assert video.shape == (1, 8, 1, 64, 64)
    assert [chunk["grid"].shape[1] for chunk in trace] == [3, 3, 2]  # window 6 = 3 context + 3 new
    assert [chunk["context"] for chunk in trace] == [3, 3, 3]
    free = model.generate(torch.zeros(1, 0, 1, 64, 64), 7, steps=2, progress=False)  # unconditional
    assert free.shape == (1, 7, 1, 64, 64)


def test_level_to_timestep_maps_the_ends():
    levels = torch.tensor([[4, 4], [3, 4], [1, 2], [0, 0]])
    t = hybrid.level_to_timestep(levels, 4, 1000)
    assert t[0].tolist() == [999, 999] and t[-1].tolist() == [-1, -1] and t[2, 0] == 0
    assert torch.equal(t[:, 0], t[:, 0].sort(descending=True).values)


def test_custom_grid_and_bad_inputs():
    model = nano()
    context = data.standard_test_set(1)[:, :3]
    grid = torch.tensor([[2, 2], [1, 2], [1, 1], [0, 0]])
    video = model.generate(context, 2, steps=2, schedule=grid, progress=False)
    assert video.shape == (1, 2, 1, 64, 64)
    with pytest.raises(ValueError, match="not non-decreasing"):
        model.generate(context, 2, steps=2, schedule=torch.tensor([[2, 2], [2, 1], [0, 0]]), progress=False)
    with pytest.raises(ValueError, match="lag"):
        model.generate(context, 2, steps=2, lag=-1, progress=False)
    with pytest.raises(ValueError, match="num_frames"):
        model.generate(context, 0, progress=False)
    with pytest.raises(ValueError, match="unknown schedule"):
        model.generate(context, 2, schedule="diagonal", progress=False)
    with pytest.raises(ValueError, match="context_noise"):
        model.generate(context, 2, context_noise=1000, progress=False)
    with pytest.raises(ValueError, match="noise"):
        hybrid.Model(hybrid.Config(noise="sometimes"))
    assert diffusion.alpha_bar_at(model.alpha_bar, torch.tensor([-1])).item() == 1.0


def test_starting_from_a_diffusion_model():
    from minivid import video_diffusion

    torch.manual_seed(0)
    video = video_diffusion.Model(video_diffusion.PRESETS["nano"])
    with torch.no_grad():  # a "trained" spatial network; temporal layers still at their zero start
        for name, p in video.net.named_parameters():
            if ".temporal." not in name:
                p.add_(0.05 * torch.randn_like(p))
    model = hybrid.from_diffusion_model(video, hybrid.PRESETS["nano"])
    x, t = torch.randn(2, 5, 1, 64, 64), torch.randint(0, 1000, (2, 5))
    with torch.no_grad():  # no context given: the extra channels add nothing, so both networks agree
        assert torch.allclose(model(x, t), video(x, t), atol=1e-5)
    # causal temporal conv taps keep their meaning: (past, now) move to the last two of (2 back, past, now)
    src = dict(video.net.named_parameters())
    for name, p in model.net.named_parameters():
        if name.endswith("temporal.conv.weight"):
            assert torch.equal(p[..., 1:], src[name][..., :2]) and not p[..., 0].any()
    assert torch.equal(model.net.stem.weight, src["stem.weight"][:, :4])
    with pytest.raises(ValueError, match="base_channels"):
        hybrid.from_diffusion_model(video, hybrid.PRESETS["tiny"])


def test_build_continues_a_hybrid_and_names_what_differs(tmp_path):
    from argparse import Namespace

    from minivid import checkpoints

    torch.manual_seed(0)
    checkpoints.export(hybrid.Model(hybrid.PRESETS["nano"]), "hybrid", tmp_path / "h.pt", preset="nano")
    again = hybrid.build("nano", Namespace(init=str(tmp_path / "h.pt"), noise=None))
    assert again.training and again.config == hybrid.PRESETS["nano"]
    with pytest.raises(ValueError, match=r"noise \('nondecreasing' there, 'independent' here\)"):
        hybrid.build("nano", Namespace(init=str(tmp_path / "h.pt"), noise="independent"))


def _with_predictor(**changes):
    model = nano(predictor=8, **changes)
    for p in model.parameters():  # zero-initialised layers (the guess channel's stem weights) would hide the guess
        torch.nn.init.normal_(p, std=0.05)
    return model


def test_a_predictor_hybrid_reads_a_guess_made_from_the_past_alone():
    from minivid import bench

    model = _with_predictor()
    x = torch.randn(1, 6, 1, 64, 64)
    t = torch.tensor([[-1, -1, 100, 200, 300, 400]])
    with torch.no_grad():
        y = model(x, t)
        guess = model.guess(x, torch.tensor([[1, 1, 0, 0, 0, 0]]))
        assert torch.equal(y, model(x, t, guess=guess))  # a plain call guesses from the clean prefix, as sampling does
        assert torch.equal(guess[:, :2], x[:, :2])  # the given frames are kept as given
        assert not torch.allclose(y, model.net(x, t, guess=torch.zeros_like(x)), atol=1e-3)  # the guess is read
        x2 = x.clone()
        x2[:, 4:] = torch.randn(1, 2, 1, 64, 64)
        y2 = model(x2, t)
    assert torch.allclose(y[:, :4], y2[:, :4], atol=1e-5)  # still causal: the past never sees the future
    # sampling: one guess per window (a slide makes a new one from the new past), counted as a network call
    context = data.standard_test_set(1)[:, :3]
    with bench.counting_calls(model) as calls, torch.no_grad():
        video = model.generate(context, 5, seed=0, steps=2, progress=False)
    assert video.shape == (1, 5, 1, 64, 64) and 0 <= float(video.min()) and float(video.max()) <= 1
    assert model.network_evaluations(3, 5, steps=2) == len(calls)
    assert len(calls) - nano().network_evaluations(3, 5, steps=2) == 2  # two windows: 3 frames, then 2


def test_predictor_only_then_joint_and_predictor_from_a_diffusion_model(tmp_path):
    from argparse import Namespace

    from minivid import checkpoints, video_diffusion

    torch.manual_seed(0)
    checkpoints.export(hybrid.Model(hybrid.PRESETS["nano"]), "hybrid", tmp_path / "plain.pt", preset="nano")
    alone = hybrid.build("nano", Namespace(init=str(tmp_path / "plain.pt"), set=["predictor=8", "predictor_only=True"]))
    assert not any(p.requires_grad for p in alone.net.parameters()) and alone.predictor is not None
    clips = data.moving_mnist(range(2), seed=0, num_frames=20)
    torch.manual_seed(1)
    loss = alone.loss(clips)
    loss.backward()  # the predictor's MSE where nothing is given: no gradient reaches the network
    assert all(p.grad is None for p in alone.net.parameters())
    assert all(p.grad is not None for p in alone.predictor.parameters())
    torch.manual_seed(1)
    x0 = clips * 2 - 1
    _, mask = alone.training_timesteps(2)
    per_frame = ((alone.guess(x0, 1 - mask) - x0) ** 2).mean(dim=(2, 3, 4))
    torch.testing.assert_close(loss.detach(), (per_frame * mask).sum() / mask.sum())
    # grown into joint training: the network samples exactly as before, its guess channel's weights at zero
    checkpoints.export(alone, "hybrid", tmp_path / "alone.pt", preset="nano")
    joint = hybrid.build("nano", Namespace(init=str(tmp_path / "alone.pt"), set=["predictor=8"])).eval()
    assert all(p.requires_grad for p in joint.parameters())
    context = data.standard_test_set(1)[:, :3]
    plain = checkpoints.load(tmp_path / "plain.pt")
    assert torch.equal(joint.generate(context, 2, seed=3, steps=2, progress=False),
                       plain.generate(context, 2, seed=3, steps=2, progress=False))
    # --predictor-from: a diffusion model's frame-stack predictor of the same width
    video = video_diffusion.Model(video_diffusion.Config(**{**video_diffusion.PRESETS["nano"].__dict__,
                                                            "predictor": 8, "predictor_net": "framestack"}))
    for p in video.predictor.parameters():
        torch.nn.init.normal_(p, std=0.05)
    checkpoints.export(video, "diffusion", tmp_path / "video.pt", preset="nano")
    took = hybrid.build("nano", Namespace(init=str(tmp_path / "alone.pt"), set=["predictor=8"],
                                          predictor_from=str(tmp_path / "video.pt")))
    with torch.no_grad():
        given = torch.tensor([[1.0] * 10 + [0.0] * 10])
        torch.testing.assert_close(took.guess(x0[:1], given), checkpoints.load(tmp_path / "video.pt").guess(x0[:1], given))
    with pytest.raises(ValueError, match=r"--predictor-from needs a diffusion or hybrid export .* predictor=0"):
        hybrid.build("nano", Namespace(init=str(tmp_path / "alone.pt"), set=["predictor=8"],
                                       predictor_from=str(tmp_path / "plain.pt")))
    with pytest.raises(ValueError, match="predictor_only trains the predictor alone"):
        nano(predictor_only=True)
    # a hybrid made from that diffusion model keeps its predictor and the stem's guess weights
    converted = hybrid.from_diffusion_model(video, hybrid.Config(**{**hybrid.PRESETS["nano"].__dict__, "predictor": 8}))
    p2 = converted.config.patch ** 2
    assert torch.equal(converted.net.stem.weight[:, p2:], video.net.stem.weight[:, 3 * p2:])
    assert torch.equal(converted.predictor.mix_in.weight, video.predictor.mix_in.weight)
