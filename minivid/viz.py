"""Looking at videos: inline in a notebook (mediapy), as matplotlib figures, and as GIF/MP4 files.

    show_videos(video)                  inline, side by side (notebooks)
    frame_grid(video, context=10)       a figure: one row per clip, one column per frame
    plot_per_frame(curves, "MSE")       per-frame curves, e.g. error against future-frame index
    save_video(video, "clip.gif")       GIF or MP4 from a terminal

Every function takes the package's video tensors: float in [0, 1], (t, c, h, w) for one clip or
(b, t, c, h, w) for a batch, c = 1 (grey) or 3 (RGB). NumPy arrays of the same shapes work too.
A batch is shown or saved side by side.

Nothing here imports mediapy or matplotlib at module load, and GIFs are written with Pillow, so the
training loop can save previews on a machine that has neither mediapy nor ffmpeg.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

# --------------------------------------------------------------------------------------------
# tensors to uint8 frames
# --------------------------------------------------------------------------------------------


def _as_batch(video, name: str = "video") -> torch.Tensor:
    """(t, c, h, w) or (b, t, c, h, w), tensor or array, [0, 1] -> float32 (b, t, c, h, w) on the CPU."""
    if isinstance(video, np.ndarray):
        video = torch.from_numpy(video)
    if not isinstance(video, torch.Tensor):
        raise ValueError(f"{name} must be a tensor or array shaped (t, c, h, w) or (b, t, c, h, w), got {type(video).__name__}")
    if video.dim() == 4:
        video = video[None]
    if video.dim() != 5 or video.shape[2] not in (1, 3):
        raise ValueError(f"{name} must be shaped (t, c, h, w) or (b, t, c, h, w) with c = 1 or 3, got {tuple(video.shape)}")
    video = video.detach().to("cpu", torch.float32)
    if video.numel() == 0:
        raise ValueError(f"{name} is empty: {tuple(video.shape)}")
    if not torch.isfinite(video).all():
        raise ValueError(f"{name} holds NaN or infinite values; expected values in [0, 1]")
    return video


def to_uint8(video) -> np.ndarray:
    """(b, t, c, h, w) or (t, c, h, w) in [0, 1] -> uint8 frames (b, t, h, w, c); values outside [0, 1] are clipped."""
    video = _as_batch(video)
    return rearrange((video.clamp(0, 1) * 255).round().to(torch.uint8), "b t c h w -> b t h w c").numpy()


def tile(video, gap: int = 2) -> np.ndarray:
    """A batch laid side by side with `gap` grey pixels between clips: uint8 (t, h, b*w + gaps, c)."""
    frames = to_uint8(video)  # (b, t, h, w, c)
    b, t, h, w, c = frames.shape
    out = np.full((t, h, b * w + (b - 1) * gap, c), 128, dtype=np.uint8)
    for i in range(b):
        out[:, :, i * (w + gap) : i * (w + gap) + w] = frames[i]
    return out


def _upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling of (t, h, w, c) frames by an integer factor (crisp pixels)."""
    return frames if scale == 1 else frames.repeat(scale, axis=1).repeat(scale, axis=2)


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def save_video(video, path, fps: float = 8, scale: int = 1) -> Path:
    """Write a clip, or a batch side by side, to `path` (.gif or .mp4). Returns the path.

    video: (t, c, h, w) or (b, t, c, h, w) float in [0, 1]. scale: integer upscaling (nearest
    neighbour), handy for 64x64 clips. GIFs need only Pillow; MP4 needs the ffmpeg binary, from
    PATH or from imageio-ffmpeg.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"save_video writes .gif or .mp4 files, got {str(path)!r}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    frames = _upscale(tile(video), int(scale))  # (t, h, w, c) uint8
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        from PIL import Image

        mode = "L" if frames.shape[-1] == 1 else "RGB"
        images = [Image.fromarray(f[..., 0] if mode == "L" else f, mode=mode) for f in frames]
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    else:
        import mediapy

        use_ffmpeg()
        if frames.shape[-1] == 1:
            frames = frames.repeat(3, axis=-1)
        t, h, w, _ = frames.shape  # H.264 wants even sides: pad one black row / column if needed
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        mediapy.write_video(path, frames, fps=fps)
    return path


def use_ffmpeg() -> str:
    """Point mediapy at an ffmpeg binary: the one on PATH, else the one imageio-ffmpeg ships."""
    import mediapy

    exe = shutil.which("ffmpeg")
    if exe is None:
        try:
            import imageio_ffmpeg
        except ImportError as exc:
            raise RuntimeError("video encoding needs ffmpeg: put it on PATH or `pip install imageio-ffmpeg`") from exc
        exe = imageio_ffmpeg.get_ffmpeg_exe()
    mediapy.set_ffmpeg(exe)
    return exe


# --------------------------------------------------------------------------------------------
# notebooks
# --------------------------------------------------------------------------------------------


def show_videos(videos, titles=None, fps: float = 8, width: int = 128, columns: int | None = 8,
                max_side: int = 128, codec: str = "gif", return_html: bool = False):
    """Show videos inline in a notebook, side by side (mediapy).

    videos: one clip (t, c, h, w); a batch (b, t, c, h, w), shown as b clips; a list of clips or
    batches; or a dict {title: clip}. titles: one per clip shown. width: display width of each
    clip in pixels (the browser upscales with crisp pixels). max_side: clips larger than this are
    downsampled before encoding, so notebooks stay small. codec: 'gif' (crisp, plays everywhere)
    or 'h264' (smaller for long or large clips).
    """
    import mediapy

    if isinstance(videos, dict):
        if titles is not None:
            raise ValueError("pass titles either as dict keys or as `titles`, not both")
        titles, videos = list(videos.keys()), list(videos.values())
    clips = []
    for v in videos if isinstance(videos, (list, tuple)) else [videos]:
        clips.extend(to_uint8(v))  # each (t, h, w, c)
    if titles is not None:
        titles = [str(t) for t in titles]
        if len(titles) != len(clips):
            raise ValueError(f"got {len(titles)} titles for {len(clips)} clips")
    shown = []
    for clip in clips:
        factor = -(-max(clip.shape[1:3]) // max_side)  # ceil: the integer factor that fits max_side
        clip = clip[:, ::factor, ::factor]
        shown.append(clip[..., 0] if clip.shape[-1] == 1 else clip)
    use_ffmpeg()
    return mediapy.show_videos(shown, titles, width=width, fps=fps, codec=codec, columns=columns,
                               return_html=return_html)


def frame_grid(video, context: int | None = None, every: int = 1, max_frames: int = 20, row_labels=None,
               frame_size: float = 0.7, title: str | None = None):
    """A matplotlib figure of frames: one row per clip, one column per shown frame.

    video: (t, c, h, w) or (b, t, c, h, w) in [0, 1]. context: if given, frames from this index on
    are framed in red and labelled as predicted. every: show every n-th frame. max_frames: at
    most this many columns. Returns the figure.
    """
    import matplotlib.pyplot as plt

    frames = to_uint8(video)  # (b, t, h, w, c)
    if int(every) != every or every < 1:
        raise ValueError(f"every must be a positive integer, got {every!r}")
    shown = list(range(0, frames.shape[1], every))[:max_frames]
    b, n = frames.shape[0], len(shown)
    if row_labels is not None and len(row_labels) != b:
        raise ValueError(f"got {len(row_labels)} row labels for {b} clips")
    fig, axes = plt.subplots(b, n, figsize=(frame_size * n, frame_size * b + (0.3 if title else 0.15)),
                             squeeze=False, gridspec_kw=dict(wspace=0.05, hspace=0.05), dpi=72)
    for i in range(b):
        for j, f in enumerate(shown):
            ax = axes[i, j]
            img = frames[i, f]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            predicted = context is not None and f >= context
            for spine in ax.spines.values():
                spine.set_color("tab:red" if predicted else "0.6")
                spine.set_linewidth(1.5 if predicted else 0.5)
            if i == 0:
                ax.set_title(f"{f}", fontsize=7, color="tab:red" if predicted else "black", pad=2)
        if row_labels is not None:
            axes[i, 0].set_ylabel(str(row_labels[i]), fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def plot_per_frame(curves: dict, ylabel: str, xlabel: str = "future frame", title: str | None = None,
                   start: int = 1, ax=None):
    """Plot one line per entry of `curves` ({label: values}) against frame index. Returns the figure.

    values: (t,) per-frame values, or (b, t), drawn as the mean with a band of one standard
    deviation. start: the index of the first frame (1: the first predicted frame).
    """
    import matplotlib.pyplot as plt

    if not isinstance(curves, dict) or not curves:
        raise ValueError("curves must be a non-empty dict {label: per-frame values}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 3))
    else:
        fig = ax.figure
    for label, values in curves.items():
        v = np.asarray(torch.as_tensor(values, dtype=torch.float64).cpu())
        if v.ndim not in (1, 2):
            raise ValueError(f"curve {label!r} must be (t,) or (b, t), got shape {v.shape}")
        x = np.arange(start, start + v.shape[-1])
        mean = v if v.ndim == 1 else v.mean(0)
        (line,) = ax.plot(x, mean, marker="o", markersize=3, label=str(label))
        if v.ndim == 2 and v.shape[0] > 1:
            std = v.std(0)
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
