"""Diagonal decoding of the VQ autoregressive model: the schedule, the transformer's out-of-order cache,
equality with sequential decoding at the full lag, the counts, shapes and errors of `generate`, and training on the
diagonal order (one teacher-forced pass that replays the decoding loop's logits exactly)."""

import argparse
import warnings

import pytest
import torch

from minivid import autoregressive as ar
from minivid import bench, checkpoints, data
from minivid.models import transformer as tfm
from minivid.models import vqvae

TINY_TF = tfm.Config(vocab_size=16, grid=8, max_frames=4, layers=2, width=32, heads=4)  # a 4-frame window
TINY_VQ = vqvae.Config(hidden=8, codebook_size=16, code_dim=4)
SEQUENTIAL = {"decoding": "diagonal", "lag": 64, "row_lag": 8}  # the extreme setting: one token a step, raster order


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return ar.Model(ar.Config(TINY_VQ, TINY_TF)).eval()


def context(num_frames, clips=2):
    return data.standard_test_set(clips)[:, :num_frames]


def generate(model, ctx, num_frames, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # past the 4-frame window the model warns that it slides
        return model.generate(ctx, num_frames, progress=False, return_trace=True, **kwargs)


# -- the schedule ----------------------------------------------------------------------------------


def test_diagonal_steps_by_hand():
    # 2x2 frames. Raster order (row_lag = grid, lag = grid * grid): one token a step, frame after frame.
    assert ar.diagonal_steps(2, 2, lag=4, row_lag=2).tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    # anti-diagonals, frame 1 one step behind frame 0: cells (0,1) and (1,0) of frame 0 share step 1 with cell (0,0) of frame 1
    assert ar.diagonal_steps(2, 2, lag=1, row_lag=1).tolist() == [[0, 1, 1, 2], [1, 2, 2, 3]]
    # raster rows, frame 1 starting when frame 0 is half drawn
    assert ar.diagonal_steps(2, 2, lag=2, row_lag=2).tolist() == [[0, 1, 2, 3], [2, 3, 4, 5]]
    assert ar.steps_per_frame(8, 8) == 64 and ar.steps_per_frame(8, 1) == 15


# -- the transformer written out of raster order -----------------------------------------------------


def test_transformer_cache_written_out_of_order_keeps_the_raster_rule():
    torch.manual_seed(0)
    net = tfm.VideoTransformer(TINY_TF).eval()
    x = torch.randint(0, 16, (2, 30))
    full = net(x)
    # explicit positions in order are the default
    cache = net.new_cache(2)
    assert torch.allclose(net(x[:, :10], cache, torch.arange(10)), full[:, :10], atol=1e-5) and cache.in_order
    # positions 20..29 before 10..19: the later block sees 0..9 and itself only, the earlier one sees 0..19
    late = net(x[:, 20:], cache, torch.arange(20, 30))
    middle = net(x[:, 10:20], cache, torch.arange(10, 20))
    assert not cache.in_order
    assert torch.allclose(middle, full[:, 10:20], atol=1e-5)  # nothing at a later position leaks in
    gap = torch.cat([torch.arange(10), torch.arange(20, 30)])
    assert torch.allclose(late, net(x[:, gap], positions=gap)[:, 10:], atol=1e-5)  # the same without a cache
    assert not torch.allclose(late, full[:, 20:], atol=1e-3)  # it really missed 10..19
    with pytest.raises(ValueError, match="positions"):
        net(x[:, :2], positions=torch.tensor([0, 256]))


# -- diagonal decoding in generate -------------------------------------------------------------------


@pytest.mark.parametrize("num_context, num_frames, knobs", [
    (2, 2, {}),
    (0, 2, {"top_k": 5, "temperature": 0.8}),
    (1, 5, {}),                                 # past the 4-frame window: the window slides twice
    (2, 2, {"greedy": True}),
])
def test_full_lag_is_sequential_decoding(tiny_model, num_context, num_frames, knobs):
    ctx = context(num_context)
    _, seq = generate(tiny_model, ctx, num_frames, seed=3, **knobs)
    _, diag = generate(tiny_model, ctx, num_frames, seed=3, **SEQUENTIAL, **knobs)
    assert torch.equal(seq["tokens"], diag["tokens"])
    assert all(torch.equal(a, b) for s, d in zip(seq["steps"], diag["steps"]) for a, b in zip(s, d))
    assert torch.allclose(seq["prob"], diag["prob"]) and torch.allclose(seq["entropy"], diag["entropy"])


def test_overlapping_frames_draw_each_token_once(tiny_model):
    ctx = context(2)
    _, seq = generate(tiny_model, ctx, 2, seed=3)
    for lag, row_lag in ((8, 8), (1, 8), (4, 1), (15, 1)):
        video, trace = generate(tiny_model, ctx, 2, seed=3, decoding="diagonal", lag=lag, row_lag=row_lag)
        assert video.shape == (2, 2, 1, 64, 64) and 0 <= video.min() and video.max() <= 1
        assert trace["tokens"].shape == (2, 2, 8, 8) and 0 <= trace["tokens"].min() and trace["tokens"].max() < 16
        assert trace["prob"].shape == trace["entropy"].shape == (2, 2, 8, 8)
        for f, steps in enumerate(trace["steps"]):
            assert len(steps) == ar.steps_per_frame(8, row_lag)  # one grid per step that drew some of the frame
            drawn = [int((s[0] >= 0).sum()) for s in steps]
            assert drawn == sorted(drawn) and drawn[-1] == 64
            assert (steps[0][0] >= 0).sum() == 1  # a frame starts with its top-left token alone
            for earlier, later in zip(steps, steps[1:]):  # a drawn token is never redrawn
                assert torch.equal(later[earlier >= 0], earlier[earlier >= 0])
            assert torch.equal(steps[-1], trace["tokens"][:, f])
        # the first new frame never sees frame 1 (a later position) and has the whole context: with rows in
        # raster order every token has all it would have in sequential decoding, so the frame is the same;
        # along anti-diagonals only its first row is sure to be
        rows = 8 if row_lag == 8 else 1
        assert torch.equal(trace["tokens"][:, 0, :rows], seq["tokens"][:, 0, :rows])


def test_diagonal_seeds(tiny_model):
    ctx = context(2, clips=1)
    kwargs = {"decoding": "diagonal", "lag": 8}
    a = tiny_model.generate(ctx, 2, seed=0, progress=False, **kwargs)
    assert torch.equal(a, tiny_model.generate(ctx, 2, seed=0, progress=False, **kwargs))
    tokens = [generate(tiny_model, ctx, 2, seed=s, **kwargs)[1]["tokens"] for s in range(3)]
    assert not (torch.equal(tokens[0], tokens[1]) and torch.equal(tokens[1], tokens[2]))


@pytest.mark.parametrize("num_context, num_frames, lag, row_lag", [
    (2, 2, 16, 8),
    (0, 3, 1, 8),     # no context: no window read before the first step
    (2, 2, 64, 8),    # the sequential extreme
    (3, 1, 5, 1),
    (1, 6, 16, 8),    # past the window: one more read each time a frame starts past it
    (0, 6, 4, 1),
])
def test_network_evaluations_count_the_passes(tiny_model, num_context, num_frames, lag, row_lag):
    kwargs = {"decoding": "diagonal", "lag": lag, "row_lag": row_lag}
    with bench.counting_calls(tiny_model) as calls, torch.no_grad():
        generate(tiny_model, context(num_context, clips=1), num_frames, **kwargs)
    assert tiny_model.network_evaluations(num_context, num_frames, **kwargs) == len(calls)
    steps = (num_frames - 1) * lag + ar.steps_per_frame(8, row_lag)
    reads = (num_context > 0) + max(0, num_context + num_frames - TINY_TF.max_frames)
    assert len(calls) == steps + reads


def test_network_evaluations_default_knobs_match_generate(tiny_model):
    with bench.counting_calls(tiny_model) as calls, torch.no_grad():
        generate(tiny_model, context(2, clips=1), 2, decoding="diagonal")
    assert tiny_model.network_evaluations(2, 2, decoding="diagonal") == len(calls)


@pytest.mark.parametrize("kwargs, message", [
    ({"lag": 0}, r"lag must be an integer from 1 to 64"),
    ({"lag": 65}, r"lag must be an integer from 1 to 64"),
    ({"lag": 16, "row_lag": 1}, r"lag must be an integer from 1 to 15"),
    ({"lag": 2.5}, "lag must be an integer"),
    ({"lag": None}, "lag must be an integer"),
    ({"lag": True}, "lag must be an integer"),
    ({"row_lag": 0}, r"row_lag must be an integer from 1"),
    ({"row_lag": 9}, r"row_lag must be an integer from 1"),
    ({"row_lag": "8"}, r"row_lag must be an integer"),
    ({"lag": 8, "num_frames": 3}, r"lag >= 16"),  # 5 frames slide the 4-frame window, lag 8 keeps 7 frames in flight
])
def test_diagonal_bad_input(tiny_model, kwargs, message):
    args = {"num_frames": 1, "decoding": "diagonal"} | kwargs
    with pytest.raises(ValueError, match=message):
        tiny_model.generate(context(2, clips=1), progress=False, **args)


# -- training on the diagonal order ------------------------------------------------------------------


def test_diagonal_order_by_hand():
    # raster order (lag 64) is the causal mask and the shifted inputs, whatever the context
    source, mask = ar.diagonal_order(1, 2, 8, lag=64)
    assert torch.equal(mask, torch.ones(192, 192, dtype=torch.bool).tril()) and torch.equal(source, torch.arange(192) - 1)
    # lag 32 after 2 context frames: frame 3's first token (step 32) sees frame 2 up to its token 32, not later ones,
    # and reads the newest drawn token of cell 63 (the context's) because frame 2's is not drawn yet; frame 4 reads frame 2's
    source, mask = ar.diagonal_order(2, 3, 8, lag=32)
    assert {p: int(source[p]) for p in range(320) if source[p] != p - 1} == {192: 127, 256: 191}
    assert mask[192, 128 + 32] and not mask[192, 128 + 33] and mask[192, :128].all()
    assert not mask[128 + 40, 192 + 8]  # a later position is never seen
    assert mask[192 + 8, 128 + 40]  # drawn at the same step (40), earlier position: seen, as in the decoding pass
    # no context: a frame whose first token's predecessor is not drawn starts from the start token
    source, _ = ar.diagonal_order(0, 2, 8, lag=8)
    assert int(source[0]) == -1 and int(source[64]) == -1


@pytest.mark.parametrize("num_context, num_frames, lag, row_lag", [(2, 2, 32, 8), (1, 3, 8, 8), (0, 3, 16, 8),
                                                                  (1, 2, 15, 1), (2, 2, 5, 1)])
def test_diagonal_order_replays_diagonal_decoding(tiny_model, num_context, num_frames, lag, row_lag):
    """One teacher-forced pass on the order gives the logits diagonal decoding drew each token from."""
    ctx = context(num_context)
    with torch.no_grad():
        frames = list(tiny_model.tokenizer.encode(ctx).unbind(1)) if num_context else []
        made = tiny_model._generate_diagonal(frames, 2, num_frames, torch.Generator().manual_seed(0), lag, row_lag,
                                             greedy=False, progress=False, keep_trace=True, temperature=1.0,
                                             top_k=None, top_p=None)
        tokens = torch.cat([f.flatten(1) for f in frames] + [t for t, _, _ in made], 1)  # (2, N) raster order
        source, mask = ar.diagonal_order(num_context, num_frames, 8, lag, row_lag)
        logits = tiny_model.transformer(tiny_model.shifted(tokens)[:, source + 1], mask=mask)
    decoded = torch.cat([used for _, _, used in made], 1)
    assert torch.allclose(logits[:, num_context * 64:], decoded, atol=1e-5)
    if lag < 64:  # and it is not the raster pass
        raster = tiny_model.transformer(tiny_model.shifted(tokens))
        assert not torch.allclose(raster[:, num_context * 64:], decoded, atol=1e-3)


def test_training_on_the_diagonal_order(tiny_model):
    clips = data.standard_test_set(2)[:, :4]
    model = ar.Model(ar.Config(TINY_VQ, TINY_TF))
    model.load_state_dict(tiny_model.state_dict())
    torch.manual_seed(0)
    plain = model.loss(clips)
    model.config = ar.Config(TINY_VQ, TINY_TF, diagonal_lags=(64,), diagonal_rate=1.0)  # raster order by another road
    assert torch.allclose(model.loss(clips), plain, atol=1e-6)
    model.config = ar.Config(TINY_VQ, TINY_TF, diagonal_lags=(8,), diagonal_rate=1.0)
    losses = {round(model.loss(clips).item(), 6) for _ in range(6)}  # contexts of 0 to 3 frames drawn
    assert plain.item() not in losses and len(losses) > 1
    loss = model.loss(clips)
    loss.backward()
    assert all(p.grad is not None for p in model.transformer.parameters())
    assert all(torch.isfinite(model.loss(clips[:, :1])) for _ in range(3))  # one frame: no context, the start token
    model.config = ar.Config(TINY_VQ, TINY_TF, diagonal_lags=(8,), diagonal_rate=0.0)  # never: raster order
    assert torch.allclose(model.loss(clips), plain, atol=1e-6)


def test_diagonal_training_options_build_and_round_trip():
    model = ar.build("tiny", argparse.Namespace(init=None, diagonal_lags="32,8", diagonal_rate=0.25))
    assert model.config.diagonal_lags == (32, 8) and model.config.diagonal_rate == 0.25
    again = ar.from_config(checkpoints.config_dict(model)).config
    assert again.diagonal_lags == (32, 8) and again.diagonal_rate == 0.25
    with pytest.raises(ValueError, match=r"--diagonal-rate must lie in \[0, 1\]"):
        ar.build("tiny", argparse.Namespace(init=None, diagonal_rate=1.5))
    with pytest.raises(ValueError, match="--diagonal-lags"):
        ar.build("tiny", argparse.Namespace(init=None, diagonal_lags="0"))
    with pytest.raises(ValueError, match="give the lags too"):
        ar.build("tiny", argparse.Namespace(init=None, diagonal_rate=0.5))


@pytest.mark.parametrize("text", ["0", "65", "8,x", "", "8.5"])
def test_diagonal_lags_bad_input(text):
    with pytest.raises(ValueError, match="--diagonal-lags takes comma-separated integers from 1 to 64"):
        ar.parse_lags(text, 64)
    assert ar.parse_lags("32,16,8", 64) == (32, 16, 8)


def test_transformer_mask_bad_input():
    net = tfm.VideoTransformer(TINY_TF)
    x = torch.randint(0, 16, (1, 10))
    with pytest.raises(ValueError, match=r"mask is the attention rule of a full pass .* expected \(10, 10\)"):
        net(x, mask=torch.ones(9, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="with a cache"):
        net(x, net.new_cache(1), mask=torch.ones(10, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match="with positions"):
        net(x, positions=torch.arange(10), mask=torch.ones(10, 10, dtype=torch.bool))
