"""A diffusion Transformer over spacetime patches, with a tiny text encoder: Sora in miniature.

Reads top to bottom: config -> patches and positions -> attention and the text encoder -> the DiT
block -> the network. The diffusion model built on it (loss, generate, presets, guidance) is
`minivid/dit_video.py`.

Spacetime patches. A clip (b, t, c, 64, 64) is cut into tubes of `patch_t` frames x `patch` x `patch`
pixels (2 x 8 x 8 by default), and each tube, flattened, becomes one token: 20 frames are 10 x 8 x 8 =
640 tokens, and one Transformer attends over all of them at once, space and time together (OpenAI 2024,
"Video generation models as world simulators"; ViViT's tubelets, Arnab et al. 2021). `patchify` and
`unpatchify` only move pixels around (two einops patterns), so they are exact inverses.

Why pixels and not the VQ-VAE's latents: Sora and Veo patch the latents of a video autoencoder because
their frames are large. Here a frame is 64x64, and 8x8 pixel patches already give the same 8x8 grid per
frame as the VQ-VAE's latents, so an autoencoder would buy no shorter sequence. It would cost a second
trained model to ship and keep in step, and put its reconstruction error under every score (encode ->
decode is itself an error floor in the protocol). In pixels the DiT is scored exactly like the 3D UNet,
which works on pixels too, so comparing the two compares the networks and nothing else.

Positions: fixed 3D sin-cos, DiT's 2D sin-cos with a third axis: a third of the channels encode the
tube's time, a third its row, a third its column.

Timestep: adaLN-zero (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers", Sec. 3.2).
From the timestep embedding each block regresses a shift, a scale and a gate for its attention and for
its MLP. The layer that regresses them starts at zero, so every gate is 0 and every block starts as
the identity; the final layer starts at zero too, so the untrained network outputs exactly 0.

Text: cross-attention from every video token to the caption's words (PixArt-alpha, Chen et al. 2023;
Imagen). Chosen over prefix tokens because a caption binds directions to digits ("a 3 moving left and
a 7 moving right"): each patch looks up the words about the digit it is drawing, self-attention stays
among the 640 video tokens, the caption's padding is masked in one place, and each word's attention map
can be drawn. The cross-attention's output projection starts at zero, so blocks still start as the
identity.

Context frames: as in the 3D UNet, the clean context frames and a mask saying which frames are given
enter as extra input channels before patchify (masked conditioning). In the UNet that is enough: its
temporal layers work pixel by pixel, so a future pixel meets the context at its own place. Here a token
is a tube, and a future tube's context channel would hold only zeros: the context sits in *other*
tokens, and the network would have to learn, by attention alone, which context token lies at its place.
It does not (trained without help, its attention stays spatially uniform and its future frames ignore
the context). So with `broadcast_context` every frame to be generated also gets the last given frame in
its context channel (Stable Video Diffusion concatenates its conditioning frame to every frame the same
way): each future token then holds the context at its own place, and the mask channel still tells a
given frame from a copy.

That alone did not make it use the context either (7,253 steps of 128 clips: its future frames still ignore
it). What stands in the way is room in a token: a 2×8×8 tube carries 128 noisy pixels, and at low noise the
target needs almost all of them passed through, which fills a 192-wide token before it can fetch anything from
elsewhere. On small CPU runs, tubes of one frame (`patch_t=1`: 64 noisy pixels a token) do learn to use the
context where two-frame tubes at the same width do not; that is the next thing to try at full size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange, repeat

from minivid.captions import MAX_WORDS, PAD_ID, VOCAB
from minivid.models.unet3d import sinusoidal, zero_init


@dataclass(frozen=True)
class DiTConfig:
    in_channels: int = 3  # noisy frame + context frame + context mask, as in the 3D UNet
    out_channels: int = 1  # the prediction (v, eps or x0) for one grey channel
    frame_size: int = 64  # Moving MNIST's 64x64; the position table is built for it
    max_frames: int = 20  # longest clip the position table covers: Moving MNIST's 20
    patch_t: int = 2  # frames per tube: halves the sequence; a digit moves ~4 px between the two
    patch: int = 8  # pixels per tube side: an 8x8 grid per frame (the VQ-VAE's grid), 640 tokens for 20 frames
    width: int = 256  # token width; a multiple of 6, so the 3D sin-cos splits it in three even parts
    depth: int = 8  # DiT blocks
    heads: int = 4  # attention heads of width / heads = 64 dimensions, as in DiT
    mlp_ratio: int = 4  # MLP hidden width / width, as in ViT and DiT
    vocab_size: int = len(VOCAB)  # the caption grammar's 23 words (minivid/captions.py)
    text_len: int = MAX_WORDS  # caption length in tokens: 14, three digits' worth
    text_width: int = 128  # the text encoder's width: 23 words need little
    text_layers: int = 2  # transformer blocks over the words: enough to tie each direction to its digit
    text_heads: int = 4  # text attention heads of 32 dimensions
    broadcast_context: bool = False  # frames to be generated see the last given frame in their context channel


# --------------------------------------------------------------------------------------------
# spacetime patches and their positions
# --------------------------------------------------------------------------------------------


def patchify(video: torch.Tensor, patch_t: int, patch: int) -> torch.Tensor:
    """(b, t, c, h, w) -> (b, n, patch_t * patch * patch * c) tokens; n = (t / patch_t)(h / patch)(w / patch).

    Tokens are ordered time first, then row, then column; each holds its tube's pixels.
    """
    return rearrange(video, "b (t pt) c (h ph) (w pw) -> b (t h w) (pt ph pw c)", pt=patch_t, ph=patch, pw=patch)


def unpatchify(tokens: torch.Tensor, num_frames: int, size: int, patch_t: int, patch: int) -> torch.Tensor:
    """The inverse of `patchify` for square frames: (b, n, patch_t * patch * patch * c) -> (b, t, c, size, size)."""
    return rearrange(tokens, "b (t h w) (pt ph pw c) -> b (t pt) c (h ph) (w pw)",
                     t=num_frames // patch_t, h=size // patch, pt=patch_t, ph=patch, pw=patch)


def sincos_positions(grid_t: int, grid_h: int, grid_w: int, width: int) -> torch.Tensor:
    """Fixed 3D sin-cos position embeddings, (grid_t * grid_h * grid_w, width), in `patchify`'s token order."""
    if width % 6:
        raise ValueError(f"width must be a multiple of 6 (three axes, each sin and cos), got {width}")
    t, h, w = torch.meshgrid(torch.arange(grid_t), torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    part = width // 3
    return torch.cat([sinusoidal(t.flatten(), part), sinusoidal(h.flatten(), part), sinusoidal(w.flatten(), part)], dim=-1)


def broadcast_last_given(cond: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The context channel with every frame not given replaced by the clip's last given frame.

    cond: (b, t, c, h, w), read only where mask (b, t) is 1. A clip with no given frame gets zeros throughout.
    """
    frames = torch.arange(mask.shape[1], device=mask.device)
    last = torch.where(mask > 0, frames, -1).amax(dim=1)  # (b,): index of the last given frame, -1 if none
    latest = cond[torch.arange(len(cond), device=cond.device), last.clamp(min=0)]  # (b, c, h, w)
    latest = latest * (last >= 0).to(cond.dtype)[:, None, None, None]
    return torch.where(mask[:, :, None, None, None] > 0, cond, latest[:, None])


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x (b, n, width) normalised elsewhere, then scaled and shifted per clip by (b, width) vectors."""
    return x * (1 + scale[:, None]) + shift[:, None]


def mlp(width: int, ratio: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, ratio * width), nn.GELU(approximate="tanh"), nn.Linear(ratio * width, width))


# --------------------------------------------------------------------------------------------
# attention and the text encoder
# --------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head attention of x (b, n, width) to itself, or to `context` (b, m, context_width): cross-attention."""

    def __init__(self, width: int, heads: int, context_width: int | None = None):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(context_width or width, 2 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x, context=None, mask=None):
        """mask: (b, m) bool, True where a key may be attended to (e.g. a caption's words, not its padding)."""
        context = x if context is None else context
        q = rearrange(self.q(x), "b n (heads d) -> b heads n d", heads=self.heads)
        k, v = rearrange(self.kv(context), "b m (two heads d) -> two b heads m d", two=2, heads=self.heads)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask[:, None, None, :])
        return self.out(rearrange(y, "b heads n d -> b n (heads d)"))


