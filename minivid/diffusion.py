"""Gaussian diffusion, written out: schedules, the forward process, the loss, and the samplers.

Every function here is a plain function of tensors; the network is an argument (`loss(model, x0,
...)`, `sample(model, shape, ...)`), never a member, so the video UNet, the hybrid and the exercises
all use the same few lines (DiT's `training_losses`, diffusers' `step`).

Notation follows the papers:

* Ho et al. 2020, "Denoising Diffusion Probabilistic Models" (DDPM): betas, alpha_t = 1 - beta_t,
  alpha_bar_t = prod_{s<=t} alpha_s, Eq. (4) q(x_t | x_0), Eq. (7) the posterior, Eq. (11) the
  sampling step.
* Nichol & Dhariwal 2021, "Improved DDPM": the cosine schedule, Eq. (17).
* Song et al. 2021, "Denoising Diffusion Implicit Models" (DDIM): Eq. (12), any subsequence of
  steps, eta interpolating between deterministic (0) and DDPM-like (1) sampling.
* Salimans & Ho 2022, "Progressive Distillation": v-prediction, v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0.
* Ho & Salimans 2022, "Classifier-Free Diffusion Guidance": eps = (1 + w) eps(x|c) - w eps(x).

Timesteps are integers 0..T-1; the value -1 means "clean" (alpha_bar = 1), which lets a sampler's
last step land on x_0 and lets the hybrid mark context frames as noise-free. A timestep tensor is
shaped (b,) for one level per clip, or (b, t) for one level per frame (AR-Diffusion, Diffusion
Forcing); it broadcasts against videos shaped (b, t, c, h, w).
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

PREDICTIONS = ("eps", "v", "x0")
SCHEDULES = ("linear", "cosine")


# --------------------------------------------------------------------------------------------
# noise schedules: pure functions returning tensors
# --------------------------------------------------------------------------------------------


def linear_schedule(num_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's betas, linear from beta_start to beta_end (Ho et al. 2020, Sec. 4), scaled to num_steps."""
    _check_steps(num_steps)
    scale = 1000 / num_steps  # keeps alpha_bar_T near zero whatever num_steps is (Improved DDPM code)
    return torch.linspace(beta_start * scale, beta_end * scale, num_steps, dtype=torch.float64)


