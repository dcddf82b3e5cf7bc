"""The causal 3D UNet run on a few new frames at a time, with a cache of what earlier frames left behind.

In the causal network (`unet3d.py` with `causal=True`, the hybrid's and the student's) a frame's output
depends on earlier frames only through the temporal layers:

* the temporal conv (kernel 3, padded on the past side) reads the two frames before it;
* temporal attention reads every earlier frame's keys and values at the same pixel;
* space-time attention, where the network has it, reads every earlier frame's keys and values.

Everything else (stem, residual blocks, spatial attention, down/upsampling, head) works on each frame
alone. So once a frame is finished, what it gives every later frame is fixed: per layer, the normalised
input of the temporal conv and the keys and values of the attention layers. `FrameCache` keeps them;
`forward` runs the network on the new frames only, reads the past from the cache and, if asked, appends
the new frames. Generating frame 60 then costs what frame 10 costs: one frame through the network, and
attention over at most `max_frames` cached frames (Moving MNIST's 20; it is the convolutions that cost).

The cache covers one window: frame positions 0 .. max_frames - 1, because the network adds the frame's
absolute position to its temporal attention (`TemporalBlock.pos`). Appending past the window raises;
a caller that streams further starts a new cache from the last few frames (`minivid/distill.py` does,
see `Model.stream`).

New frames are placed in one of two ways (`mode`):

* "append": after the cached frames, causal among themselves. Streaming (one frame at a time) and
  reading a context clip (all of it in one call) both append.
* "beside": new frame i stands at position i, in place of cached frame i, and sees cached frames < i
  and itself only. One call then evaluates every "noisy frame after its clean past" of a clip: teacher
  forcing for a causal denoiser, what stage 1 of `minivid/distill.py` trains on. Needs a cache holding
  at least as many frames as there are new ones, and never writes.

This file sits beside the network and reuses its layers' weights; it does not change what `unet3d.py`
computes. tests/test_distill.py checks that frame by frame with the cache equals the whole clip at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import einsum, rearrange, repeat

from minivid.models.unet3d import Block, SpacetimeAttention, TemporalBlock, UNet3D, sinusoidal

MODES = ("append", "beside")


class FrameCache:
    """Per causal layer, what the frames seen so far give later frames; `length` frames of one window.

    layers[module] holds, for a TemporalBlock, "conv": the conv's normalised inputs (b h w, frames, c),
    "k" and "v": attention keys and values (b h w, heads, frames, d); for a SpacetimeAttention, "k" and
    "v" shaped (b, heads, frames * h * w, d). The conv only ever reads the last two frames of "conv"
    when streaming; the whole window is kept because the "beside" mode reads each frame's own two.
    """

    def __init__(self, max_frames: int):
        self.max_frames = int(max_frames)
        self.length = 0  # frames cached, at positions 0 .. length - 1
        self.layers: dict[torch.nn.Module, dict[str, torch.Tensor]] = {}

    def __repr__(self):
        return f"FrameCache({self.length} of {self.max_frames} frames, {len(self.layers)} layers)"


@dataclass
class _Call:
    """What every layer of one cached forward needs to know."""

    cache: FrameCache
    positions: torch.Tensor  # (n,) frame position of each new frame in the window
    mode: str
    write: bool


# --------------------------------------------------------------------------------------------
# the temporal layers, reading and writing the cache
# --------------------------------------------------------------------------------------------


def _visible(call: _Call, n: int, device) -> torch.Tensor:
    """(n, cached + n) bool: which keys each new frame may attend to (cached frames first, then new ones)."""
    cached = torch.arange(call.cache.length, device=device)[None] < call.positions[:, None]
    if call.mode == "append":  # new frame i sees every cached frame and new frames <= i
        new = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    else:  # "beside": cached frames before its position, and itself
        new = torch.eye(n, dtype=torch.bool, device=device)
    return torch.cat([cached, new], dim=1)


def temporal(block: TemporalBlock, x: torch.Tensor, call: _Call) -> torch.Tensor:
    """`TemporalBlock.forward` for n new frames, the past read from the cache: (b n) c h w -> same."""
    n = len(call.positions)
    h, w = x.shape[-2:]
    y = rearrange(x, "(b t) c h w -> (b h w) t c", t=n)
    past = call.cache.layers.get(block)
    # temporal conv, kernel 3 on (2 back, previous, this frame); frames before 0 are the causal zero padding
    conv_in = block.conv_norm(y)  # (b h w) n c
    history = past["conv"] if past is not None else conv_in[:, :0]  # (b h w) cached c
    if call.mode == "append":  # the two frames before the first new one, then the new ones
        earlier = torch.cat([history[:, -2:], conv_in], dim=1)
        earlier = F.pad(earlier, (0, 0, max(0, 2 - history.shape[1]), 0))  # index i: 2 frames before new frame i
        index = torch.arange(n, device=x.device)
    else:  # "beside": new frame i reads cached frames i - 2 and i - 1
        earlier = F.pad(history, (0, 0, 2, 0))  # index p + 2 holds frame p; indices 0 and 1, the zeros before frame 0
        index = call.positions
    taps = torch.stack([earlier[:, index], earlier[:, index + 1], conv_in], dim=-1)  # (b h w) n c 3
    conv = block.conv(rearrange(taps, "m n c k -> (m n) c k"))  # (b h w n) c 1
    y = y + rearrange(conv, "(m n) c 1 -> m n c", n=n)
    if not block.attention:  # a block without frame attention: the conv's inputs are all it keeps
        if call.write:
            call.cache.layers[block] = {"conv": torch.cat([history, conv_in], dim=1)}
        return rearrange(y, "(b h w) t c -> (b t) c h w", h=h, w=w)
    # temporal attention: the new frames' queries against the cached keys and values, and their own
    z = block.attn_norm(y) + block.pos[call.positions]
    q, k, v = rearrange(block.qkv(z), "m n (three heads d) -> three m heads n d", three=3, heads=block.heads)
    scores = einsum(q, k, "m heads i d, m heads j d -> m heads i j")  # new frames against new frames
    if past is not None:  # and against the cached ones, in front: keys in frame order
        scores = torch.cat([einsum(q, past["k"], "m heads i d, m heads j d -> m heads i j"), scores], dim=-1)
    scores = (scores * q.shape[-1] ** -0.5).masked_fill(~_visible(call, n, x.device), float("-inf"))
    weights = scores.softmax(dim=-1).to(v.dtype)  # m heads n (cached + n)
    z = einsum(weights[..., call.cache.length:], v, "m heads i j, m heads j d -> m heads i d")
    if past is not None:
        z = z + einsum(weights[..., : call.cache.length], past["v"], "m heads i j, m heads j d -> m heads i d")
    y = y + block.out(rearrange(z, "m heads n d -> m n (heads d)"))
    if call.write:
        keys, values = (k, v) if past is None else (torch.cat([past["k"], k], dim=2), torch.cat([past["v"], v], dim=2))
        call.cache.layers[block] = {"conv": torch.cat([history, conv_in], dim=1), "k": keys, "v": values}
    return rearrange(y, "(b h w) t c -> (b t) c h w", h=h, w=w)


def spacetime(block: SpacetimeAttention, x: torch.Tensor, call: _Call) -> torch.Tensor:
    """`SpacetimeAttention.forward` for n new frames, the past read from the cache: (b n) c h w -> same."""
    n = len(call.positions)
    h, w = x.shape[-2:]
    y = rearrange(x, "(b t) c h w -> b t (h w) c", t=n)
    past = call.cache.layers.get(block)
    z = block.norm(y) + block.pos[call.positions][:, None]  # the frame position, as in the temporal layers
    q, k, v = rearrange(block.qkv(z), "b t hw (three heads d) -> three b heads (t hw) d", three=3, heads=block.heads)
    keys = torch.cat([past["k"], k], dim=2) if past is not None else k  # b heads ((cached + n) hw) d
    values = torch.cat([past["v"], v], dim=2) if past is not None else v
    visible = _visible(call, n, x.device)  # (n, cached + n) frames -> pixels of those frames
    mask = repeat(visible, "i j -> (i hw1) (j hw2)", hw1=h * w, hw2=h * w)
    z = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)  # b heads (n hw) d
    y = y + block.out(rearrange(z, "b heads (t hw) d -> b t hw (heads d)", t=n))
    if call.write:
        call.cache.layers[block] = {"k": keys, "v": values}
    return rearrange(y, "b t (h w) c -> (b t) c h w", h=h, w=w)


def block_forward(block: Block, x, emb, call: _Call):
    """`Block.forward` with the cached temporal layers: (b n) c h w -> (b n) c' h w."""
    x = block.res(x, emb)
    if block.attn is not None:
        x = block.attn(x)
    if block.temporal is not None:
        x = temporal(block.temporal, x, call)
    if block.spacetime is not None:
        x = spacetime(block.spacetime, x, call)
    return x


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------


