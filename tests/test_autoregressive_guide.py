"""The autoregressive model's guide: a frozen predictor's guess of the frames a window has yet to make, read by the
positions that predict their tokens. It starts at zero, reads only given frames, every decoder agrees with it, the
counts include the predictor, and `build` takes the predictor from a diffusion export."""

import dataclasses
import warnings
from argparse import Namespace

import pytest
import torch

from minivid import autoregressive as ar
from minivid import bench, checkpoints, data, video_diffusion
from minivid.models import transformer as tfm
from minivid.models import vqvae

TINY_TF = tfm.Config(vocab_size=16, grid=8, max_frames=4, layers=2, width=32, heads=4)  # a 4-frame window
TINY_VQ = vqvae.Config(hidden=8, codebook_size=16, code_dim=4)
SEQUENTIAL = {"decoding": "diagonal", "lag": 64, "row_lag": 8}  # diagonal decoding that is sequential decoding


def plain():
    torch.manual_seed(0)
    return ar.Model(ar.Config(TINY_VQ, TINY_TF)).eval()


@pytest.fixture(scope="module")
def guided():
    model = ar.with_guide(plain(), 8).eval()
    torch.manual_seed(1)
    for p in model.predictor.parameters():  # a predictor and a guide that make a difference (both start useless)
        torch.nn.init.normal_(p, std=0.2)
    torch.nn.init.normal_(model.guide_in.weight, std=2.0)
    return model


