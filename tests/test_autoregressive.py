"""The VQ-VAE tokenizer, the causal transformer with its KV cache, and autoregressive sampling."""

import argparse
import warnings

import pytest
import torch

from minivid import autoregressive as ar
from minivid import checkpoints, data
from minivid.models import transformer as tfm
from minivid.models import vqvae

TINY_TF = tfm.Config(vocab_size=16, grid=8, max_frames=4, layers=2, width=32, heads=4)
TINY_VQ = vqvae.Config(hidden=8, codebook_size=16, code_dim=4)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return ar.Model(ar.Config(TINY_VQ, TINY_TF)).eval()


# -- the vector quantizer ------------------------------------------------------------------------


def quantizer(**kw):
    args = dict(codebook_size=8, code_dim=4, beta=0.25, ema_decay=0.5, dead_after=0.1) | kw
    return vqvae.VectorQuantizer(**args)


def test_nearest_is_brute_force_nearest():
    q = quantizer()
    z = torch.nn.functional.normalize(torch.randn(50, 4), dim=1)
    brute = torch.cdist(z, q.codebook).argmin(1)
    assert torch.equal(q.nearest(z), brute)


def test_straight_through_and_commitment():
    q = quantizer().eval()  # eval: no codebook update
    z_e = torch.randn(2, 4, 3, 3, requires_grad=True)
    z_q, ids, stats = q(z_e)
    unit = torch.nn.functional.normalize(z_e.detach(), dim=1)
    expected = q.codebook[ids]  # (2, 3, 3, 4)
    assert torch.allclose(z_q.detach().permute(0, 2, 3, 1), expected, atol=1e-6)  # forward: the codebook entries
    assert stats["commitment_loss"].item() == pytest.approx(((unit.permute(0, 2, 3, 1) - expected) ** 2).mean().item(), rel=1e-5)
    weight = torch.randn_like(z_q)
    (z_q * weight).sum().backward()
    # backward: straight through the lookup, so z_e's gradient is that of normalize(z_e) applied to `weight`
    ref = z_e.detach().clone().requires_grad_(True)
    (torch.nn.functional.normalize(ref, dim=1) * weight).sum().backward()
    assert torch.allclose(z_e.grad, ref.grad, atol=1e-6)


def test_ema_moves_entries_to_their_vectors_and_restarts_dead_ones():
    torch.manual_seed(0)
    q = quantizer(codebook_size=4, dead_after=0.5).train()
    target = torch.nn.functional.normalize(torch.tensor([1.0, 1.0, 0.0, 0.0]), dim=0)
    z = target.repeat(16, 1) + 0.01 * torch.randn(16, 4)
    for _ in range(20):
        q(z.T.reshape(1, 4, 4, 4))
    used = q.nearest(torch.nn.functional.normalize(z, dim=1))
    assert torch.allclose(q.codebook[used[0]], target, atol=0.05)  # the used entry sits on the data
    # every entry that was restarted was set to a data vector, so all entries are near the data too
    assert (q.codebook @ target > 0.95).all()


def test_vqvae_shapes_ranges_and_errors():
    torch.manual_seed(0)
    model = vqvae.VQVAE(TINY_VQ).eval()
    video = data.standard_test_set(2)[:, :3]
    tokens = model.encode(video)
    assert tokens.shape == (2, 3, 8, 8) and tokens.dtype == torch.int64
    out = model.decode(tokens)
    assert out.shape == video.shape and 0 <= out.min() and out.max() <= 1
    stats = model.codebook_stats(video)
    assert 1 <= stats["used"] <= 16 and 1 <= stats["perplexity"] <= stats["used"] + 1e-4
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        model.decode(torch.full((1, 1, 8, 8), 16))
    loss = model.loss(video)
    assert loss.ndim == 0 and torch.isfinite(loss)


# -- the transformer ------------------------------------------------------------------------------


def test_transformer_is_causal_and_cache_matches_full_pass():
    torch.manual_seed(0)
    net = tfm.VideoTransformer(TINY_TF).eval()
    x = torch.randint(0, 16, (2, 100))
    full = net(x)
    y = x.clone()
    y[:, 60] = (y[:, 60] + 1) % 16
    changed = net(y)
    assert torch.allclose(full[:, :60], changed[:, :60], atol=1e-5)  # no position sees the future
    assert not torch.allclose(full[:, 60:], changed[:, 60:])
    cache = net.new_cache(2)
    pieces = [net(x[:, :37], cache), *(net(x[:, i : i + 1], cache) for i in range(37, 50)), net(x[:, 50:], cache)]
    assert torch.allclose(torch.cat(pieces, 1), full, atol=1e-5)


