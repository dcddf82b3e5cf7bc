"""A causal few-step student distilled from the bidirectional diffusion teacher (CausVid, stage 1).

The teacher (`minivid/video_diffusion.py`) denoises a whole clip at once in 20 DDIM steps from pure noise: every frame
waits for the last step, and every step runs all frames. CausVid (Yin et al. 2025, "From Slow
Bidirectional to Fast Autoregressive Video Diffusion Models") trains a student that makes one frame at
a time, in 1-4 steps, seeing only the past, so frames stream out as they are made. Here:

* **the network** is the hybrid's causal 3D UNet (`minivid/hybrid.py`: one noise level per frame,
  -1 = clean), so past frames enter as clean frames in the sequence. By default it starts from the
  teacher's weights (CausVid's start, through `hybrid.from_diffusion_model`); `--init pretrained:hybrid`
  starts from the shipped hybrid instead, the same network already trained to denoise each frame after
  a less noisy past, so it has less to learn (recommended, see `build`).
* **stage 1, trajectory regression** (CausVid's student initialisation): for each training clip the
  frozen teacher runs its deterministic DDIM sampler (eta 0, `teacher_steps`) from noise x_T, given the
  clip's first k frames, and we keep its states x_t at the student's timesteps (999, 749, 499, 249) and
  its clean frames x_0. The student sees each frame at one of those states, after a clean past (the real
  context, then the teacher's frames: teacher forcing), and regresses the teacher's x_0 for it:
  `loss = |x0_student(x_t, t | clean past) - x0_teacher|^2`, on the frames after the context. The noise
  fixes the teacher's output, so the regression target is one clip, not an average of many. The
  trajectories are made on the fly, per batch: `teacher_steps` forward passes of the frozen teacher
  without gradients, which makes a step about ten times a teacher training step at the same batch
  (measured on a CPU with the nano preset; fewer `teacher_steps` cost less and copy the teacher less well).
* **sampling** is CausVid's few-step loop, frame by frame: from noise at the first timestep, predict x_0,
  noise it afresh to the next timestep, predict again; after the last, the frame is done and joins the
  past. `steps` picks evenly spaced timesteps of the trained ones: 4 uses all, 2 uses (999, 499), 1 (999,).
* **the cache** (`minivid/models/frame_cache.py`): each finished frame is run once more, clean, to store
  what its temporal layers give later frames; every denoising step then runs the network on one frame.
  The network covers a window of `num_frames` frame positions (its temporal layers add the frame's
  position). When the window is full it slides: a new cache is read from the last `max_context` frames
  (one call on those frames), as the hybrid slides its window, and streaming goes on without an end.

Stage 2 of CausVid, distribution matching distillation (DMD, Yin et al. 2024; `--set dmd=W`, from a
stage-1 student): regression alone makes the student copy the teacher's average answer at each of its
few steps, which blurs; DMD instead pushes the student's own samples towards the teacher's distribution.
  Per step, the student makes its own frames: every generated frame at once, each beside the clean past
  of stage 1 (teacher forcing), through its own sampling steps without gradients, and then one step with
  gradients from a randomly picked one of them (DMD2's "backward simulation"). The clip (real context,
  the student's frames) is noised to a random level; the frozen teacher ("real" score) and a "fake"
  score model, a trainable copy of the teacher, each denoise it. Their difference, fake minus real,
  is the direction that makes the student's frames more like the student's and less like the
  teacher's: the student's frames move the other way (a surrogate loss, 0.5 |x - sg(x - g)|^2, whose
  gradient is g, normalised as in DMD by how far the teacher would move the frames). The fake score
  model learns the student's frames with the teacher's own diffusion loss, in the same step, so it
  follows the student as it changes. Both losses add up: the student's terms never reach the fake's
  weights (its outputs are taken without gradients) and the fake's term never reaches the student
  (its frames are detached), so one optimizer trains both, at one learning rate and one update each a
  step (DMD2 updates the fake five times a step; here the fake learns alone for the first
  `fake_warmup` steps, so that its score describes the student before it pushes, and the regression
  term, kept at weight `regression` as DMD's first paper does, steadies the student); their gradient norms are
  clipped apart (`train.clip_groups`). The logged loss is the sum of the three terms, so it does not
  compare with stage 1's. The fake score model is training state only: it is saved in a run's
  checkpoint (so training resumes exactly), left out of exports, and dropped when a run checkpoint is
  loaded as a model; the trainer's EMA copy carries a copy of it that nothing reads.
  Two simplifications against CausVid, both for cost: the student's frames follow the teacher's past,
  not its own (teacher forcing, as stage 1), and the teacher scores them at one noise level per clip.
  Both x_0 estimates are clamped to [-1, 1] as the samplers clamp them (DMD2 does not clamp). Under
  bf16 autocast the teacher (compiled on its own) and the fake (inside the step's graph) round
  differently, so at the start their difference is rounding noise, not exactly zero.

    student = distill.build("small", args)                      # teacher attached, for training
    video = student.generate(context, num_frames=10, steps=4)   # (b, 10, c, h, w) in [0, 1]
    for frame in student.stream(context, num_frames=100):       # (b, 1, c, h, w) each, as it is made
        ...
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, fields, replace

import torch
from tqdm.auto import tqdm

from minivid import diffusion
from minivid.image_diffusion import network_config
from minivid.metrics import validate_video
from minivid.models.frame_cache import FrameCache
from minivid.models.frame_cache import forward as cached_forward
from minivid.models.unet3d import UNet3D

FRAME_SIZE, CHANNELS = 64, 1  # Moving MNIST, the kit's frames
DMD_NOISE = (20, 980)  # stage 2 scores the student's frames at noise levels in [0.02 T, 0.98 T], as DMD does
NETWORK_FIELDS = ("base_channels", "channel_mults", "blocks_per_level", "attention_levels", "heads", "patch")


@dataclass(frozen=True)
class Config:
    base_channels: int = 48  # the network: the hybrid's, with the teacher's widths (see PRESETS)
    channel_mults: tuple = (1, 2, 2)
    blocks_per_level: int = 2
    attention_levels: tuple = (2,)
    heads: int = 4
    spacetime: bool = False  # block-causal space-time attention at 8x8 (the shipped teacher has none)
    patch: int = 2
    num_frames: int = 20  # the window: the teacher's clip length, the most frames the cache holds
    max_context: int = 10  # frames kept when the window slides; <= the teacher's (the protocol gives 10)
    schedule: str = "cosine"  # the teacher's: its trajectory states are read at the student's timesteps
    diffusion_steps: int = 1000
    prediction: str = "v"  # what the network outputs; the loss compares the x_0 it implies
    timesteps: tuple = (999, 749, 499, 249)  # the student's noise levels, noisiest first (CausVid uses 4)
    teacher_steps: int = 20  # the teacher's DDIM steps per trajectory from pure noise: its own default step count
    sample_steps: int = 4  # steps per frame by default: the most the student was trained for
    dmd: float = 0.0  # stage 2: the weight of distribution matching (0: stage 1 only; see the docstring)
    regression: float = 1.0  # stage 2: the weight kept on stage 1's regression onto the teacher's frames
    fake_warmup: int = 100  # stage 2: training steps in which only the fake score model learns (DMD's push off)


PRESETS = {
    "nano": Config(base_channels=16, channel_mults=(1, 2), attention_levels=(1,), blocks_per_level=1),  # 0.22 M
    "tiny": Config(base_channels=32),  # 2.0 M
    "small": Config(base_channels=48),  # 4.5 M, the shipped teacher's and hybrid's size
}


def _int_at_least(name: str, value, low: int) -> int:
    if isinstance(value, bool) or int(value) != value or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------
# the teacher: its grid of timesteps, its trajectories, and whether it fits the student
# --------------------------------------------------------------------------------------------


def teacher_grid(timesteps, teacher_steps: int) -> list[int]:
    """The teacher's DDIM timesteps, descending: `teacher_steps` of them, an equal share between each
    of the student's timesteps (and after the last one down to 0), so the trajectory passes through
    every timestep the student trains at. With the one timestep (999,) it is the teacher's own grid."""
    per = teacher_steps // len(timesteps)
    ends = [*timesteps, 0]
    grid = []
    for i in range(len(timesteps)):
        last = i == len(timesteps) - 1  # the last share ends on 0, which it evaluates too
        points = torch.linspace(ends[i], ends[i + 1], per if last else per + 1).round().long().tolist()
        grid += points if last else points[:-1]
    return grid


