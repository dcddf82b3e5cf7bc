"""A decoder-only transformer over video tokens, with a KV cache for sampling.

Reads top to bottom: config -> the KV cache -> attention and blocks -> the network. The sampling
loops that use it (temperature, top-k, top-p, rollouts, parallel decoding) are in
`minivid/autoregressive.py`.

A clip of `num_frames` frames, each an 8x8 grid of VQ-VAE codes, is one sequence read in raster
order: frame by frame, row by row. The input at position i is the token at i - 1 (a start token
first), so position i predicts token i (GPT; Yan et al. 2021, VideoGPT). Each position's embedding
is the sum of three learned tables, one for its frame, one for its row and one for its column, so the
model knows where in space and time a token sits (factorized positions, as in VideoGPT and ViViT).

Attention is PyTorch's `scaled_dot_product_attention`. When sampling, the keys and values of
tokens already seen are kept in a `KVCache`, so each new token costs one position's worth of work
instead of a pass over the whole sequence (Pope et al. 2022).

A sampler may also write positions out of raster order (diagonal decoding draws frame t + 1's first
tokens before frame t's last ones): it passes each input's sequence position, the cache remembers the
position of every slot it holds, and a slot then attends to the slots at earlier positions (and
itself), whatever order they were written in: the same causal rule, kept by position, not by slot.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


@dataclass(frozen=True)
class Config:
    vocab_size: int = 512  # the tokenizer's codebook size; one more id is the start token
    grid: int = 8  # tokens per side of a frame (the VQ-VAE's 8x8)
    max_frames: int = 20  # training window: Moving MNIST's 20 frames, 1,280 tokens
    layers: int = 6  # transformer blocks
    width: int = 192  # embedding size; 6 x 192 gives 2.9 M parameters: trains fast, ships at 6 MB in fp16
    heads: int = 6  # attention heads of 32 dimensions
    dropout: float = 0.0  # endless synthetic data does not overfit

    @property
    def tokens_per_frame(self) -> int:
        return self.grid * self.grid

    @property
    def max_tokens(self) -> int:
        return self.max_frames * self.tokens_per_frame


# --------------------------------------------------------------------------------------------
# the KV cache
# --------------------------------------------------------------------------------------------


class KVCache:
    """Keys and values of the positions seen so far, per layer: preallocated (b, heads, max_tokens, d)."""

    def __init__(self, config: Config, batch: int, device, dtype=torch.float32):
        shape = (batch, config.heads, config.max_tokens, config.width // config.heads)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.layers)]
        self.length = 0  # slots filled
        self.positions = torch.zeros(config.max_tokens, dtype=torch.long, device=device)  # sequence position of each slot
        self.in_order = True  # slot i holds position i for every slot so far: the plain causal mask is right

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (b, heads, n, d) at the next n positions; return all keys and values so far."""
        start, end = self.length, self.length + k.shape[2]
        self.keys[layer][:, :, start:end] = k
        self.values[layer][:, :, start:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, n: int) -> None:
        """Called once all layers have stored n new positions."""
        self.length += n


# --------------------------------------------------------------------------------------------
# blocks
# --------------------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    def __init__(self, c: Config, layer: int):
        super().__init__()
        self.heads, self.layer, self.dropout = c.heads, layer, c.dropout
        self.qkv = nn.Linear(c.width, 3 * c.width)
        self.proj = nn.Linear(c.width, c.width)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        """mask (n, keys), True where a query may attend (positions out of raster order, or another training order);
        None means causal."""
        q, k, v = rearrange(self.qkv(x), "b n (three heads d) -> three b heads n d", three=3, heads=self.heads)
        if cache is None and mask is None:  # training or a full pass: causal over the whole sequence
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        elif cache is None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        else:
            past = cache.length
            k, v = cache.update(self.layer, k, v)  # (b, heads, past + n, d)
            n = q.shape[2]
            if mask is None and n > 1:  # several new tokens: new token i sees the past and new tokens <= i
                mask = torch.ones(n, past + n, dtype=torch.bool, device=x.device).tril(diagonal=past)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # one new token in order: it sees everything
        return self.proj(rearrange(y, "b heads n d -> b n (heads d)"))