def test_transformer_window_error():
    net = tfm.VideoTransformer(TINY_TF)
    with pytest.raises(ValueError, match="window of 256 tokens"):
        net(torch.zeros(1, 257, dtype=torch.long))


def test_transformer_presets_within_budget():
    for name, cfg in tfm.PRESETS.items():
        params = sum(p.numel() for p in tfm.VideoTransformer(cfg).parameters())
        assert params <= 10e6, name


# -- sampling ------------------------------------------------------------------------------------


def test_filter_logits():
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    assert torch.isinf(ar.filter_logits(logits, top_k=2)[0, 2:]).all()
    assert torch.isfinite(ar.filter_logits(logits, top_k=2)[0, :2]).all()
    probs = logits.softmax(-1)[0]  # 0.644, 0.237, 0.087, 0.032
    kept = torch.isfinite(ar.filter_logits(logits, top_p=0.7)[0])
    assert kept.tolist() == [True, True, False, False]  # 0.644 < 0.7, so the second token completes the nucleus
    assert torch.isfinite(ar.filter_logits(logits, top_p=0.5)[0]).tolist() == [True, False, False, False]
    assert torch.allclose(ar.filter_logits(logits, temperature=2.0), logits / 2)
    assert probs.sum().item() == pytest.approx(1.0)
    for bad in ({"temperature": 0}, {"temperature": -1}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ValueError):
            ar.filter_logits(logits, **bad)


def test_gumbel_draws_follow_softmax():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    g = ar.gumbel_noise((40_000, 4), torch.Generator().manual_seed(0), "cpu")
    counts = torch.bincount(ar.draw(logits.expand(40_000, 4), g), minlength=4).float() / 40_000
    assert torch.allclose(counts, logits.softmax(-1), atol=0.01)


def test_cached_uncached_and_parallel_decoding_agree(tiny_model):
    ctx = data.standard_test_set(2)[:, :2]
    _, a = tiny_model.generate(ctx, 1, seed=3, progress=False, return_trace=True)
    _, b = tiny_model.generate(ctx, 1, seed=3, progress=False, return_trace=True, use_cache=False)
    _, c = tiny_model.generate(ctx, 1, seed=3, progress=False, return_trace=True, decoding="parallel", iterations=64)
    assert torch.equal(a["tokens"], b["tokens"]) and torch.equal(a["tokens"], c["tokens"])
    assert len(a["steps"][0]) == 64 and (a["steps"][0][0] >= 0).sum() == 2  # one token per step for the batch of 2
    assert torch.equal(a["steps"][0][-1], a["tokens"][:, 0])
    assert a["entropy"].shape == a["prob"].shape == (2, 1, 8, 8)
    with warnings.catch_warnings():  # past the 4-frame window: the cache is rebuilt as the window slides
        warnings.simplefilter("ignore")
        long = [tiny_model.generate(ctx[:1], 4, seed=1, progress=False, return_trace=True, **kw)[1]["tokens"]
                for kw in ({}, {"use_cache": False}, {"decoding": "parallel", "iterations": 64})]
    assert torch.equal(long[0], long[1]) and torch.equal(long[0], long[2])
    assert (a["prob"] > 0).all() and (a["prob"] <= 1).all()


def test_generate_seeds_shapes_and_window(tiny_model):
    ctx = data.standard_test_set(1)[:, :2]
    one = tiny_model.generate(ctx, 1, seed=0, progress=False)
    assert one.shape == (1, 1, 1, 64, 64) and 0 <= one.min() and one.max() <= 1
    assert torch.equal(one, tiny_model.generate(ctx, 1, seed=0, progress=False))
    tokens = [tiny_model.generate(ctx, 1, seed=s, progress=False, return_trace=True)[1]["tokens"] for s in range(3)]
    assert not (torch.equal(tokens[0], tokens[1]) and torch.equal(tokens[1], tokens[2]))
    assert tiny_model.generate(torch.zeros(1, 0, 1, 64, 64), 1, progress=False).shape == (1, 1, 1, 64, 64)
    with pytest.warns(UserWarning, match="window slides"):
        long = tiny_model.generate(ctx, 3, seed=0, progress=False, decoding="parallel", iterations=2)  # 5 frames > 4
    assert long.shape == (1, 3, 1, 64, 64)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_frames": 0}, "positive integer"),
        ({"temperature": 0.0}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"decoding": "beam"}, "decoding"),
        ({"decoding": "parallel", "iterations": 0}, "iterations"),
    ],
)
def test_generate_bad_input(tiny_model, kwargs, message):
    ctx = data.standard_test_set(1)[:, :2]
    args = {"num_frames": 1} | kwargs
    with pytest.raises(ValueError, match=message):
        tiny_model.generate(ctx, progress=False, **args)


