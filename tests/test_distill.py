"""The causal few-step student: the frame cache against the whole clip, stage 1, sampling, streaming, errors."""

import copy
import dataclasses
from argparse import Namespace

import pytest
import torch

from minivid import checkpoints, cli, data, diffusion, distill, hybrid, train, video_diffusion
from minivid.models import frame_cache
from minivid.models.unet3d import UNet3D

WINDOW = dict(num_frames=6, max_context=3)  # short clips keep every test fast


def randomise(model, std=0.05):
    """Every weight drawn at random: zero-initialised temporal layers would hide a wrong cache."""
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=std)
    return model


def teacher(**changes):
    base = {**video_diffusion.PRESETS["nano"].__dict__, **WINDOW, **changes}
    torch.manual_seed(0)
    return video_diffusion.Model(video_diffusion.Config(**base)).eval()


def student(**changes):
    base = {**distill.PRESETS["nano"].__dict__, **WINDOW, "teacher_steps": 4, **changes}
    torch.manual_seed(0)
    return distill.Model(distill.Config(**base)).eval()


def causal_net(spacetime=False, frame_attention_from=0):
    net = hybrid.Model(hybrid.Config(**{**hybrid.PRESETS["nano"].__dict__, **WINDOW, "spacetime": spacetime})).net
    if frame_attention_from:  # the temporal conv alone below that level
        net = UNet3D(dataclasses.replace(net.config, frame_attention_from=frame_attention_from))
    return randomise(net)


# -- the frame cache ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spacetime, frame_attention_from", [(False, 0), (True, 0), (False, 1)])
def test_cached_frames_equal_the_whole_clip(spacetime, frame_attention_from):
    net = causal_net(spacetime, frame_attention_from)
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
            frame_cache.forward(teacher().net, x[:, :1], t[:, :1], frame_cache.FrameCache(6))


# -- the teacher's trajectories ------------------------------------------------------------------------


def test_teacher_grid_passes_through_the_student_timesteps():
    grid = distill.teacher_grid((999, 749, 499, 249), 20)
    assert len(grid) == 20 and grid[0] == 999 and grid[-1] == 0 and grid == sorted(set(grid), reverse=True)
    assert {999, 749, 499, 249} <= set(grid)
    assert distill.teacher_grid((999,), 20) == diffusion.timesteps_for(1000, 20).tolist()  # the teacher's own


def test_teacher_trajectory_is_the_teacher_sampler():
    model = randomise(teacher()).eval()
    context = data.standard_test_set(2)[:, :3]
    expected = model.generate(context, 3, seed=5, steps=4, progress=False)
    clips = diffusion.to_model_range(torch.cat([context, torch.zeros(2, 3, 1, 64, 64)], 1))
    given = torch.arange(6)[None].expand(2, 6) < 3
    noise = torch.randn(2, 6, 1, 64, 64, generator=torch.Generator().manual_seed(5))
    states, x0 = distill.teacher_trajectory(model, clips, given, distill.teacher_grid((999,), 4), (999,), noise=noise)
    assert states.shape == (1, 2, 6, 1, 64, 64) and torch.equal(states[0], noise)
    assert (diffusion.from_model_range(x0[:, 3:]) - expected).abs().max() < 1e-5
    states, _ = distill.teacher_trajectory(model, clips, given, distill.teacher_grid((999, 499), 4), (999, 499), noise=noise)
    assert states.shape[0] == 2 and torch.equal(states[0], noise) and not torch.equal(states[1], noise)


# -- stage 1 -------------------------------------------------------------------------------------------


def test_stage1_loss_trains_the_student_only():
    t = randomise(teacher()).eval()
    model = distill.load_network(student(), t).attach_teacher(t).train()
    assert not any("teacher" in name for name in model.state_dict())  # never saved with the student
    assert copy.deepcopy(model).teacher is model.teacher  # the trainer's EMA copy shares it
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    clips = data.training_batch(0, 2, seed=0)
    torch.manual_seed(0)
    for _ in range(2):
        loss = model.loss(clips)
        assert loss.ndim == 0 and torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in t.parameters())
        assert sum(float(p.grad.abs().sum()) for p in model.parameters() if p.grad is not None) > 0
        opt.step()


