"""How every method is scored: per-frame errors and the standard Moving MNIST protocol.

Conventions, as the Moving MNIST literature reports them (Srivastava et al. 2015; PredRNN; SimVP):

* pixels in [0, 1];
* MSE and MAE are *per frame*: summed over the frame's pixels (64 x 64 = 4,096 of them, times the
  channels), then averaged over frames and clips. An all-black prediction of a 2-digit frame
  scores about 200 (MSE);
* PSNR (dB) per frame: torchmetrics' `peak_signal_noise_ratio`, data range 1, i.e.
  10 log10(1 / mean squared error of the frame); a perfect frame gives +inf;
* SSIM per frame: torchmetrics' `structural_similarity_index_measure` (Wang et al. 2004: Gaussian
  window 11, sigma 1.5, k1 0.01, k2 0.03, data range 1), averaged over the frame (and channels).

Every per-frame function returns (b, t). The protocol (`evaluate`): 2-digit 64x64 Moving MNIST,
10 context frames -> 10 predicted, on the fixed seeded test set `minivid.data.standard_test_set`
(shipped test digits, so the same clips on every machine). Means are over clips and future frames;
every metric is also kept per future-frame index, so error-accumulation curves come free.
"""

from __future__ import annotations

import inspect
import time

import torch
from einops import rearrange
from tqdm.auto import tqdm

from minivid import data

METRICS = ("mse", "mae", "psnr", "ssim")


# --------------------------------------------------------------------------------------------
# input checks, in one place
# --------------------------------------------------------------------------------------------


def validate_video(x, name: str = "video", channels: int | None = None, size: int | None = None) -> torch.Tensor:
    """Check that `x` is a float tensor (b, t, c, h, w) with finite values in [0, 1]; return it.

    channels / size: also require that many channels / square frames of that side.
    Raises one ValueError that says what was expected and what came.
    """
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor shaped (b, t, c, h, w) with values in [0, 1], got {type(x).__name__}")
    if x.ndim != 5:
        raise ValueError(f"{name} must be shaped (b, t, c, h, w) (5 axes), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor with values in [0, 1], got dtype {x.dtype}")
    if channels is not None and x.shape[2] != channels:
        raise ValueError(f"{name} must have {channels} channel(s) in axis 2, got {x.shape[2]} (shape {tuple(x.shape)})")
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        raise ValueError(f"{name} frames must be {size}x{size}, got {tuple(x.shape[-2:])}")
    if x.numel():
        lo, hi = x.detach().aminmax()
        if not (torch.isfinite(lo) and torch.isfinite(hi) and lo >= 0 and hi <= 1) or not torch.isfinite(x).all():
            raise ValueError(f"{name} values must lie in [0, 1] (finite), got range [{lo.item():.4g}, {hi.item():.4g}]")
    return x


