"""Text-to-video and prediction with the spacetime-patch diffusion Transformer: Sora in miniature.

The network (`minivid/models/dit.py`) sees the noisy clip, the clean context frames with their mask
(as the 3D UNet does) and a caption's token ids. Training draws, per clip, what it is given:

* context frames: none with probability `p_text_only` (text-to-video: the caption alone), else a
  context length as the 3D UNet draws it (half the time the protocol's 10, else 1 to 10);
* its caption, dropped with probability `p_drop_caption`, in which case the network sees the learned
  null caption. The same network is then conditional and unconditional, which classifier-free guidance
  needs (Ho & Salimans 2022).

Everything else is the diffusion of `minivid/video_diffusion.py`: the schedule, the loss on the frames
to be generated and the sampler all come from `minivid/diffusion.py`. Guidance steers towards the
caption, with the context kept in both passes:

    out = (1 + w) * out(x | context, caption) - w * out(x | context, no caption)

Training batches are (clips, caption ids) from captioned Moving MNIST (`make_batch`); a plain clip
tensor is accepted too, and then every caption is "no caption".
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from minivid import captions, data, diffusion
from minivid.metrics import validate_video
from minivid.models.dit import DiT, DiTConfig

SAMPLERS = ("ddim", "ddpm")


@dataclass(frozen=True)
class Config:
    width: int = 192  # token width; see PRESETS for sizes
    depth: int = 5  # DiT blocks
    heads: int = 3  # 64-dimensional heads, as in DiT
    patch_t: int = 2  # frames per spacetime tube
    patch: int = 8  # pixels per tube side: 640 tokens for a 20-frame clip
    text_width: int = 128  # the text encoder's width
    text_layers: int = 2  # the text encoder's transformer blocks
    text_heads: int = 4
    num_frames: int = 20  # clip length trained on (Moving MNIST's 20): context + generated <= this
    max_context: int = 10  # context lengths drawn in training: 1..10 (the protocol gives 10)
    p_text_only: float = 0.5  # clips with no context frames at all: text-to-video is half the job
    p_drop_caption: float = 0.1  # captions dropped this often: the unconditional model CFG needs (DiT uses 0.1)
    clean_context: bool = False  # True: given frames enter the noisy input clean too, so a context token
    # carries no noise (the 3D UNet's masked conditioning keeps them noisy beside the clean copy)
    broadcast_context: bool = True  # True: every frame to be generated also gets the last given frame in its
    # context channel, so each future token holds the context at its own place (see minivid/models/dit.py,
    # which also says why that alone has not made it use the context). Older exports load with False.
    schedule: str = "cosine"  # as the 3D UNet, so the two differ only in the network
    diffusion_steps: int = 1000  # T, as in DDPM
    prediction: str = "v"  # as the 3D UNet
    min_snr_gamma: float = 0.0  # 0: the plain loss; 5: min-SNR-5 weighting (Hang et al. 2023)
    sample_steps: int = 20  # DDIM steps used by default (CPU-friendly)


PRESETS = {
    "nano": Config(width=48, depth=2, heads=2, text_width=32, text_heads=2),  # 0.16 M, for tests
    "tiny": Config(width=144, depth=4, heads=3, text_width=96),  # 2.2 M, beside the 3D UNet's tiny (2.0 M)
    "small": Config(),  # 4.6 M, beside the 3D UNet's small (4.5 M)
    "base": Config(depth=9),  # 7.8 M, beside the 3D UNet's base (8.0 M); within the 10 M budget
}


class Model(torch.nn.Module):
    family = "dit"

    def __init__(self, config: Config = Config()):
        super().__init__()
        self.register_buffer("alpha_bar", diffusion.alpha_bar_for(config), persistent=False)  # checks schedule and prediction
        if config.num_frames % config.patch_t:
            raise ValueError(f"num_frames ({config.num_frames}) must be a multiple of patch_t ({config.patch_t})")
        self.config = config
        self.net = DiT(DiTConfig(
            width=config.width, depth=config.depth, heads=config.heads, patch_t=config.patch_t, patch=config.patch,
            max_frames=config.num_frames, text_width=config.text_width, text_layers=config.text_layers,
            text_heads=config.text_heads, broadcast_context=config.broadcast_context,
        ))

    def forward(self, x_t, t, cond=None, cond_mask=None, text=None):
        if self.config.clean_context and cond is not None and cond_mask is not None:
            x_t = torch.where(cond_mask[:, :, None, None, None] > 0, cond.to(x_t.dtype), x_t)
        return self.net(x_t, t, cond, cond_mask, text)

    # -- training ----------------------------------------------------------------------------------

    def loss(self, batch) -> torch.Tensor:
        """Diffusion loss on the frames to be generated, given a random number of context frames and,
        mostly, the clip's caption. batch: (clips, caption ids) from `make_batch`, or clips alone."""
        clips, text = batch if isinstance(batch, (tuple, list)) else (batch, None)
        c = self.config
        x0 = diffusion.to_model_range(clips[:, : c.num_frames])  # (b, t, c, h, w) in [-1, 1]
        x0 = x0[:, : x0.shape[1] - x0.shape[1] % c.patch_t]  # whole tubes only
        b, t = x0.shape[:2]
        device = x0.device
        if text is None:
            text = torch.full((b, self.net.config.text_len), captions.PAD_ID, dtype=torch.long, device=device)
        # context: as the 3D UNet (half the protocol's 10, half 1..10), but none at all for p_text_only
        k = torch.randint(1, c.max_context + 1, (b,), device=device)
        k = torch.where(torch.rand(b, device=device) < 0.5, c.max_context, k)
        k = torch.where(torch.rand(b, device=device) < c.p_text_only, 0, k)
        cond_mask = (torch.arange(t, device=device)[None] < k[:, None]).float()  # (b, t): 1 = given
        # caption dropout: a row of padding is "no caption", which the text encoder maps to its null caption
        drop = torch.rand(b, device=device) < c.p_drop_caption
        text = torch.where(drop[:, None], captions.PAD_ID, text.to(device))
        timesteps = torch.randint(0, c.diffusion_steps, (b,), device=device)
        return diffusion.loss(
            self, x0, timesteps, self.alpha_bar, c.prediction, mask=1 - cond_mask, min_snr_gamma=c.min_snr_gamma,
            cond=x0, cond_mask=cond_mask, text=text,
        )

    # -- sampling ----------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        context: torch.Tensor,
        num_frames: int,
        seed: int = 0,
        progress: bool = True,
        return_trace: bool = False,
        steps: int | None = None,
        sampler: str = "ddim",
        eta: float | None = None,
        caption=None,
        guidance: float = 0.0,
    ):
        """`num_frames` frames after `context` (b, t0, c, h, w) in [0, 1]; t0 may be 0 (text-to-video).

        caption: None (no caption: the unconditional model), one caption for every clip, or a list of b
        captions (None entries allowed), e.g. "a 3 moving down-left and a 7 moving right".
        guidance: classifier-free guidance weight w >= 0 towards the caption (0 = none; 1 to 5 is typical).
        sampler 'ddim' (eta 0 by default) or 'ddpm' (eta 1); steps: reverse steps (default config.sample_steps).
        Returns (b, num_frames, c, h, w) in [0, 1], or (video, trace) with the trace of every step.
        """
        validate_video(context, "context", channels=1, size=64)
        c = self.config
        b, t0 = context.shape[:2]
        if int(num_frames) != num_frames or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        if t0 + num_frames > c.num_frames:
            raise ValueError(f"context ({t0}) + num_frames ({num_frames}) = {t0 + num_frames} frames, but this model "
                             f"generates clips of at most {c.num_frames}")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLERS}")
        if not guidance >= 0:
            raise ValueError(f"guidance must be >= 0 (0 = no guidance; 1 to 5 is typical), got {guidance}")
        text = self.caption_ids(caption, b)
        if guidance > 0 and caption is None:
            raise ValueError("guidance > 0 steers towards a caption; give caption=... or leave guidance at 0")
        steps = c.sample_steps if steps is None else steps
        eta = (1.0 if sampler == "ddpm" else 0.0) if eta is None else eta
        device = self.alpha_bar.device
        total = t0 + num_frames
        total += -total % c.patch_t  # whole tubes: one extra frame is generated and dropped when needed
        cond = torch.zeros(b, total, *context.shape[2:], device=device)
        cond[:, :t0] = diffusion.to_model_range(context.to(device))
        cond_mask = torch.zeros(b, total, device=device)
        cond_mask[:, :t0] = 1
        text = text.to(device)
        generator = torch.Generator(device).manual_seed(int(seed))
        out = diffusion.sample(
            self,
            (b, total, *context.shape[2:]),
            self.alpha_bar,
            steps=steps,
            eta=eta,
            prediction=c.prediction,
            model_kwargs={"cond": cond, "cond_mask": cond_mask, "text": text},
            uncond_kwargs={"cond": cond, "cond_mask": cond_mask, "text": torch.full_like(text, captions.PAD_ID)}
            if guidance > 0 else None,
            guidance=guidance,
            generator=generator,
            device=device,
            progress=progress,
            return_trace=return_trace,
        )
        x, trace = out if return_trace else (out, None)
        new = slice(t0, t0 + num_frames)
        video = diffusion.from_model_range(x[:, new])
        if not return_trace:
            return video
        for entry in trace:  # the widget shows [0, 1] images of the generated frames
            entry["x_t"] = diffusion.from_model_range(entry["x_t"][:, new])
            entry["x0"] = diffusion.from_model_range(entry["x0"][:, new])
        return video, trace

    def caption_ids(self, caption, batch: int) -> torch.Tensor:
        """(batch, text_len) ids for `generate`'s caption argument; bad captions fail with the parser's error."""
        if caption is None:
            caption = [None] * batch
        elif isinstance(caption, str):
            caption = [caption] * batch
        elif not isinstance(caption, (list, tuple)) or len(caption) != batch:
            raise ValueError(f"caption must be None, a string, or a list of one caption per clip ({batch} here: the "
                             f"context's batch; for text-to-video pass torch.zeros({batch}, 0, 1, 64, 64)), got {caption!r}")
        return captions.encode(list(caption), length=self.net.config.text_len)

    def network_evaluations(self, num_context: int, num_frames: int, steps: int | None = None,
                            guidance: float = 0.0, **generate_kwargs) -> int:
        """How many network calls `generate` makes for these settings: one per step, two with guidance."""
        steps = self.config.sample_steps if steps is None else steps
        return steps * (2 if guidance > 0 else 1)