def denoised(model, x_t, t, clips, given, guess=None):
    """A diffusion model's clean estimate x_0 of x_t at level t (b,), given the frames of `clips` where
    `given` (b, t) is True (and its predictor's `guess`, if it has one), clamped to [-1, 1] as its sampler
    clamps it."""
    out = model(x_t, t, cond=clips, cond_mask=given.to(clips.dtype), guess=guess).float()
    return diffusion.x0_eps_from(model.config.prediction, out, x_t, t, model.alpha_bar)[0].clamp(-1, 1)


@torch.no_grad()
def teacher_trajectory(teacher, clips, given, grid, keep, noise=None, generator=None):
    """The teacher's deterministic DDIM run (eta 0) from noise, given the first frames of `clips`.

    clips: (b, t, c, h, w) in [-1, 1]; given: (b, t) bool, the context frames the teacher conditions on
    (what its `generate` does with a context); grid: its timesteps, descending (`teacher_grid`); keep:
    the timesteps whose states to return. noise: x_T like clips, drawn if None.
    Returns (states, x0): the states at `keep`, (len(keep), b, t, c, h, w), and the clean end
    (b, t, c, h, w) in [-1, 1]. The loop is `diffusion.sample`'s, keeping states.
    """
    alpha_bar = teacher.alpha_bar
    x = torch.randn(clips.shape, generator=generator, device=clips.device) if noise is None else noise
    guess = teacher.guess(clips, given.to(clips.dtype)) if getattr(teacher, "predictor", None) is not None else None
    states = []
    for i, t in enumerate(grid):
        if t in keep:
            states.append(x)
        t_prev = grid[i + 1] if i + 1 < len(grid) else -1
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        x0 = denoised(teacher, x, tt, clips, given, guess)  # clamped as its sampler does, eps made to agree
        ab = diffusion.alpha_bar_at(alpha_bar, tt, x.ndim)
        eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
        x = diffusion.step(x0, eps, tt, torch.full_like(tt, t_prev), alpha_bar)  # DDIM Eq. (12), eta 0
    return torch.stack(states), x


