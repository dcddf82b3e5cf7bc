"""The AR-diffusion hybrid: every frame its own noise level, later frames noisier, causal in time.

Full-sequence diffusion (`minivid/video_diffusion.py`) noises the whole clip to one level and
denoises all frames together; an autoregressive model finishes one frame before starting the next.
The hybrid sits between them (AR-Diffusion, Sun et al. 2025; Diffusion Forcing, Chen et al. 2024):

* **the network** is the 3D UNet with `causal=True`: each frame's temporal layers see only itself and
  the past, and it takes one noise level per frame (`t` shaped (b, frames), -1 = clean);
* **training** draws one timestep per frame, non-decreasing along time (AR-Diffusion) or independent
  (Diffusion Forcing, `Config(noise="independent")`), and scores every frame except given context;
* **sampling** follows a grid of noise levels (`minivid/schedules.py`), one row per network evaluation
  and one column per frame: lag 0 is synchronous (full-sequence diffusion), lag = steps is fully
  autoregressive, in between a diagonal "pyramid". Context frames are clean, or a little noised
  (`context_noise`, trained for with `Config.context_noise`) so the model learns not to trust its own
  slightly wrong frames too much. Rollouts longer than the window slide it forward, a chunk at a time.
* **optionally** (`predictor` > 0) a deterministic predictor (`minivid/models/framestack.py`, the same
  network as the diffusion model's) guesses every new frame of a window from its context alone, once per
  window, and the network reads that guess as one more input channel. The guess depends only on the past,
  so the hybrid stays causal. The predictor can come trained from a diffusion export (`--predictor-from`).
  Sampling then starts every new frame from that guess, noised part-way (`generate(..., start=s)`, by default
  START_FROM_GUESS given context): the grid is capped at the start's level (`cap_grid`), so each frame runs
  only the steps below it; `start=1` is pure noise.

One reverse step is `diffusion.step`, applied per frame: frames whose level does not change in a row
stay where they are.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from tqdm.auto import tqdm

from minivid import diffusion, schedules
from minivid.metrics import validate_video
from minivid.image_diffusion import network_config
from minivid.models import framestack
from minivid.models.framestack import FrameStackPredictor
from minivid.models.unet3d import UNet3D

NOISES = ("nondecreasing", "independent")
# where a hybrid with a predictor, given context, starts each new frame by default: its guess noised to 0.5 of the
# schedule (SDEdit, as video_diffusion.START_FROM_GUESS). On the protocol's 256 clips this cut the shipped hybrid's MSE
# by 16 % at the same SSIM (0.3 cuts more and blurs more: docs/hybrid.md); start=1 begins from pure noise.
START_FROM_GUESS = 0.5
SCHEDULES = ("pyramid", "synchronous", "autoregressive")


@dataclass(frozen=True)
class Config:
    base_channels: int = 48  # network width; see PRESETS for sizes
    channel_mults: tuple = (1, 2, 2)  # after the 2x2 patch: 32x32 -> 16x16 -> 8x8
    blocks_per_level: int = 2
    attention_levels: tuple = (2,)
    heads: int = 4
    spacetime: bool = False  # full space-time attention at 8x8, block-causal (see unet3d.UNetConfig.spacetime)
    patch: int = 2
    num_frames: int = 20  # the window: frames the network sees at once (context + generated)
    max_context: int = 10  # context frames kept when sliding the window (the protocol gives 10)
    noise: str = "nondecreasing"  # per-frame training timesteps: AR-Diffusion's or Diffusion Forcing's
    p_context: float = 0.7  # clips trained with a clean (or lightly noised) prefix of given frames
    context_noise: int = 100  # given frames are noised to a level drawn from [-1, this) in training
    schedule: str = "cosine"
    diffusion_steps: int = 1000
    prediction: str = "v"
    min_snr_gamma: float = 0.0  # 0: the plain loss; 5: min-SNR-5 weighting (Hang et al. 2023)
    sample_steps: int = 10  # denoising steps per frame by default
    lag: int = 2  # the default pyramid's lag, in sampler steps, between neighbouring frames
    predictor: int = 0  # 0: none; else the width of a frame-stack predictor whose guess of each window's new
    # frames, made from its context alone, the network reads as one more input channel
    predictor_only: bool = False  # training only: the loss is the predictor's alone and the network is frozen
    predictor_hidden: int = framestack.HIDDEN  # a frame-stack predictor's channels per frame (encoder, decoder)
    predictor_blocks: int = framestack.BLOCKS  # and its translator's residual blocks


PRESETS = {
    "nano": Config(base_channels=16, channel_mults=(1, 2), attention_levels=(1,), blocks_per_level=1),  # 0.22 M
    "tiny": Config(base_channels=32),  # 2.0 M
    "small": Config(base_channels=48),  # 4.5 M
}


def _int_at_least(name: str, value, low: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def cap_grid(grid: torch.Tensor, top: int | None) -> torch.Tensor:
    """A grid whose levels are capped at `top` (None: unchanged), rows that no longer move dropped: every frame
    starts at `top` and keeps the schedule's order below it."""
    if top is None:
        return grid
    capped = grid.clamp(max=top)
    moved = torch.ones(len(capped), dtype=torch.bool, device=capped.device)
    moved[1:] = (capped[1:] != capped[:-1]).any(dim=1)
    return capped[moved]