class TextBlock(nn.Module):
    """Pre-norm transformer block over the words (GPT-2's layout, with no causal mask: every word sees all)."""

    def __init__(self, width: int, heads: int, ratio: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn, self.mlp = Attention(width, heads), mlp(width, ratio)

    def forward(self, x, mask):
        x = x + self.attn(self.norm1(x), mask=mask)
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """Caption ids (b, m) -> word features (b, m, text_width) and the mask of those to attend to (b, m).

    Word embeddings, learned positions and `text_layers` transformer blocks: a tiny text tower trained
    with the DiT from scratch. A caption of padding only is "no caption": its features are the learned
    `null` sequence, the null caption of classifier-free guidance (DiT's extra "null class" embedding,
    here a sequence so that it goes through the same cross-attention).
    """

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.words = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.pos = nn.Parameter(0.02 * torch.randn(cfg.text_len, cfg.text_width))
        self.blocks = nn.ModuleList(TextBlock(cfg.text_width, cfg.text_heads, cfg.mlp_ratio) for _ in range(cfg.text_layers))
        self.norm = nn.LayerNorm(cfg.text_width)
        self.null = nn.Parameter(0.02 * torch.randn(cfg.text_len, cfg.text_width))

    def forward(self, ids: torch.Tensor):
        m = ids.shape[1]
        if m > self.pos.shape[0]:
            raise ValueError(f"captions of at most {self.pos.shape[0]} tokens, got {m}")
        words = ids != PAD_ID  # (b, m)
        empty = ~words.any(dim=1)  # (b,): no caption
        mask = words | empty[:, None]  # "no caption" attends to all of the null sequence
        x = self.words(ids) + self.pos[:m]  # (b, m, text_width)
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x)
        return torch.where(empty[:, None, None], self.null[:m].to(x.dtype), x), mask