def dmd_loss(sample, real, fake, future):
    """DMD's surrogate loss, 0.5 |x - sg(x - g)|^2 averaged over the `future` frames' pixels: its gradient
    with respect to `sample` is g = (fake - real) / d there (over the number of those pixels), d the mean
    absolute distance from the sample to `real` on them (per clip), and zero on the other frames.

    sample: (b, t, c, h, w), the student's frames (with gradients); real, fake: the teacher's and the fake
    score model's x_0 of the noised sample (no gradients); future: (b, t) float, 1 on the student's frames.
    """
    per_frame = (sample.detach() - real).abs().mean(dim=(2, 3, 4))  # (b, t)
    distance = (per_frame * future).sum(1) / future.sum(1).clamp(min=1)  # (b,)
    g = (fake - real) / distance.clamp(min=1e-4)[:, None, None, None, None]
    target = (sample - g).detach()
    per_frame = ((sample - target) ** 2).mean(dim=(2, 3, 4))  # (b, t)
    return 0.5 * diffusion.masked_mean(per_frame, future)


def check_teacher(teacher, config: Config) -> None:
    """Raise a ValueError naming what differs if `teacher` cannot teach a student of `config`."""
    family = getattr(teacher, "family", None)
    if family != "diffusion":
        raise ValueError(f"the teacher must be a full-sequence diffusion model (family 'diffusion'), got {family!r}")
    tc = teacher.config
    why = {"num_frames": "the student's window is the teacher's clip",
           "schedule": "the student's timesteps are the teacher's noise levels",
           "diffusion_steps": "the student's timesteps are the teacher's noise levels"}
    for name, reason in why.items():
        if getattr(tc, name) != getattr(config, name):
            raise ValueError(f"teacher/student mismatch: the teacher's {name} is {getattr(tc, name)!r}, the "
                             f"student's {getattr(config, name)!r} ({reason})")
    if config.max_context > tc.max_context:
        raise ValueError(f"teacher/student mismatch: the student keeps up to {config.max_context} context frames, "
                         f"the teacher was trained with at most {tc.max_context}")
    if teacher.net.config.out_channels != CHANNELS:
        raise ValueError(f"teacher/student mismatch: the teacher makes {teacher.net.config.out_channels} "
                         f"channel(s) per frame, the student {CHANNELS}")


