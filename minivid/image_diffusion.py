"""Diffusion on single frames: the image model that the video model is inflated from.

The network is the 3D UNet with its temporal layers off (`minivid/models/unet2d.py`); each frame
is an independent image. It answers the same API as every generator, treating the frames it is
asked for as independent samples:

    model = Model(PRESETS["small"])
    images = model.generate(torch.zeros(4, 0, 1, 64, 64), num_frames=1)   # (4, 1, 1, 64, 64)

Training batches are frames drawn from Moving MNIST clips (`make_batch`), so the image model learns
exactly the frames the video model will see; notebook 01 also trains a nano one on plain digits.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from minivid import data, diffusion
from minivid.metrics import validate_video
from minivid.models.unet2d import image_config
from minivid.models.unet3d import UNet3D

SAMPLERS = ("ddim", "ddpm")


@dataclass(frozen=True)
class Config:
    base_channels: int = 48  # must match the video model it will be inflated into
    channel_mults: tuple = (1, 2, 2)  # after the 2x2 patch: 32x32 -> 16x16 -> 8x8
    blocks_per_level: int = 2  # residual blocks per resolution (DDPM uses 2)
    attention_levels: tuple = (2,)  # spatial attention at the lowest resolution only
    heads: int = 4  # attention heads
    patch: int = 2  # space-to-depth at the stem (lossless)
    schedule: str = "cosine"  # Improved DDPM's schedule
    diffusion_steps: int = 1000  # T, as in DDPM
    prediction: str = "v"  # v-prediction, as the video model
    sample_steps: int = 20  # DDIM steps by default


PRESETS = {
    "nano": Config(base_channels=16, channel_mults=(1, 2), attention_levels=(1,), blocks_per_level=1),  # 0.1 M
    "tiny": Config(base_channels=32),  # 1.3 M
    "small": Config(base_channels=48),  # 2.9 M
    "base": Config(base_channels=64),  # 5.2 M
}


def network_config(config: Config, **overrides):
    """The UNetConfig (image or, with overrides, video) that matches `config`'s widths."""
    return image_config(
        base_channels=config.base_channels,
        channel_mults=tuple(config.channel_mults),
        blocks_per_level=config.blocks_per_level,
        attention_levels=tuple(config.attention_levels),
        heads=config.heads,
        patch=config.patch,
        **overrides,
    )


class Model(torch.nn.Module):
    family = "image"

    def __init__(self, config: Config = Config()):
        super().__init__()
        self.register_buffer("alpha_bar", diffusion.alpha_bar_for(config), persistent=False)  # checks schedule and prediction
        self.config = config
        self.net = UNet3D(network_config(config))

    def forward(self, x_t, t):
        return self.net(x_t, t)

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Diffusion loss with one timestep per image; batch (b, t, c, h, w), frames are independent."""
        x0 = diffusion.to_model_range(batch.flatten(0, 1)[:, None])  # (b t) 1 c h w
        timesteps = torch.randint(0, self.config.diffusion_steps, (x0.shape[0],), device=x0.device)
        return diffusion.loss(self, x0, timesteps, self.alpha_bar, self.config.prediction)

    @torch.no_grad()
    def generate(self, context, num_frames: int, seed: int = 0, progress: bool = True, return_trace: bool = False,
                 steps: int | None = None, sampler: str = "ddim", eta: float | None = None, size: int | None = None):
        """`num_frames` independent images per batch item: (b, num_frames, 1, h, w) in [0, 1].

        `context` only sets the batch size and frame size (an image model sees no context);
        pass `size` to sample a different square size than the context's.
        """
        validate_video(context, "context", channels=1)
        if int(num_frames) != num_frames or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLERS}")
        b = context.shape[0]
        h = w = size or context.shape[-1]
        device = self.alpha_bar.device
        out = diffusion.sample(
            self, (b * num_frames, 1, 1, h, w), self.alpha_bar,
            steps=self.config.sample_steps if steps is None else steps,
            eta=(1.0 if sampler == "ddpm" else 0.0) if eta is None else eta,
            prediction=self.config.prediction, generator=torch.Generator(device).manual_seed(int(seed)),
            device=device, progress=progress, return_trace=return_trace,
        )
        x, trace = out if return_trace else (out, None)
        images = diffusion.from_model_range(x).view(b, num_frames, 1, h, w)
        if not return_trace:
            return images
        for entry in trace:
            entry["x_t"] = diffusion.from_model_range(entry["x_t"]).view(b, num_frames, 1, h, w)
            entry["x0"] = diffusion.from_model_range(entry["x0"]).view(b, num_frames, 1, h, w)
        return images, trace

    def network_evaluations(self, num_context: int, num_frames: int, steps: int | None = None, **generate_kwargs) -> int:
        """How many network calls `generate` makes: one per step, for all the images at once."""
        return self.config.sample_steps if steps is None else steps


def make_batch(step: int, batch_size: int, seed: int = 0, device=None) -> torch.Tensor:
    """`batch_size` Moving MNIST frames as one-frame clips (b, 1, 1, 64, 64): 4 frames from each clip."""
    per_clip = 4
    clips = data.training_batch(step, -(-batch_size // per_clip), seed=seed, device=device)  # (b/4, 20, 1, 64, 64)
    frames = clips[:, :: clips.shape[1] // per_clip][:, :per_clip]  # frames 0, 5, 10, 15
    return frames.reshape(-1, 1, *clips.shape[2:])[:batch_size]


def from_config(config: dict) -> Model:
    names = {f.name for f in fields(Config)}
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in names}
    return Model(Config(**clean))
