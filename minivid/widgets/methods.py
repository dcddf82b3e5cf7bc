"""What the two many-method widgets (Compare, ErrorAccumulation) share.

Several methods, each anything with `generate(context, num_frames, seed=...)` (or such a function);
sampling knobs that reach only the methods whose `generate` takes them; results cached per method under
exactly the settings that method uses, so moving a knob re-runs only the methods it reaches.
"""

from __future__ import annotations

import inspect

import torch

from minivid.widgets.view import WidgetView, check_zoom, frames_strip, png_bytes


class MethodsState:
    """Models, settings, a per-method cache. Subclasses set KNOBS (generate keywords) and FIXED (settings every method uses)."""

    KNOBS: tuple[str, ...] = ()
    FIXED: tuple[str, ...] = ("clip", "seed")

    def __init__(self, models: dict, settings: dict):
        if not isinstance(models, dict) or not models:
            raise ValueError("models must be a non-empty dict {name: model with generate(context, num_frames)} "
                             "(a function such as metrics.copy_last_frame works too)")
        self.models = {name: m.eval() if isinstance(m, torch.nn.Module) else m for name, m in models.items()}
        self.settings = settings
        self.cache: dict[tuple, object] = {}
        self.runs = 0

    def accepted(self, name: str) -> list[str]:
        """The sampling settings this method's generate takes."""
        model = self.models[name]
        params = inspect.signature(getattr(model, "generate", model)).parameters
        return [k for k in self.KNOBS if k in params]

    def key(self, name: str) -> tuple:
        s = self.settings
        return (name, *(s[k] for k in self.FIXED), *((k, s[k]) for k in self.accepted(name)))

    def done(self) -> bool:
        return all(self.key(name) in self.cache for name in self.models)

    def kwargs(self, name: str) -> dict:
        return {k: self.settings[k] for k in self.accepted(name)}

    def update(self, **settings):
        check_settings(self.settings, settings)
        self.check(settings)
        self.settings.update(settings)

    def check(self, settings: dict):
        """Subclasses: raise ValueError for settings of their own that are out of range."""

    def result(self, name: str, progress: bool = False):
        """Subclasses: one method's result for the current settings, from the cache or computed (and cached)."""
        raise NotImplementedError

    def run(self, progress: bool = False) -> dict:
        """{method: result} for the current settings, each from the cache or computed."""
        return {name: self.result(name, progress) for name in self.models}


# sampling knobs several widgets share: (test passed by a valid value, what is expected)
KNOB_RANGES = {"steps": (lambda v: v >= 1, ">= 1"), "temperature": (lambda v: v > 0, "> 0"),
               "context_noise": (lambda v: v >= 0, ">= 0")}


def check_settings(current: dict, settings: dict) -> None:
    """One clear error for a setting name not in `current`, or a shared knob out of range."""
    unknown = set(settings) - set(current)
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}; expected {sorted(current)}")
    for name, (valid, expected) in KNOB_RANGES.items():
        if name in settings and not valid(settings[name]):
            raise ValueError(f"{name} must be {expected}, got {settings[name]}")


class MethodsView(WidgetView):
    """The shared front-end parts: observe the controls, lay out the knobs some method takes, run method by
    method with the progress inside the widget, play the videos at an integer zoom."""

    def _wire(self, controls, top, fps: float, zoom: int):
        import ipywidgets as W

        for control in controls:
            control.observe(self._on_setting, names="value")
        self.run.on_click(self._on_run)
        used = {k for name in self.state.models for k in self.state.accepted(name)}
        knobs = [getattr(self, k) for k in self.state.KNOBS if k in used]  # show only the knobs some method takes
        self.fps, self.zoom = fps, check_zoom(zoom)
        self.movies = W.Output()
        self.movies.add_class("minivid-pixels")
        return [W.HBox(top), W.HBox(knobs, layout=W.Layout(flex_flow="row wrap")), W.HBox([self.run, self.status])]

    def _on_setting(self, change=None):
        # every setting has a control of the same name; cast its value to the setting's type
        self.state.update(**{k: type(v)(getattr(self, k).value) for k, v in self.state.settings.items()})
        if self.state.done():
            self._refresh()
        else:
            self._mark_stale()

    def _on_run(self, button=None):
        names = list(self.state.models)

        def each_method():
            for i, name in enumerate(names):
                self.status.value = f"{self.verb} {name} ({i + 1} of {len(names)})..."
                self.state.result(name, progress=True)

        if self._work(f"{self.verb}...", each_method):
            self._refresh()

    def _play(self):
        from minivid import viz

        self.movies.clear_output(wait=True)
        with self.movies:
            viz.show_videos(self.state.videos(), width=64 * self.zoom, fps=self.fps, codec="gif")

    def _video_parts(self, every: int = 1) -> list[tuple[str, bytes]]:
        """Still strips of the videos for `preview()`: every n-th frame of each, at natural size (ten fit a page)."""
        return [(title if every == 1 else f"{title}: frames 1, {1 + every}, {1 + 2 * every}, ...", png_bytes(frames_strip(video, every)))
                for title, video in self.state.videos().items()]
