"""Video diffusion with the 3D UNet: one model for prediction and unconditional generation.

The network (`minivid/models/unet3d.py`) sees the noisy clip, the clean context frames and a mask
saying which frames are given. Training draws a context length per clip (0 to `max_context`; 0
with probability `p_uncond`, which is also what classifier-free guidance needs), noises the whole
clip to one timestep, and scores only the frames to be generated. Sampling runs the shared loop
in `minivid/diffusion.py` (DDIM, or DDPM with eta = 1) on the whole clip at once.

Optionally (`predictor` > 0) a second network learns the future deterministically, with a plain MSE
loss on the frames to be generated: its guess (the mean future, a blur where it is unsure) enters the
denoiser as one more input channel. It is a narrower 3D UNet (`predictor_net="unet"`), or a much cheaper
2D CNN over frames stacked as channels (`"framestack"`, `minivid/models/framestack.py`, after SimVP). The
predictor gets the motion, diffusion adds the detail (after Yang, Srivastava & Mandt 2022, "Diffusion
Probabilistic Modeling for Video Generation", whose diffusion models the residual). The denoiser still predicts the
clean clip, so the sampler is the same; given context, a model with a predictor starts it by default from the guess,
noised part-way down the schedule, and runs only the steps below (START_FROM_GUESS; `start=1` is pure noise).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from minivid import diffusion
from minivid.metrics import validate_video
from minivid.models import framestack
from minivid.models.framestack import FrameStackPredictor
from minivid.models.unet2d import grow, inflate
from minivid.models.unet3d import UNet3D, UNetConfig

SAMPLERS = ("ddim", "ddpm")
# where a model with a predictor, given context, starts sampling by default: its guess noised to 0.3 of the
# schedule (SDEdit). On the protocol's 256 clips this cut the shipped model's MSE by 21 % at the same SSIM, in a
# third of the network evaluations (docs/diffusion.md); start=1 samples from pure noise, as without a predictor.
START_FROM_GUESS = 0.3
PREDICTOR_NETS = ("unet", "framestack")


@dataclass(frozen=True)
class Config:
    base_channels: int = 48  # network width; see PRESETS for sizes
    channel_mults: tuple = (1, 2, 2)  # after the 2x2 patch: 32x32 -> 16x16 -> 8x8
    blocks_per_level: int = 2  # residual blocks per resolution (DDPM uses 2)
    attention_levels: tuple = (2,)  # spatial attention at 8x8 only
    heads: int = 4  # attention heads
    spacetime: bool = False  # full space-time attention at 8x8 (see unet3d.UNetConfig.spacetime)
    patch: int = 2  # space-to-depth at the stem, lossless, ~4x cheaper than full resolution
    num_frames: int = 20  # clip length trained on (Moving MNIST's 20): context + generated <= this
    max_context: int = 10  # context lengths drawn in training: 0..10 (the protocol gives 10)
    p_uncond: float = 0.1  # context dropped this often: an unconditional model for CFG and free samples
    schedule: str = "cosine"  # Improved DDPM's schedule keeps the last steps informative at 64x64
    diffusion_steps: int = 1000  # T, as in DDPM
    prediction: str = "v"  # v-prediction is well-conditioned at both ends of the schedule
    min_snr_gamma: float = 0.0  # 0: the plain loss; 5: min-SNR-5 weighting (Hang et al. 2023)
    sample_steps: int = 20  # DDIM steps used by default (CPU-friendly; 50 is a little better)
    predictor: int = 0  # 0: none; else the width of a deterministic predictor whose guess the denoiser sees
    predictor_net: str = "unet"  # "unet": a narrower 3D UNet; "framestack": frames stacked as channels (SimVP)
    predictor_only: bool = False  # training only: the loss is the predictor's alone and the denoiser is frozen
    # and never run, so the predictor learns at its own (much higher) step rate before the two train together
    predictor_hidden: int = framestack.HIDDEN  # a frame-stack predictor's channels per frame (encoder, decoder)
    predictor_blocks: int = framestack.BLOCKS  # and its translator's residual blocks
    frame_attention_from: int = 0  # temporal attention at levels >= this; 1: the temporal conv alone at full
    # resolution, a cheaper network (see unet3d.UNetConfig)


PRESETS = {
    "nano": Config(base_channels=16, channel_mults=(1, 2), attention_levels=(1,), blocks_per_level=1),  # 0.22 M
    "tiny": Config(base_channels=32),  # 2.0 M
    "small": Config(base_channels=48),  # 4.5 M
    "base": Config(base_channels=64),  # 8.0 M, the most the protocol's 10 M budget allows here
}


class Model(torch.nn.Module):
    family = "diffusion"

    def __init__(self, config: Config = Config()):
        super().__init__()
        self.register_buffer("alpha_bar", diffusion.alpha_bar_for(config), persistent=False)  # checks schedule and prediction
        self.config = config
        self.net = UNet3D(
            UNetConfig(
                base_channels=config.base_channels,
                channel_mults=tuple(config.channel_mults),
                blocks_per_level=config.blocks_per_level,
                attention_levels=tuple(config.attention_levels),
                heads=config.heads,
                patch=config.patch,
                spacetime=config.spacetime,
                max_frames=config.num_frames,
                frame_attention_from=config.frame_attention_from,
                in_channels=4 if config.predictor else 3,  # noisy, context, mask (, guess)
                guess=bool(config.predictor),
            )
        )
        if config.predictor_net not in PREDICTOR_NETS:
            raise ValueError(f"unknown predictor_net {config.predictor_net!r}; expected one of {PREDICTOR_NETS}")
        if config.predictor_only and not config.predictor:
            raise ValueError("predictor_only trains the predictor alone: give it one, e.g. --set predictor=128 "
                             "--set predictor_net=framestack")
        framestack.check_shape_has_predictor(config.predictor_hidden, config.predictor_blocks,
                                             bool(config.predictor) and config.predictor_net == "framestack",
                                             "model", "--set predictor=192 --set predictor_net=framestack")
        self.predictor = None
        if config.predictor and config.predictor_net == "framestack":  # translator width = config.predictor
            self.predictor = FrameStackPredictor(frames=config.num_frames, width=config.predictor,
                                                 hidden=config.predictor_hidden, blocks=config.predictor_blocks)
        elif config.predictor:  # the same layout, narrower; it sees the context and its mask, no noise
            self.predictor = UNet3D(UNetConfig(
                base_channels=config.predictor, channel_mults=tuple(config.channel_mults),
                blocks_per_level=config.blocks_per_level, attention_levels=tuple(config.attention_levels),
                heads=config.heads, patch=config.patch, max_frames=config.num_frames,
            ))

    def forward(self, x_t, t, cond=None, cond_mask=None, guess=None):
        """The denoiser's prediction. A model with a predictor reads its guess from the given frames; pass `guess`
        to reuse one across steps (as `generate` does), or leave it out and it is made here, never zeros."""
        if guess is None and self.predictor is not None and cond is not None and cond_mask is not None:
            guess = self.guess(cond, cond_mask)
        return self.net(x_t, t, cond, cond_mask, guess)

    def guess(self, cond: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        """The predictor's deterministic guess of every frame (model range), the given frames kept as given.

        cond: (b, t, c, h, w) in [-1, 1] (only the given frames are read); cond_mask: (b, t), 1 = given.
        """
        if self.predictor is None:
            raise ValueError("this model has no predictor (config.predictor is 0)")
        mask = cond_mask.to(cond.dtype)[:, :, None, None, None]
        if isinstance(self.predictor, FrameStackPredictor):
            out = self.predictor(cond, cond_mask)  # it masks the frames itself
        else:
            clean = torch.full(cond.shape[:2], -1, device=cond.device)  # t = -1: no noise anywhere
            out = self.predictor(torch.zeros_like(cond), clean, cond, cond_mask)
        return mask * cond + (1 - mask) * out

    # -- training ----------------------------------------------------------------------------------

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Diffusion loss on the frames to be generated, given a random number of context frames."""
        x0 = diffusion.to_model_range(batch[:, : self.config.num_frames])  # (b, t, c, h, w) in [-1, 1]
        b, t = x0.shape[:2]
        c = self.config
        # half the clips get the protocol's full context, the rest a uniform length; p_uncond get none
        k = torch.where(torch.rand(b, device=x0.device) < 0.5, c.max_context, torch.randint(1, c.max_context + 1, (b,), device=x0.device))
        k = torch.where(torch.rand(b, device=x0.device) < c.p_uncond, 0, k)
        cond_mask = (torch.arange(t, device=x0.device)[None] < k[:, None]).float()  # (b, t): 1 = given
        guess, guess_loss = None, 0.0
        if self.predictor is not None:  # plain MSE on the frames to be generated; the denoiser sees it fixed
            guess = self.guess(x0, cond_mask)
            guess_loss = diffusion.masked_mean(((guess.float() - x0.float()) ** 2).mean(dim=(2, 3, 4)), 1 - cond_mask)
            if c.predictor_only:
                return guess_loss
            guess = guess.detach()
        timesteps = torch.randint(0, c.diffusion_steps, (b,), device=x0.device)
        return guess_loss + diffusion.loss(
            self, x0, timesteps, self.alpha_bar, c.prediction, mask=1 - cond_mask, min_snr_gamma=c.min_snr_gamma,
            cond=x0, cond_mask=cond_mask, guess=guess,
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
        guidance: float = 0.0,
        start: float | None = None,
    ):
        """`num_frames` frames after `context` (b, t0, c, h, w) in [0, 1]; t0 may be 0.

        sampler 'ddim' (eta 0 by default) or 'ddpm' (eta 1), or, for a model with a predictor, 'predictor'
        (its deterministic guess alone); steps: reverse steps (default config.sample_steps); guidance:
        classifier-free guidance weight w (0 = none); start: where sampling starts, a share of the schedule (1:
        pure noise; below 1, for a model with a predictor: its guess, noised to the highest of the sampler's
        timesteps at or below start × (T − 1), and only the steps from there run, so the sample stays near the
        guess and the denoiser adds the detail; SDEdit). By default (None) `default_start(t0, steps)`: the guess
        at START_FROM_GUESS for a model with a predictor given context, pure noise otherwise.
        Returns (b, num_frames, c, h, w) in [0, 1], or (video, trace) with the trace of every step that ran.
        """
        validate_video(context, "context", channels=1, size=64)
        c = self.config
        b, t0 = context.shape[:2]
        if int(num_frames) != num_frames or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        if t0 + num_frames > c.num_frames:
            raise ValueError(
                f"context ({t0}) + num_frames ({num_frames}) = {t0 + num_frames} frames, but this model "
                f"generates clips of at most {c.num_frames}; use fewer frames or the hybrid for long rollouts"
            )
        steps, begin = self._schedule(t0, steps, start)
        if sampler == "predictor" and self.predictor is not None:  # the deterministic guess alone: no diffusion
            if return_trace:
                raise ValueError("sampler 'predictor' makes one deterministic guess: it has no denoising trace")
            return self.predict_mean(context, num_frames)
        if sampler not in SAMPLERS:
            extra = " or 'predictor' (the deterministic guess)" if self.predictor is not None else ""
            raise ValueError(f"unknown sampler {sampler!r}; expected one of {SAMPLERS}{extra}")
        eta = (1.0 if sampler == "ddpm" else 0.0) if eta is None else eta
        if guidance < 0:
            raise ValueError(f"guidance must be >= 0, got {guidance}")
        device = self.alpha_bar.device
        total = t0 + num_frames
        cond = torch.zeros(b, total, *context.shape[2:], device=device)
        cond[:, :t0] = diffusion.to_model_range(context.to(device))
        cond_mask = torch.zeros(b, total, device=device)
        cond_mask[:, :t0] = 1
        generator = torch.Generator(device).manual_seed(int(seed))
        guess = self._guess_or_none(cond, cond_mask)
        out = diffusion.sample(
            self,
            (b, total, *context.shape[2:]),
            self.alpha_bar,
            steps=steps,
            eta=eta,
            prediction=c.prediction,
            model_kwargs={"cond": cond, "cond_mask": cond_mask, "guess": guess},
            uncond_kwargs={"cond": cond, "cond_mask": torch.zeros_like(cond_mask),
                           "guess": self._guess_or_none(cond, torch.zeros_like(cond_mask))} if guidance > 0 else None,
            guidance=guidance,
            generator=generator,
            device=device,
            progress=progress,
            return_trace=return_trace,
            init=guess if begin is not None else None,
            start=begin,
        )
        x, trace = out if return_trace else (out, None)
        video = diffusion.from_model_range(x[:, t0:])
        if not return_trace:
            return video
        for entry in trace:  # the widget shows [0, 1] images of the generated frames
            entry["x_t"] = diffusion.from_model_range(entry["x_t"][:, t0:])
            entry["x0"] = diffusion.from_model_range(entry["x0"][:, t0:])
        return video, trace

    def network_evaluations(self, num_context: int, num_frames: int, steps: int | None = None,
                            guidance: float = 0.0, **generate_kwargs) -> int:
        """How many network calls `generate` makes for these settings: one per step that runs (from its start, by
        default the guess where it has context) and one of the predictor, twice all that with guidance."""
        steps, begin = self._schedule(num_context, steps, generate_kwargs.get("start"))
        if generate_kwargs.get("sampler") == "predictor" and self.predictor is not None:
            return 1
        steps = len(diffusion.started_timesteps(self.config.diffusion_steps, steps, begin))
        predictor = 0 if self.predictor is None else 1  # one predictor call per pass (a narrower network)
        return (steps + predictor) * (2 if guidance > 0 else 1)

    def default_start(self, num_context: int, steps: int) -> float:
        """`generate`'s start when none is given (`diffusion.default_start`): the guess at START_FROM_GUESS where
        there is a predictor, context and two or more of the sampler's `steps` below it (at 10 steps three run below
        0.3, at 4 or fewer only the last); pure noise otherwise."""
        return diffusion.default_start(START_FROM_GUESS, self.config.diffusion_steps, steps, self.predictor is not None,
                                       num_context)

    def _schedule(self, num_context: int, steps: int | None, start: float | None) -> tuple:
        """(steps, the timestep sampling begins at or None for pure noise): the defaults resolved, in one place."""
        steps = self.config.sample_steps if steps is None else steps
        return steps, self._start_step(self.default_start(num_context, steps) if start is None else start)

    def _start_step(self, start: float) -> int | None:
        """The timestep a start of `start` (a share of the schedule) asks for, start × (T − 1) rounded; None for
        pure noise. The sampler begins at the highest of its timesteps at or below it (`started_timesteps`)."""
        return diffusion.start_timestep(start, self.config.diffusion_steps, self.predictor is not None)

    def _guess_or_none(self, cond, cond_mask):
        return None if self.predictor is None else self.guess(cond, cond_mask)

    @torch.no_grad()
    def predict_mean(self, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The predictor's deterministic guess of `num_frames` frames after `context` (b, t0, c, h, w) in [0, 1].

        One network call, no noise: the future this model expects on average (a blur where it is unsure),
        which the denoiser refines into one sharp sample in `generate`.
        """
        validate_video(context, "context", channels=1, size=64)
        if self.predictor is None:
            raise ValueError("this model has no predictor (trained without --set predictor=WIDTH)")
        b, t0 = context.shape[:2]
        if int(num_frames) != num_frames or num_frames < 1 or t0 + num_frames > self.config.num_frames:
            raise ValueError(f"num_frames must be a positive integer with context + num_frames <= "
                             f"{self.config.num_frames}, got {num_frames!r} after {t0} context frames")
        device = self.alpha_bar.device
        cond = torch.zeros(b, t0 + num_frames, *context.shape[2:], device=device)
        cond[:, :t0] = diffusion.to_model_range(context.to(device))
        cond_mask = torch.zeros(b, t0 + num_frames, device=device)
        cond_mask[:, :t0] = 1
        return diffusion.from_model_range(self.guess(cond, cond_mask)[:, t0:]).clamp(0, 1)


def from_image_model(image_model, config: Config) -> Model:
    """A video model whose network is inflated from a trained image model (`minivid.image_diffusion`).

    At initialisation it denoises every frame exactly as the image model does; the temporal
    layers and the context channels start at zero and are learned in fine-tuning.
    """
    ic = image_model.config
    for name in ("base_channels", "channel_mults", "blocks_per_level", "attention_levels", "heads", "patch",
                 "schedule", "diffusion_steps", "prediction"):
        if tuple_or(getattr(ic, name)) != tuple_or(getattr(config, name)):
            raise ValueError(f"cannot inflate: the image model's {name} is {getattr(ic, name)!r}, the video preset's {getattr(config, name)!r}")
    model = Model(config)
    inflate(image_model.net, model.net)
    return model


def tuple_or(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


def build(preset: str, args=None) -> Model:
    """`minivid train diffusion --preset P [--init X.pt]`: fresh, inflated from an image export, or continued from a diffusion export."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} for diffusion; expected one of {sorted(PRESETS)}")
    from minivid.families import with_overrides

    config = with_overrides(PRESETS[preset], args)
    source = getattr(args, "predictor_from", None) if args is not None else None
    model = _start(config, getattr(args, "init", None) if args is not None else None, bool(source))
    if source:  # e.g. a predictor trained alone (predictor_only) joins a denoiser that learned to read a guess
        take_predictor(model, source)
    if config.predictor_only:  # the denoiser is frozen: the optimizer and DDP see the predictor alone
        model.net.requires_grad_(False)
    return model