def test_context_longer_than_window(tiny_model):
    with pytest.raises(ValueError, match="window is 4"):
        tiny_model.generate(data.standard_test_set(1)[:, :4], 1, progress=False)


def test_teacher_forced_shape_and_loss_learns(tiny_model):
    clips = data.standard_test_set(2)[:, :4]
    assert tiny_model.teacher_forced(clips, context=2).shape == (2, 2, 1, 64, 64)
    torch.manual_seed(0)
    model = ar.Model(ar.Config(TINY_VQ, TINY_TF))
    codebook = model.tokenizer.quantizer.codebook.clone()
    opt = torch.optim.AdamW(model.transformer.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = model.train().loss(clips)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]  # it memorizes two clips' tokens
    assert torch.equal(model.tokenizer.quantizer.codebook, codebook)  # the tokenizer stays frozen in training
    assert not any(p.requires_grad for p in model.tokenizer.parameters())


def test_export_and_load_roundtrip(tmp_path, tiny_model):
    checkpoints.export(tiny_model, "autoregressive", tmp_path / "ar.pt", preset=None)
    loaded = checkpoints.load(tmp_path / "ar.pt")
    assert loaded.config == tiny_model.config
    ctx = data.standard_test_set(1)[:, :2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = tiny_model.generate(ctx, 1, seed=0, progress=False, return_trace=True)[1]["tokens"]
        b = loaded.generate(ctx, 1, seed=0, progress=False, return_trace=True)[1]["tokens"]
    assert (a == b).float().mean() > 0.9  # fp16 storage may flip a near-tie or two


def test_own_tokens_feed_the_models_own_draws_not_the_targets(tiny_model, monkeypatch):
    import dataclasses

    model = ar.Model(dataclasses.replace(tiny_model.config, own_tokens=0.9))
    model.load_state_dict(tiny_model.state_dict())
    seen, forward = [], model.transformer.forward

    def sure_of_7(inputs, *args, **kwargs):  # the model puts all its mass on token 7 everywhere
        seen.append(inputs.clone())
        logits = forward(inputs, *args, **kwargs).clone()
        logits[..., 7] += 100.0
        return logits

    monkeypatch.setattr(model.transformer, "forward", sure_of_7)
    torch.manual_seed(0)
    loss = model.loss(data.standard_test_set(4))
    assert torch.isfinite(loss) and len(seen) == 2  # one pass to draw, one to learn
    true, mixed = seen
    assert torch.equal(true, model.shifted(model.sequence(data.standard_test_set(4)[:, :model.config.transformer.max_frames])))
    changed = mixed != true
    assert changed.any() and (mixed[changed] == 7).all()  # every replaced input is the model's own draw
    assert torch.equal(mixed[:, 0], true[:, 0])  # the start token stays
    assert ar.from_config(checkpoints.config_dict(model)).config.own_tokens == 0.9
    with pytest.raises(ValueError, match="own-tokens"):
        ar.build("tiny", argparse.Namespace(init=None, own_tokens=1.0))


def test_token_noise_corrupts_inputs_not_targets(tiny_model):
    import dataclasses

    clips = data.standard_test_set(2)
    torch.manual_seed(0)
    clean = tiny_model.loss(clips)
    noisy_model = ar.Model(dataclasses.replace(tiny_model.config, token_noise=0.5))
    noisy_model.load_state_dict(tiny_model.state_dict())
    torch.manual_seed(0)
    noisy = noisy_model.loss(clips)
    assert torch.isfinite(noisy) and not torch.equal(clean, noisy)
    assert ar.from_config(checkpoints.config_dict(noisy_model)).config.token_noise == 0.5
    with pytest.raises(ValueError, match="token-noise"):
        ar.build("tiny", argparse.Namespace(init=None, token_noise=1.5))