def test_load_network_from_a_teacher_or_a_hybrid():
    t = randomise(teacher())
    model = distill.load_network(student(), t)
    converted = hybrid.from_diffusion_model(t, hybrid.Config(**{**hybrid.PRESETS["nano"].__dict__, **WINDOW}))
    assert all(torch.equal(a, b) for a, b in zip(model.net.state_dict().values(), converted.net.state_dict().values()))
    h = randomise(hybrid.Model(hybrid.Config(**{**hybrid.PRESETS["nano"].__dict__, **WINDOW})))
    model = distill.load_network(student(), h)
    assert all(torch.equal(a, b) for a, b in zip(model.net.state_dict().values(), h.net.state_dict().values()))
    with pytest.raises(ValueError, match="base_channels"):
        distill.load_network(student(base_channels=32), h)
    # a hybrid that reads a predictor's guess: its network without the guess channel's stem weights
    hp = randomise(hybrid.Model(hybrid.Config(**{**hybrid.PRESETS["nano"].__dict__, **WINDOW, "predictor": 8})))
    model = distill.load_network(student(), hp)
    p2 = hp.config.patch ** 2
    for name, value in model.net.state_dict().items():
        theirs = hp.net.state_dict()[name]
        assert torch.equal(value, theirs[:, :p2] if name == "stem.weight" else theirs)


# -- sampling and streaming ----------------------------------------------------------------------------


def test_generate_and_stream_agree_are_seeded_and_in_range():
    model = randomise(student()).eval()
    context = data.standard_test_set(2)[:, :2]
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[1]))
    video, trace = model.generate(context, 5, seed=3, steps=2, progress=False, return_trace=True)
    assert len(calls) == model.network_evaluations(2, 5, steps=2) == 1 + 5 * 2 + 4
    assert calls == [2] + [1] * 11 + [3] + [1] * 2  # the context, then one frame per call; a slide reads 3
    assert video.shape == (2, 5, 1, 64, 64) and 0 <= float(video.min()) and float(video.max()) <= 1
    assert [e["t"] for e in trace[:2]] == [999, 499] and len(trace) == 10
    frames = list(model.stream(context, 5, seed=3, steps=2))
    assert all(f.shape == (2, 1, 1, 64, 64) and not f.requires_grad for f in frames)
    assert torch.equal(torch.cat(frames, 1), video)
    assert torch.equal(model.generate(context, 5, seed=3, steps=2, progress=False), video)
    assert not torch.equal(model.generate(context, 5, seed=4, steps=2, progress=False), video)
    one, four = (model.generate(context, 2, seed=3, steps=s, progress=False) for s in (1, 4))
    assert one.shape == four.shape == (2, 2, 1, 64, 64) and not torch.equal(one, four)


def test_streaming_past_the_window_slides_it():
    model = randomise(student()).eval()
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[1]))
    context = data.standard_test_set(1)[:, :5]  # longer than max_context (3): the last 3 are kept
    video, trace = model.generate(context, 8, steps=1, progress=False, return_trace=True)
    assert video.shape == (1, 8, 1, 64, 64)
    assert [e["position"] for e in trace] == [3, 4, 5, 3, 4, 5, 3, 4]  # window 6: 3 kept + 3 new, then slide
    assert calls == [3, 1, 1, 1, 1, 1, 3, 1, 1, 1, 1, 1, 3, 1, 1, 1] and len(calls) == model.network_evaluations(5, 8, steps=1)
    free = list(model.stream(torch.zeros(1, 0, 1, 64, 64), 8, steps=1))  # unconditional: positions 0..5, then slide
    assert len(free) == 8
    _, trace = model.generate(torch.zeros(1, 0, 1, 64, 64), 8, steps=1, progress=False, return_trace=True)
    assert [e["position"] for e in trace] == [0, 1, 2, 3, 4, 5, 3, 4]


# -- bad input -----------------------------------------------------------------------------------------


def test_steps_outside_the_distilled_set_are_refused():
    model = student()
    context = data.standard_test_set(1)[:, :2]
    assert model.distilled_steps == (1, 2, 4) and model.timesteps_for(2) == (999, 499)
    for steps in (3, 0, 8, 2.0):
        with pytest.raises(ValueError, match=r"distilled for steps in \(1, 2, 4\)"):
            model.generate(context, 2, steps=steps, progress=False)
    with pytest.raises(ValueError, match="distilled for steps"):
        model.stream(context, 2, steps=3)  # at the call, not at the first frame
    with pytest.raises(ValueError, match="distilled for steps"):
        model.network_evaluations(2, 2, steps=3)
    with pytest.raises(ValueError, match="num_frames"):
        model.stream(context, 0)
    with pytest.raises(ValueError, match="frames must be 64x64"):
        model.generate(torch.zeros(1, 2, 1, 32, 32), 2, progress=False)
    with pytest.raises(ValueError, match="distilled for steps"):
        student(sample_steps=3)
    with pytest.raises(ValueError, match="timesteps must be distinct"):
        student(timesteps=(249, 999))
    with pytest.raises(ValueError, match="teacher_steps"):
        student(teacher_steps=6)