def generate(model, ctx, num_frames, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # past the 4-frame window the model warns that it slides
        return model.generate(ctx, num_frames, progress=False, return_trace=True, **kwargs)[1]["tokens"]


def test_a_new_guide_starts_as_the_model_without_one():
    before = plain()
    after = ar.with_guide(before, 8).eval()
    assert after.config.predictor == 8 and not after.guide_in.weight.any()
    assert not any(p.requires_grad for p in after.predictor.parameters())
    clips = data.standard_test_set(2)[:, :4]
    assert torch.equal(after.teacher_forced(clips, 2), before.teacher_forced(clips, 2))
    assert torch.equal(generate(after, clips[:, :2], 2, seed=4), generate(before, clips[:, :2], 2, seed=4))


def test_the_guide_reads_only_given_frames(guided):
    clips = data.standard_test_set(2)[:, :4]
    given = (torch.arange(4) < 2).expand(2, 4)
    guide = guided.guide(clips, given)
    assert guide.shape == (2, 4 * 64, 32)
    assert not guide[:, :128].any() and guide[:, 128:].abs().sum(-1).gt(0).all()  # zeros where frames are given
    changed = clips.clone()
    changed[:, 2:] = torch.rand_like(changed[:, 2:])  # what comes later never changes the guide
    assert torch.equal(guided.guide(changed, given), guide)
    changed[:, 1] = 0  # a given frame does
    assert not torch.equal(guided.guide(changed, given), guide)
    assert not guided.guide(clips, torch.zeros(2, 4, dtype=torch.bool)).any()  # nothing given: no guess


def test_the_guess_is_what_the_guide_encodes(guided):
    clips = data.standard_test_set(2)[:, :4]
    given = (torch.arange(4) < 2).expand(2, 4)
    guess = guided.guess(clips, given)
    assert guess.shape == clips.shape and guess.min() >= 0 and guess.max() <= 1
    assert torch.equal(guess[:, :2], clips[:, :2]) and not torch.equal(guess[:, 2:], clips[:, 2:])  # given frames kept
    changed = clips.clone()
    changed[:, 2:] = torch.rand_like(changed[:, 2:])  # the frames to come are not read
    assert torch.equal(guided.guess(changed, given), guess)
    with torch.no_grad():
        z = torch.nn.functional.normalize(guided.tokenizer.encoder((guess[:, 2:] * 2 - 1).flatten(0, 1)), dim=1)
        expected = guided.guide_in(z.view(2, 2, -1, 64).transpose(2, 3).flatten(1, 2))
    torch.testing.assert_close(guided.guide(clips, given)[:, 128:], expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="no predictor"):
        plain().guess(clips, given)
    for wrong in (torch.tensor([[True, False, True, False]] * 2), given.long(), given[:1]):  # not a prefix, ints, 1 clip
        with pytest.raises(ValueError, match="prefix of each window"):
            guided.guess(clips, wrong)


def test_the_predictor_reads_at_most_its_context_the_latest_frames(guided):
    clips = data.standard_test_set(2)[:, :4]
    short = ar.Model(dataclasses.replace(guided.config, predictor_context=2)).eval()
    short.load_state_dict(guided.state_dict())
    given = (torch.arange(4) < 3).expand(2, 4)
    guide = short.guide(clips, given)
    changed = clips.clone()
    changed[:, 0] = 0  # older than the two it reads
    assert torch.equal(short.guide(changed, given), guide)
    # the same as giving the two latest frames at the window's start: frame 3 here is frame 2 there
    moved = short.guide(torch.cat([clips[:, 1:], clips[:, :1]], 1), (torch.arange(4) < 2).expand(2, 4))
    torch.testing.assert_close(guide[:, 3 * 64:], moved[:, 2 * 64 : 3 * 64])
    assert not torch.allclose(guided.guide(clips, given), guide)  # the full context reads frame 0 too


def test_generating_reads_the_guide_that_training_gives(guided):
    """The draws of `generate` come from the logits of one teacher-forced pass over what it drew, with the guide
    `loss` computes for a window opening with the context: generation and training align the guide alike."""
    ctx = data.standard_test_set(2)[:, :2]
    with torch.no_grad():
        _, trace = guided.generate(ctx, 2, seed=5, progress=False, return_trace=True)
        tokens = torch.cat([guided.sequence(ctx), trace["tokens"].flatten(1)], 1)
        pixels = torch.cat([ctx, torch.zeros_like(ctx)], 1)
        guide = guided.guide(pixels, (torch.arange(4) < 2).expand(2, 4))
        probs = guided.transformer(guided.shifted(tokens), guide=guide)[:, 128:].softmax(-1)
    chosen = probs.gather(-1, trace["tokens"].flatten(1)[..., None])[..., 0]
    torch.testing.assert_close(chosen, trace["prob"].flatten(1), atol=1e-5, rtol=1e-4)


def test_loss_with_a_guide_on_every_training_order(guided):
    clips = data.standard_test_set(2)[:, :4]
    for config in (dict(diagonal_lags=(8,), diagonal_rate=1.0), dict(own_tokens=0.5, token_noise=0.2)):
        model = ar.Model(dataclasses.replace(guided.config, **config)).train()
        model.load_state_dict(guided.state_dict())
        assert all(torch.isfinite(model.loss(clips)) for _ in range(4))


@pytest.mark.parametrize("num_context, num_frames", [(2, 2), (1, 5), (0, 5)])  # (1, 5) and (0, 5) slide the window
def test_every_decoder_agrees_with_a_guide(guided, num_context, num_frames):
    ctx = data.standard_test_set(2)[:, :num_context]
    tokens = generate(guided, ctx, num_frames, seed=3)
    assert torch.equal(tokens, generate(guided, ctx, num_frames, seed=3, use_cache=False))
    assert torch.equal(tokens, generate(guided, ctx, num_frames, seed=3, decoding="parallel", iterations=64))
    assert torch.equal(tokens, generate(guided, ctx, num_frames, seed=3, **SEQUENTIAL))
    unguided = ar.with_guide(plain(), 8).eval()  # the same transformer, its guide at zero
    assert not torch.equal(tokens, generate(unguided, ctx, num_frames, seed=3))  # the guide is read


@pytest.mark.parametrize("num_context, num_frames, kwargs", [
    (2, 2, {}),
    (1, 5, {}),                                       # the window slides: a new guess each time
    (0, 5, {}),                                       # nothing to guess from until the window slides
    (2, 2, {"use_cache": False}),
    (1, 5, {"use_cache": False}),
    (2, 2, {"decoding": "diagonal", "lag": 16}),
    (1, 6, {"decoding": "diagonal", "lag": 16}),
    (0, 6, {"decoding": "diagonal", "lag": 60}),      # frames still in flight when the window slides
])
def test_network_evaluations_count_the_predictor(guided, num_context, num_frames, kwargs):
    ctx = data.standard_test_set(1)[:, :num_context]
    guesses = []
    hook = guided.predictor.register_forward_pre_hook(lambda module, inputs: guesses.append(1))
    try:
        with bench.counting_calls(guided) as calls, torch.no_grad():
            generate(guided, ctx, num_frames, **kwargs)
    finally:
        hook.remove()
    assert guided.network_evaluations(num_context, num_frames, **kwargs) == len(calls)
    assert len(calls) - len(guesses) == plain().network_evaluations(num_context, num_frames, **kwargs)
    windows = 1 + max(0, num_context + num_frames - TINY_TF.max_frames)
    assert 0 < len(guesses) <= windows - (num_context == 0)


def test_training_moves_the_guide_not_the_predictor(guided):
    model = ar.with_guide(plain(), 8).train()
    model.predictor.load_state_dict(guided.predictor.state_dict())
    loss = model.loss(data.standard_test_set(4)[:, :4])
    loss.backward()
    assert model.guide_in.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.predictor.parameters())
    assert model.predictor.training is False and model.tokenizer.training is False