# --------------------------------------------------------------------------------------------
# the DiT block and the final layer
# --------------------------------------------------------------------------------------------


class DiTBlock(nn.Module):
    """Self-attention over spacetime, cross-attention to the words, an MLP; adaLN-zero from the timestep.

        x = x + gate1 * attn(modulate(norm(x), shift1, scale1))
        x = x + cross_attn(norm(x), words)
        x = x + gate2 * mlp(modulate(norm(x), shift2, scale2))

    shift, scale and gate come from one zero-initialised linear layer of the timestep embedding `c`,
    and the cross-attention's output starts at zero: at initialisation the block is the identity.
    """

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        w = cfg.width
        self.norm1 = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)  # adaLN supplies scale and shift
        self.attn = Attention(w, cfg.heads)
        self.norm_cross = nn.LayerNorm(w)
        self.cross = Attention(w, cfg.heads, context_width=cfg.text_width)
        self.norm2 = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(w, cfg.mlp_ratio)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(w, 6 * w))

    def forward(self, x, c, words, words_mask):  # x: (b, n, width), c: (b, width), words: (b, m, text_width)
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)  # each (b, width)
        x = x + gate1[:, None] * self.attn(modulate(self.norm1(x), shift1, scale1))
        x = x + self.cross(self.norm_cross(x), words, words_mask)
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class FinalLayer(nn.Module):
    """adaLN, then a linear map from each token to its tube's pixels; zero-initialised: outputs 0 at first."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(cfg.width, 2 * cfg.width))
        self.linear = nn.Linear(cfg.width, cfg.patch_t * cfg.patch**2 * cfg.out_channels)

    def forward(self, x, c):
        shift, scale = self.ada(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------


class DiT(nn.Module):
    """(x_t, t, cond, cond_mask, text) -> prediction (b, t, c, h, w); t: (b,) timesteps; text: (b, m) caption ids."""

    def __init__(self, config: DiTConfig = DiTConfig()):
        super().__init__()
        self.config = cfg = config
        if cfg.frame_size % cfg.patch or cfg.max_frames % cfg.patch_t:
            raise ValueError(f"frame_size {cfg.frame_size} must divide by patch {cfg.patch} and max_frames "
                             f"{cfg.max_frames} by patch_t {cfg.patch_t}")
        if cfg.width % cfg.heads or cfg.text_width % cfg.text_heads:
            raise ValueError(f"width {cfg.width} and text_width {cfg.text_width} must divide by their heads")
        grid = cfg.frame_size // cfg.patch
        self.embed = nn.Linear(cfg.patch_t * cfg.patch**2 * cfg.in_channels, cfg.width)  # a tube's pixels -> a token
        self.register_buffer("pos", sincos_positions(cfg.max_frames // cfg.patch_t, grid, grid, cfg.width), persistent=False)
        self.time_mlp = nn.Sequential(nn.Linear(cfg.width, cfg.width), nn.SiLU(), nn.Linear(cfg.width, cfg.width))
        self.text = TextEncoder(cfg)
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.depth))
        self.final = FinalLayer(cfg)
        self._init_weights()

    def _init_weights(self):
        """DiT's initialisation: Xavier-uniform linear layers, then the adaLN-zero layers set to zero."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)
        for block in self.blocks:
            zero_init(block.ada[-1])  # gates 0: the block is the identity
            zero_init(block.cross.out)  # the caption's path too starts closed
        zero_init(self.final.ada[-1])
        zero_init(self.final.linear)  # the network outputs exactly 0

    def forward(self, x_t, t, cond=None, cond_mask=None, text=None):
        cfg = self.config
        b, num_frames, _, height, width = x_t.shape
        if height != cfg.frame_size or width != cfg.frame_size:
            raise ValueError(f"this network takes {cfg.frame_size}x{cfg.frame_size} frames, got {height}x{width}")
        if num_frames % cfg.patch_t or num_frames > cfg.max_frames:
            raise ValueError(f"clips of a multiple of {cfg.patch_t} frames, at most {cfg.max_frames}, got {num_frames}")
        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim != 1:
            raise ValueError(f"the DiT takes one timestep per clip, shaped (b,), got {tuple(t.shape)}")
        mask = torch.zeros(b, num_frames, device=x_t.device) if cond_mask is None else cond_mask.to(x_t.dtype)
        cond = torch.zeros_like(x_t) if cond is None else cond
        mask_frames = repeat(mask, "b t -> b t 1 h w", h=height, w=width)
        given = cond * mask[:, :, None, None, None]  # the given frames, zeros elsewhere
        if cfg.broadcast_context:  # and the last given frame at every frame to be generated
            given = broadcast_last_given(given, mask)
        inputs = torch.cat([x_t, given, mask_frames], dim=2)  # (b, t, 3, h, w)
        tokens = patchify(inputs, cfg.patch_t, cfg.patch)  # (b, n, patch_t * patch * patch * in_channels)
        x = self.embed(tokens) + self.pos[: tokens.shape[1]]  # (b, n, width): the first n positions are these frames
        c = self.time_mlp(sinusoidal(t + 1, cfg.width))  # (b, width); t = -1 (clean) embeds as 0
        if text is None:  # no caption for any clip
            text = torch.full((b, cfg.text_len), PAD_ID, dtype=torch.long, device=x_t.device)
        words, words_mask = self.text(text)  # (b, m, text_width), (b, m)
        for block in self.blocks:
            x = block(x, c, words, words_mask)
        x = self.final(x, c)  # (b, n, patch_t * patch * patch * out_channels)
        return unpatchify(x, num_frames, height, cfg.patch_t, cfg.patch)  # (b, t, c, h, w)