# --------------------------------------------------------------------------------------------
# the family's pieces: batches, build, rebuild
# --------------------------------------------------------------------------------------------


def make_batch(step: int, batch_size: int, seed: int = 0, device=None, **kwargs):
    """Batch `step` of captioned Moving MNIST: (clips (b, 20, 1, 64, 64), caption ids (b, text_len)) on `device`.

    Keyword arguments (e.g. speed=(0.07, 0.13)) go to `data.moving_mnist`.
    """
    clips, text = data.training_batch(step, batch_size, seed=seed, device=device, captions=True, **kwargs)
    return clips, captions.encode(text).to(clips.device)


def build(preset: str, args=None) -> Model:
    """`minivid train dit --preset P [--set NAME=VALUE] [--init X.pt]`: fresh, or continued from a DiT export."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} for dit; expected one of {sorted(PRESETS)}")
    from minivid.families import with_overrides

    config = with_overrides(PRESETS[preset], args)
    init = getattr(args, "init", None) if args is not None else None
    if not init:
        return Model(config)
    from minivid import checkpoints

    start = checkpoints.resolve(init)
    if getattr(start, "family", None) != "dit":
        raise ValueError(f"--init expects a dit export, got a {getattr(start, 'family', None)!r} model")
    differ = [f.name for f in fields(config) if getattr(start.config, f.name) != getattr(config, f.name)]
    network = {"width", "depth", "heads", "patch_t", "patch", "text_width", "text_layers", "text_heads", "num_frames"}
    if network & set(differ):
        raise ValueError(f"{init} holds a different network: {', '.join(sorted(network & set(differ)))} differ")
    model = Model(config)  # the training fields (p_text_only, min_snr_gamma, ...) may change
    model.load_state_dict(start.state_dict())
    return model.train()


def from_config(config: dict) -> Model:
    """Rebuild from a checkpoint's plain-data config."""
    names = {f.name for f in fields(Config)}
    config = {"broadcast_context": False, **config}  # exports from before the option were trained without it
    return Model(Config(**{k: v for k, v in config.items() if k in names}))
