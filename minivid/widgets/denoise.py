"""Denoising explorer: scrub through a diffusion model's reverse process on a test clip.

    from minivid import pretrained, widgets
    widgets.DenoiseExplorer(pretrained("diffusion")).show()

Pick a test clip and a sampler (DDPM or DDIM, steps, guidance, seed) and press *Sample*; then drag
or play the step slider. For every generated frame you see the noisy x_t (top row) and the model's
current guess of the clean clip x0 (bottom row), with the noise schedule marking the step. It always
samples from pure noise (start=1), the whole reverse process, where `generate` on a model with a predictor
starts by default from the predictor's guess part-way down (see `video_diffusion.START_FROM_GUESS`).

The logic is the plain class `DenoiseState` (the tests drive it without a browser); the widget only
wires controls to it. Trajectories are cached per setting, so moving the step slider never reruns
the model.
"""

from __future__ import annotations

import inspect

import numpy as np

from minivid import data
from minivid.widgets.methods import check_settings
from minivid.widgets.view import LABEL, WidgetView, check_zoom, figure_png, frames_strip, image_slot, labelled, png_bytes, show_png


class DenoiseState:
    """Settings, the cached trajectories, and what to show at each step. No widgets in here."""

    SAMPLERS = ("ddim", "ddpm")

    def __init__(self, model, num_clips: int = 8, context: int = data.STANDARD_CONTEXT, num_frames: int = data.STANDARD_FUTURE):
        self.model = model.eval()
        self.clips = data.standard_test_set(num_clips)
        self.context, self.num_frames = context, num_frames
        self.settings = {"clip": 0, "sampler": "ddim", "steps": 10, "guidance": 0.0, "seed": 0}
        self.cache: dict[tuple, list] = {}
        self.step = 0
        self.runs = 0  # how many times the model was actually sampled (the tests check the cache)
        takes_start = "start" in inspect.signature(model.generate).parameters
        self.from_noise = {"start": 1.0} if takes_start else {}  # the whole chain from noise, not from a guess

    def key(self) -> tuple:
        return tuple(self.settings[k] for k in ("clip", "sampler", "steps", "guidance", "seed"))

    def update(self, **settings):
        check_settings(self.settings, settings)
        if "sampler" in settings and settings["sampler"] not in self.SAMPLERS:
            raise ValueError(f"unknown sampler {settings['sampler']!r}; expected one of {self.SAMPLERS}")
        if "clip" in settings and not 0 <= settings["clip"] < len(self.clips):
            raise ValueError(f"clip must be in 0..{len(self.clips) - 1}, got {settings['clip']}")
        self.settings.update(settings)

    @property
    def trace(self) -> list | None:
        return self.cache.get(self.key())

    def sample(self, progress: bool = False) -> list:
        """Run (or fetch from the cache) the trajectory for the current settings; returns it."""
        if self.trace is None:
            s = self.settings
            context = self.clips[s["clip"] : s["clip"] + 1, : self.context]
            _, trace = self.model.generate(context, self.num_frames, seed=s["seed"], progress=progress, return_trace=True,
                                           steps=s["steps"], sampler=s["sampler"], guidance=s["guidance"], **self.from_noise)
            final = {"t": None, "x_t": trace[-1]["x0"], "x0": trace[-1]["x0"]}  # after the last step: the clean sample
            self.cache[self.key()] = [*trace, final]
            self.runs += 1
        self.step = min(self.step, len(self.trace) - 1)
        return self.trace

    def num_positions(self) -> int:
        return 0 if self.trace is None else len(self.trace)

    def _entry(self, step: int | None) -> dict:
        trace = self.sample()
        step = self.step if step is None else step
        if not 0 <= step < len(trace):
            raise ValueError(f"step must be in 0..{len(trace) - 1}, got {step}")
        return trace[step]

    def strip(self, step: int | None = None) -> np.ndarray:
        """uint8 image: top row x_t of every generated frame, bottom row predicted x0, at `step`."""
        entry = self._entry(step)
        rows = [frames_strip(entry[k][0].clamp(0, 1)) for k in ("x_t", "x0")]  # each (h, frames * w + gaps)
        gap = np.full((4, *rows[0].shape[1:]), 128, dtype=np.uint8)
        return np.concatenate([rows[0], gap, rows[1]], axis=0)

    def context_strip(self) -> np.ndarray:
        """uint8 image: the given frames of the current test clip, side by side (same scale as `strip`)."""
        return frames_strip(self.clips[self.settings["clip"], : self.context])

    def timestep(self, step: int | None = None) -> int | None:
        """The noise level t of x_t at this step; None after the last step (the clean sample)."""
        return self._entry(step)["t"]

    def step_label(self, step: int | None = None) -> str:
        step = self.step if step is None else step
        t = self.timestep(step)
        return f"step {step + 1}/{len(self.sample())}: " + ("clean sample" if t is None else f"t = {t}")

    def schedule_png(self, step: int | None = None) -> bytes:
        """The model's alpha_bar(t) and the sampler's steps, the current one marked."""
        from matplotlib.figure import Figure  # drawn off-screen; pyplot and the notebook's backend are untouched

        alpha_bar = self.model.alpha_bar.detach().cpu().numpy()
        visited = [e["t"] for e in self.sample()[:-1]]
        t = self.timestep(step)
        fig = Figure(figsize=(3.0, 1.9), dpi=80)
        ax = fig.subplots()
        ax.plot(alpha_bar, color="0.3", lw=1, label="alpha_bar(t)")
        ax.plot(visited, alpha_bar[visited], "o", ms=2.5, color="tab:blue", label="sampler steps")
        if t is not None:
            ax.axvline(t, color="tab:red", lw=1)
            ax.plot([t], [alpha_bar[t]], "o", color="tab:red", ms=5)
        ax.set_xlabel("t", fontsize=8)
        ax.set_title(self.step_label(step), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper right")
        return figure_png(fig)




class DenoiseExplorer(WidgetView):
    """The ipywidgets front end of `DenoiseState`. zoom: integer scale of the 64-pixel frames (1 = natural size)."""

    title = "DenoiseExplorer"

    def __init__(self, model, num_clips: int = 8, zoom: int = 1):
        import ipywidgets as W

        self.zoom = check_zoom(zoom)
        self.state = DenoiseState(model, num_clips=num_clips)
        s = self.state.settings
        self.clip = W.Dropdown(options=list(range(num_clips)), value=s["clip"], description="test clip", style=LABEL,
                               layout=W.Layout(width="130px"))
        self.sampler = W.ToggleButtons(options=list(DenoiseState.SAMPLERS), value=s["sampler"], style={"button_width": "60px"})
        self.seed = W.IntText(value=s["seed"], description="seed", style=LABEL, layout=W.Layout(width="120px"))
        self.steps = W.IntSlider(value=s["steps"], min=1, max=100, description="steps", style=LABEL)
        self.guidance = W.FloatSlider(value=s["guidance"], min=0.0, max=3.0, step=0.25, description="guidance", style=LABEL)
        self.run = W.Button(description="Sample", button_style="primary", icon="play")
        self.status = W.Label("press Sample to run the model")
        self.position = W.IntSlider(value=0, min=0, max=0, description="step", readout=False, style=LABEL,
                                    layout=W.Layout(width="320px"))
        self.play = W.Play(value=0, min=0, max=0, interval=300)
        W.jslink((self.play, "value"), (self.position, "value"))
        self.step_label = W.HTML()
        self.context_image, self.image, self.schedule = image_slot(), image_slot(), image_slot(pixels=False)
        for control in (self.clip, self.sampler, self.steps, self.guidance, self.seed):
            control.observe(self._on_setting, names="value")
        self.run.on_click(self._on_run)
        self.position.observe(self._on_position, names="value")
        self._layout(
            controls=[W.HBox([self.clip, labelled("sampler", self.sampler), self.seed]), W.HBox([self.steps, self.guidance]),
                      W.HBox([self.run, self.status])],
            before=[W.HTML("<b>context</b>: the given frames"), self.context_image],
            results=[W.HBox([self.play, self.position, self.step_label]),
                     W.HBox([W.VBox([W.HTML("<b>top</b>: noisy x<sub>t</sub> of each generated frame, "
                                            "<b>bottom</b>: the model's guess of the clean x<sub>0</sub>"), self.image]),
                             self.schedule], layout=W.Layout(flex_flow="row wrap", align_items="flex-end"))],
        )
        self._show_context()

    def _show_context(self):
        show_png(self.context_image, png_bytes(self.state.context_strip(), self.zoom))

    def _on_setting(self, change=None):
        self.state.update(clip=self.clip.value, sampler=self.sampler.value, steps=self.steps.value,
                          guidance=float(self.guidance.value), seed=int(self.seed.value))
        self._show_context()
        if self.state.trace is not None:  # cached: show at once
            self._refresh()
        else:
            self._mark_stale()

    def _on_run(self, button=None):
        if self._work("sampling...", lambda: self.state.sample(progress=True)):
            self._refresh()

    def _refresh(self):
        """Show the current trajectory, opened at its end: the clean sample."""
        s = self.state.settings
        self.status.value = f"{s['steps']} {s['sampler'].upper()} steps (cached): drag the step slider or press play"
        self._open_at(self.state.num_positions() - 1)

    def _on_position(self, change=None):
        if self.state.trace is None:
            return
        self.state.step = self.position.value
        self.step_label.value = self.state.step_label()
        show_png(self.image, png_bytes(self.state.strip(), self.zoom))
        show_png(self.schedule, self.state.schedule_png())

    def _preview_parts(self):
        parts = [("context: the given frames", self.context_image.value)]
        if self.state.trace is not None:
            parts += [(f"{self.state.step_label()}   top: noisy x_t, bottom: predicted x0", self.image.value),
                      ("", self.schedule.value)]
        return parts
