"""A tiny 3D UNet for video diffusion, with factorized (2+1)D layers.

Reads top to bottom: config -> helpers -> blocks -> the network. The diffusion model built on it
(loss, generate, presets) is `minivid/video_diffusion.py`.

Every block works on frames as images, (b t) c h w, and the temporal layers mix frames at each
pixel, (b h w) t c (Ho et al. 2022, "Video Diffusion Models"; Singer et al. 2022, "Make-A-Video").
With `temporal=False` the network is an image UNet applied to each frame on its own; the temporal
layers' last projections start at zero, so a video model inflated from an image model equals it,
frame by frame, at initialisation (see `minivid/models/unet2d.py`).

Conditioning: the clean context frames enter as extra input channels, with a mask
channel saying which frames are given (masked conditioning, as in MCVD / Voleti et al. 2022), and
optionally a deterministic predictor's guess of every frame as one more channel (`guess`);
dropping the context during training (p_uncond) gives the unconditional model that classifier-free
guidance needs. Timesteps are (b,) or per-frame (b, t), -1 meaning clean, so the AR-diffusion
hybrid reuses this network with `causal=True`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import einsum, rearrange, repeat


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 3  # noisy frame + context frame + context mask (1 each for Moving MNIST), + 1 with `guess`
    out_channels: int = 1  # the prediction (v, eps or x0) for one grey channel
    base_channels: int = 64  # width at full resolution; 64 keeps the model < 10 M parameters
    channel_mults: tuple = (1, 2, 2)  # 64x64 -> 32x32 -> 16x16; digits are ~28 px, 16x16 still sees them
    blocks_per_level: int = 2  # residual blocks per resolution, as in DDPM
    attention_levels: tuple = (2,)  # spatial self-attention only at the lowest resolution (cost ~ (hw)^2)
    heads: int = 4  # attention heads (spatial and temporal)
    temporal: bool = True  # False: an image UNet applied per frame (what inflation starts from)
    causal: bool = False  # temporal layers see only the past (the hybrid); False sees the whole clip
    spacetime: bool = False  # also full space-time attention in the lowest-resolution blocks (8x8 x frames):
    # a token can look at other places in other frames in one hop, which is what following motion needs
    max_frames: int = 32  # longest clip the frame-position embedding covers
    frame_attention_from: int = 0  # temporal attention at levels >= this (0: every level; 1: not at full
    # resolution, where it costs most); the temporal conv runs at every level, the middle blocks are the lowest
    patch: int = 2  # lossless space-to-depth at the stem: 64x64x1 -> 32x32x4 costs ~4x less compute
    dropout: float = 0.0  # endless synthetic data: no need
    guess: bool = False  # one more input channel: a deterministic predictor's guess of every frame (see
    # video_diffusion.Config.predictor); zeros when no guess is given


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def sinusoidal(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sinusoidal features of a float tensor: (...,) -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    args = x.float()[..., None] * freqs
    return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, channels), channels)


def frame_attention(q, k, v, causal: bool) -> torch.Tensor:
    """Softmax attention over a few frames: (n, heads, t, d) -> (n, heads, t, d).

    Written out rather than F.scaled_dot_product_attention: here n = b*h*w pixels is large
    (65,536 for 64 clips at 32x32), past the grid size CUDA's fused kernels accept, while t <= 32
    keeps the (t x t) score matrix tiny.
    """
    scores = einsum(q, k, "n heads i d, n heads j d -> n heads i j") * q.shape[-1] ** -0.5
    if causal:  # frame i attends to frames j <= i
        t = q.shape[-2]
        future = torch.ones(t, t, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    return einsum(scores.softmax(dim=-1).to(v.dtype), v, "n heads i j, n heads j d -> n heads i d")


# --------------------------------------------------------------------------------------------
# blocks
# --------------------------------------------------------------------------------------------


class ResBlock(nn.Module):
    """Spatial residual block on frames, (b t) c h w, with the (per-frame) timestep embedding added."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2, self.conv2 = norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):  # x: (b t) c h w, emb: (b t) e
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SpatialAttention(nn.Module):
    """Self-attention among the pixels of each frame: (b t) (h w) c."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.norm, self.heads = norm(channels), heads
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x):  # (b t) c h w
        h, w = x.shape[-2:]
        q, k, v = rearrange(self.qkv(self.norm(x)), "n (three heads d) h w -> three n heads (h w) d", three=3, heads=self.heads)
        y = F.scaled_dot_product_attention(q, k, v)  # n heads (h w) d
        return x + self.out(rearrange(y, "n heads (h w) d -> n (heads d) h w", h=h, w=w))


class TemporalBlock(nn.Module):
    """Mix frames at every pixel: a temporal conv, then temporal self-attention, both residual.

    Works on (b h w) t c. `causal` pads the conv on the past side only and masks attention, so
    frame i never sees frames after i. Both branches end in zero-initialised layers: at
    initialisation the block is the identity (what inflation from an image model needs).
    """

    def __init__(self, channels: int, heads: int, causal: bool, max_frames: int, attention: bool = True):
        super().__init__()
        self.causal, self.heads, self.attention = causal, heads, attention
        self.conv_norm = nn.LayerNorm(channels)
        self.conv = zero_init(nn.Conv1d(channels, channels, 3, padding=0))
        if attention:  # without it (UNetConfig.frame_attention_from) the block is the temporal conv alone
            self.attn_norm = nn.LayerNorm(channels)
            self.qkv = nn.Linear(channels, 3 * channels)
            self.out = zero_init(nn.Linear(channels, channels))
        self.register_buffer("pos", sinusoidal(torch.arange(max_frames), channels), persistent=False)

    def forward(self, x, num_frames: int):  # x: (b t) c h w
        b_t, c, h, w = x.shape
        if num_frames > self.pos.shape[0]:
            raise ValueError(f"this network covers at most {self.pos.shape[0]} frames, got {num_frames}")
        y = rearrange(x, "(b t) c h w -> (b h w) t c", t=num_frames)
        # temporal conv (kernel 3): pad both sides, or two frames of the past when causal
        z = rearrange(self.conv_norm(y), "n t c -> n c t")
        z = F.pad(z, (2, 0) if self.causal else (1, 1))
        y = y + rearrange(self.conv(z), "n c t -> n t c")
        if self.attention:  # temporal attention with the frame index added to queries and keys' input
            z = self.attn_norm(y) + self.pos[:num_frames]
            q, k, v = rearrange(self.qkv(z), "n t (three heads d) -> three n heads t d", three=3, heads=self.heads)
            z = frame_attention(q, k, v, self.causal)  # n heads t d
            y = y + self.out(rearrange(z, "n heads t d -> n t (heads d)"))
        return rearrange(y, "(b h w) t c -> (b t) c h w", h=h, w=w)


class SpacetimeAttention(nn.Module):
    """Self-attention among every pixel of every frame: b (t h w) c. Used only at the lowest resolution.

    Causal means block-causal: a pixel of frame i sees all pixels of frames <= i. The output layer
    starts at zero, so adding this block to a trained network leaves its function unchanged at first.
    """

    def __init__(self, channels: int, heads: int, causal: bool, max_frames: int):
        super().__init__()
        self.causal, self.heads = causal, heads
        self.norm = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = zero_init(nn.Linear(channels, channels))
        self.register_buffer("pos", sinusoidal(torch.arange(max_frames), channels), persistent=False)

    def forward(self, x, num_frames: int):  # x: (b t) c h w
        h, w = x.shape[-2:]
        y = rearrange(x, "(b t) c h w -> b t (h w) c", t=num_frames)
        z = self.norm(y) + self.pos[:num_frames, None]  # the frame index, as in the temporal layers
        q, k, v = rearrange(self.qkv(z), "b t hw (three heads d) -> three b heads (t hw) d", three=3, heads=self.heads)
        mask = None
        if self.causal:  # frame of each query >= frame of each key
            frame = torch.arange(num_frames, device=x.device).repeat_interleave(h * w)  # (t hw,)
            mask = frame[:, None] >= frame[None, :]
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # b heads (t hw) d
        y = y + self.out(rearrange(z, "b heads (t hw) d -> b t hw (heads d)", t=num_frames))
        return rearrange(y, "b t (h w) c -> (b t) c h w", h=h, w=w)


class Block(nn.Module):
    """A residual block, then spatial attention (low resolutions only), then the temporal layers,
    then (optionally, lowest resolution only) full space-time attention."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, spatial_attn: bool, cfg: UNetConfig,
                 spacetime: bool = False, level: int = 0):
        super().__init__()
        self.res = ResBlock(c_in, c_out, emb_dim, cfg.dropout)
        self.attn = SpatialAttention(c_out, cfg.heads) if spatial_attn else None
        frames = level >= cfg.frame_attention_from
        self.temporal = TemporalBlock(c_out, cfg.heads, cfg.causal, cfg.max_frames, frames) if cfg.temporal else None
        use_st = spacetime and cfg.spacetime and cfg.temporal
        self.spacetime = SpacetimeAttention(c_out, cfg.heads, cfg.causal, cfg.max_frames) if use_st else None

    def forward(self, x, emb, num_frames: int):  # (b t) c h w -> (b t) c' h w
        x = self.res(x, emb)
        if self.attn is not None:
            x = self.attn(x)
        if self.temporal is not None:
            x = self.temporal(x, num_frames)
        if self.spacetime is not None:
            x = self.spacetime(x, num_frames)
        return x


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------


