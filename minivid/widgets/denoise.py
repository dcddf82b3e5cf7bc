"""Denoising explorer: scrub through a diffusion model's reverse process on a test clip.

    from minivid import pretrained, widgets
    widgets.DenoiseExplorer(pretrained("diffusion")).show()

Pick a test clip and a sampler (DDPM or DDIM, steps, guidance, seed) and press *Sample*; then drag
or play the step slider. For every generated frame you see the noisy x_t (top row) and the model's
current guess of the clean clip x0 (bottom row), with the noise schedule marking the step.

The logic is the plain class `DenoiseState` (the tests drive it without a browser); the widget only
wires controls to it. Trajectories are cached per setting, so moving the step slider never reruns
the model.
"""

from __future__ import annotations

import io

import numpy as np

from minivid import data, viz


def png_bytes(array: np.ndarray, scale: int = 2) -> bytes:
    """uint8 (h, w) or (h, w, 3) -> PNG bytes, upscaled with crisp pixels."""
    from PIL import Image

    image = Image.fromarray(array)
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def figure_png(fig) -> bytes:
    """A matplotlib Figure as PNG bytes (for an ipywidgets Image)."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


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

    def key(self) -> tuple:
        return tuple(self.settings[k] for k in ("clip", "sampler", "steps", "guidance", "seed"))

    def update(self, **settings):
        unknown = set(settings) - set(self.settings)
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; expected {sorted(self.settings)}")
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
                                           steps=s["steps"], sampler=s["sampler"], guidance=s["guidance"])
            final = {"t": -1, "x_t": trace[-1]["x0"], "x0": trace[-1]["x0"]}  # after the last step: the sample
            self.cache[self.key()] = [*trace, final]
            self.runs += 1
        self.step = min(self.step, len(self.trace) - 1)
        return self.trace

    def num_positions(self) -> int:
        return 0 if self.trace is None else len(self.trace)

    def strip(self, step: int | None = None) -> np.ndarray:
        """uint8 image: top row x_t of every generated frame, bottom row predicted x0, at `step`."""
        trace = self.sample()
        step = self.step if step is None else step
        if not 0 <= step < len(trace):
            raise ValueError(f"step must be in 0..{len(trace) - 1}, got {step}")
        entry = trace[step]
        rows = [viz.tile(entry[k][0].clamp(0, 1)[:, None], gap=2)[0] for k in ("x_t", "x0")]  # each (h, frames*w, c)
        gap = np.full((4, rows[0].shape[1], rows[0].shape[2]), 128, dtype=np.uint8)
        image = np.concatenate([rows[0], gap, rows[1]], axis=0)
        return image[..., 0] if image.shape[-1] == 1 else image

    def timestep(self, step: int | None = None) -> int:
        return self.sample()[self.step if step is None else step]["t"]

    def schedule_png(self, step: int | None = None) -> bytes:
        """The model's alpha_bar(t) and the sampler's steps, the current one marked."""
        from matplotlib.figure import Figure  # drawn off-screen; pyplot and the notebook's backend are untouched

        alpha_bar = self.model.alpha_bar.detach().cpu().numpy()
        visited = [e["t"] for e in self.sample()[:-1]]
        t = self.timestep(step)
        fig = Figure(figsize=(3.2, 2.0), dpi=80)
        ax = fig.subplots()
        ax.plot(alpha_bar, color="0.3", lw=1, label="alpha_bar(t)")
        ax.plot(visited, alpha_bar[visited], "o", ms=2.5, color="tab:blue", label="sampler steps")
        if t >= 0:
            ax.axvline(t, color="tab:red", lw=1)
            ax.plot([t], [alpha_bar[t]], "o", color="tab:red", ms=5)
        ax.set_xlabel("t", fontsize=8)
        ax.set_title(f"step {self.step + 1 if step is None else step + 1}/{len(visited) + 1}: t = {t}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper right")
        return figure_png(fig)


class DenoiseExplorer:
    """The ipywidgets front end of `DenoiseState`."""

    def __init__(self, model, num_clips: int = 8):
        import ipywidgets as W

        self.state = DenoiseState(model, num_clips=num_clips)
        s = self.state.settings
        self.clip = W.Dropdown(options=list(range(num_clips)), value=s["clip"], description="test clip")
        self.sampler = W.ToggleButtons(options=list(DenoiseState.SAMPLERS), value=s["sampler"], description="sampler")
        self.steps = W.IntSlider(value=s["steps"], min=1, max=100, description="steps")
        self.guidance = W.FloatSlider(value=s["guidance"], min=0.0, max=3.0, step=0.25, description="guidance")
        self.seed = W.IntText(value=s["seed"], description="seed")
        self.run = W.Button(description="Sample", button_style="primary", icon="play")
        self.status = W.Label("press Sample to run the model")
        self.position = W.IntSlider(value=0, min=0, max=0, description="step")
        self.play = W.Play(value=0, min=0, max=0, interval=250)
        W.jslink((self.play, "value"), (self.position, "value"))
        self.context_image = W.Image(format="png")
        self.image = W.Image(format="png")
        self.schedule = W.Image(format="png")
        for control in (self.clip, self.sampler, self.steps, self.guidance, self.seed):
            control.observe(self._on_setting, names="value")
        self.run.on_click(self._on_run)
        self.position.observe(self._on_position, names="value")
        self._show_context()
        self.widget = W.VBox([
            W.HBox([self.clip, self.sampler]),
            W.HBox([self.steps, self.guidance, self.seed]),
            W.HBox([self.run, self.status]),
            W.HTML("<b>context</b> (given frames)"), self.context_image,
            W.HBox([self.play, self.position]),
            W.HBox([W.VBox([W.HTML("<b>top</b>: noisy x<sub>t</sub> &nbsp; <b>bottom</b>: predicted x<sub>0</sub>"), self.image]),
                    self.schedule]),
        ])

    def _show_context(self):
        s = self.state
        clip = s.clips[s.settings["clip"], : s.context]
        self.context_image.value = png_bytes(viz.tile(clip[:, None], gap=2)[0, ..., 0], scale=1)

    def _on_setting(self, change=None):
        self.state.update(clip=self.clip.value, sampler=self.sampler.value, steps=self.steps.value,
                          guidance=float(self.guidance.value), seed=int(self.seed.value))
        self._show_context()
        if self.state.trace is not None:  # cached: show at once
            self._refresh(reset=True)
        else:
            self.status.value = "settings changed: press Sample"

    def _on_run(self, button=None):
        self.status.value = "sampling..."
        self.state.sample()
        self.status.value = f"{self.state.settings['steps']} {self.state.settings['sampler'].upper()} steps (cached)"
        self._refresh(reset=True)

    def _refresh(self, reset: bool = False):
        n = self.state.num_positions()
        if reset:
            self.position.max = self.play.max = n - 1
            self.position.value = 0
        self._on_position()

    def _on_position(self, change=None):
        if self.state.trace is None:
            return
        self.state.step = self.position.value
        self.image.value = png_bytes(self.state.strip(), scale=1)
        self.schedule.value = self.state.schedule_png()

    def show(self):
        from IPython.display import display

        display(self.widget)
        return self

    def _ipython_display_(self):
        self.show()