def _pair(pred, target) -> tuple[torch.Tensor, torch.Tensor]:
    validate_video(pred, "pred")
    validate_video(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    return pred.float(), target.to(pred.device).float()


# --------------------------------------------------------------------------------------------
# per-frame metrics: (b, t, c, h, w) pairs -> (b, t)
# --------------------------------------------------------------------------------------------


def mse_per_frame(pred, target) -> torch.Tensor:
    """Squared error summed over each frame's pixels (and channels), pixels in [0, 1]: (b, t)."""
    pred, target = _pair(pred, target)
    return ((pred - target) ** 2).sum(dim=(2, 3, 4))


def mae_per_frame(pred, target) -> torch.Tensor:
    """Absolute error summed over each frame's pixels (and channels), pixels in [0, 1]: (b, t)."""
    pred, target = _pair(pred, target)
    return (pred - target).abs().sum(dim=(2, 3, 4))


def psnr_per_frame(pred, target) -> torch.Tensor:
    """PSNR in dB of each frame (torchmetrics `peak_signal_noise_ratio`, data range 1): (b, t).

    10 log10(1 / m) with m the frame's mean squared error; identical frames give +inf.
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio

    pred, target = _pair(pred, target)
    b = pred.shape[0]
    p, q = rearrange(pred, "b t c h w -> (b t) c h w"), rearrange(target, "b t c h w -> (b t) c h w")
    values = peak_signal_noise_ratio(p, q, data_range=1.0, reduction="none", dim=(1, 2, 3))  # ((b t),)
    return rearrange(values, "(b t) -> b t", b=b)


def ssim_per_frame(pred, target) -> torch.Tensor:
    """SSIM of each frame (torchmetrics `structural_similarity_index_measure`: Gaussian window 11,
    sigma 1.5, data range 1; averaged over the frame and its channels): (b, t). 1 for identical frames."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    pred, target = _pair(pred, target)
    b = pred.shape[0]
    p, q = rearrange(pred, "b t c h w -> (b t) c h w"), rearrange(target, "b t c h w -> (b t) c h w")
    values = structural_similarity_index_measure(p, q, data_range=1.0, reduction="none")  # ((b t),)
    return rearrange(values, "(b t) -> b t", b=b)


PER_FRAME = {"mse": mse_per_frame, "mae": mae_per_frame, "psnr": psnr_per_frame, "ssim": ssim_per_frame}


def per_frame_metrics(pred, target) -> dict[str, torch.Tensor]:
    """Every metric per clip and frame: {'mse': (b, t), 'mae': ..., 'psnr': ..., 'ssim': ...}."""
    return {name: fn(pred, target) for name, fn in PER_FRAME.items()}


def per_frame_summary(pred, target) -> dict:
    """Means over clips and frames, and curves per frame index (means over clips).

    Returns {'mse': float, 'mse_per_frame': [t floats], 'mae': ..., 'psnr': ..., 'ssim': ...},
    the same keys as `evaluate`.
    """
    return _summarize(per_frame_metrics(pred, target))


def _summarize(values: dict[str, torch.Tensor]) -> dict:
    summary = {}
    for name in METRICS:
        v = values[name].double()  # (b, t)
        summary[name] = v.mean().item()
        summary[f"{name}_per_frame"] = v.mean(dim=0).tolist()
    return summary


# --------------------------------------------------------------------------------------------
# the standard protocol
# --------------------------------------------------------------------------------------------


def test_clips(num_clips: int = 256, num_frames: int = 20, device=None, speed: float = 0.1) -> torch.Tensor:
    """The protocol's clips with `num_frames` frames: (num_clips, num_frames, 1, 64, 64).

    The same seeded set as `data.standard_test_set` (whose clips are these, cut to 20 frames); another
    `speed` moves the same digits from the same starts in the same directions, faster or slower.
    """
    ds = data.MovingMNIST(length=num_clips, seed=data.STANDARD_TEST_SEED, split="test", num_frames=num_frames, speed=speed)
    return ds.batch(range(num_clips), device=device)


def as_generate(model, generate_kwargs: dict):
    """A function (context, num_frames, seed) -> video from a model with .generate or a plain callable."""
    fn = model.generate if hasattr(model, "generate") else model
    if not callable(fn):
        raise ValueError(f"expected a model with .generate(context, num_frames, seed=...) or a function, got {type(model).__name__}")
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature: pass everything
        params = {}
    takes_all = not params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())

    def generate(context, num_frames, seed):
        kwargs = dict(generate_kwargs)
        if takes_all or "seed" in params:
            kwargs["seed"] = seed
        if takes_all or "progress" in params:
            kwargs["progress"] = False
        return fn(context, num_frames, **kwargs)

    return generate