def test_teacher_student_mismatches_are_named():
    model = student()
    with pytest.raises(ValueError, match="num_frames is 8, the student's 6"):
        model.attach_teacher(teacher(num_frames=8))
    with pytest.raises(ValueError, match="schedule"):
        model.attach_teacher(teacher(schedule="linear"))
    with pytest.raises(ValueError, match="at most 2"):
        model.attach_teacher(teacher(max_context=2))
    with pytest.raises(ValueError, match="full-sequence diffusion"):
        model.attach_teacher(hybrid.Model(hybrid.Config(**{**hybrid.PRESETS["nano"].__dict__, **WINDOW})))
    with pytest.raises(RuntimeError, match="no teacher"):
        model.loss(data.training_batch(0, 1))
    with pytest.raises(ValueError, match="loss weights"):
        student(dmd=-1.0)
    with pytest.raises(ValueError, match="fake_warmup"):
        student(fake_warmup=-1)
    with pytest.raises(ValueError, match="without a predictor"):
        student(dmd=1.0).attach_teacher(teacher(predictor=8))
    model.attach_teacher(teacher())
    for bad in (torch.zeros(1, 6, 1, 32, 32), torch.zeros(1, 6, 3, 64, 64), torch.zeros(1, 4, 1, 64, 64)):
        with pytest.raises(ValueError, match="the student trains on clips"):
            model.loss(bad)


# -- the command line ----------------------------------------------------------------------------------


def test_cli_trains_a_student_and_exports_it_without_the_teacher(tmp_path):
    checkpoints.export(randomise(teacher()), "diffusion", tmp_path / "teacher.pt", preset="nano")
    window = ["--set", "num_frames=6", "--set", "max_context=3", "--set", "teacher_steps=4"]
    args = ["train", "student", "--preset", "nano", "--steps", "2", "--batch-size", "1", "--device", "cpu",
            "--teacher", str(tmp_path / "teacher.pt"), "--out", str(tmp_path / "run"), *window]
    assert cli.main([*args, "--export", str(tmp_path / "student.pt")]) == 0
    model, info = checkpoints.load_export(tmp_path / "student.pt")
    assert info["family"] == "student" and model.teacher is None and model.config.num_frames == 6
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert model.generate(data.standard_test_set(1)[:, :3], 2, steps=1, progress=False).shape == (1, 2, 1, 64, 64)
    built = distill.build("nano", Namespace(teacher=str(tmp_path / "teacher.pt"), init=str(tmp_path / "student.pt"),
                                            set=window[1::2]))
    assert built.training and built.teacher is not None
    assert cli.main([*args[:-6], "--set", "num_frames=8"]) == 2  # the teacher's clip is 6 frames: refused


# -- stage 2: distribution matching ------------------------------------------------------------------


def test_dmd_loss_pushes_along_fake_minus_real_on_the_students_frames_only():
    torch.manual_seed(0)
    sample = torch.randn(2, 4, 1, 8, 8, requires_grad=True)
    real, fake = torch.randn(2, 4, 1, 8, 8), torch.randn(2, 4, 1, 8, 8)
    future = torch.tensor([[0.0, 1, 1, 1], [0, 0, 1, 1]])
    distill.dmd_loss(sample, real, fake, future).backward()
    m = future[:, :, None, None, None]
    distance = ((sample.detach() - real).abs() * m).sum(dim=(1, 2, 3, 4)) / (future.sum(1) * 64)  # per clip
    expected = (fake - real) / distance[:, None, None, None, None] * m / (future.sum() * 64)
    torch.testing.assert_close(sample.grad, expected)
    assert sample.grad[0, 0].abs().sum() == 0 and sample.grad[1, :2].abs().sum() == 0  # the context is never pushed


def test_stage2_starts_with_stage1s_gradient_and_trains_the_fake_score_model():
    """The fake score model starts as the teacher, so the two agree and DMD's push is zero at first."""
    t = randomise(teacher()).eval()
    one = distill.load_network(student(), t).attach_teacher(t).train()
    two = distill.load_network(student(dmd=1.0, fake_warmup=0), t).attach_teacher(t).train()
    assert one.fake is None and all(torch.equal(a, b) for a, b in zip(two.fake.net.state_dict().values(),
                                                                       t.net.state_dict().values()))
    clips = data.training_batch(0, 2, seed=0)
    grads = []
    for model in (one, two):
        torch.manual_seed(0)
        model.loss(clips).backward()
        grads.append([p.grad for p in model.net.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-9)
    # every weight of the fake score model learns (DDP needs each used), from its own loss
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in two.fake.parameters())
    # the student and the fake are clipped apart; a model without training-only parts is one group
    assert [len(g) for g in train.clip_groups(two)] == [len(list(two.fake.parameters())), len(list(two.net.parameters()))]
    assert len(train.clip_groups(one)) == 1


