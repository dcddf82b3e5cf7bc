"""Error-accumulation viewer: roll several methods out far past their training length, side by side.

    from minivid import pretrained, widgets
    widgets.ErrorAccumulation({"diffusion": pretrained("diffusion"),
                               "autoregressive": pretrained("autoregressive")}).show()

Pick a test clip, the horizon, and the sampling knobs, press *Roll out*: every method predicts the
clip's future 10 frames at a time from its own last 10 frames (`minivid.rollouts`). Per-frame MSE
and the ink ratio (is the content still there?) are plotted against frame index, and the rollouts
play beside the truth. Each knob reaches only the methods whose `generate` takes it (steps:
diffusion and hybrid; temperature: autoregressive; context noise and schedule: hybrid), and each
method's rollout is cached under the settings it uses, so changing the temperature re-runs only the
autoregressive model.

The logic is the plain class `ErrorAccumulationState`, which the tests drive without a browser.
"""

from __future__ import annotations

import torch

from minivid import data, rollouts, viz
from minivid.widgets.methods import MethodsState, MethodsView
from minivid.widgets.view import LABEL, figure_png, image_slot, show_png


class ErrorAccumulationState(MethodsState):
    """Settings, cached rollouts, curves and figures. No widgets in here."""

    KNOBS = ("steps", "temperature", "context_noise", "schedule")  # passed to generate where it takes them
    FIXED = ("clip", "horizon", "seed")

    def __init__(self, models: dict, context: int = data.STANDARD_CONTEXT, max_horizon: int = 120):
        super().__init__(models, {"clip": 0, "horizon": 60, "seed": 0, "steps": 10, "temperature": 1.0,
                                  "context_noise": 0, "schedule": "pyramid"})
        self.context, self.max_horizon = context, max_horizon

    def check(self, settings: dict):
        if "horizon" in settings and not 1 <= settings["horizon"] <= self.max_horizon:
            raise ValueError(f"horizon must be in 1..{self.max_horizon}, got {settings['horizon']}")
        if "clip" in settings and settings["clip"] < 0:
            raise ValueError(f"clip must be >= 0, got {settings['clip']}")

    def truth(self) -> torch.Tensor:
        """(1, context + horizon, 1, 64, 64): the test clip, as long as the horizon needs."""
        return rollouts.true_clip(self.settings["clip"], self.context + self.settings["horizon"])

    def result(self, name: str, progress: bool = False) -> torch.Tensor:
        """This method's rollout for the current settings, (1, horizon, 1, 64, 64); cached."""
        key = self.key(name)
        if key not in self.cache:
            context = self.truth()[:, : self.context]
            self.cache[key] = rollouts.rollout(self.models[name], context, self.settings["horizon"],
                                               seed=self.settings["seed"], progress=progress, **self.kwargs(name))
            self.runs += 1
        return self.cache[key]

    def curves(self) -> dict[str, dict[str, torch.Tensor]]:
        """{measure: {method: (horizon,) values}} for the current settings."""
        future = self.truth()[:, self.context:]
        per_method = {name: rollouts.accumulation(video, future) for name, video in self.run().items()}
        return {m: {name: c[m] for name, c in per_method.items()} for m in ("mse", "ink_ratio")}

    def figure_png(self) -> bytes:
        from matplotlib.figure import Figure

        curves = self.curves()
        fig = Figure(figsize=(8.0, 2.8), dpi=80)
        ax_mse, ax_ink = fig.subplots(1, 2)
        viz.plot_per_frame(curves["mse"], "MSE per frame", ax=ax_mse)
        viz.plot_per_frame(curves["ink_ratio"], "ink ratio (generated / true)", ax=ax_ink)
        ax_ink.axhline(1.0, color="grey", linewidth=0.8)
        for ax in (ax_mse, ax_ink):
            ax.legend(fontsize=7)
        return figure_png(fig)

    def videos(self) -> dict[str, torch.Tensor]:
        """{title: (horizon, 1, 64, 64)}: the truth, then each method."""
        shown = {"truth": self.truth()[0, self.context:]}
        shown.update({name: video[0] for name, video in self.run().items()})
        return shown


class ErrorAccumulation(MethodsView):
    """The ipywidgets front end of `ErrorAccumulationState`. zoom: integer scale of the videos (1 = natural size)."""

    title = "ErrorAccumulation"
    verb = "rolling out"

    def __init__(self, models: dict, num_clips: int = 8, max_horizon: int = 120, zoom: int = 2):
        import ipywidgets as W

        self.state = ErrorAccumulationState(models, max_horizon=max_horizon)
        s = self.state.settings
        short = W.Layout(width="130px")
        self.clip = W.Dropdown(options=list(range(num_clips)), value=s["clip"], description="test clip", style=LABEL, layout=short)
        self.horizon = W.IntSlider(value=s["horizon"], min=10, max=max_horizon, step=10, description="horizon (frames)", style=LABEL)
        self.seed = W.IntText(value=s["seed"], description="seed", style=LABEL, layout=short)
        self.steps = W.IntSlider(value=s["steps"], min=1, max=50, description="steps", style=LABEL)
        self.temperature = W.FloatSlider(value=s["temperature"], min=0.1, max=2.0, step=0.1, description="temperature", style=LABEL)
        self.context_noise = W.IntSlider(value=s["context_noise"], min=0, max=300, step=25, description="context noise", style=LABEL)
        self.schedule = W.Dropdown(options=["pyramid", "synchronous", "autoregressive"], value=s["schedule"],
                                   description="schedule", style=LABEL, layout=W.Layout(width="220px"))
        self.run = W.Button(description="Roll out", button_style="primary", icon="play")
        self.status = W.Label("press Roll out (a 60-frame rollout takes tens of seconds per method on a CPU)")
        self.plot = image_slot(pixels=False)
        controls = (self.clip, self.horizon, self.seed, self.steps, self.temperature, self.context_noise, self.schedule)
        rows = self._wire(controls, [self.clip, self.horizon, self.seed], fps=8, zoom=zoom)
        self._layout(controls=rows, before=[], results=[self.plot, self.movies])

    def _refresh(self):
        self.status.value = f"{self.state.settings['horizon']} frames per method (cached)"
        show_png(self.plot, self.state.figure_png())
        self._play()
        self._show_results()

    def _preview_parts(self):
        if not self.state.done():
            return []
        return [("", self.plot.value), *self._video_parts(every=max(1, self.state.settings["horizon"] // 10))]
