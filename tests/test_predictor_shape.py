"""A frame-stack predictor's shape (channels per frame, translator blocks) is part of the config: it builds, saves
and loads with it, a continued run keeps it, and `--predictor-from` takes a predictor of the shape the run asks for
(the token model's guide takes its source's shape with it), also in place of one of another shape; `--steps 0`
exports such a model untrained."""

from argparse import Namespace

import pytest
import torch

from minivid import autoregressive as ar
from minivid import checkpoints, cli, hybrid, video_diffusion
from minivid.models import transformer as tfm
from minivid.models import vqvae


def diffusion(**shape):
    fields = {**video_diffusion.PRESETS["nano"].__dict__, "num_frames": 4, "predictor": 8, "predictor_net": "framestack"}
    model = video_diffusion.Model(video_diffusion.Config(**{**fields, **shape}))
    torch.manual_seed(0)
    for p in model.predictor.parameters():
        torch.nn.init.normal_(p, std=0.05)
    return model


def test_the_shape_builds_the_predictor_and_round_trips(tmp_path):
    default, wide = diffusion(), diffusion(predictor_hidden=8, predictor_blocks=2)
    assert default.predictor.hidden == 16 and len(default.predictor.translator) == 6
    assert wide.predictor.hidden == 8 and len(wide.predictor.translator) == 2
    assert wide.predictor.enc_full[0].out_channels == 8 and wide.predictor.mix_in.in_channels == 4 * 8
    checkpoints.export(wide, "diffusion", tmp_path / "wide.pt", preset="nano")
    loaded = checkpoints.load(tmp_path / "wide.pt")
    assert loaded.config == wide.config
    for k, v in loaded.predictor.state_dict().items():  # stored in half precision
        torch.testing.assert_close(v, wide.predictor.state_dict()[k], atol=1e-3, rtol=1e-2)
    h = hybrid.Model(hybrid.Config(**{**hybrid.PRESETS["nano"].__dict__, "predictor": 8, "predictor_blocks": 3}))
    assert len(h.predictor.translator) == 3 and h.predictor.hidden == 16