class UNet3D(nn.Module):
    """(x_t, t, cond, cond_mask, guess) -> prediction, all videos (b, t, c, h, w); t: (b,) or (b, t).

    The layout of DDPM's UNet (Ho et al. 2020, Appendix B): `blocks_per_level` blocks per resolution
    on the way down, one more on the way up, each decoder block concatenating one skip.
    """

    def __init__(self, config: UNetConfig = UNetConfig()):
        super().__init__()
        self.config = cfg = config
        level = cfg.frame_attention_from
        if isinstance(level, bool) or not isinstance(level, int) or level < 0:
            raise ValueError(f"frame_attention_from must be a level >= 0 (0: frame attention everywhere), "
                             f"got {cfg.frame_attention_from!r}")
        chans = [cfg.base_channels * m for m in cfg.channel_mults]
        emb_dim = 4 * cfg.base_channels
        self.time_mlp = nn.Sequential(nn.Linear(cfg.base_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.stem = nn.Conv2d(cfg.in_channels * cfg.patch**2, chans[0], 3, padding=1)
        self.down = nn.ModuleList()  # Blocks and stride-2 convs, in order
        skip_widths, c = [chans[0]], chans[0]
        lowest = len(chans) - 1
        for i, width in enumerate(chans):
            for _ in range(cfg.blocks_per_level):
                self.down.append(Block(c, width, emb_dim, i in cfg.attention_levels, cfg, spacetime=i == lowest,
                                       level=i))
                c = width
                skip_widths.append(c)
            if i < len(chans) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skip_widths.append(c)
        self.mid = nn.ModuleList([Block(c, c, emb_dim, True, cfg, spacetime=True, level=lowest),
                                  Block(c, c, emb_dim, False, cfg, spacetime=True, level=lowest)])
        self.up = nn.ModuleList()  # Blocks (each takes one skip) and upsamplers, in order
        for i, width in reversed(list(enumerate(chans))):
            for _ in range(cfg.blocks_per_level + 1):
                self.up.append(Block(c + skip_widths.pop(), width, emb_dim, i in cfg.attention_levels, cfg,
                                     spacetime=i == lowest, level=i))
                c = width
            if i > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, c, 3, padding=1)))
        self.head = nn.Sequential(norm(c), nn.SiLU(), zero_init(nn.Conv2d(c, cfg.out_channels * cfg.patch**2, 3, padding=1)))

    def forward(self, x_t, t, cond=None, cond_mask=None, guess=None):
        b, num_frames, _, height, width = x_t.shape
        t = torch.as_tensor(t, device=x_t.device)
        t = repeat(t, "b -> b t", t=num_frames) if t.ndim == 1 else t  # (b, t): one noise level per frame
        emb = self.time_mlp(sinusoidal(rearrange(t + 1, "b t -> (b t)"), self.config.base_channels))  # (b t) e
        parts = [x_t]
        if self.config.in_channels - int(self.config.guess) > x_t.shape[2]:  # conditioning channels: context frames + their mask
            mask = torch.zeros(b, num_frames, device=x_t.device) if cond_mask is None else cond_mask.to(x_t.dtype)
            cond = torch.zeros_like(x_t) if cond is None else cond
            parts += [cond * mask[:, :, None, None, None], repeat(mask, "b t -> b t 1 h w", h=height, w=width)]
        if self.config.guess:  # the predictor's guess of every frame, as given
            parts.append(torch.zeros_like(x_t) if guess is None else guess.to(x_t.dtype))
        elif guess is not None:
            raise ValueError("this network has no guess channel (UNetConfig.guess is False); leave guess=None")
        p = self.config.patch
        if height % (p * 2 ** (len(self.config.channel_mults) - 1)) or width % (p * 2 ** (len(self.config.channel_mults) - 1)):
            raise ValueError(f"frame size {height}x{width} must be divisible by {p * 2 ** (len(self.config.channel_mults) - 1)}")
        x = rearrange(torch.cat(parts, dim=2), "b t c (h p1) (w p2) -> (b t) (c p1 p2) h w", p1=p, p2=p)
        x = self.stem(x)  # (b t) c h/p w/p
        skips = [x]
        for layer in self.down:
            x = layer(x, emb, num_frames) if isinstance(layer, Block) else layer(x)
            skips.append(x)
        for layer in self.mid:
            x = layer(x, emb, num_frames)
        for layer in self.up:
            if isinstance(layer, Block):
                x = layer(torch.cat([x, skips.pop()], dim=1), emb, num_frames)
            else:
                x = layer(x)
        return rearrange(self.head(x), "(b t) (c p1 p2) h w -> b t c (h p1) (w p2)", b=b, p1=p, p2=p)
