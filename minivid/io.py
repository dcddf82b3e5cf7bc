"""Video sets on disk: Hugging Face `datasets` export/load, and the classic `mnist_test_seq.npy`.

    from minivid import data, io
    clips = data.moving_mnist(range(512), seed=0, split="test")   # (512, 20, 1, 64, 64) in [0, 1]
    ds = io.to_hf_dataset(clips)                                  # a datasets.Dataset of uint8 videos
    path = io.save_hf(clips, "moving_mnist_test_512")             # cached under data/hf/
    back = io.load_hf("moving_mnist_test_512")                    # (512, 20, 1, 64, 64), exactly equal

    classic = io.load_mnist_test_seq("mnist_test_seq.npy")        # Srivastava et al.'s 10,000 test clips

Videos are stored as uint8 (value * 255, rounded): Moving MNIST pixels are MNIST's own 8-bit
values, so a generated set round-trips exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from minivid import data
from minivid.metrics import validate_video

MNIST_TEST_SEQ_SHAPE = (20, 10_000, 64, 64)  # (t, b, h, w) uint8, as distributed by Srivastava et al.


def _to_uint8(videos: torch.Tensor) -> np.ndarray:
    videos = validate_video(videos, "videos")
    return (videos.detach().cpu() * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def to_hf_dataset(videos: torch.Tensor, info: dict | None = None):
    """A `datasets.Dataset` with one row per clip: 'video' (t, c, h, w) uint8 and 'index'."""
    import datasets

    array = _to_uint8(videos)
    t, c, h, w = array.shape[1:]
    features = datasets.Features(
        {"video": datasets.Array4D(shape=(t, c, h, w), dtype="uint8"), "index": datasets.Value("int64")}
    )
    ds = datasets.Dataset.from_dict({"video": list(array), "index": list(range(len(array)))}, features=features)
    if info:
        ds.info.description = str(info)
    return ds


def from_hf_dataset(ds) -> torch.Tensor:
    """Videos (b, t, c, h, w) float32 in [0, 1] from a dataset made by `to_hf_dataset`."""
    if "video" not in ds.column_names:
        raise ValueError(f"expected a dataset with a 'video' column (from minivid.io.to_hf_dataset); got columns {ds.column_names}")
    array = np.asarray(ds.with_format("numpy")["video"])
    if not np.issubdtype(array.dtype, np.integer) or array.ndim != 5 or (array.size and (array.min() < 0 or array.max() > 255)):
        raise ValueError(f"expected 8-bit videos of shape (b, t, c, h, w), got {array.dtype} {array.shape}")
    return torch.from_numpy(array.astype(np.uint8)).float() / 255


def hf_path(name: str) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"a cached set's name is a plain folder name, got {name!r}")
    return data.data_dir() / "hf" / name


def save_hf(videos: torch.Tensor, name: str, info: dict | None = None) -> Path:
    """Save videos as a `datasets` dataset under data/hf/NAME (written to a temporary folder, then renamed)."""
    import shutil

    path = hf_path(name)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    to_hf_dataset(videos, info).save_to_disk(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    return path


def load_hf(name_or_path) -> torch.Tensor:
    """Videos saved by `save_hf` (a name under data/hf/, or a folder path)."""
    import datasets

    path = Path(name_or_path)
    if not path.exists():
        path = hf_path(str(name_or_path))
    if not path.is_dir():
        raise FileNotFoundError(f"no saved video set at {path}; make one with minivid.io.save_hf(videos, name)")
    return from_hf_dataset(datasets.load_from_disk(str(path)))


def load_mnist_test_seq(path, num_clips: int | None = None) -> torch.Tensor:
    """The classic Moving MNIST test file (Srivastava et al. 2015) as (b, 20, 1, 64, 64) in [0, 1].

    The file holds uint8 frames shaped (20, 10000, 64, 64) = (t, b, h, w). It is memory-mapped, so
    `num_clips` reads only the clips asked for.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no file at {path}. mnist_test_seq.npy is Srivastava et al.'s Moving MNIST test set "
            "(http://www.cs.toronto.edu/~nitish/unsupervised_video/); download it, or use "
            "minivid.data.standard_test_set() which needs no file"
        )
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise ValueError(f"{path.name} is not a readable .npy file ({type(exc).__name__}: {exc}); it may be truncated or corrupt") from exc
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[0] != 20 or array.shape[2:] != (64, 64):
        raise ValueError(f"{path.name} should hold uint8 frames of shape {MNIST_TEST_SEQ_SHAPE} (t, b, h, w); got {array.dtype} {array.shape}")
    count = array.shape[1] if num_clips is None else min(int(num_clips), array.shape[1])
    clips = np.ascontiguousarray(array[:, :count].transpose(1, 0, 2, 3))  # (b, t, h, w)
    return torch.from_numpy(clips).float()[:, :, None] / 255
