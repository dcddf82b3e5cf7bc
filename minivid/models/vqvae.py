"""A VQ-VAE frame tokenizer: each 64x64 frame becomes an 8x8 grid of codebook indices.

Reads top to bottom: config -> the vector quantizer -> encoder/decoder blocks -> the model.

The quantizer follows van den Oord et al. (2017), "Neural Discrete Representation Learning":
each encoder vector z_e is replaced by its nearest codebook entry e_k (Eq. 1-2), gradients pass
straight through the non-differentiable lookup (z_q = z_e + sg[e_k - z_e]), and a commitment loss
beta * ||z_e - sg[e_k]||^2 keeps the encoder near the codebook (Eq. 3). The codebook itself is not
learned by gradient but as an exponential moving average of the vectors assigned to each entry
(their Appendix A.1; also VQ-VAE-2), and entries nobody has used for a while are restarted on
random encoder outputs (Dhariwal et al. 2020, Jukebox) so the whole codebook stays in use. Encoder
vectors and codebook entries are l2-normalized before the lookup (Yu et al. 2022, ViT-VQGAN), which
keeps far more of the codebook in use on frames that are mostly black background.

Tokenization loses information: the decoder can only draw what 64 indices from a codebook can
say. `reconstruction_error()` measures that ceiling; every token model inherits it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


@dataclass(frozen=True)
class Config:
    channels: int = 1  # grey Moving MNIST frames
    hidden: int = 64  # conv width at full resolution (doubles once); the frames are simple
    downsamples: int = 3  # 64x64 -> 8x8 tokens: 64 per frame keeps 20-frame sequences at 1,280 tokens
    codebook_size: int = 512  # entries; enough for stroke fragments of ~8x8 px, and all stay in use
    code_dim: int = 32  # codebook vector size; small dims make nearest-neighbour lookups meaningful
    beta: float = 0.25  # commitment loss weight (van den Oord et al. 2017 use 0.25)
    ema_decay: float = 0.99  # codebook EMA decay (VQ-VAE-2 uses 0.99)
    dead_after: float = 1.0  # an entry assigned fewer than this many vectors per batch (EMA) is restarted (Jukebox)


# --------------------------------------------------------------------------------------------
# the vector quantizer
# --------------------------------------------------------------------------------------------


class VectorQuantizer(nn.Module):
    """Nearest-codebook-entry quantization with EMA codebook updates and dead-code restarts."""

    def __init__(self, codebook_size: int, code_dim: int, beta: float, ema_decay: float, dead_after: float):
        super().__init__()
        self.beta, self.decay, self.dead_after = beta, ema_decay, dead_after
        codebook = F.normalize(torch.randn(codebook_size, code_dim), dim=1)
        self.register_buffer("codebook", codebook)  # (k, d), updated by EMA, not by the optimizer
        self.register_buffer("cluster_size", torch.ones(codebook_size))  # EMA of assignments per entry
        self.register_buffer("embed_sum", codebook.clone())  # EMA of the sum of vectors per entry
        self.register_buffer("initialized", torch.tensor(False))  # set once the codebook holds real vectors

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """Index of the closest codebook entry for each row of z: (n, d) -> (n,) (Eq. 1)."""
        distances = z.pow(2).sum(1, keepdim=True) - 2 * z @ self.codebook.t() + self.codebook.pow(2).sum(1)  # (n, k)
        return distances.argmin(dim=1)

    def forward(self, z_e: torch.Tensor):
        """z_e (b, d, h, w) -> z_q (b, d, h, w) with straight-through gradients, indices (b, h, w), stats."""
        b, d, h, w = z_e.shape
        flat = F.normalize(rearrange(z_e, "b d h w -> (b h w) d").float(), dim=1)  # on the unit sphere (ViT-VQGAN)
        indices = self.nearest(flat)  # (n,)
        z_q = self.codebook[indices]  # (n, d)
        commitment_loss = F.mse_loss(flat, z_q.detach())  # Eq. 3, third term: keep z_e near its entry
        if self.training:
            self.update_codebook(flat.detach(), indices)
        z_q = flat + (z_q - flat).detach()  # straight-through: forward z_q, backward d/dz_e
        one_hot = F.one_hot(indices, self.codebook.shape[0]).float()
        probs = one_hot.mean(0)
        stats = {
            "commitment_loss": commitment_loss,
            "perplexity": torch.exp(-(probs * torch.log(probs + 1e-10)).sum()),  # e^entropy of code usage
            "usage": (probs > 0).float().mean(),  # fraction of entries used in this batch
        }
        z_q = rearrange(z_q, "(b h w) d -> b d h w", b=b, h=h, w=w)
        return z_q, indices.view(b, h, w), stats

    @torch.no_grad()
    def update_codebook(self, flat: torch.Tensor, indices: torch.Tensor) -> None:
        """EMA codebook (van den Oord et al. 2017, App. A.1), then restart entries that went unused."""
        if not self.initialized:  # start from real encoder outputs rather than random vectors
            self.codebook.copy_(flat[torch.randint(0, flat.shape[0], (self.codebook.shape[0],), device=flat.device)])
            self.embed_sum.copy_(self.codebook)
            self.initialized.fill_(True)
            indices = self.nearest(flat)
        one_hot = F.one_hot(indices, self.codebook.shape[0]).type(flat.dtype)  # (n, k)
        counts, sums = one_hot.sum(0), one_hot.t() @ flat  # (k,), (k, d)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
            torch.distributed.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (n + self.codebook.shape[0] * 1e-5) * n  # Laplace smoothing
        self.codebook.copy_(F.normalize(self.embed_sum / smoothed[:, None], dim=1))
        dead = self.cluster_size < self.dead_after
        if dead.any():  # Jukebox-style restart on random vectors of this batch
            picks = flat[torch.randint(0, flat.shape[0], (int(dead.sum()),), device=flat.device)]
            self.codebook[dead] = picks
            self.embed_sum[dead] = picks
            self.cluster_size[dead] = 1.0


# --------------------------------------------------------------------------------------------
# encoder and decoder
# --------------------------------------------------------------------------------------------


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block = nn.Sequential(nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.SiLU(), nn.Conv2d(channels, channels, 1))

    def forward(self, x):
        return x + self.block(x)


def encoder(c: Config) -> nn.Sequential:
    """(b, 1, 64, 64) -> (b, code_dim, 8, 8): strided convolutions, then residual blocks."""
    layers, width = [nn.Conv2d(c.channels, c.hidden, 3, padding=1)], c.hidden
    for i in range(c.downsamples):
        out = c.hidden * (2 if i > 0 else 1)
        layers += [nn.SiLU(), nn.Conv2d(width, out, 4, stride=2, padding=1)]  # halves h and w
        width = out
    layers += [ResBlock(width), ResBlock(width), nn.SiLU(), nn.Conv2d(width, c.code_dim, 1)]
    return nn.Sequential(*layers)


def decoder(c: Config) -> nn.Sequential:
    """(b, code_dim, 8, 8) -> (b, 1, 64, 64) logits of pixel intensity; the mirror of the encoder."""
    width = c.hidden * 2
    layers = [nn.Conv2d(c.code_dim, width, 3, padding=1), ResBlock(width), ResBlock(width)]
    for i in reversed(range(c.downsamples)):
        out = c.hidden * (2 if i > 0 else 1)
        layers += [nn.SiLU(), nn.ConvTranspose2d(width, out, 4, stride=2, padding=1)]  # doubles h and w
        width = out
    layers += [nn.SiLU(), nn.Conv2d(width, c.channels, 3, padding=1)]
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------


class VQVAE(nn.Module):
    """Frames <-> token grids. `encode` and `decode` take whole videos (b, t, c, h, w)."""

    family = "vqvae"

    def __init__(self, config: Config = Config()):
        super().__init__()
        self.config = config
        self.encoder = encoder(config)
        self.quantizer = VectorQuantizer(config.codebook_size, config.code_dim, config.beta, config.ema_decay, config.dead_after)
        self.decoder = decoder(config)

    @property
    def grid(self) -> int:
        """Tokens per side of a 64x64 frame (8 with the default three downsamplings)."""
        return 64 // 2**self.config.downsamples

    def forward(self, frames: torch.Tensor):
        """frames (n, c, h, w) in [0, 1] -> reconstruction logits (n, c, h, w), indices (n, gh, gw), stats."""
        z_q, indices, stats = self.quantizer(self.encoder(frames * 2 - 1))
        return self.decoder(z_q), indices, stats

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Reconstruction (binary cross-entropy on [0, 1] pixels) + beta * commitment, over all frames of a batch of clips."""
        frames = rearrange(batch, "b t c h w -> (b t) c h w")
        logits, _, stats = self(frames)
        self.last_stats = {k: float(v.detach()) for k, v in stats.items()}
        return F.binary_cross_entropy_with_logits(logits, frames) + self.config.beta * stats["commitment_loss"]

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """video (b, t, c, 64, 64) in [0, 1] -> token ids (b, t, gh, gw)."""
        b = video.shape[0]
        z_e = self.encoder(rearrange(video, "b t c h w -> (b t) c h w") * 2 - 1)
        flat = F.normalize(rearrange(z_e, "n d h w -> (n h w) d").float(), dim=1)
        ids = self.quantizer.nearest(flat)
        return rearrange(ids, "(b t h w) -> b t h w", b=b, h=z_e.shape[-2], w=z_e.shape[-1])

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """token ids (b, t, gh, gw) -> video (b, t, c, 64, 64) in [0, 1]."""
        k = self.config.codebook_size
        if tokens.dtype not in (torch.int64, torch.int32) or tokens.min() < 0 or tokens.max() >= k:
            raise ValueError(f"token ids must be integers in [0, {k}), got {tokens.dtype} in [{int(tokens.min())}, {int(tokens.max())}]")
        b = tokens.shape[0]
        z_q = rearrange(self.quantizer.codebook[tokens.long()], "b t h w d -> (b t) d h w")
        frames = torch.sigmoid(self.decoder(z_q))
        return rearrange(frames, "(b t) c h w -> b t c h w", b=b)

    @torch.no_grad()
    def reconstruct(self, video: torch.Tensor) -> torch.Tensor:
        """Encode then decode: what the token models can at best reproduce."""
        return self.decode(self.encode(video))

    @torch.no_grad()
    def codebook_stats(self, video: torch.Tensor) -> dict:
        """Codebook usage on some video: entries used (count and fraction) and perplexity."""
        ids = self.encode(video).flatten()
        counts = torch.bincount(ids, minlength=self.config.codebook_size).float()
        probs = counts / counts.sum()
        return {"used": int((counts > 0).sum()), "usage": float((counts > 0).float().mean()),
                "perplexity": float(torch.exp(-(probs[probs > 0] * probs[probs > 0].log()).sum()))}


PRESETS = {
    "tiny": Config(hidden=32, codebook_size=256),  # 0.46 M parameters
    "small": Config(),  # 1.8 M parameters, the shipped one
}

Model = VQVAE  # the name every minivid family module exports


def make_batch(step: int, batch_size: int, seed: int = 0, device=None) -> torch.Tensor:
    """`batch_size` Moving MNIST frames as one-frame clips, the same stream the image model trains on."""
    from minivid.image_diffusion import make_batch as frames_batch

    return frames_batch(step, batch_size, seed=seed, device=device)