def predictor_kind(config) -> tuple:
    """(width, network, hidden, blocks) of a config's predictor; the hybrid's and the token model's are always
    frame stacks (hidden and blocks shape a frame stack alone; a UNet predictor reads them as their defaults)."""
    net = getattr(config, "predictor_net", "framestack")
    shape = (getattr(config, "predictor_hidden", framestack.HIDDEN), getattr(config, "predictor_blocks", framestack.BLOCKS))
    return (getattr(config, "predictor", 0), net, *(shape if net == "framestack" else (framestack.HIDDEN, framestack.BLOCKS)))


def predictor_settings(config) -> list:
    """The `--set` options (NAME=VALUE) that give a run of `config`'s family a predictor like `config`'s: the
    width, the network where the family has the choice, the shape where it is not the default; ['predictor=0']
    for none."""
    width, net, hidden, blocks = predictor_kind(config)
    if not width:
        return ["predictor=0"]
    out = [f"predictor={width}"] + ([f"predictor_net={net}"] if hasattr(config, "predictor_net") else [])
    out += [f"predictor_hidden={hidden}"] if hidden != framestack.HIDDEN else []
    return out + ([f"predictor_blocks={blocks}"] if blocks != framestack.BLOCKS else [])


def take_predictor(model, source, name: str | None = None, via: str = "--predictor-from"):
    """Load into `model` (diffusion, hybrid, or the autoregressive model's guide) the predictor of `source`: a
    model, or a file / pretrained:NAME of a diffusion or hybrid export whose predictor has the same width, network,
    shape (channels per frame, translator blocks) and number of frames. `via` names the option in the errors."""
    from minivid import checkpoints

    other = checkpoints.resolve(source) if isinstance(source, str) else source
    name = name or str(source)
    if (model.predictor is None or getattr(other, "family", None) not in ("diffusion", "hybrid")
            or getattr(other, "predictor", None) is None
            or predictor_kind(getattr(other, "config", None)) != predictor_kind(model.config)):
        raise ValueError(f"{via} needs a diffusion or hybrid export whose predictor matches this run's "
                         f"({' '.join(predictor_settings(model.config))}); {name} is a "
                         f"{getattr(other, 'family', None)!r} model with "
                         f"{' '.join(predictor_settings(getattr(other, 'config', None)))}")
    frames = [getattr(net, "frames", None) for net in (model.predictor, other.predictor)]
    if frames[0] != frames[1]:
        raise ValueError(f"{via} needs a predictor over this run's {frames[0]} frames; {name}'s sees {frames[1]}")
    model.predictor.load_state_dict(other.predictor.state_dict())
    return model