def test_stage2_pushes_only_after_the_fake_score_models_warmup():
    t = randomise(teacher()).eval()
    one = distill.load_network(student(), t).attach_teacher(t).train()
    two = distill.load_network(student(dmd=1.0, fake_warmup=2), t).attach_teacher(t).train()
    with torch.no_grad():  # a fake score model that disagrees with the teacher
        for p in two.fake.parameters():
            p.add_(0.01 * torch.randn_like(p))
    clips = data.training_batch(0, 2, seed=0)
    same = []
    for call in range(3):
        grads = []
        for model in (one, two):
            model.zero_grad()
            torch.manual_seed(call)
            model.loss(clips).backward()
            grads.append([p.grad for p in model.net.parameters()])
        same.append(all(torch.allclose(b, a, rtol=1e-6, atol=1e-9) for a, b in zip(*grads)))
    assert same == [True, True, False] and int(two.fake.updates) == 3


def test_stage2_moves_the_students_frames_towards_the_teacher(monkeypatch):
    """With a stand-in teacher that answers black frames and a fake score model that answers the student's own
    frames, DMD alone (no regression) must make the student's frames darker; the other way round, brighter."""
    t = randomise(teacher()).eval()
    model = distill.load_network(student(dmd=1.0, regression=0.0, fake_warmup=0), t).attach_teacher(t).train()
    seen = []

    def black(x_t, level, clips, given):  # the teacher's x_0: black frames; records the student's clip
        seen.append(clips.clone())
        return torch.full_like(clips, -1.0)

    monkeypatch.setattr(model.teacher, "x0", black)
    original = distill.denoised  # the fake score model's x_0: the student's own frames; the teacher's trajectory as is
    monkeypatch.setattr(distill, "denoised", lambda net, x_t, level, clips, given, guess=None: clips.clone()
                        if net is model.fake else original(net, x_t, level, clips, given, guess))
    opt = torch.optim.Adam(model.net.parameters(), lr=1e-2)  # the student only
    clips = data.training_batch(0, 2, seed=0)
    for _ in range(4):
        torch.manual_seed(0)  # the same draws each time: only the student's weights change
        opt.zero_grad()
        model.loss(clips).backward()
        opt.step()
    future = (seen[0] != seen[-1]).flatten(2).any(dim=2)  # the frames the student made
    assert future.any() and (seen[-1] == seen[0])[~future].all()  # the context is the real one, untouched
    ink = [((clip + 1) / 2)[future].mean() for clip in (seen[0], seen[-1])]
    assert ink[1] < ink[0] - 0.01, ink


def test_stage2_from_the_cli_resumes_exactly_and_exports_without_the_fake_score_model(tmp_path):
    checkpoints.export(randomise(teacher()), "diffusion", tmp_path / "teacher.pt", preset="nano")

    def run(out, steps, export=None):
        args = ["train", "student", "--preset", "nano", "--batch-size", "1", "--device", "cpu", "--steps", str(steps),
                "--teacher", str(tmp_path / "teacher.pt"), "--out", str(tmp_path / out), "--set", "num_frames=6",
                "--set", "max_context=3", "--set", "teacher_steps=4", "--set", "dmd=0.5", "--set", "fake_warmup=1"]
        assert cli.main(args + (["--export", str(tmp_path / export)] if export else [])) == 0

    run("straight", 2, export="straight.pt")
    run("resumed", 1)
    run("resumed", 2, export="resumed.pt")  # resumes at step 1: needs the fake score model's weights and moments
    ckpt = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 2 and int(ckpt["model"]["fake.updates"]) == 2  # the run keeps the fake, to resume
    straight, resumed = (torch.load(tmp_path / f, weights_only=True)["state_dict"] for f in ("straight.pt", "resumed.pt"))
    assert straight.keys() == resumed.keys() and not any(k.startswith("fake.") for k in straight)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    model, info = checkpoints.load_export(tmp_path / "resumed.pt")
    assert model.fake is None and model.config.dmd == 0.5
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    run_model = checkpoints.load(tmp_path / "resumed" / "checkpoint.pt")  # a run checkpoint loads as a student too
    assert run_model.fake is None and run_model.family == "student"
