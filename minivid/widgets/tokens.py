"""Token rollout viewer: watch an autoregressive model fill in each frame's token grid.

    from minivid import pretrained, widgets
    widgets.TokenRollout(pretrained("autoregressive")).show()

Pick a test clip, temperature, top-k, seed and the decoding order (token by token, or parallel
Jacobi iterations), press *Sample*, then drag or play the step slider. You see the frames generated
so far (the current one decoded from the tokens drawn so far), the token grid with the step at which
each token was fixed (raster order, or the iteration at which it settled), and a heatmap of the
entropy of each token's distribution (or the probability of the chosen token).

The logic is the plain class `TokenRolloutState`, which the tests drive without a browser.
"""

from __future__ import annotations

import numpy as np
import torch

from minivid import data
from minivid.widgets.methods import check_settings
from minivid.widgets.view import LABEL, WidgetView, check_zoom, figure_png, frames_strip, image_slot, labelled, png_bytes, show_png


class TokenRolloutState:
    """Settings, cached rollouts, and what to draw at each decoding step. No widgets in here."""

    DECODINGS = ("sequential", "parallel")
    HEATMAPS = ("entropy", "prob")

    def __init__(self, model, num_clips: int = 8, context: int = data.STANDARD_CONTEXT, num_frames: int = 3):
        self.model = model.eval()
        self.clips = data.standard_test_set(num_clips)
        self.context, self.num_frames = context, num_frames
        self.settings = {"clip": 0, "temperature": 1.0, "top_k": 0, "seed": 0, "decoding": "sequential", "iterations": 4}
        self.cache: dict[tuple, dict] = {}
        self.position = 0
        self.runs = 0
        blank = model.tokenizer.encode(torch.zeros(1, 1, 1, 64, 64))
        self.background = int(blank.flatten().mode().values)  # the code of an empty patch: drawn where no token is yet

    def key(self) -> tuple:
        return tuple(self.settings[k] for k in ("clip", "temperature", "top_k", "seed", "decoding", "iterations"))

    def update(self, **settings):
        check_settings(self.settings, settings)
        if "decoding" in settings and settings["decoding"] not in self.DECODINGS:
            raise ValueError(f"unknown decoding {settings['decoding']!r}; expected one of {self.DECODINGS}")
        if "clip" in settings and not 0 <= settings["clip"] < len(self.clips):
            raise ValueError(f"clip must be in 0..{len(self.clips) - 1}, got {settings['clip']}")
        if "top_k" in settings and settings["top_k"] < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {settings['top_k']}")
        self.settings.update(settings)

    @property
    def rollout(self) -> dict | None:
        return self.cache.get(self.key())

    def sample(self, progress: bool = False) -> dict:
        """Run (or fetch from the cache) the rollout for the current settings."""
        if self.rollout is None:
            s = self.settings
            context = self.clips[s["clip"] : s["clip"] + 1, : self.context]
            video, trace = self.model.generate(
                context, self.num_frames, seed=s["seed"], progress=progress, return_trace=True,
                temperature=s["temperature"], top_k=s["top_k"] or None, decoding=s["decoding"], iterations=s["iterations"],
            )
            steps = [(f, i) for f, frame_steps in enumerate(trace["steps"]) for i in range(len(frame_steps))]
            self.cache[self.key()] = {"video": video[0], "trace": trace, "positions": steps}
            self.runs += 1
        self.position = min(self.position, len(self.rollout["positions"]) - 1)
        return self.rollout

    def num_positions(self) -> int:
        return 0 if self.rollout is None else len(self.rollout["positions"])

    def grid_at(self, position: int | None = None) -> tuple[int, torch.Tensor]:
        """(frame index, its token grid at that step; -1 where no token is drawn yet)."""
        r = self.sample()
        position = self.position if position is None else position
        if not 0 <= position < len(r["positions"]):
            raise ValueError(f"position must be in 0..{len(r['positions']) - 1}, got {position}")
        frame, step = r["positions"][position]
        return frame, r["trace"]["steps"][frame][step][0]

    def order(self, frame: int) -> torch.Tensor:
        """For each token of a generated frame, the decoding step at which it took its final value."""
        steps = torch.stack(self.sample()["trace"]["steps"][frame])[:, 0]  # (steps, gh, gw)
        final = steps[-1]
        settled = torch.ones_like(final, dtype=torch.bool)
        order = torch.zeros_like(final)
        for i in range(len(steps) - 1, -1, -1):  # walk back while the token already equals its final value
            settled &= steps[i] == final
            order[settled] = i
        return order

    def frames_at(self, position: int | None = None) -> torch.Tensor:
        """The generated frames as seen at this step, (num_frames, 1, 64, 64): later frames black."""
        frame, grid = self.grid_at(position)
        tokens = self.sample()["trace"]["tokens"][0].clone()  # (num_frames, gh, gw)
        tokens[frame] = torch.where(grid >= 0, grid, torch.full_like(grid, self.background))
        frames = self.model.tokenizer.decode(tokens[None])[0]
        frames[frame + 1 :] = 0
        return frames

    def strip(self, position: int | None = None) -> np.ndarray:
        """uint8 image: the last context frame, then the generated frames at this step, all at one scale."""
        last = self.clips[self.settings["clip"], self.context - 1 : self.context]
        return frames_strip(torch.cat([last, self.frames_at(position)]))

    def step_label(self, position: int | None = None) -> str:
        """Where this step is: which frame, which token (sequential) or iteration (parallel)."""
        frame, _ = self.grid_at(position)
        r = self.sample()
        step = r["positions"][self.position if position is None else position][1]
        unit = "token" if self.settings["decoding"] == "sequential" else "iteration"
        return f"frame {frame + 1}/{self.num_frames}, {unit} {step + 1}/{len(r['trace']['steps'][frame])}"

    def panels_png(self, position: int | None = None, heatmap: str = "entropy") -> bytes:
        """Token grid with decoding order, and a heatmap of entropy or chosen-token probability."""
        from matplotlib.figure import Figure

        if heatmap not in self.HEATMAPS:
            raise ValueError(f"unknown heatmap {heatmap!r}; expected one of {self.HEATMAPS}")
        frame, grid = self.grid_at(position)
        drawn = grid >= 0
        order = self.order(frame)
        values = self.sample()["trace"][heatmap][0, frame].float()
        fig = Figure(figsize=(7.2, 3.3), dpi=80)
        ax_order, ax_heat = fig.subplots(1, 2)
        shown = np.where(drawn.numpy(), order.numpy(), np.nan)
        ax_order.imshow(shown, cmap="viridis", vmin=0, vmax=max(1, int(order.max())))
        for (r, c), value in np.ndenumerate(grid.numpy()):
            if value >= 0:
                ax_order.text(c, r, str(value), ha="center", va="center", fontsize=7, color="white")
        ax_order.set_title(f"frame {frame + 1}: token ids (colour = step fixed)", fontsize=8)
        im = ax_heat.imshow(np.where(drawn.numpy(), values.numpy(), np.nan), cmap="magma",
                            vmin=0, vmax=float(values.max()) if heatmap == "entropy" else 1.0)
        ax_heat.set_title("entropy (nats)" if heatmap == "entropy" else "p(chosen token)", fontsize=8)
        fig.colorbar(im, ax=ax_heat, fraction=0.046)
        for ax in (ax_order, ax_heat):
            ax.set_xticks([])
            ax.set_yticks([])
        return figure_png(fig)