def check_clips(batch: torch.Tensor, num_frames: int) -> None:
    """Shape checks on a training batch (no value checks: they would read the batch back to the host)."""
    if batch.ndim != 5 or batch.shape[1] < num_frames or tuple(batch.shape[2:]) != (CHANNELS, FRAME_SIZE, FRAME_SIZE):
        raise ValueError(f"the student trains on clips (b, >= {num_frames}, {CHANNELS}, {FRAME_SIZE}, {FRAME_SIZE}), "
                         f"the teacher's frames; got shape {tuple(batch.shape)}")


class Teacher:
    """The frozen teacher, held outside the module tree: no optimizer, EMA copy or export sees it.

    compile: run its network compiled on its own (what `build` asks for when the training step is
    compiled, the default on CUDA): one graph, reused for every step of every trajectory. Its loop
    stays out of the training step's graph, which would otherwise hold `teacher_steps` unrolled copies
    of the network and take that many times longer to compile.
    """

    def __init__(self, model, compile: bool = False):
        self.model = model.eval().requires_grad_(False)
        self.network = torch.compile(self.model) if compile else self.model

    @torch.compiler.disable
    def trajectory(self, clips, given, grid, keep):
        return teacher_trajectory(self.network, clips, given, grid, keep)

    @torch.compiler.disable
    @torch.no_grad()
    def x0(self, x_t, t, clips, given):
        return denoised(self.network, x_t, t, clips, given)

    def __deepcopy__(self, memo):  # the trainer's EMA copy of the student shares the one frozen teacher
        return self


# --------------------------------------------------------------------------------------------
# the student
# --------------------------------------------------------------------------------------------