def test_predictor_from_needs_the_shape_asked_for_and_the_token_model_takes_its_sources(tmp_path):
    checkpoints.export(diffusion(predictor_hidden=8, predictor_blocks=2), "diffusion", tmp_path / "wide.pt", preset="nano")
    checkpoints.export(diffusion(), "diffusion", tmp_path / "default.pt", preset="nano")
    start = video_diffusion.Model(video_diffusion.Config(**{**video_diffusion.PRESETS["nano"].__dict__, "num_frames": 4}))
    checkpoints.export(start, "diffusion", tmp_path / "start.pt", preset="nano")
    ask = ["num_frames=4", "predictor=8", "predictor_net=framestack"]
    with pytest.raises(ValueError, match=r"matches this run's \(predictor=8 predictor_net=framestack\); .* "
                                         r"predictor_hidden=8 predictor_blocks=2"):
        video_diffusion.build("nano", Namespace(init=str(tmp_path / "start.pt"), set=ask, predictor_from=str(tmp_path / "wide.pt")))
    took = video_diffusion.build("nano", Namespace(init=str(tmp_path / "start.pt"), set=ask + ["predictor_hidden=8", "predictor_blocks=2"],
                                                   predictor_from=str(tmp_path / "wide.pt")))
    assert took.predictor.hidden == 8
    checkpoints.export(took, "diffusion", tmp_path / "took.pt", preset="nano")
    with pytest.raises(ValueError, match=r"has a predictor \(predictor=8 predictor_net=framestack predictor_hidden=8 "
                                         r"predictor_blocks=2\); continue it with --set predictor=8 --set "
                                         r"predictor_net=framestack --set predictor_hidden=8 --set predictor_blocks=2"):
        video_diffusion.build("nano", Namespace(init=str(tmp_path / "took.pt"), set=ask, predictor_from=None))
    # a predictor of another shape in its place, trained alone: the network is kept, the new predictor starts fresh
    fresh = video_diffusion.build("nano", Namespace(init=str(tmp_path / "took.pt"), set=ask + ["predictor_only=True"],
                                                    predictor_from=None))
    assert fresh.predictor.hidden == 16 and len(fresh.predictor.translator) == 6
    kept = checkpoints.load(tmp_path / "took.pt").net.state_dict()
    assert all(torch.equal(v, kept[k]) for k, v in fresh.net.state_dict().items())
    assert not any(p.requires_grad for p in fresh.net.parameters())
    # the token model: --set predictor=W, and the shape comes with the source
    torch.manual_seed(0)
    plain = ar.Model(ar.Config(vqvae.Config(hidden=8, codebook_size=16, code_dim=4),
                               tfm.Config(vocab_size=16, grid=8, max_frames=4, layers=2, width=32, heads=4))).eval()
    checkpoints.export(plain, "autoregressive", tmp_path / "ar.pt", preset=None)
    guided = ar.build("small", Namespace(init=str(tmp_path / "ar.pt"), set=["predictor=8"], predictor_from=str(tmp_path / "wide.pt")))
    assert (guided.config.predictor_hidden, guided.config.predictor_blocks) == (8, 2)
    taken = checkpoints.load(tmp_path / "wide.pt").predictor.state_dict()
    assert all(torch.equal(v, taken[k]) for k, v in guided.predictor.state_dict().items())
    checkpoints.export(guided, "autoregressive", tmp_path / "guided.pt", preset=None)
    assert checkpoints.load(tmp_path / "guided.pt").config == guided.config
    # a guided model takes a predictor of another shape in place of its own: its guide's mapping is kept
    swapped = ar.build("small", Namespace(init=str(tmp_path / "guided.pt"), set=None, predictor_from=str(tmp_path / "default.pt")))
    assert (swapped.config.predictor_hidden, swapped.config.predictor_blocks) == (16, 6)
    taken = checkpoints.load(tmp_path / "default.pt").predictor.state_dict()
    assert all(torch.equal(v, taken[k]) for k, v in swapped.predictor.state_dict().items())
    before = checkpoints.load(tmp_path / "guided.pt").state_dict()
    assert all(torch.equal(v, before[k]) for k, v in swapped.state_dict().items() if not k.startswith("predictor."))


def test_a_shape_that_cannot_be_built_or_is_not_read_is_refused(tmp_path):
    for bad in ({"predictor_hidden": 6}, {"predictor_hidden": 0}, {"predictor_blocks": 0}, {"predictor": 12}):
        with pytest.raises(ValueError, match="a frame-stack predictor needs a width that is a positive multiple of 8"):
            diffusion(**bad)
    unet = {**video_diffusion.PRESETS["nano"].__dict__, "predictor": 8, "predictor_net": "unet", "predictor_blocks": 2}
    with pytest.raises(ValueError, match="predictor_hidden and predictor_blocks shape a frame-stack predictor"):
        video_diffusion.Model(video_diffusion.Config(**unet))
    with pytest.raises(ValueError, match="shape a frame-stack predictor: give the hybrid one"):
        hybrid.Model(hybrid.Config(**{**hybrid.PRESETS["nano"].__dict__, "predictor_hidden": 8}))
    # a hybrid started from a diffusion model (--init) whose predictor has another shape: the error names --init
    wide = video_diffusion.Model(video_diffusion.Config(**{**video_diffusion.PRESETS["nano"].__dict__, "predictor": 8,
                                                           "predictor_net": "framestack", "predictor_hidden": 8}))
    checkpoints.export(wide, "diffusion", tmp_path / "wide.pt", preset="nano")
    with pytest.raises(ValueError, match=r"--init needs a diffusion or hybrid export whose predictor matches this run's "
                                         r"\(predictor=8\); .* predictor_hidden=8"):
        hybrid.build("nano", Namespace(init=str(tmp_path / "wide.pt"), set=["predictor=8"], predictor_from=None))
    took = hybrid.build("nano", Namespace(init=str(tmp_path / "wide.pt"), set=["predictor=8", "predictor_hidden=8"],
                                          predictor_from=None))
    assert took.predictor.hidden == 8