def forward(net: UNet3D, x_t: torch.Tensor, t, cache: FrameCache, mode: str = "append", write: bool = True):
    """`net(x_t, t)` for the new frames x_t (b, n, c, h, w) only, the earlier ones read from `cache`.

    t: (b,) or (b, n) timesteps of the new frames, -1 = clean. mode "append" places them after the
    cached frames (write=True adds them to the cache); "beside" places new frame i at position i, seeing
    cached frames < i and itself (see the module docstring). Returns the prediction (b, n, c, h, w),
    equal to what the whole-clip forward gives these frames.
    """
    cfg = net.config
    if not (cfg.temporal and cfg.causal):
        raise ValueError("the frame cache needs a causal network (UNetConfig(temporal=True, causal=True)): "
                         "in a bidirectional one every frame depends on later frames too")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    b, n, channels, height, width = x_t.shape
    if channels != cfg.in_channels:
        raise ValueError(f"the network reads {cfg.in_channels} channel(s) per frame, got {channels}; the cache runs "
                         "networks without conditioning channels (the hybrid's and the student's)")
    device = x_t.device
    if mode == "append":
        if cache.length + n > min(cache.max_frames, cfg.max_frames):
            raise ValueError(f"the window holds at most {min(cache.max_frames, cfg.max_frames)} frames: {cache.length} "
                             f"cached + {n} new do not fit. Start a new cache from the last few frames (what "
                             f"minivid.distill.Model.stream does when it slides its window)")
        positions = torch.arange(cache.length, cache.length + n, device=device)
    else:
        if write:
            raise ValueError("mode 'beside' evaluates frames in place of cached ones and never writes the cache")
        if n > cache.length:
            raise ValueError(f"mode 'beside' places new frame i at cached frame i's position: {n} new frames need "
                             f"{n} cached ones, the cache holds {cache.length}")
        positions = torch.arange(n, device=device)
    call = _Call(cache, positions, mode, write)
    # from here on, UNet3D.forward line for line, with the cached Block
    t = torch.as_tensor(t, device=device)
    t = repeat(t, "b -> b t", t=n) if t.ndim == 1 else t  # (b, n): one noise level per frame
    emb = net.time_mlp(sinusoidal(rearrange(t + 1, "b t -> (b t)"), cfg.base_channels))  # (b n) e
    p = cfg.patch
    multiple = p * 2 ** (len(cfg.channel_mults) - 1)
    if height % multiple or width % multiple:
        raise ValueError(f"frame size {height}x{width} must be divisible by {multiple}")
    x = rearrange(x_t, "b t c (h p1) (w p2) -> (b t) (c p1 p2) h w", p1=p, p2=p)
    x = net.stem(x)  # (b n) c h/p w/p
    skips = [x]
    for layer in net.down:
        x = block_forward(layer, x, emb, call) if isinstance(layer, Block) else layer(x)
        skips.append(x)
    for layer in net.mid:
        x = block_forward(layer, x, emb, call)
    for layer in net.up:
        if isinstance(layer, Block):
            x = block_forward(layer, torch.cat([x, skips.pop()], dim=1), emb, call)
        else:
            x = layer(x)
    if write:
        cache.length += n
    return rearrange(net.head(x), "(b t) (c p1 p2) h w -> b t c (h p1) (w p2)", b=b, p1=p, p2=p)