class Model(torch.nn.Module):
    family = "student"
    training_only = ("fake",)  # submodules a run's checkpoint keeps and an export leaves out

    def __init__(self, config: Config = Config()):
        super().__init__()
        self.register_buffer("alpha_bar", diffusion.alpha_bar_for(config), persistent=False)  # checks schedule and prediction
        if config.dmd < 0 or config.regression < 0:
            raise ValueError(f"dmd and regression are loss weights, >= 0; got dmd={config.dmd!r}, "
                             f"regression={config.regression!r}")
        _int_at_least("fake_warmup", config.fake_warmup, 0)
        if not 0 < config.max_context < config.num_frames:
            raise ValueError(f"max_context must lie in [1, num_frames), got {config.max_context}")
        ts = config.timesteps
        if (not ts or any(isinstance(t, bool) or int(t) != t for t in ts) or list(ts) != sorted(set(ts), reverse=True)
                or ts[0] >= config.diffusion_steps or ts[-1] < 0):
            raise ValueError(f"timesteps must be distinct integers in [0, {config.diffusion_steps - 1}], noisiest "
                             f"first, e.g. (999, 749, 499, 249); got {ts!r}")
        if config.teacher_steps % len(ts) or len(set(teacher_grid(ts, config.teacher_steps))) != config.teacher_steps:
            raise ValueError(f"teacher_steps ({config.teacher_steps}) must be a multiple of the {len(ts)} timesteps, "
                             f"with distinct teacher timesteps between them")
        self.config = config
        self.net = UNet3D(network_config(config, temporal=True, causal=True, max_frames=config.num_frames,
                                         spacetime=config.spacetime))
        self.teacher = None  # a Teacher while training (attach_teacher); never saved
        self.fake = None  # stage 2: the fake score model while training (attach_teacher); never exported
        self.teacher_grid = tuple(teacher_grid(ts, config.teacher_steps))  # plain ints: no tensor work in the step
        self.timesteps_for(config.sample_steps)  # the default must be one it is trained for

    def forward(self, x_t, t, cache: FrameCache | None = None, mode: str = "append", write: bool = True):
        """The whole clip (cache None), or only the new frames x_t with the past read from `cache`."""
        if cache is None:
            return self.net(x_t, t)
        return cached_forward(self.net, x_t, t, cache, mode=mode, write=write)

    def _apply(self, fn, recurse=True):  # .to(device) and friends move the teacher along with the student
        super()._apply(fn, recurse)
        if self.teacher is not None:
            self.teacher.model._apply(fn, recurse)
        return self

    def attach_teacher(self, teacher, compile: bool = False) -> Model:
        """Give the student its teacher for training (see `Teacher` for `compile`)."""
        check_teacher(teacher, self.config)
        if self.config.dmd > 0:  # stage 2: the fake score model starts as the teacher, as in DMD
            if getattr(teacher, "predictor", None) is not None:
                raise ValueError("stage 2 (dmd > 0) needs a teacher without a predictor")
            self.fake = copy.deepcopy(teacher).to(self.alpha_bar.device).train().requires_grad_(True)
            self.fake.register_buffer("updates", torch.zeros((), dtype=torch.long, device=self.alpha_bar.device))
        self.teacher = Teacher(teacher.to(self.alpha_bar.device), compile=compile)
        return self

    # -- steps ---------------------------------------------------------------------------------------

    @property
    def distilled_steps(self) -> tuple:
        """The step counts the student was trained for: those that pick evenly spaced trained timesteps."""
        n = len(self.config.timesteps)
        return tuple(s for s in range(1, n + 1) if n % s == 0)

    def timesteps_for(self, steps: int | None = None) -> tuple:
        """The timesteps `steps` denoising steps visit: every (len / steps)-th trained one, from the first."""
        steps = self.config.sample_steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps not in self.distilled_steps:
            raise ValueError(f"this student was distilled for steps in {self.distilled_steps} (its timesteps are "
                             f"{tuple(self.config.timesteps)}); got steps={steps!r}")
        return tuple(self.config.timesteps[:: len(self.config.timesteps) // steps])

    # -- training: stage 1 ---------------------------------------------------------------------------

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Regress the teacher's clean frames from its trajectory states, each frame after a clean past."""
        if self.teacher is None:
            raise RuntimeError("this student has no teacher: build it with distill.build(...) (what `minivid train "
                               "student` does), or call model.attach_teacher(teacher) first")
        c = self.config
        check_clips(batch, c.num_frames)
        x = diffusion.to_model_range(batch[:, : c.num_frames])  # (b, t, c, h, w) in [-1, 1]
        b, n = x.shape[:2]
        device = x.device
        # context lengths: half the clips the protocol's max_context, the rest 0..max_context (0: unconditional,
        # which the teacher learned too)
        k = torch.randint(0, c.max_context + 1, (b,), device=device)
        k = torch.where(torch.rand(b, device=device) < 0.5, c.max_context, k)
        given = torch.arange(n, device=device)[None] < k[:, None]  # (b, t): the context
        states, x0_teacher = self.teacher.trajectory(x, given, self.teacher_grid, c.timesteps)
        clean = torch.where(given[:, :, None, None, None], x, x0_teacher)  # real context, then the teacher's frames
        pick = torch.randint(len(c.timesteps), (b, n), device=device)  # each frame's timestep, independently
        t = torch.tensor(c.timesteps, device=device)[pick]  # (b, t)
        rows, frames = torch.arange(b, device=device)[:, None], torch.arange(n, device=device)[None]
        x_t = states[pick, rows, frames]  # (b, t, c, h, w): each frame's state at its timestep
        # teacher forcing in two calls: the clean clip fills a cache, then every noisy frame i is evaluated
        # beside it, seeing clean frames < i and itself: what it sees when it is generated
        cache = FrameCache(n)
        self(clean, torch.full((b, n), -1, device=device), cache=cache, write=True)
        out = self(x_t, t, cache=cache, mode="beside", write=False)
        x0, _ = diffusion.x0_eps_from(c.prediction, out.float(), x_t, t, self.alpha_bar)
        per_frame = ((x0 - clean) ** 2).mean(dim=(2, 3, 4))  # (b, t)
        mask = (~given).float()  # the frames the teacher generated
        regression = diffusion.masked_mean(per_frame, mask)
        if self.fake is None:
            return regression
        return c.regression * regression + self._distribution_matching(clean, given, cache)

    # -- training: stage 2 ---------------------------------------------------------------------------

    def _distribution_matching(self, clean, given, cache):
        """DMD (see the module docstring): the student's own frames beside the clean past in `cache`,
        moved along the fake score minus the teacher's; plus the fake score model's diffusion loss on them."""
        c = self.config
        b, n = clean.shape[:2]
        device = clean.device
        timesteps = self.timesteps_for(c.sample_steps)
        # the student's sampling run for every frame at once, without gradients: its state at each step
        states, x = [], torch.randn_like(clean)
        with torch.no_grad():
            for j, t in enumerate(timesteps):
                states.append(x)
                if j + 1 < len(timesteps):  # the same step as `_frames`: x_0, then fresh noise to the next level
                    tt = torch.full((b, n), t, device=device)
                    out = self(x, tt, cache=cache, mode="beside", write=False).float()
                    x0 = diffusion.x0_eps_from(c.prediction, out, x, tt, self.alpha_bar)[0].clamp(-1, 1)
                    t_next = torch.full((b, n), timesteps[j + 1], device=device)
                    x = diffusion.q_sample(x0, t_next, torch.randn_like(x), self.alpha_bar)
        # one step with gradients, from a randomly picked step of that run for each frame
        pick = torch.randint(len(timesteps), (b, n), device=device)
        t = torch.tensor(timesteps, device=device)[pick]  # (b, t)
        rows, frames = torch.arange(b, device=device)[:, None], torch.arange(n, device=device)[None]
        x_t = torch.stack(states)[pick, rows, frames]
        out = self(x_t, t, cache=cache, mode="beside", write=False)
        x0 = diffusion.x0_eps_from(c.prediction, out.float(), x_t, t, self.alpha_bar)[0]
        sample = torch.where(given[:, :, None, None, None], clean, x0)  # the real context, then the student's frames
        future = (~given).float()
        # the teacher and the fake score model denoise the same noised clip
        level = torch.randint(DMD_NOISE[0], DMD_NOISE[1] + 1, (b,), device=device)
        noised = diffusion.q_sample(sample.detach(), level, torch.randn_like(sample), self.alpha_bar)
        real = self.teacher.x0(noised, level, sample.detach(), given)
        with torch.no_grad():
            fake = denoised(self.fake, noised, level, sample.detach(), given)
        # the fake score model learns the student's frames as the teacher learned real ones
        fake_loss = diffusion.loss(self.fake, sample.detach(), torch.randint(0, c.diffusion_steps, (b,), device=device),
                                   self.alpha_bar, self.fake.config.prediction, mask=future,
                                   min_snr_gamma=self.fake.config.min_snr_gamma,
                                   cond=sample.detach(), cond_mask=given.to(sample.dtype))
        # the push starts once the fake score model has had `fake_warmup` steps to learn the student's frames
        on = (self.fake.updates >= c.fake_warmup).float()
        if self.training:
            self.fake.updates += 1
        return on * c.dmd * dmd_loss(sample, real, fake, future) + fake_loss

    # -- sampling ------------------------------------------------------------------------------------

    def stream(self, context: torch.Tensor, num_frames: int, seed: int = 0, steps: int | None = None):
        """An iterator over `num_frames` new frames after `context` (b, t0, c, h, w) in [0, 1], each
        (b, 1, c, h, w) in [0, 1], yielded as soon as it is made. Past the window it slides (see the
        module docstring), so `num_frames` has no upper bound. The same frames as `generate`'s."""
        validate_video(context, "context", channels=CHANNELS, size=FRAME_SIZE)
        num_frames = _int_at_least("num_frames", num_frames, 1)
        timesteps = self.timesteps_for(steps)
        return self._frames(context, num_frames, int(seed), timesteps, trace=None)

    @torch.no_grad()
    def generate(self, context: torch.Tensor, num_frames: int, seed: int = 0, progress: bool = True,
                 return_trace: bool = False, steps: int | None = None):
        """`num_frames` frames after `context` (b, t0, c, h, w) in [0, 1]; t0 may be 0.

        steps: denoising steps per frame, one of `distilled_steps` (default config.sample_steps).
        Returns (b, num_frames, c, h, w) in [0, 1], or (video, trace) with one entry per denoising step:
        {'frame', 'position' (in the window), 't', 'x_t', 'x0'}, images in [0, 1] on the CPU.
        """
        validate_video(context, "context", channels=CHANNELS, size=FRAME_SIZE)
        num_frames = _int_at_least("num_frames", num_frames, 1)
        trace = [] if return_trace else None
        frames = self._frames(context, num_frames, int(seed), self.timesteps_for(steps), trace)
        frames = tqdm(frames, total=num_frames, desc="frames", disable=not progress, leave=False)
        video = torch.cat(list(frames), dim=1)
        return (video, trace) if return_trace else video

    def network_evaluations(self, num_context: int, num_frames: int, steps: int | None = None,
                            **generate_kwargs) -> int:
        """How many network calls `generate` makes: one to read the context, `steps` per frame, and one per
        frame but the last to cache it (or, when the window is full, to read the last max_context frames)."""
        steps = len(self.timesteps_for(steps))
        return int(min(num_context, self.config.max_context) > 0) + num_frames * steps + (num_frames - 1)

    def _new_window(self, frames: torch.Tensor) -> FrameCache:
        """A cache holding `frames` (b, k, c, h, w), clean, in [-1, 1]: one network call (none if k = 0)."""
        cache = FrameCache(self.config.num_frames)
        if frames.shape[1]:
            self(frames, torch.full(frames.shape[:2], -1, device=frames.device), cache=cache, write=True)
        return cache

    @torch.no_grad()
    def _frames(self, context, num_frames: int, seed: int, timesteps: tuple, trace: list | None):
        """The sampling loop, one frame at a time (CausVid's few-step sampler with the frame cache)."""
        c = self.config
        device = self.alpha_bar.device
        generator = torch.Generator(device).manual_seed(seed)
        window = diffusion.to_model_range(context.to(device))[:, -c.max_context:]  # the frames the cache holds
        cache = self._new_window(window)
        b = context.shape[0]
        shape = (b, 1, *context.shape[2:])
        for i in range(num_frames):
            x = torch.randn(shape, generator=generator, device=device)  # pure noise at the first timestep
            for j, t in enumerate(timesteps):
                tt = torch.full((b, 1), t, device=device)
                out = self(x, tt, cache=cache, write=False).float()
                x0, _ = diffusion.x0_eps_from(c.prediction, out, x, tt, self.alpha_bar)
                x0 = x0.clamp(-1, 1)
                if trace is not None:
                    trace.append({"frame": i, "position": cache.length, "t": t, "x_t": diffusion.from_model_range(x).cpu(),
                                  "x0": diffusion.from_model_range(x0).cpu()})
                if j + 1 < len(timesteps):  # fresh noise to the next level: q(x_t' | x_0), DDPM Eq. (4)
                    t_next = torch.full((b, 1), timesteps[j + 1], device=device)
                    eps = torch.randn(shape, generator=generator, device=device)
                    x = diffusion.q_sample(x0, t_next, eps, self.alpha_bar)
            yield diffusion.from_model_range(x0)
            if i + 1 == num_frames:
                break
            window = torch.cat([window, x0], dim=1)
            if cache.length + 1 < c.num_frames:  # the frame joins the past: one call on it, clean
                self(x0, torch.full((b, 1), -1, device=device), cache=cache, write=True)
            else:  # the window is full: slide it, reading the last max_context frames into a new cache
                window = window[:, -c.max_context:]
                cache = self._new_window(window)


# --------------------------------------------------------------------------------------------
# building a student for training, and loading one
# --------------------------------------------------------------------------------------------


def load_network(model: Model, start, name: str = "the start model") -> Model:
    """Copy `start`'s network into the student: a diffusion model (as the hybrid starts from one), a
    hybrid, or a student. Network widths must match; space-time attention the start lacks starts at zero.
    A hybrid with a predictor gives its network without the guess channel: the student has no predictor."""
    from minivid import hybrid
    from minivid.models.unet2d import grow
    from minivid.video_diffusion import tuple_or

    family = getattr(start, "family", None)
    if family not in ("diffusion", "hybrid", "student"):
        raise ValueError(f"{name}: a student starts from a diffusion, hybrid or student model, got {family!r}")
    for field in NETWORK_FIELDS:
        if tuple_or(getattr(start.config, field)) != tuple_or(getattr(model.config, field)):
            raise ValueError(f"{name} has a different network: its {field} is {getattr(start.config, field)!r}, "
                             f"the student's {getattr(model.config, field)!r}")
    if getattr(start.config, "spacetime", False) and not model.config.spacetime:
        raise ValueError(f"{name} has space-time attention; give the student --set spacetime=True")
    if family == "diffusion":  # the hybrid's conversion: one input channel, causal temporal conv taps
        shared = {f.name: getattr(model.config, f.name) for f in fields(hybrid.Config) if hasattr(model.config, f.name)}
        start = hybrid.from_diffusion_model(start, hybrid.Config(**shared))
    elif getattr(start, "predictor", None) is not None:  # a hybrid that reads a predictor's guess; the student has
        # no predictor, so it keeps the noisy frame's stem weights and drops the guess channel's (a start, not a copy)
        state = dict(start.net.state_dict())
        state["stem.weight"] = state["stem.weight"][:, : start.config.patch**2]
        start = hybrid.Model(replace(start.config, predictor=0, predictor_only=False))
        start.net.load_state_dict(state)
    grow(start.net, model.net)
    return model


def build(preset: str, args=None) -> Model:
    """`minivid train student --preset P [--teacher T] [--init X]`: a student with its teacher attached.

    --teacher: the diffusion model to distil, a file or pretrained:NAME (default pretrained:diffusion).
    --init: where the student's network starts; default the teacher's weights (CausVid's start).
    `--init pretrained:hybrid` is recommended with the shipped teacher: the hybrid is the same causal
    network, started from an earlier round of that teacher and then trained to denoise each frame after
    less noisy past frames (a clean context among them); its "autoregressive" schedule is the student's
    loop with 10 steps instead of 1-4, so it starts where stage 1 would otherwise spend its first steps.
    Before any training, on 4 clips and two seeds of the loss's draws, its stage-1 loss is about half the
    teacher-weights start's (0.015 and 0.022 against 0.029 and 0.043).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} for student; expected one of {sorted(PRESETS)}")
    from minivid import checkpoints
    from minivid.families import with_overrides

    config = with_overrides(PRESETS[preset], args)
    teacher_spec = getattr(args, "teacher", None) or "pretrained:diffusion"
    teacher = checkpoints.resolve(teacher_spec)
    check_teacher(teacher, config)
    init = getattr(args, "init", None)
    model = load_network(Model(config), checkpoints.resolve(init) if init else teacher, init or teacher_spec)
    device = getattr(args, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu")
    compile = getattr(args, "compile", None)
    compile = str(device).startswith("cuda") if compile is None else bool(compile)  # as the trainer decides
    return model.attach_teacher(teacher, compile=compile).train()


def from_config(config: dict) -> Model:
    """Rebuild from a checkpoint's plain-data config (lists back to tuples); no teacher attached."""
    names = {f.name for f in fields(Config)}
    clean = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in names}
    return Model(Config(**clean))
