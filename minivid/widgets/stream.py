"""Streaming player: watch the distilled student make frames one at a time, with a live frames-per-second readout.

    from minivid import pretrained, widgets
    widgets.StreamPlayer(pretrained("student")).show()

Pick the denoising steps per frame (those the student was distilled for: 1, 2 or 4), a seed and how many
frames to stream, press *Start*: frames come out of `student.stream(...)` as soon as each is made. The
newest one is shown enlarged, beside a readout of frames so far, frames per second over the last few frames,
and the seconds the newest frame took, and a bar per frame of its time, so you can see the cost per frame
stay flat (the frame cache) however long the stream runs. *Stop* ends it between two frames.

The logic is the plain class `StreamState`, which the tests drive without a browser. The front end streams
in a background thread, so the kernel stays free to hear *Stop*; `start(wait=True)` streams in the calling
thread instead (what a notebook run top to bottom, and the tests, use).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from minivid import data
from minivid.widgets.methods import check_settings
from minivid.widgets.view import (LABEL, WidgetView, check_zoom, error_html, frames_rows, frames_strip, image_slot, labelled,
                                  png_bytes, show_png)

FPS_WINDOW = 5  # frames per second are read over this many newest frames: current, yet not one frame's jitter


class StreamState:
    """Settings, the frames streamed so far with the seconds each took, and what to show. No widgets in here.

    student: a `minivid.distill.Model` (anything with `stream(context, num_frames, seed=, steps=)` and
    `distilled_steps`). context: (1, t0, c, h, w) or (t0, c, h, w) in [0, 1], the frames to continue
    (default: the first test clip's 10 context frames). max_frames: the most frames one stream may ask for.
    """

    def __init__(self, student, context: torch.Tensor | None = None, max_frames: int = 200):
        self.student = student.eval()
        if context is None:
            context = data.standard_test_set(1)[:, : data.STANDARD_CONTEXT]
        context = torch.as_tensor(context)
        if context.ndim == 4:
            context = context[None]
        if context.ndim != 5 or context.shape[0] != 1:
            raise ValueError(f"context must be one clip, (t0, c, h, w) or (1, t0, c, h, w); got shape {tuple(context.shape)}")
        self.context = context.float()
        self.max_frames = int(max_frames)
        steps = getattr(student.config, "sample_steps", None)
        self.settings = {"steps": steps if steps in student.distilled_steps else max(student.distilled_steps),
                         "seed": 0, "num_frames": 30}
        self.frames: list[torch.Tensor] = []  # each (c, h, w) in [0, 1], on the CPU
        self.seconds: list[float] = []  # the model's time for each frame
        self.streamed_with: dict | None = None  # the settings of the frames held (None: nothing streamed yet)
        self.runs = 0  # streams started (the tests count them)
        self._stream = None

    # -- settings ----------------------------------------------------------------------------------------

    def update(self, **settings):
        check_settings(self.settings, settings)
        if "steps" in settings:
            steps, allowed = settings["steps"], tuple(self.student.distilled_steps)
            if isinstance(steps, bool) or steps not in allowed:
                raise ValueError(f"steps must be one of {allowed}, the step counts this student was distilled for; "
                                 f"got {steps!r}")
        if "seed" in settings and (isinstance(settings["seed"], bool) or int(settings["seed"]) != settings["seed"]):
            raise ValueError(f"seed must be an integer, got {settings['seed']!r}")
        if "num_frames" in settings:
            n = settings["num_frames"]
            if isinstance(n, bool) or int(n) != n or not 1 <= n <= self.max_frames:
                raise ValueError(f"num_frames must be an integer in 1..{self.max_frames}, got {n!r}")
        self.settings.update({k: int(v) for k, v in settings.items()})

    def is_stale(self) -> bool:
        """True when frames are held that belong to other settings than the current ones."""
        return self.streamed_with is not None and self.streamed_with != self.settings

    # -- streaming ---------------------------------------------------------------------------------------

    def start(self):
        """Begin a stream with the current settings; the frames held so far are dropped."""
        self.stop()
        s = self.settings
        self._stream = self.student.stream(self.context, s["num_frames"], seed=s["seed"], steps=s["steps"])
        self.frames, self.seconds = [], []
        self.streamed_with = dict(s)
        self.runs += 1

    @property
    def running(self) -> bool:
        return self._stream is not None

    def next_frame(self) -> torch.Tensor | None:
        """Make one more frame (c, h, w) and time it; None when the stream is done (or was never started)."""
        if self._stream is None:
            return None
        start = time.perf_counter()
        try:
            frame = next(self._stream)  # (1, 1, c, h, w)
        except StopIteration:
            self._stream = None
            return None
        self.seconds.append(time.perf_counter() - start)
        self.frames.append(frame[0, 0].detach().float().cpu())
        if len(self.frames) == self.streamed_with["num_frames"]:
            self.stop()  # the last one: close the stream now, not on the next call
        return self.frames[-1]

    def stop(self):
        """End the stream between two frames; the frames made so far stay."""
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def run(self, on_frame=None, stop: threading.Event | None = None) -> torch.Tensor:
        """Stream all frames of the current settings: on_frame(state) after each; `stop` set ends it early.
        Returns the frames made, (n, c, h, w)."""
        self.start()
        while self.next_frame() is not None:
            if on_frame is not None:
                on_frame(self)
            if stop is not None and stop.is_set():
                self.stop()
        return self.video()

    # -- what to show ------------------------------------------------------------------------------------

    def video(self) -> torch.Tensor:
        """The frames so far, (n, c, h, w); n may be 0."""
        if not self.frames:
            return torch.zeros(0, *self.context.shape[2:])
        return torch.stack(self.frames)

    def fps(self, last: int = FPS_WINDOW) -> float | None:
        """Frames per second of model time over the newest `last` frames; None before the first frame."""
        if not self.seconds:
            return None
        recent = self.seconds[-last:]
        return len(recent) / sum(recent)

    def readout(self) -> str:
        """One line: frames so far, frames per second, the newest frame's time."""
        if not self.frames:
            return "no frames yet: press Start"
        total = self.streamed_with["num_frames"]
        steps = self.streamed_with["steps"]
        n = len(self.frames)
        return (f"frame {n}/{total} ({steps} step{'s' if steps > 1 else ''} per frame): {self.fps():.1f} frames/s over the "
                f"last {min(n, FPS_WINDOW)}, newest frame {self.seconds[-1] * 1000:.0f} ms")

    def summary(self) -> str:
        """After a stream: frames, mean frames per second, and the first and last frames' times side by side."""
        if not self.frames:
            return "no frames yet"
        s, n = self.seconds, len(self.seconds)
        k = max(1, min(5, n // 3))
        return (f"{n} frames in {sum(s):.1f} s ({n / sum(s):.1f} frames/s); mean frame time {np.mean(s[:k]) * 1000:.0f} ms "
                f"over the first {k}, {np.mean(s[-k:]) * 1000:.0f} ms over the last {k}")

    def frame_png(self, zoom: int = 3) -> bytes:
        """The newest frame as a PNG, each pixel repeated `zoom` times."""
        if not self.frames:
            raise ValueError("no frames yet: start a stream first")
        return png_bytes(frames_strip(self.frames[-1][None]), zoom)

    def strip(self, per_row: int = 10, last: int | None = None) -> np.ndarray:
        """uint8 image of the frames so far (the newest `last` of them, if given), `per_row` to a row, at natural size."""
        video = self.video() if last is None else self.video()[-last:]
        if len(video) == 0:
            raise ValueError("no frames yet: start a stream first")
        return frames_rows(video, per_row)

    def bars(self, height: int = 48, bar: int = 4) -> np.ndarray:
        """uint8 image: one bar per frame of the stream (`bar` pixels wide), its height the frame's time,
        scaled to the slowest frame so far; frames not made yet leave a light slot. Cheap enough to redraw
        after every frame (no plotting library)."""
        total = self.streamed_with["num_frames"] if self.streamed_with else self.settings["num_frames"]
        image = np.full((height, total * bar), 255, dtype=np.uint8)
        image[-1] = 200  # the baseline
        top = max(self.seconds) if self.seconds else 1.0
        for i, s in enumerate(self.seconds):
            h = max(1, round((height - 2) * s / top))
            image[height - h :, i * bar : (i + 1) * bar - 1] = 60
        return image


class StreamPlayer(WidgetView):
    """The ipywidgets front end of `StreamState`. zoom: integer scale of the newest frame (1 = natural size);
    max_frames: the top of the frames slider."""

    title = "StreamPlayer"

    def __init__(self, student, context: torch.Tensor | None = None, zoom: int = 3, max_frames: int = 60):
        import ipywidgets as W

        self.zoom = check_zoom(zoom)
        self.state = StreamState(student, context=context, max_frames=max_frames)
        s = self.state.settings
        self.steps = W.ToggleButtons(options=list(student.distilled_steps), value=s["steps"], style={"button_width": "40px"})
        self.seed = W.IntText(value=s["seed"], description="seed", style=LABEL, layout=W.Layout(width="120px"))
        self.num_frames = W.IntSlider(value=min(s["num_frames"], max_frames), min=min(10, max_frames), max=max_frames, step=5,
                                      description="frames", style=LABEL)
        self.run = W.Button(description="Start", button_style="primary", icon="play")
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True)
        self.status = W.Label("press Start: frames appear as the student makes them")
        self.error = W.HTML(layout=W.Layout(display="none"))
        self.readout = W.HTML()
        self.image, self.bar_image = image_slot(), image_slot()
        self.bar_label = W.HTML()
        for control in (self.steps, self.seed, self.num_frames):
            control.observe(self._on_setting, names="value")
        self.run.on_click(self._on_run)
        self.stop_button.on_click(self._on_stop)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failed = False
        self._layout(
            controls=[W.HBox([labelled("steps per frame", self.steps), self.seed]), self.num_frames,
                      W.HBox([self.run, self.stop_button, self.status])],
            before=[self.error],
            results=[W.HBox([W.VBox([W.HTML("<b>newest frame</b>"), self.image]),
                             W.VBox([self.readout, self.bar_label, self.bar_image], layout=W.Layout(margin="0 0 0 16px"))],
                            layout=W.Layout(flex_flow="row wrap", align_items="flex-start"))],
        )
        self.state.update(num_frames=self.num_frames.value)

    # -- controls ----------------------------------------------------------------------------------------

    def _on_setting(self, change=None):
        self.state.update(steps=int(self.steps.value), seed=int(self.seed.value), num_frames=int(self.num_frames.value))
        if self.state.is_stale():
            self._mark_stale()
        elif self.state.streamed_with is not None:
            self._show_results()
            self.status.value = self.state.summary()

    def _on_run(self, button=None):
        self.start()

    def _on_stop(self, button=None):
        self._stop.set()

    def start(self, wait: bool = False):
        """Stream with the current settings: in a background thread (what *Start* does), or here, returning when
        the stream ends (wait=True)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self.failed = False
        self.error.layout.display = "none"
        for control in (self.run, self.steps, self.seed, self.num_frames):
            control.disabled = True
        self.stop_button.disabled = False
        self.status.value = "streaming..."
        if wait:
            self._stream()
        else:
            self._thread = threading.Thread(target=self._stream, name="minivid-stream", daemon=True)
            self._thread.start()

    def join(self, timeout: float | None = None):
        """Wait for a background stream to end."""
        if self._thread is not None:
            self._thread.join(timeout)

    def _stream(self):
        try:
            self.state.run(on_frame=self._draw, stop=self._stop)
            stopped = len(self.state.frames) < self.state.streamed_with["num_frames"]
            self.status.value = ("stopped: " if stopped else "done: ") + self.state.summary()
        except Exception as err:  # shown inside the widget: a thread's error would otherwise go nowhere visible
            self.failed = True
            self.status.value = "failed: the error is shown below"
            self.error.value = error_html(f"{type(err).__name__}: {err}", block=True)
            self.error.layout.display = None
        finally:
            self.state.stop()
            for control in (self.run, self.steps, self.seed, self.num_frames):
                control.disabled = False
            self.stop_button.disabled = True

    def _draw(self, state=None):
        """Show the newest frame, the readout and the bars (after every frame)."""
        show_png(self.image, self.state.frame_png(self.zoom))
        self.readout.value = self.state.readout()
        top = max(self.state.seconds)
        self.bar_label.value = f"<small>model time per frame, one bar each (tallest: {top * 1000:.0f} ms)</small>"
        show_png(self.bar_image, png_bytes(self.state.bars(), 1))
        self._show_results()

    def _preview_parts(self):
        n = len(self.state.frames)
        if n == 0:
            return []
        return [(self.state.readout(), self.image.value),
                (f"model time per frame, one bar each (tallest {max(self.state.seconds) * 1000:.0f} ms)", self.bar_image.value),
                (f"the newest {min(20, n)} frames, 10 to a row ({self.state.summary()})", png_bytes(self.state.strip(last=20), 1))]