def _start(config: Config, init: str | None, new_predictor: bool = False) -> Model:
    if not init:
        return Model(config)
    from minivid import checkpoints

    start = checkpoints.resolve(init)
    if getattr(start, "family", None) == "diffusion":  # continue from a video model's weights
        if start.config == config:
            return start.train()
        return continued(start, config, init, new_predictor)
    if getattr(start, "family", None) != "image":
        raise ValueError(f"--init expects an image or diffusion export, got a {getattr(start, 'family', None)!r} model")
    return from_image_model(start, config)


# fields a continued run may change: new zero-output layers or input channels (a new predictor is trained from
# scratch; its guess enters through zero weights), the loss
GROWABLE = ("spacetime", "min_snr_gamma", "predictor", "predictor_net", "predictor_only", "predictor_hidden",
            "predictor_blocks")


def continued(start, config, name: str = "the start model", new_predictor: bool = False):
    """A model of `config` that starts from `start`'s weights; they may differ only in GROWABLE fields. A predictor
    of another shape starts fresh, which is allowed where it is trained alone (predictor_only) or, with
    `new_predictor` (--predictor-from), loaded next."""
    differ = [f.name for f in fields(config) if getattr(start.config, f.name) != getattr(config, f.name)]
    fixed = [f"{n} ({getattr(start.config, n)!r} there, {getattr(config, n)!r} here)" for n in differ if n not in GROWABLE]
    if fixed:
        raise ValueError(f"{name} holds a different configuration: {', '.join(fixed)}")
    if getattr(start.config, "spacetime", False) and not config.spacetime:
        raise ValueError(f"{name} has space-time attention; continue it with --set spacetime=True")
    same = predictor_kind(start.config) == predictor_kind(config)
    if predictor_kind(start.config)[0] and not same and not (config.predictor and (config.predictor_only or new_predictor)):
        keep = predictor_settings(start.config)
        raise ValueError(f"{name} has a predictor ({' '.join(keep)}); continue it with "
                         + " ".join(f"--set {k}" for k in keep)
                         + ", train a new one alone in its place with --set predictor_only=True, or take one of "
                         "another shape with --predictor-from FILE and its --set options")
    model = type(start)(config)
    grow(start.net, model.net)
    if start.predictor is not None and same:  # the same predictor: keep what it learned (a new one starts fresh)
        model.predictor.load_state_dict(start.predictor.state_dict())
    return model.train()


def from_config(config: dict) -> Model:
    """Rebuild from a checkpoint's plain-data config (lists back to tuples)."""
    names = {f.name for f in fields(Config)}
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in names}
    return Model(Config(**clean))