def cosine_schedule(num_steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Improved DDPM's betas: alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) * pi/2), Eq. (17)."""
    _check_steps(num_steps)
    f = torch.cos((torch.arange(num_steps + 1, dtype=torch.float64) / num_steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


def make_betas(name: str, num_steps: int = 1000) -> torch.Tensor:
    if name == "linear":
        return linear_schedule(num_steps)
    if name == "cosine":
        return cosine_schedule(num_steps)
    raise ValueError(f"unknown noise schedule {name!r}; expected one of {SCHEDULES}")


def alpha_bar_from_betas(betas: torch.Tensor) -> torch.Tensor:
    """alpha_bar_t = prod_{s<=t} (1 - beta_s), float32."""
    return torch.cumprod(1 - betas, dim=0).float()


def alpha_bar_for(config) -> torch.Tensor:
    """The alpha-bar table of a diffusion family's Config (its `schedule`, `prediction` and `diffusion_steps`),
    after checking that the schedule and the prediction are ones this module knows."""
    if config.schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {config.schedule!r}; expected one of {SCHEDULES}")
    if config.prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {config.prediction!r}; expected one of {PREDICTIONS}")
    return alpha_bar_from_betas(make_betas(config.schedule, config.diffusion_steps))


def _check_steps(num_steps):
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"the number of diffusion steps must be a positive integer, got {num_steps!r}")


# --------------------------------------------------------------------------------------------
# indexing helpers: alpha_bar at integer timesteps, broadcast against (b, t, c, h, w)
# --------------------------------------------------------------------------------------------


def alpha_bar_at(alpha_bar: torch.Tensor, t: torch.Tensor, ndim: int = 5) -> torch.Tensor:
    """alpha_bar[t] with t = -1 meaning 1.0 (clean), shaped to broadcast against an `ndim` video.

    t: (b,) -> (b, 1, 1, 1, 1); t: (b, t) -> (b, t, 1, 1, 1).
    """
    t = torch.as_tensor(t, device=alpha_bar.device).long()
    # The range check reads t back to the host; a compiled training step skips it (its timesteps are
    # drawn in range), so the step stays one graph with no host sync.
    if not torch.compiler.is_compiling() and (int(t.min()) < -1 or int(t.max()) >= len(alpha_bar)):
        raise ValueError(f"timesteps must lie in [-1, {len(alpha_bar) - 1}], got [{int(t.min())}, {int(t.max())}]")
    padded = torch.cat([alpha_bar.new_ones(1), alpha_bar])  # index 0 is "clean"
    ab = padded[t + 1]
    return ab.reshape(*ab.shape, *([1] * (ndim - ab.ndim)))


# --------------------------------------------------------------------------------------------
# the forward process and what the network predicts
# --------------------------------------------------------------------------------------------


def q_sample(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Sample q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), DDPM Eq. (4)."""
    ab = alpha_bar_at(alpha_bar, t, x0.ndim)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def target_for(prediction: str, x0, eps, t, alpha_bar) -> torch.Tensor:
    """What the network is trained to output: eps, v = sqrt(ab) eps - sqrt(1-ab) x0, or x0."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        ab = alpha_bar_at(alpha_bar, t, x0.ndim)
        return ab.sqrt() * eps - (1 - ab).sqrt() * x0
    raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")


def x0_eps_from(prediction: str, model_out, x_t, t, alpha_bar) -> tuple[torch.Tensor, torch.Tensor]:
    """Both x0 and eps from whichever one the network predicts (inverting Eq. (4) and the v identity)."""
    ab = alpha_bar_at(alpha_bar, t, x_t.ndim)
    if prediction == "eps":
        eps = model_out
        x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
    elif prediction == "v":
        x0 = ab.sqrt() * x_t - (1 - ab).sqrt() * model_out
        eps = (1 - ab).sqrt() * x_t + ab.sqrt() * model_out
    elif prediction == "x0":
        x0 = model_out
        eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt().clamp(min=1e-8)
    else:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")
    return x0, eps


def min_snr_weight(t, alpha_bar, gamma: float, prediction: str = "v") -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023), shaped like t: (b,) or (b, t).

    Weighting the x0 error by min(SNR, gamma) stops the many easy low-noise steps from dominating the
    gradient. Expressed for the chosen target: x0 error = eps error / SNR = v error / (SNR + 1).
    """
    ab = alpha_bar_at(alpha_bar, t, ndim=t.ndim)
    snr = ab / (1 - ab).clamp(min=1e-8)
    capped = snr.clamp(max=gamma)
    per = {"x0": torch.ones_like(snr), "eps": 1 / snr.clamp(min=1e-8), "v": 1 / (snr + 1)}
    if prediction not in per:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {PREDICTIONS}")
    return capped * per[prediction]


def loss(model, x0, t, alpha_bar, prediction: str = "v", mask=None, eps=None, min_snr_gamma: float = 0.0,
         **model_kwargs) -> torch.Tensor:
    """The simple diffusion loss, DDPM Eq. (14), for eps / v / x0 targets.

    model(x_t, t, **model_kwargs) -> prediction; x0: (b, t, c, h, w) in [-1, 1]; t: (b,) or (b, t).
    mask: optional (b, t) of 1 where a frame counts (e.g. generated frames, not given context).
    min_snr_gamma: 0 for the plain loss, else min-SNR-gamma weighting (`min_snr_weight`).
    """
    if eps is None:
        eps = torch.randn_like(x0)
    x_t = q_sample(x0, t, eps, alpha_bar)
    out = model(x_t, t, **model_kwargs)
    err = (out.float() - target_for(prediction, x0, eps, t, alpha_bar).float()) ** 2  # (b, t, c, h, w)
    per_frame = err.mean(dim=(2, 3, 4))  # (b, t)
    if min_snr_gamma > 0:
        weight = min_snr_weight(t, alpha_bar, min_snr_gamma, prediction)
        per_frame = per_frame * (weight if weight.ndim == 2 else weight[:, None])
    return masked_mean(per_frame, mask)


def masked_mean(per_frame: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of per-frame values (b, t) over the frames where `mask` (b, t) is 1; every frame if None."""
    if mask is None:
        return per_frame.mean()
    mask = mask.to(per_frame.dtype)
    return (per_frame * mask).sum() / mask.sum().clamp(min=1)


# --------------------------------------------------------------------------------------------
# one reverse step, reused by every sampler and, frame by frame, by the hybrid
# --------------------------------------------------------------------------------------------


def step(x0, eps, t, t_prev, alpha_bar, eta: float = 0.0, noise=None) -> torch.Tensor:
    """One reverse step from x_t to x_{t_prev}, given the model's x0 and eps: DDIM Eq. (12).

        x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma z,
        sigma  = eta * sqrt((1 - ab_prev) / (1 - ab)) * sqrt(1 - ab / ab_prev)

    eta = 0 is deterministic DDIM; eta = 1 with t_prev = t - 1 is DDPM's ancestral step (Eq. (11)
    with sigma^2 = beta-tilde, the posterior variance of Eq. (7)). t and t_prev broadcast per frame;
    a frame with t_prev == t is left where it is, and t_prev = -1 lands on x0.
    """
    ab = alpha_bar_at(alpha_bar, t, x0.ndim)
    ab_prev = alpha_bar_at(alpha_bar, t_prev, x0.ndim)
    sigma = eta * ((1 - ab_prev) / (1 - ab).clamp(min=1e-12)).sqrt() * (1 - ab / ab_prev).clamp(min=0).sqrt()
    x_prev = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0:
        if noise is None:
            noise = torch.randn_like(x0)
        x_prev = x_prev + sigma * noise
    return x_prev


def ddpm_posterior(x0, x_t, t, alpha_bar):
    """Mean and variance of q(x_{t-1} | x_t, x_0), DDPM Eq. (7); for teaching and the tests of `step`."""
    ab = alpha_bar_at(alpha_bar, t, x0.ndim)
    ab_prev = alpha_bar_at(alpha_bar, t - 1, x0.ndim)
    beta = 1 - ab / ab_prev
    mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + ((1 - beta).sqrt() * (1 - ab_prev) / (1 - ab)) * x_t
    var = beta * (1 - ab_prev) / (1 - ab)
    return mean, var


def timesteps_for(num_train_steps: int, num_sample_steps: int) -> torch.Tensor:
    """The descending timesteps a sampler visits: num_sample_steps of 0..T-1, evenly spaced, ending at 0."""
    if int(num_sample_steps) != num_sample_steps or num_sample_steps < 1:
        raise ValueError(f"sampling steps must be a positive integer, got {num_sample_steps!r}")
    if num_sample_steps > num_train_steps:
        raise ValueError(f"sampling steps ({num_sample_steps}) cannot exceed the {num_train_steps} training steps")
    return torch.linspace(num_train_steps - 1, 0, num_sample_steps).round().long()


def start_timestep(start: float, num_train_steps: int, has_predictor: bool, model: str = "model") -> int | None:
    """The timestep a start of `start` (a share of the schedule) asks for, start × (T − 1) rounded; None for pure
    noise (start = 1). Below 1 sampling begins from a predictor's guess, so the model must have one."""
    if isinstance(start, bool) or not isinstance(start, (int, float)) or not 0 < start <= 1:
        raise ValueError(f"start must be in (0, 1], the share of the schedule sampling starts from; got {start!r}")
    if start == 1:
        return None
    if not has_predictor:
        raise ValueError(f"start below 1 begins from the predictor's guess: this {model} has no predictor "
                         "(trained without --set predictor=WIDTH)")
    return round(start * (num_train_steps - 1))


def default_start(share: float, num_train_steps: int, num_sample_steps: int, has_predictor: bool,
                  num_context: int) -> float:
    """Where a model starts sampling when no start is given: from its predictor's guess at `share` of the schedule
    where it has a predictor, context to guess from, and at least two of its sampler's steps at or below that share;
    from pure noise (1.0) otherwise. An unconditional guess is a blur of every future, and a guess redrawn by the last
    step alone, at t = 0, would come back nearly unchanged."""
    if not has_predictor or num_context == 0 or num_sample_steps < 2:
        return 1.0
    below = started_timesteps(num_train_steps, num_sample_steps, start_timestep(share, num_train_steps, True))
    return share if len(below) >= 2 else 1.0


def started_timesteps(num_train_steps: int, num_sample_steps: int, start: int | None = None) -> list:
    """The timesteps of `timesteps_for` a sampler visits when it starts at timestep `start` (None: all of them):
    those at or below it. With two or more steps the last is 0, so at least one remains."""
    ts = timesteps_for(num_train_steps, num_sample_steps).tolist()
    if start is None:
        return ts
    if int(start) != start or not 0 <= start < num_train_steps:
        raise ValueError(f"start must be a timestep in 0..{num_train_steps - 1}, got {start!r}")
    kept = [t for t in ts if t <= start]
    if not kept:
        raise ValueError(f"starting part-way needs a schedule with a step at or below timestep {start}; "
                         f"{num_sample_steps} step(s) visit {ts}: use 2 or more")
    return kept


# --------------------------------------------------------------------------------------------
# the sampling loop
# --------------------------------------------------------------------------------------------


def guided_output(model, x_t, t, guidance: float, model_kwargs: dict, uncond_kwargs: dict | None):
    """Classifier-free guidance: (1 + w) * out(x | c) - w * out(x | no c); w = 0 is plain conditional.

    Applied to the network output (eps or v alike, as both are linear in the guided eps).
    """
    out = model(x_t, t, **model_kwargs)
    if guidance == 0 or uncond_kwargs is None:
        return out
    out_uncond = model(x_t, t, **uncond_kwargs)
    return (1 + guidance) * out - guidance * out_uncond


@torch.no_grad()
def sample(
    model,
    shape,
    alpha_bar: torch.Tensor,
    steps: int = 50,
    eta: float = 0.0,
    prediction: str = "v",
    model_kwargs: dict | None = None,
    uncond_kwargs: dict | None = None,
    guidance: float = 0.0,
    clip_x0: bool = True,
    generator: torch.Generator | None = None,
    device=None,
    progress: bool = True,
    return_trace: bool = False,
    replace=None,
    init: torch.Tensor | None = None,
    start: int | None = None,
):
    """Draw x_0 of `shape` from pure noise with `steps` reverse steps (DDIM; eta=1 and steps=T is DDPM).

    init, start: begin instead from `init` (an x_0 guess of `shape`), noised to the highest of the schedule's
    timesteps at or below timestep `start`, and visit only those (`started_timesteps`): SDEdit (Meng et al. 2022),
    the sample stays near the guess and the network adds what the guess lacks. The trace holds the steps visited.

    replace(x_t, t) -> x_t, if given, overwrites known parts after each step (e.g. the
    inpainting-style replacement of context frames); the video model conditions by input masking
    instead and leaves this None.
    Returns x_0, or (x_0, trace) where trace is a list of {'t', 'x_t', 'x0'} on the CPU, one per step.
    """
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    model_kwargs = model_kwargs or {}
    device = device or alpha_bar.device
    alpha_bar = alpha_bar.to(device)
    ts = started_timesteps(len(alpha_bar), steps, start)
    x = torch.randn(shape, generator=generator, device=device)
    if init is not None and start is None:
        raise ValueError("an init is the guess a sampler starts from part-way: give the start timestep too")
    if start is not None:
        if init is None or tuple(init.shape) != tuple(shape):
            raise ValueError(f"start needs an init of shape {tuple(shape)}, got {None if init is None else tuple(init.shape)}")
        a = alpha_bar[ts[0]].float()
        x = a.sqrt() * init.to(device).float() + (1 - a).sqrt() * x
    trace = []
    for i, t in enumerate(tqdm(ts, desc="denoise", disable=not progress, leave=False)):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        tt = torch.full((shape[0],), t, device=device, dtype=torch.long)
        out = guided_output(model, x, tt, guidance, model_kwargs, uncond_kwargs)
        x0, eps = x0_eps_from(prediction, out.float(), x, tt, alpha_bar)
        if clip_x0:
            x0 = x0.clamp(-1, 1)
            eps = (x - alpha_bar_at(alpha_bar, tt, x.ndim).sqrt() * x0) / (1 - alpha_bar_at(alpha_bar, tt, x.ndim)).sqrt()
        noise = torch.randn(shape, generator=generator, device=device) if eta > 0 else None
        if return_trace:
            trace.append({"t": t, "x_t": x.cpu(), "x0": x0.cpu()})
        x = step(x0, eps, tt, torch.full_like(tt, t_prev), alpha_bar, eta=eta, noise=noise)
        if replace is not None:
            x = replace(x, t_prev)
    return (x, trace) if return_trace else x


def to_model_range(video: torch.Tensor) -> torch.Tensor:
    """[0, 1] video -> [-1, 1], the range the networks work in."""
    return video * 2 - 1


def from_model_range(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped: what `generate` hands back."""
    return ((x + 1) / 2).clamp(0, 1)


@torch.no_grad()
def context_probe(model, clips: torch.Tensor, timesteps, context: int = 10, seed: int = 0) -> list[dict]:
    """Does a network use its context frames? Its clean-frame guess of the future with and without them.

    For each noise level t, `clips` (b, T, c, h, w) in [0, 1] are noised at t (one shared noise draw) and the
    network of a diffusion-style model (one taking cond and cond_mask: diffusion, dit) predicts the clean clip
    twice: given the first `context` frames, and with the context mask cleared. Returns one dict per t: the MSE
    of both guesses on the future frames (summed over a frame's pixels in [0, 1], as the protocol does) and
    `ratio` = without / with. Near 1 at high noise means the context is ignored. (A model with a deterministic
    predictor makes its guess from the same given frames in its forward, none without the context.)
    """
    for name in ("alpha_bar", "config"):
        if not hasattr(model, name):
            raise ValueError(f"context_probe needs a diffusion-style model with `{name}`; got {type(model).__name__}")
    device = model.alpha_bar.device
    x0 = to_model_range(clips[:, : model.config.num_frames].to(device))
    b, frames = x0.shape[:2]
    if not 0 < context < frames:
        raise ValueError(f"context must be between 1 and {frames - 1} frames, got {context}")
    given = torch.zeros(b, frames, device=device)
    given[:, :context] = 1
    eps = torch.randn(x0.shape, generator=torch.Generator(device).manual_seed(seed), device=device)
    rows = []
    for level in timesteps:
        t = torch.full((b,), int(level), device=device)
        x_t = q_sample(x0, t, eps, model.alpha_bar)
        errors = []
        for mask in (given, torch.zeros_like(given)):
            guess, _ = x0_eps_from(model.config.prediction, model(x_t, t, cond=x0, cond_mask=mask).float(), x_t, t,
                                   model.alpha_bar)
            error = (from_model_range(guess[:, context:]) - from_model_range(x0[:, context:])) ** 2
            errors.append(error.sum(dim=(2, 3, 4)).mean().item())
        rows.append({"t": int(level), "mse_with": errors[0], "mse_without": errors[1],
                     "ratio": errors[1] / max(errors[0], 1e-12)})
    return rows


__all__ = [
    "linear_schedule", "cosine_schedule", "make_betas", "alpha_bar_from_betas", "alpha_bar_at", "q_sample",
    "target_for", "x0_eps_from", "min_snr_weight", "loss", "step", "ddpm_posterior", "timesteps_for", "guided_output", "sample",
    "to_model_range", "from_model_range", "context_probe",
]