def test_a_predictor_of_another_shape_takes_the_place_of_the_old_one_and_steps_0_exports_it(tmp_path, capsys,
                                                                                           monkeypatch):
    checkpoints.export(diffusion(predictor_hidden=8, predictor_blocks=2), "diffusion", tmp_path / "narrow.pt", preset="nano")
    checkpoints.export(diffusion(), "diffusion", tmp_path / "wider.pt", preset="nano")
    narrow, wider = checkpoints.load(tmp_path / "narrow.pt"), checkpoints.load(tmp_path / "wider.pt")
    base = ["--preset", "nano", "--device", "cpu", "--predictor-from", str(tmp_path / "wider.pt"),
            "--set", "num_frames=4", "--set", "predictor=8"]
    args = ["train", "diffusion", "--init", str(tmp_path / "narrow.pt"), *base, "--set", "predictor_net=framestack"]
    out = tmp_path / "swapped.pt"
    assert cli.main([*args, "--steps", "0", "--export", str(out)]) == 0
    swapped, info = checkpoints.load_export(out)
    assert swapped.predictor.hidden == 16 and len(swapped.predictor.translator) == 6
    assert all(torch.equal(v, narrow.net.state_dict()[k]) for k, v in swapped.net.state_dict().items())
    assert all(torch.equal(v, wider.predictor.state_dict()[k]) for k, v in swapped.predictor.state_dict().items())
    assert info["metrics"]["training"] == {"steps": 0} and "--steps 0" in info["recipe"]
    # the hybrid, the same way
    h = hybrid.Model(hybrid.Config(**{**hybrid.PRESETS["nano"].__dict__, "num_frames": 4, "max_context": 2,
                                      "predictor": 8, "predictor_hidden": 8, "predictor_blocks": 2}))
    checkpoints.export(h, "hybrid", tmp_path / "h.pt", preset="nano")
    assert cli.main(["train", "hybrid", "--init", str(tmp_path / "h.pt"), *base, "--set", "max_context=2",
                     "--steps", "0", "--export", str(tmp_path / "h2.pt")]) == 0
    h2, h1 = checkpoints.load(tmp_path / "h2.pt"), checkpoints.load(tmp_path / "h.pt")
    assert h2.predictor.hidden == 16 and all(torch.equal(v, h1.net.state_dict()[k]) for k, v in h2.net.state_dict().items())
    assert all(torch.equal(v, wider.predictor.state_dict()[k]) for k, v in h2.predictor.state_dict().items())
    # without --predictor-from a predictor of a new shape is refused, unless it is trained alone
    with pytest.raises(ValueError, match=r"continue it with --set predictor=8 --set predictor_net=framestack --set "
                                         r"predictor_hidden=8 --set predictor_blocks=2, train a new one alone"):
        video_diffusion.build("nano", Namespace(init=str(tmp_path / "narrow.pt"), predictor_from=None,
                                                set=["num_frames=4", "predictor=8", "predictor_net=framestack"]))
    # under torchrun only rank 0 writes
    monkeypatch.setenv("RANK", "1")
    assert cli.main([*args, "--steps", "0", "--export", str(tmp_path / "rank1.pt")]) == 0
    assert not (tmp_path / "rank1.pt").exists()
    monkeypatch.delenv("RANK")
    # --steps 0 needs --predictor-from and --export, and no --minutes; negative steps are refused
    capsys.readouterr()
    no_source = [a for a in args if a not in ("--predictor-from", str(tmp_path / "wider.pt"))]
    no_init = [a for a in args if a not in ("--init", str(tmp_path / "narrow.pt"))]
    for bad in ([*args, "--steps", "0"], [*args, "--steps", "0", "--export", str(out), "--minutes", "1"],
                [*no_source, "--steps", "0", "--export", str(out)], [*no_init, "--steps", "0", "--export", str(out)]):
        assert cli.main(bad) == 2
        assert "--steps 0 assembles a model without training: --init MODEL, a predictor from" in capsys.readouterr().err
    assert cli.main([*args, "--steps", "-1", "--export", str(out)]) == 2
    assert "--steps must be 0 or more, got -1" in capsys.readouterr().err