def test_build_takes_a_diffusion_models_predictor(tmp_path):
    checkpoints.export(plain(), "autoregressive", tmp_path / "ar.pt", preset=None)
    video = video_diffusion.Model(video_diffusion.Config(**{**video_diffusion.PRESETS["nano"].__dict__, "num_frames": 4,
                                                            "predictor": 8, "predictor_net": "framestack"}))
    for p in video.predictor.parameters():
        torch.nn.init.normal_(p, std=0.05)
    checkpoints.export(video, "diffusion", tmp_path / "video.pt", preset="nano")
    args = Namespace(init=str(tmp_path / "ar.pt"), set=["predictor=8"], predictor_from=str(tmp_path / "video.pt"))
    model = ar.build("small", args)
    taken = checkpoints.load(tmp_path / "video.pt").predictor.state_dict()
    assert all(torch.equal(v, taken[k]) for k, v in model.predictor.state_dict().items())
    assert model.config.predictor == 8 and not model.guide_in.weight.any()
    assert model.config.predictor_context == video.config.max_context  # the contexts its predictor was trained on
    checkpoints.export(model, "autoregressive", tmp_path / "guided.pt", preset=None)  # it saves and loads whole
    loaded = checkpoints.load(tmp_path / "guided.pt")
    assert loaded.config == model.config and loaded.predictor is not None
    again = ar.build("small", Namespace(init=str(tmp_path / "guided.pt"), set=None, predictor_from=None))
    assert again.config.predictor == 8  # continuing keeps the guide
    with pytest.raises(ValueError, match="does not train its predictor"):
        ar.build("small", Namespace(init=str(tmp_path / "ar.pt"), set=["predictor=8"], predictor_from=None))
    with pytest.raises(ValueError, match=r"add --set predictor=W"):
        ar.build("small", Namespace(init=str(tmp_path / "ar.pt"), set=None, predictor_from=str(tmp_path / "video.pt")))
    with pytest.raises(ValueError, match=r"--predictor-from needs a diffusion or hybrid export .*\(predictor=16"):
        ar.build("small", Namespace(init=str(tmp_path / "ar.pt"), set=["predictor=16"], predictor_from=str(tmp_path / "video.pt")))
    with pytest.raises(ValueError, match="takes --set predictor=W only"):
        ar.build("small", Namespace(init=str(tmp_path / "ar.pt"), set=["token_noise=0.5"], predictor_from=None))
    with pytest.raises(ValueError, match="continue it with --set predictor=8"):
        ar.build("small", Namespace(init=str(tmp_path / "guided.pt"), set=["predictor=16"], predictor_from=None))
    long = video_diffusion.Model(video_diffusion.Config(**{**video_diffusion.PRESETS["nano"].__dict__,
                                                           "predictor": 8, "predictor_net": "framestack"}))
    checkpoints.export(long, "diffusion", tmp_path / "long.pt", preset="nano")
    with pytest.raises(ValueError, match="over this run's 4 frames"):
        ar.build("small", Namespace(init=str(tmp_path / "ar.pt"), set=["predictor=8"], predictor_from=str(tmp_path / "long.pt")))