def level_to_timestep(levels: torch.Tensor, steps: int, num_train_steps: int) -> torch.Tensor:
    """Grid levels (steps = pure noise .. 0 = clean) -> training timesteps (T-1 .. 0, and -1 for clean)."""
    ts = diffusion.timesteps_for(num_train_steps, steps)  # descending, ts[0] = T - 1, ts[-1] = 0
    padded = torch.cat([ts, ts.new_tensor([-1])])  # index steps - level
    return padded[(steps - levels).long()]


class Model(torch.nn.Module):
    family = "hybrid"

    def __init__(self, config: Config = Config()):
        super().__init__()
        if config.noise not in NOISES:
            raise ValueError(f"unknown training noise {config.noise!r}; expected one of {NOISES}")
        self.register_buffer("alpha_bar", diffusion.alpha_bar_for(config), persistent=False)  # checks schedule and prediction
        if not 0 < config.max_context < config.num_frames:
            raise ValueError(f"max_context must lie in [1, num_frames), got {config.max_context}")
        self.config = config
        # the image model's network shape (one input channel: context frames are frames at a low noise
        # level, not extra channels), with causal temporal layers added
        self.net = UNet3D(network_config(config, temporal=True, causal=True, max_frames=config.num_frames,
                                             spacetime=config.spacetime, in_channels=2 if config.predictor else 1,
                                             guess=bool(config.predictor)))
        if config.predictor_only and not config.predictor:
            raise ValueError("predictor_only trains the predictor alone: give it one, e.g. --set predictor=192")
        framestack.check_shape_has_predictor(config.predictor_hidden, config.predictor_blocks, bool(config.predictor),
                                             "hybrid", "--set predictor=192")
        self.predictor = FrameStackPredictor(frames=config.num_frames, width=config.predictor, hidden=config.predictor_hidden,
                                             blocks=config.predictor_blocks) if config.predictor else None

    def forward(self, x_t, t, guess=None):
        """The network's prediction for every frame. A model with a predictor reads its guess; pass `guess` (as
        training and `generate` do, made once from the context) or leave it out and it is made here from the
        leading frames at level -1 (clean), the context of a plain call."""
        if guess is None and self.predictor is not None:
            t = torch.as_tensor(t, device=x_t.device)
            t = t[:, None].expand(x_t.shape[:2]) if t.ndim == 1 else t
            given = torch.cumprod((t < 0).long(), dim=1)  # the clean prefix: the guess reads only the past
            guess = self.guess(x_t, given)
        return self.net(x_t, t, guess=guess)

    def guess(self, frames: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
        """The predictor's guess of every frame (model range) from the `given` ones (b, t), which it keeps as given."""
        if self.predictor is None:
            raise ValueError("this hybrid has no predictor (config.predictor is 0)")
        mask = given.to(frames.dtype)[:, :, None, None, None]
        return mask * frames + (1 - mask) * self.predictor(frames, given)

    # -- training ----------------------------------------------------------------------------------

    def training_timesteps(self, b: int, device=None, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame timesteps (b, frames) and the mask (b, frames) of frames that count in the loss."""
        c = self.config
        draw = schedules.nondecreasing_timesteps if c.noise == "nondecreasing" else schedules.independent_timesteps
        t = draw(b, c.num_frames, c.diffusion_steps, generator=generator, device=device)
        # a prefix of given frames (the context at sampling time), clean or lightly noised
        k = torch.randint(1, c.max_context + 1, (b,), generator=generator, device=device)
        k = torch.where(torch.rand(b, generator=generator, device=device) < c.p_context, k, 0)
        given = torch.arange(c.num_frames, device=device)[None] < k[:, None]
        ctx_level = torch.randint(-1, max(c.context_noise, 0), (b, 1), generator=generator, device=device)
        if c.noise == "nondecreasing":  # keep the order: the prefix sits below every later frame
            ctx_level = torch.minimum(ctx_level, t.min(dim=1, keepdim=True).values)
        t = torch.where(given, ctx_level.expand_as(t), t)
        return t, (~given).float()

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        x0 = diffusion.to_model_range(batch[:, : self.config.num_frames])
        t, mask = self.training_timesteps(x0.shape[0], x0.device)
        guess, guess_loss = None, 0.0
        if self.predictor is not None:  # its guess from the clean context; plain MSE on the frames to be made
            guess = self.guess(x0, 1 - mask)
            guess_loss = diffusion.masked_mean(((guess.float() - x0.float()) ** 2).mean(dim=(2, 3, 4)), mask)
            if self.config.predictor_only:
                return guess_loss
            guess = guess.detach()
        return guess_loss + diffusion.loss(self, x0, t, self.alpha_bar, self.config.prediction, mask=mask,
                                           min_snr_gamma=self.config.min_snr_gamma, guess=guess)

    # -- sampling ----------------------------------------------------------------------------------

    def schedule_grid(self, num_frames: int, schedule="pyramid", steps: int | None = None, lag: int | None = None):
        """The (rows, frames) grid of levels for one window of new frames: a name, or your own grid."""
        steps = self.config.sample_steps if steps is None else _int_at_least("steps", steps, 1)
        if isinstance(schedule, torch.Tensor):
            grid = schedules.check_nondecreasing(schedule.long())
            if grid.shape[1] != num_frames or not bool((grid[0] == steps).all()) or not bool((grid[-1] == 0).all()):
                raise ValueError(f"a custom grid must have {num_frames} columns, start at level {steps} (noise) "
                                 f"and end at 0 (clean); got shape {tuple(grid.shape)}, first row {grid[0].tolist()}, "
                                 f"last row {grid[-1].tolist()}")
            if bool((grid[1:] > grid[:-1]).any()):
                raise ValueError("a custom grid's levels must never increase from one row to the next")
            return grid
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES} or a (rows, frames) tensor")
        if schedule == "synchronous":
            lag = 0
        elif schedule == "autoregressive":
            lag = steps
        else:
            lag = self.config.lag if lag is None else lag
        return schedules.pyramid_grid(num_frames, steps, lag)

    @torch.no_grad()
    def generate(
        self,
        context: torch.Tensor,
        num_frames: int,
        seed: int = 0,
        progress: bool = True,
        return_trace: bool = False,
        schedule="pyramid",
        steps: int | None = None,
        lag: int | None = None,
        context_noise: int = 0,
        start: float | None = None,
    ):
        """`num_frames` frames after `context` (b, t0, c, h, w) in [0, 1]; t0 may be 0.

        schedule: 'pyramid' (frames start `lag` steps apart), 'synchronous', 'autoregressive', or a
        (rows, frames) tensor of levels; steps: denoising steps per frame; context_noise: training
        timestep (0..T-1) the given frames are noised to, 0 = clean; start: where each new frame starts, a
        share of the schedule (1: pure noise; below 1, for a model with a predictor: its guess, noised to the
        highest level whose timestep is at or below start × (T − 1), the grid's levels capped there, so
        every frame runs only the steps below it; SDEdit, as `video_diffusion.Model.generate`); by default
        (None) `default_start(context frames, steps)` for each window: the guess at START_FROM_GUESS for a model
        with a predictor where the window has context, pure noise otherwise. Longer rollouts than the window
        slide it: each chunk conditions on the last `max_context` frames and starts from its own guess.
        Returns (b, num_frames, c, h, w) in [0, 1], or (video, trace); the trace lists, per chunk,
        the grid, its timesteps, the network evaluations used and the level it started at (None: pure noise).
        """
        validate_video(context, "context", channels=1, size=64)
        c = self.config
        num_frames = _int_at_least("num_frames", num_frames, 1)
        steps = c.sample_steps if steps is None else _int_at_least("steps", steps, 1)
        context_noise = _int_at_least("context_noise", context_noise, 0)
        if context_noise >= c.diffusion_steps:
            raise ValueError(f"context_noise must be below {c.diffusion_steps}, got {context_noise}")
        if start is not None:
            self.start_level(start, steps)  # a bad start fails here, before any work
        device = self.alpha_bar.device
        generator = torch.Generator(device).manual_seed(int(seed))
        frames = diffusion.to_model_range(context.to(device))[:, -c.max_context:]  # the past, in [-1, 1]
        out, trace, done = [], [], 0
        bar = tqdm(total=num_frames, desc="frames", disable=not progress, leave=False)
        while done < num_frames:
            past = torch.cat([frames, *out], dim=1)[:, -c.max_context:]
            k = past.shape[1]
            chunk = min(num_frames - done, c.num_frames - k)
            top = self._window_start(k, steps, start)
            grid = cap_grid(self.schedule_grid(chunk, schedule, steps, lag), top)
            new, evaluations = self._denoise_chunk(past, grid, steps, context_noise, generator, top)
            out.append(new)
            trace.append({"grid": grid, "timesteps": level_to_timestep(grid, steps, c.diffusion_steps),
                          "context": k, "evaluations": evaluations, "start_level": top})
            done += chunk
            bar.update(chunk)
        bar.close()
        video = diffusion.from_model_range(torch.cat(out, dim=1)[:, :num_frames])
        return (video, trace) if return_trace else video

    def network_evaluations(self, num_context: int, num_frames: int, schedule="pyramid", steps: int | None = None,
                            lag: int | None = None, start: float | None = None, **generate_kwargs) -> int:
        """How many network calls `generate` makes: per window, the grid's rows in which some frame moves (and
        the predictor's one guess, for a model with one)."""
        c = self.config
        steps = c.sample_steps if steps is None else _int_at_least("steps", steps, 1)
        total, done = 0, 0
        while done < num_frames:
            past = min(num_context + done, c.max_context)
            chunk = min(num_frames - done, c.num_frames - past)
            grid = cap_grid(self.schedule_grid(chunk, schedule, steps, lag), self._window_start(past, steps, start))
            total += int((grid[1:] < grid[:-1]).any(dim=1).sum()) + (self.predictor is not None)  # + one guess
            done += chunk
        return total

    def default_start(self, num_context: int, steps: int) -> float:
        """`generate`'s start when none is given (`diffusion.default_start`): the guess at START_FROM_GUESS where
        there is a predictor, context and two or more of the `steps` levels below it; pure noise otherwise."""
        return diffusion.default_start(START_FROM_GUESS, self.config.diffusion_steps, steps, self.predictor is not None,
                                       num_context)

    def _window_start(self, num_context: int, steps: int, start: float | None) -> int | None:
        """The level one window starts at (None: pure noise): `start`, or by default `default_start` for the context
        this window has, so a rollout from nothing starts its later windows, which have context, from their guess."""
        return self.start_level(self.default_start(num_context, steps) if start is None else start, steps)

    def _window_guess(self, past: torch.Tensor, n: int) -> torch.Tensor:
        """The predictor's guess of a window (model range): the `past` frames as given, then `n` new frames."""
        b, k = past.shape[:2]
        window = torch.cat([past, past.new_zeros(b, n, *past.shape[2:])], dim=1)
        return self.guess(window, (torch.arange(k + n, device=past.device) < k).expand(b, k + n))

    @torch.no_grad()
    def predict_mean(self, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        """The predictor's deterministic guess of `num_frames` frames after `context` (b, t0, c, h, w) in [0, 1]:
        what `generate` starts each frame of its first window from. The last `max_context` frames are read, and
        they and the new frames must fit the window."""
        validate_video(context, "context", channels=1, size=64)
        if self.predictor is None:
            raise ValueError("this hybrid has no predictor (trained without --set predictor=WIDTH)")
        c = self.config
        past = diffusion.to_model_range(context.to(self.alpha_bar.device))[:, -c.max_context:]
        num_frames = _int_at_least("num_frames", num_frames, 1)
        if past.shape[1] + num_frames > c.num_frames:
            raise ValueError(f"num_frames must fit the window: {past.shape[1]} context + {num_frames} > "
                             f"{c.num_frames} frames")
        return diffusion.from_model_range(self._window_guess(past, num_frames)[:, past.shape[1]:]).clamp(0, 1)

    def start_level(self, start: float, steps: int) -> int | None:
        """The grid level sampling starts at for a `start` (a share of the schedule), None for pure noise: the
        highest level whose timestep is at or below start × (T − 1) (`diffusion.started_timesteps`)."""
        t = diffusion.start_timestep(start, self.config.diffusion_steps, self.predictor is not None, "hybrid")
        if t is None:
            return None
        return len(diffusion.started_timesteps(self.config.diffusion_steps, steps, t))  # level L: the L-th from the end

    def _denoise_chunk(self, past, grid, steps, context_noise, generator, top=None):
        """Denoise len(grid[0]) new frames after `past` following `grid`, from pure noise, or (`top`, a level)
        from the guess noised to that level; returns (frames, evaluations)."""
        c = self.config
        b, k = past.shape[:2]
        n = grid.shape[1]
        device = past.device
        x = torch.randn(b, n, *past.shape[2:], generator=generator, device=device)
        ctx_t = torch.full((b, k), context_noise if context_noise > 0 else -1, device=device)  # -1 = clean
        guess = None if self.predictor is None else self._window_guess(past, n)  # once per window, from the clean past
        if top is not None:  # every new frame starts as the guess, noised to level `top`
            t_top = level_to_timestep(torch.full((b, n), top), steps, c.diffusion_steps).to(device)
            x = diffusion.q_sample(guess[:, k:].float(), t_top, x, self.alpha_bar)
        if k and context_noise > 0:
            eps = torch.randn(past.shape, generator=generator, device=device)
            past = diffusion.q_sample(past, ctx_t, eps, self.alpha_bar)
        timesteps = level_to_timestep(grid, steps, c.diffusion_steps).to(device)  # (rows, n)
        evaluations = 0
        for row in range(1, grid.shape[0]):
            moving = (grid[row] < grid[row - 1]).nonzero().flatten()
            if len(moving) == 0:
                continue
            last = int(moving.max()) + 1  # causal: frames after the last moving one cannot change it
            t_now = timesteps[row - 1, :last].expand(b, last)
            t_next = timesteps[row, :last].expand(b, last)
            x_in = torch.cat([past, x[:, :last]], dim=1)
            t_in = torch.cat([ctx_t, t_now], dim=1).long()
            out = self(x_in, t_in, guess=None if guess is None else guess[:, : k + last])[:, k:].float()
            evaluations += 1
            clean = t_now < 0  # finished frames: leave them exactly where they are
            t_safe = t_now.clamp(min=0)
            x0, eps = diffusion.x0_eps_from(c.prediction, out, x[:, :last], t_safe, self.alpha_bar)
            x0 = x0.clamp(-1, 1)
            ab = diffusion.alpha_bar_at(self.alpha_bar, t_safe, x0.ndim)
            eps = (x[:, :last] - ab.sqrt() * x0) / (1 - ab).sqrt()
            stepped = diffusion.step(x0, eps, t_safe, t_next, self.alpha_bar)
            keep = (clean | (t_next == t_now))[:, :, None, None, None]
            x[:, :last] = torch.where(keep, x[:, :last], stepped)
        return x, evaluations


def from_diffusion_model(video_model, config: Config) -> Model:
    """A hybrid whose network starts from a trained full-sequence diffusion model (`minivid.video_diffusion`).

    The two networks differ in two places, and everything else is copied as is:

    * the stem: the diffusion model reads three channels per pixel (noisy frame, context frame, context
      mask); the hybrid reads one, so it keeps the noisy-frame weights. Context now arrives as clean
      frames in the sequence (noise level -1), which fine-tuning teaches it to use;
    * the temporal convs: kernel taps (previous, current, next frame) become causal taps
      (two back, previous, current), so the weights keep their meaning and the next frame's tap is dropped.

    With `config.predictor`, the stem keeps the guess channel's weights too (zeros if the diffusion model has
    no predictor), and a frame-stack predictor of the same width comes along trained.
    """
    from minivid.video_diffusion import tuple_or

    vc = video_model.config
    for name in ("base_channels", "channel_mults", "blocks_per_level", "attention_levels", "heads", "patch",
                 "schedule", "diffusion_steps", "prediction"):
        mine, theirs = getattr(config, name), getattr(vc, name)
        if tuple_or(mine) != tuple_or(theirs):
            raise ValueError(f"cannot start from this diffusion model: its {name} is {theirs!r}, the hybrid's {mine!r}")
    model = Model(config)
    source = video_model.net.state_dict()
    target = model.net.state_dict()
    if any(".spacetime." in name for name in source) and not config.spacetime:
        raise ValueError("this diffusion model has space-time attention; give the hybrid --set spacetime=True")
    p2 = config.patch**2
    for name, value in source.items():
        if name == "stem.weight":  # input channels are (c p1 p2): the first p^2 are the noisy frame's
            guess = value[:, 3 * p2: 4 * p2] if getattr(vc, "predictor", 0) else torch.zeros_like(value[:, :p2])
            value = torch.cat([value[:, :p2], guess], dim=1) if config.predictor else value[:, :p2]
        elif name.endswith("temporal.conv.weight"):
            value = torch.cat([torch.zeros_like(value[..., :1]), value[..., :2]], dim=-1)  # (past, now, next) -> (2 back, past, now)
        if target[name].shape != value.shape:
            raise ValueError(f"cannot start from this diffusion model: {name} is {tuple(value.shape)}, "
                             f"the hybrid needs {tuple(target[name].shape)}")
        target[name] = value
    model.net.load_state_dict(target)  # space-time layers the source lacks keep their zero-output start
    if config.predictor and getattr(video_model, "predictor", None) is not None:
        from minivid.video_diffusion import take_predictor

        take_predictor(model, video_model, "the diffusion model", via="--init")
    return model


def build(preset: str, args=None) -> Model:
    """`minivid train hybrid --preset P [--init X.pt | pretrained:NAME]`: fresh, from a diffusion model, or continued from a hybrid."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} for hybrid; expected one of {sorted(PRESETS)}")
    from minivid.families import with_overrides

    config = with_overrides(PRESETS[preset], args)
    if args is not None and getattr(args, "noise", None):
        config = replace(config, noise=args.noise)
    from minivid.video_diffusion import take_predictor

    source = getattr(args, "predictor_from", None) if args is not None else None
    model = _start(config, getattr(args, "init", None) if args is not None else None, bool(source))
    if source:  # e.g. the shipped diffusion model's predictor, trained far longer than a hybrid run could
        take_predictor(model, source)
    if config.predictor_only:  # the network is frozen: the optimizer and DDP see the predictor alone
        model.net.requires_grad_(False)
    return model


def _start(config: Config, init: str | None, new_predictor: bool = False) -> Model:
    if not init:
        return Model(config)
    from minivid import checkpoints

    start = checkpoints.resolve(init)
    family = getattr(start, "family", None)
    if family == "hybrid":  # continue from a hybrid's weights
        if start.config == config:
            return start.train()
        from minivid.video_diffusion import continued

        return continued(start, config, init, new_predictor)
    if family != "diffusion":
        raise ValueError(f"--init expects a diffusion or hybrid model (a file, or 'pretrained:diffusion' / "
                         f"'pretrained:hybrid'), got a {family!r} model")
    return from_diffusion_model(start, config)


def from_config(config: dict) -> Model:
    """Rebuild from a checkpoint's plain-data config (lists back to tuples)."""
    names = {f.name for f in fields(Config)}
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in names}
    return Model(Config(**clean))