def evaluate(
    model,
    num_clips: int = 256,
    batch_size: int = 32,
    context: int = data.STANDARD_CONTEXT,
    future: int = data.STANDARD_FUTURE,
    seed: int = 0,
    device="cpu",
    progress: bool = True,
    generate_kwargs: dict | None = None,
    speed: float = 0.1,
) -> dict:
    """The standard protocol: `context` frames in, `future` frames predicted, on the fixed test set.

    model: anything with ``generate(context, num_frames, seed=..., progress=...)`` (every minivid
    generator), or a plain function ``fn(context, num_frames[, seed=...])`` returning
    (b, num_frames, c, h, w) in [0, 1]. Batch i0.. is generated with seed ``seed + i0``.
    A torch module is put in eval mode for the run (and restored) and must already be on `device`.
    generate_kwargs: extra keywords for every call (e.g. {'steps': 50}).
    speed: the test clips' speed (0.1, the protocol's, unless you ask how a model copes with others).

    Returns {'mse', 'mae', 'psnr', 'ssim': means over clips and future frames (MSE / MAE summed
    over the pixels of a frame); '<metric>_per_frame': one mean per future frame; 'clips',
    'context', 'future', 'seed'; 'seconds': wall time of generation plus scoring}.
    """
    for key, value, low in (("num_clips", num_clips, 1), ("batch_size", batch_size, 1), ("context", context, 0), ("future", future, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
    generate = as_generate(model, generate_kwargs or {})
    module = model if isinstance(model, torch.nn.Module) else None
    if module is not None:
        param, want = next(module.parameters(), None), torch.device(device)
        if param is not None and (param.device.type != want.type or want.index not in (None, param.device.index)):
            raise ValueError(f"the model is on {param.device} but device={device!r}; move it with model.to({device!r}) or pass device={str(param.device)!r}")
        was_training = module.training
        module.eval()
    clips = test_clips(num_clips, context + future, speed=speed)  # (n, context + future, 1, 64, 64)
    values = {name: [] for name in METRICS}
    start = time.perf_counter()
    try:
        for i in tqdm(range(0, num_clips, batch_size), desc="evaluate", disable=not progress):
            batch = clips[i : i + batch_size]
            ctx, target = batch[:, :context].to(device), batch[:, context:]
            with torch.no_grad():
                pred = generate(ctx, future, seed + i)
            validate_video(pred, "generated video")
            if pred.shape != target.shape:
                raise ValueError(f"the model returned shape {tuple(pred.shape)}; expected {tuple(target.shape)} (b, future, c, h, w)")
            for name, v in per_frame_metrics(pred.detach().float().cpu(), target).items():
                values[name].append(v)
    finally:
        if module is not None:
            module.train(was_training)
    seconds = time.perf_counter() - start
    result = {"clips": num_clips, "context": context, "future": future, "seed": seed, "seconds": seconds, "batch_size": batch_size}
    if speed != 0.1:
        result["speed"] = speed
    result.update(_summarize({name: torch.cat(v) for name, v in values.items()}))
    return result


@torch.no_grad()
def sample_spread(model, samples: int = 8, num_clips: int = 256, batch_size: int = 32, device="cpu",
                  generate_kwargs: dict | None = None, progress: bool = True) -> dict:
    """How much several samples per clip help: MSE of one sample, of the mean of `samples`, and of the best one.

    Sample j of batch i0 uses seed j * 100_003 + i0 (sample 0 is `evaluate`'s). MSE is summed over a
    frame's pixels and averaged over the protocol's future frames, as in `evaluate`.
    """
    if not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    generate = as_generate(model, generate_kwargs or {})
    clips = test_clips(num_clips, data.STANDARD_CONTEXT + data.STANDARD_FUTURE)
    single, mean_of, best_of = [], [], []
    for i in tqdm(range(0, num_clips, batch_size), desc="samples", disable=not progress):
        batch = clips[i : i + batch_size]
        ctx, target = batch[:, : data.STANDARD_CONTEXT].to(device), batch[:, data.STANDARD_CONTEXT :]
        preds = torch.stack([generate(ctx, data.STANDARD_FUTURE, j * 100_003 + i).float().cpu() for j in range(samples)])
        mse = ((preds - target) ** 2).sum(dim=(3, 4, 5)).mean(dim=2)  # (samples, b): per clip
        single.append(mse[0])
        best_of.append(mse.min(dim=0).values)
        mean_of.append(((preds.mean(0) - target) ** 2).sum(dim=(2, 3, 4)).mean(dim=1))
    return {"samples": samples, "clips": num_clips, "mse_one": float(torch.cat(single).mean()),
            "mse_mean_of_samples": float(torch.cat(mean_of).mean()), "mse_best_of_samples": float(torch.cat(best_of).mean())}


# --------------------------------------------------------------------------------------------
# baselines every method should beat
# --------------------------------------------------------------------------------------------


def copy_last_frame(context, num_frames, seed=0):
    """Repeat the last context frame (a still image): the simplest baseline."""
    validate_video(context, "context")
    if context.shape[1] == 0:
        raise ValueError("copy_last_frame needs at least one context frame")
    return context[:, -1:].expand(-1, num_frames, -1, -1, -1).clone()


def blank_frames(context, num_frames, seed=0):
    """Predict empty (black) frames: the score of knowing nothing."""
    validate_video(context, "context")
    b, _, c, h, w = context.shape
    return context.new_zeros(b, num_frames, c, h, w)
