"""Looking at videos: inline in a notebook (mediapy), as matplotlib figures, and as GIF/MP4 files.

    show_videos(video)                  inline, side by side (notebooks)
    frame_grid(video, context=10)       a figure: one row per clip, one column per frame
    plot_per_frame(curves, "MSE")       per-frame curves, e.g. error against future-frame index
    save_video(video, "clip.gif")       GIF or MP4 from a terminal
    truth_over_predictions(truth, {"diffusion": pred}, context=10)
                                        truth above predictions, predicted frames framed in red (RGB frames)
    save_frames(frames, "sample.gif")   write such uint8 frames to a GIF or MP4

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
    return save_frames(tile(video), path, fps=fps, scale=scale)


def save_frames(frames: np.ndarray, path, fps: float = 8, scale: int = 1) -> Path:
    """Write uint8 frames (t, h, w, c), c = 1 or 3, to `path` (.gif or .mp4). Returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"videos are written as .gif or .mp4 files, got {str(path)!r}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps!r}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise ValueError(f"frames must be uint8 (t, h, w, c) with c = 1 or 3, got {frames.dtype} {frames.shape}")
    frames = _upscale(frames, int(scale))
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        from PIL import Image

        if frames.shape[-1] == 1:
            images = [Image.fromarray(f[..., 0], mode="L") for f in frames]
        else:  # one palette for the whole clip: about half the size of a palette per frame, and no flicker
            palette = Image.fromarray(np.concatenate(list(frames), axis=0)).quantize(256, method=Image.Quantize.MEDIANCUT)
            images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
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
# truth above prediction
# --------------------------------------------------------------------------------------------

PREDICTED_RGB = (214, 39, 40)  # matplotlib's tab:red, the colour frame_grid frames predicted frames in
BACKGROUND = 48  # dark grey around the frames, so the black Moving MNIST canvas still shows its edges
LABEL_RGB = (220, 220, 220)


def truth_over_predictions(truth, predictions: dict, context: int, labels: bool = True, border: int = 2,
                           gap: int = 4) -> tuple[np.ndarray, dict]:
    """Frames for a GIF that shows where the context ends: the true clip above each method's prediction.

    truth: (b, t, c, h, w) in [0, 1], the whole true clip (context and future). predictions:
    {name: (b, t - context, c, h, w)}, what each method made of the first `context` frames. Each clip
    is a column; its top row plays the true clip, and every row under it plays the same true context
    followed by that method's frames. Predicted frames wear a red border; a caption under the rows says
    which frame is playing and whether it is context or predicted. labels: write the row names on the left.

    Returns (frames, boxes): uint8 RGB frames (t, H, W, 3), and boxes[(row, clip)] = (top, left), the
    corner of that clip's picture in row `row` (0 is the truth, then the predictions in order).
    """
    truth = _as_batch(truth, "truth")
    b, t, _, h, w = truth.shape
    if int(context) != context or not 0 <= context < t:
        raise ValueError(f"context must be an integer in [0, {t - 1}] for a {t}-frame truth, got {context!r}")
    if not isinstance(predictions, dict):
        raise ValueError("predictions must be a dict {name: (b, t - context, c, h, w) video}")
    rows = [("truth", to_uint8(truth))]  # (b, t, h, w, c) each
    for name, video in predictions.items():
        video = _as_batch(video, f"prediction {name!r}")
        if video.shape[0] != b or video.shape[1] != t - context or video.shape[3:] != truth.shape[3:]:
            raise ValueError(f"prediction {name!r} is {tuple(video.shape)}; expected ({b}, {t - context}, c, {h}, {w}) "
                             f"for {context} context frames of a {t}-frame truth")
        rows.append((str(name), to_uint8(torch.cat([truth[:, :context], video], dim=1))))
    captions = [f"frame {f + 1} of {t}: " + (f"predicted ({f + 1 - context} of {t - context})" if f >= context else "context")
                for f in range(t)]
    font = _font()
    label_width = max(_text_width(font, name) for name, _ in rows) + 2 * gap if labels else 0
    caption_height = 14
    cell_h, cell_w = h + 2 * border, w + 2 * border
    height = gap + len(rows) * (cell_h + gap) + caption_height
    width = label_width + gap + max(b * (cell_w + gap), max(_text_width(font, c) for c in captions) + gap)
    boxes = {(r, i): (gap + r * (cell_h + gap) + border, label_width + gap + i * (cell_w + gap) + border)
             for r in range(len(rows)) for i in range(b)}

    from PIL import Image, ImageDraw

    out = np.full((t, height, width, 3), BACKGROUND, dtype=np.uint8)
    for f in range(t):
        predicted = f >= context
        for r, (_, clips) in enumerate(rows):
            for i in range(b):
                top, left = boxes[(r, i)]
                if r > 0 and predicted:  # the marker: a red border on every predicted frame
                    out[f, top - border : top + h + border, left - border : left + w + border] = PREDICTED_RGB
                out[f, top : top + h, left : left + w] = clips[i, f]  # grey frames broadcast to RGB
        image = Image.fromarray(out[f])
        draw = ImageDraw.Draw(image)
        if labels:
            for r, (name, _) in enumerate(rows):
                _text(draw, font, (gap, boxes[(r, 0)][0] + h // 2), name, LABEL_RGB)
        _text(draw, font, (label_width + gap, height - caption_height // 2 - 1), captions[f],
              PREDICTED_RGB if predicted else LABEL_RGB)
        out[f] = np.asarray(image)
    return out, boxes


def _font():
    from PIL import ImageFont

    return ImageFont.load_default()


def _text_width(font, text: str) -> int:
    left, _, right, _ = font.getbbox(text)
    return int(right - left)


def _text(draw, font, left_middle: tuple[int, int], text: str, colour) -> None:
    """Write `text` with its left edge at x and its middle at y (Pillow's own anchors need FreeType)."""
    x, y = left_middle
    _, top, _, bottom = font.getbbox(text)
    draw.text((x, y - (top + bottom) // 2), text, fill=colour, font=font)


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