class TokenRollout(WidgetView):
    """The ipywidgets front end of `TokenRolloutState`. zoom: integer scale of the 64-pixel frames (1 = natural size)."""

    title = "TokenRollout"

    def __init__(self, model, num_clips: int = 8, num_frames: int = 3, zoom: int = 2):
        import ipywidgets as W

        self.zoom = check_zoom(zoom)
        self.state = TokenRolloutState(model, num_clips=num_clips, num_frames=num_frames)
        s = self.state.settings
        short = W.Layout(width="130px")
        self.clip = W.Dropdown(options=list(range(num_clips)), value=s["clip"], description="test clip", style=LABEL, layout=short)
        self.seed = W.IntText(value=s["seed"], description="seed", style=LABEL, layout=short)
        self.decoding = W.ToggleButtons(options=list(TokenRolloutState.DECODINGS), value=s["decoding"], style={"button_width": "90px"})
        self.iterations = W.IntSlider(value=s["iterations"], min=1, max=16, description="iterations", style=LABEL,
                                      disabled=s["decoding"] == "sequential")
        slider = W.Layout(width="270px")
        self.temperature = W.FloatSlider(value=s["temperature"], min=0.1, max=2.0, step=0.1, description="temperature", style=LABEL,
                                         layout=slider)
        self.top_k = W.IntSlider(value=s["top_k"], min=0, max=64, description="top-k (0 = off)", style=LABEL, layout=slider)
        self.heatmap = W.ToggleButtons(options=list(TokenRolloutState.HEATMAPS), value="entropy", style={"button_width": "80px"})
        self.run = W.Button(description="Sample", button_style="primary", icon="play")
        self.status = W.Label("press Sample to run the model")
        self.position = W.IntSlider(value=0, min=0, max=0, description="step", readout=False, style=LABEL,
                                    layout=W.Layout(width="360px"))
        self.play = W.Play(value=0, min=0, max=0, interval=60)
        W.jslink((self.play, "value"), (self.position, "value"))
        self.step_label = W.HTML()
        self.frames, self.panels = image_slot(), image_slot(pixels=False)
        for control in (self.clip, self.temperature, self.top_k, self.seed, self.decoding, self.iterations):
            control.observe(self._on_setting, names="value")
        self.heatmap.observe(self._on_position, names="value")
        self.run.on_click(self._on_run)
        self.position.observe(self._on_position, names="value")
        self._layout(
            controls=[W.HBox([self.clip, self.seed, labelled("order", self.decoding), self.iterations]),
                      W.HBox([self.temperature, self.top_k, labelled("heatmap", self.heatmap)]), W.HBox([self.run, self.status])],
            before=[],
            results=[W.HBox([self.play, self.position, self.step_label]),
                     W.HTML("<b>last context frame, then the generated frames</b> (the current one decoded from the tokens drawn so far)"),
                     self.frames, self.panels],
        )

    def _on_setting(self, change=None):
        self.iterations.disabled = self.decoding.value == "sequential"  # only parallel decoding iterates
        self.state.update(clip=self.clip.value, temperature=float(self.temperature.value), top_k=int(self.top_k.value),
                          seed=int(self.seed.value), decoding=self.decoding.value, iterations=int(self.iterations.value))
        if self.state.rollout is not None:
            self._refresh()
        else:
            self._mark_stale()

    def _on_run(self, button=None):
        if self._work("sampling...", lambda: self.state.sample(progress=True)):
            self._refresh()

    def _refresh(self):
        """Show the current rollout, opened at its last step: the finished frames (press play to watch it fill in)."""
        self.status.value = f"{self.state.num_positions()} decoding steps for {self.state.num_frames} frames (cached)"
        self._open_at(self.state.num_positions() - 1)

    def _on_position(self, change=None):
        if self.state.rollout is None:
            return
        self.state.position = self.position.value
        self.step_label.value = self.state.step_label()
        show_png(self.frames, png_bytes(self.state.strip(), self.zoom))
        show_png(self.panels, self.state.panels_png(heatmap=self.heatmap.value))

    def _preview_parts(self):
        if self.state.rollout is None:
            return []
        return [(f"{self.state.step_label()}: last context frame, then the generated frames", self.frames.value),
                ("", self.panels.value)]
