"""The spacetime-patch diffusion Transformer: exact patches, adaLN-zero, the caption's path, generate, the CLI."""

import json

import pytest
import torch
from einops import rearrange

from minivid import captions, checkpoints, cli, dit_video
from minivid.models.dit import DiT, DiTConfig, patchify, sincos_positions, unpatchify
from minivid.train import TrainConfig, Trainer


CAPTION = "a 3 moving down-left and a 7 moving right"


def nano(seed=0):
    torch.manual_seed(seed)
    return dit_video.Model(dit_video.PRESETS["nano"])


def opened(model, seed=1):
    """The model with every zero-initialised weight set to small random values: all paths open, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def inputs(b=2, t=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 1, 64, 64, generator=g), torch.tensor([10, 900][:b])


def test_patchify_unpatchify_are_exact_inverses():
    video = torch.randn(2, 6, 3, 64, 64)
    tokens = patchify(video, patch_t=2, patch=8)
    assert tokens.shape == (2, 3 * 8 * 8, 2 * 8 * 8 * 3)
    assert torch.equal(unpatchify(tokens, 6, 64, patch_t=2, patch=8), video)
    assert torch.equal(patchify(unpatchify(tokens, 6, 64, 2, 8), 2, 8), tokens)
    ti, hi, wi = 1, 5, 2  # token (time 1, row 5, col 2) holds frames 2-3, pixels rows 40-47, cols 16-23
    tube = video[0, 2 * ti : 2 * ti + 2, :, 8 * hi : 8 * hi + 8, 8 * wi : 8 * wi + 8]
    assert torch.equal(tokens[0, (ti * 8 + hi) * 8 + wi], rearrange(tube, "pt c ph pw -> (pt ph pw c)"))


def test_3d_positions_are_distinct_and_need_a_multiple_of_6():
    pos = sincos_positions(10, 8, 8, 48)
    assert pos.shape == (640, 48) and len(torch.unique(pos, dim=0)) == 640
    with pytest.raises(ValueError, match="multiple of 6"):
        sincos_positions(10, 8, 8, 64)


def test_adaln_zero_blocks_start_as_identity_and_the_output_at_zero():
    model = nano()
    net = model.net
    x_t, t = inputs()
    cond = torch.rand_like(x_t)
    text = captions.encode([CAPTION, None])
    assert torch.equal(net(x_t, t, cond, torch.ones(2, 4), text), torch.zeros_like(x_t))  # exactly zero
    x = torch.randn(2, 128, net.config.width)
    c = torch.randn(2, net.config.width)
    words, mask = net.text(text)
    for block in net.blocks:
        assert torch.equal(block(x, c, words, mask), x)
    # and so, at initialisation, the caption has no gradient: training opens its path
    net.text.words.weight.requires_grad_(True)
    net(x_t, t, text=text).sum().backward()
    assert not net.text.words.weight.grad.any()


def test_the_caption_reaches_the_output_after_a_few_steps():
    model = nano()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(3):  # step 1 opens the final layer, step 2 the gates and cross-attention
        loss = model.loss(dit_video.make_batch(step, 2))
        opt.zero_grad()
        loss.backward()
        opt.step()
    x_t, t = inputs()
    model.zero_grad()
    out = model(x_t, t, text=captions.encode([CAPTION, CAPTION]))
    out.square().sum().backward()
    assert model.net.text.words.weight.grad.abs().sum() > 0
    with torch.no_grad():
        other = model(x_t, t, text=captions.encode(["a 1 moving up", "a 1 moving up"]))
        none = model(x_t, t, text=captions.encode([None, None]))
    assert not torch.allclose(out, other) and not torch.allclose(out, none)


def test_context_frames_pass_through_and_the_mask_gates_them():
    net = opened(nano()).net
    x_t, t = inputs(t=6)
    cond, mask = torch.rand_like(x_t), torch.tensor([[1, 1, 1, 0, 0, 0]] * 2).float()
    changed = cond.clone()
    changed[:, :2] = torch.rand_like(changed[:, :2])  # other context frames
    with torch.no_grad():
        a, b = net(x_t, t, cond, mask), net(x_t, t, changed, mask)
        assert (a[:, 4:] - b[:, 4:]).abs().max() > 1e-4  # the generated frames see the context
        hidden = cond.clone()
        hidden[:, 3:] = torch.rand_like(hidden[:, 3:])  # pixels at frames the mask says are not given
        assert torch.equal(net(x_t, t, cond, mask), net(x_t, t, hidden, mask))


def test_future_tokens_hold_the_context_without_attention():
    """Each future tube gets the last given frame in its context channel, so the context reaches the frames to
    be generated even with no token mixing at all (every self-attention's output zeroed). Without the
    broadcast it can only arrive by attention, which training never learned to aim (the DiT ignored it)."""
    import dataclasses

    x_t, t = inputs(t=6)
    cond, mask = torch.rand_like(x_t), torch.tensor([[1, 1, 1, 0, 0, 0]] * 2).float()
    changed = cond.clone()
    changed[:, 2] = torch.rand_like(changed[:, 2])  # another last given frame
    for broadcast in (True, False):
        torch.manual_seed(0)
        config = dataclasses.replace(dit_video.PRESETS["nano"], broadcast_context=broadcast)
        net = opened(dit_video.Model(config)).net
        with torch.no_grad():
            for block in net.blocks:
                block.attn.out.weight.zero_()
                block.attn.out.bias.zero_()
            a, b = net(x_t, t, cond, mask), net(x_t, t, changed, mask)
        assert ((a[:, 4:] - b[:, 4:]).abs().max() > 1e-4) == broadcast  # frames 4-5: a tube with no given frame
    assert dit_video.Config().broadcast_context  # new models are built with it
    old = dataclasses.asdict(dit_video.PRESETS["nano"])
    del old["broadcast_context"]  # an export written before the option existed
    assert not dit_video.from_config(old).config.broadcast_context


def test_clean_context_makes_the_given_frames_noise_free():
    import dataclasses

    torch.manual_seed(0)
    model = opened(dit_video.Model(dataclasses.replace(dit_video.PRESETS["nano"], clean_context=True)))
    x_t, t = inputs(t=6)
    cond, mask = torch.rand_like(x_t), torch.tensor([[1, 1, 1, 1, 0, 0]] * 2).float()
    renoised = x_t.clone()
    renoised[:, :4] = torch.randn_like(renoised[:, :4])  # other noise on the given frames only
    with torch.no_grad():
        assert torch.equal(model(x_t, t, cond, mask), model(renoised, t, cond, mask))
        plain = opened(nano())
        plain.load_state_dict(model.state_dict())  # the same weights without the option: the noise matters
        assert not torch.equal(plain(x_t, t, cond, mask), plain(renoised, t, cond, mask))


def test_null_caption_is_learned_and_padding_is_masked():
    enc = nano().net.text
    ids = captions.encode([CAPTION, None])
    words, mask = enc(ids)
    assert torch.equal(mask[0], ids[0] != captions.PAD_ID) and mask[1].all()
    assert torch.equal(words[1], enc.null.detach())


def test_generate_shapes_range_determinism_and_captions():
    model = opened(nano())
    empty = torch.zeros(2, 0, 1, 64, 64)
    video = model.generate(empty, 10, seed=0, progress=False, steps=2)  # the protocol API, no caption
    assert video.shape == (2, 10, 1, 64, 64) and video.min() >= 0 and video.max() <= 1
    assert torch.equal(video, model.generate(empty, 10, seed=0, progress=False, steps=2))
    assert not torch.equal(video, model.generate(empty, 10, seed=1, progress=False, steps=2))
    text = model.generate(empty, 10, seed=0, progress=False, steps=2, caption=CAPTION)
    guided = model.generate(empty, 10, seed=0, progress=False, steps=2, caption=[CAPTION, "an 8 moving up"], guidance=3.0)
    assert not torch.equal(text, video) and not torch.equal(guided[:1], text[:1])
    context = torch.rand(2, 3, 1, 64, 64)
    odd = model.generate(context, 4, seed=0, progress=False, steps=2)  # 7 frames: one more is made for whole tubes
    assert odd.shape == (2, 4, 1, 64, 64)
    out, trace = model.generate(context, 4, seed=0, progress=False, steps=2, return_trace=True)
    assert torch.equal(out, odd) and len(trace) == 2 and trace[0]["x0"].shape == (2, 4, 1, 64, 64)
    assert model.network_evaluations(3, 4, steps=2) == 2 and model.network_evaluations(3, 4, steps=2, guidance=1.0) == 4


@pytest.mark.parametrize("kwargs, message", [
    ({"caption": CAPTION, "guidance": -1.0}, "guidance must be >= 0"),
    ({"guidance": 2.0}, "guidance > 0 steers towards a caption"),
    ({"caption": "a 3 moving sideways"}, "unknown word 'sideways'.*vocabulary"),
    ({"caption": ""}, "caption is empty"),
    ({"caption": [CAPTION]}, "one caption per clip"),
    ({"num_frames": 19}, "at most 20"),
])
def test_generate_bad_input(kwargs, message):
    model = nano()
    kwargs = {"num_frames": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        model.generate(torch.zeros(2, 2, 1, 64, 64), progress=False, steps=1, **kwargs)


def test_network_shape_errors():
    net = nano().net
    with pytest.raises(ValueError, match="multiple of 2"):
        net(torch.zeros(1, 3, 1, 64, 64), torch.tensor([1]))
    with pytest.raises(ValueError, match="one timestep per clip"):
        net(torch.zeros(1, 2, 1, 64, 64), torch.tensor([[1, 2]]))
    with pytest.raises(ValueError, match="64x64"):
        net(torch.zeros(1, 2, 1, 32, 32), torch.tensor([1]))


def test_parameter_counts():
    counts = {name: sum(p.numel() for p in dit_video.Model(cfg).parameters()) for name, cfg in dit_video.PRESETS.items()}
    assert counts == {"nano": 161_584, "tiny": 2_167_856, "small": 4_602_496, "base": 7_764_352}  # as PRESETS' comments say
    assert counts["small"] <= 10_000_000 and max(counts.values()) <= 10_000_000
    assert DiT(DiTConfig(width=48, depth=1, heads=2, text_width=32, text_heads=2)).config.text_len == captions.MAX_WORDS


def test_training_steps_lower_nothing_to_nan(tmp_path):
    model = nano()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(model, TrainConfig(steps=3, batch_size=2, lr=1e-3, warmup_steps=1, progress=False, log_every=1),
                      dit_video.make_batch)
    history = trainer.fit()
    assert len(history) == 3 and all(torch.isfinite(torch.tensor(row["loss"])) for row in history)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    clips, ids = dit_video.make_batch(0, 2)
    assert torch.isfinite(model.loss(clips))  # clips alone: every caption is "no caption"


def test_cli_train_export_load_and_continue(tmp_path, capsys):
    export = tmp_path / "dit.pt"
    assert cli.main(["train", "dit", "--steps", "2", "--preset", "nano", "--device", "cpu", "--batch-size", "2",
                     "--out", str(tmp_path / "run"), "--export", str(export)]) == 0
    manifest = json.loads(export.with_suffix(".json").read_text())
    assert manifest["family"] == "dit" and manifest["parameters"] == 161_584
    assert manifest["metrics"]["training"]["steps"] == 2
    model = checkpoints.load(export)
    assert model.family == "dit" and model.config == dit_video.PRESETS["nano"]
    video = model.generate(torch.zeros(1, 0, 1, 64, 64), 2, steps=1, progress=False, caption=CAPTION, guidance=1.0)
    assert video.shape == (1, 2, 1, 64, 64)
    assert cli.main(["sample", "dit", "--checkpoint", str(export), "--num", "1", "--steps", "1", "--num-frames", "2",
                     "--out", str(tmp_path / "s.gif")]) == 0  # the protocol's API: context in, frames out
    assert cli.main(["evaluate", str(export), "--clips", "1", "--batch-size", "1", "--device", "cpu",
                     "--kwargs", '{"steps": 1}']) == 0
    assert json.loads(export.with_suffix(".json").read_text())["metrics"]["protocol"]["clips"] == 1
    assert cli.main(["train", "dit", "--steps", "1", "--preset", "nano", "--device", "cpu", "--batch-size", "2",
                     "--init", str(export), "--set", "p_text_only=1.0", "--out", str(tmp_path / "run2")]) == 0
    capsys.readouterr()
    assert cli.main(["train", "dit", "--steps", "1", "--preset", "tiny", "--device", "cpu", "--init", str(export),
                     "--out", str(tmp_path / "run3")]) == 2
    assert "different network" in capsys.readouterr().err