class Block(nn.Module):
    """Pre-norm transformer block (GPT-2)."""

    def __init__(self, c: Config, layer: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(c.width), nn.LayerNorm(c.width)
        self.attn = SelfAttention(c, layer)
        self.mlp = nn.Sequential(nn.Linear(c.width, 4 * c.width), nn.GELU(), nn.Linear(4 * c.width, c.width))

    def forward(self, x, cache=None, mask=None):
        x = x + self.attn(self.norm1(x), cache, mask)
        return x + self.mlp(self.norm2(x))


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------


class VideoTransformer(nn.Module):
    """Next-token logits for a raster-ordered sequence of video tokens."""

    def __init__(self, config: Config = Config()):
        super().__init__()
        self.config = config
        self.start_token = config.vocab_size  # the extra id that begins every sequence
        self.tokens = nn.Embedding(config.vocab_size + 1, config.width)
        self.frame_pos = nn.Embedding(config.max_frames, config.width)
        self.row_pos = nn.Embedding(config.grid, config.width)
        self.col_pos = nn.Embedding(config.grid, config.width)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.layers))
        self.norm = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, config.vocab_size, bias=False)
        self.apply(self._init)

    @staticmethod
    def _init(module):  # GPT-2's initialisation
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def embed_positions(self, pos: torch.Tensor) -> torch.Tensor:
        """Embeddings of sequence positions pos (n,): frame + row + column, (n, width)."""
        frame, cell = pos // self.config.tokens_per_frame, pos % self.config.tokens_per_frame
        return self.frame_pos(frame) + self.row_pos(cell // self.config.grid) + self.col_pos(cell % self.config.grid)

    def forward(self, inputs: torch.Tensor, cache: KVCache | None = None, positions: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, guide: torch.Tensor | None = None) -> torch.Tensor:
        """inputs (b, n) token ids (the start token allowed) -> logits (b, n, vocab_size).

        Without a cache the positions are 0..n-1; with one they continue from `cache.length`. A sampler
        that writes out of raster order passes `positions` (n,), the sequence position of each input;
        each input then attends to the inputs and cached slots at positions <= its own. A full pass may
        instead give its own attention rule, `mask` (n, n), True where a position may attend (training on
        diagonal decoding's order: `autoregressive.diagonal_order`). `guide` (b, n, width), if given, is added to
        the inputs' embeddings: a hint about the token each position predicts (`autoregressive.Model.guide`).
        """
        start, n = (cache.length if cache is not None else 0), inputs.shape[1]
        if start + n > self.config.max_tokens:
            raise ValueError(f"{start + n} positions exceed the window of {self.config.max_tokens} tokens "
                             f"({self.config.max_frames} frames); roll out with a sliding window instead")
        if mask is not None and (cache is not None or positions is not None or mask.shape != (n, n)):
            raise ValueError(f"mask is the attention rule of a full pass from position 0, without a cache or positions: "
                             f"expected ({n}, {n}), got {tuple(mask.shape)}"
                             f"{' with a cache' if cache is not None else ''}{' with positions' if positions is not None else ''}")
        following = torch.arange(start, start + n, device=inputs.device)
        if positions is not None and (positions.shape != (n,) or positions.min() < 0 or positions.max() >= self.config.max_tokens):
            raise ValueError(f"positions must be ({n},) and lie in [0, {self.config.max_tokens}), got {positions.tolist()}")
        in_order = (positions is None or torch.equal(positions, following)) and (cache is None or cache.in_order)
        positions = following if positions is None else positions
        if mask is None and not in_order:  # a slot sees the slots at earlier positions and itself, in whatever order they were written
            keys = positions if cache is None else torch.cat([cache.positions[:start], positions])
            mask = keys[None, :] <= positions[:, None]  # (n, start + n)
        x = self.tokens(inputs) + self.embed_positions(positions)  # (b, n, width)
        if guide is not None:
            x = x + guide
        for block in self.blocks:
            x = block(x, cache, mask)
        if cache is not None:
            cache.positions[start : start + n] = positions
            cache.in_order = in_order
            cache.advance(n)
        return self.head(self.norm(x))  # (b, n, vocab)

    def new_cache(self, batch: int) -> KVCache:
        p = next(self.parameters())
        return KVCache(self.config, batch, p.device, p.dtype)


PRESETS = {
    "tiny": Config(layers=4, width=128, heads=4),  # 0.9 M parameters
    "small": Config(),  # 2.9 M parameters, the shipped one
}
