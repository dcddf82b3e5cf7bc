"""Token rollout viewer: watch an autoregressive model fill in each frame's token grid.

    from minivid import pretrained, widgets
    widgets.TokenRollout(pretrained("autoregressive")).show()

Pick a test clip, temperature, top-k, seed and the decoding order (token by token, parallel Jacobi
iterations, or diagonal decoding with its lag), press *Sample*, then drag or play the step slider. You
see the frames generated so far (those being drawn decoded from the tokens drawn so far), the token
grid of every frame being drawn with the step at which each token was fixed and the tokens of this
step outlined in red, a heatmap of the entropy of each token's distribution (or the probability of the
chosen token), and how many network passes the clip took.

In diagonal mode frame t + 1 starts `lag` steps after frame t, so for lag < 64 the viewer shows two
(or more) grids filling at once: the first rows of frame t + 1 are drawn in the same passes as the
later rows of frame t. Rows stay in raster order (row_lag = the grid's width); lag 64 is token by token.

The logic is the plain class `TokenRolloutState`, which the tests drive without a browser.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from minivid import data
from minivid.autoregressive import steps_per_frame
from minivid.widgets.methods import check_settings
from minivid.widgets.view import LABEL, WidgetView, check_zoom, figure_png, frames_strip, image_slot, labelled, png_bytes, show_png


class TokenRolloutState:
    """Settings, cached rollouts, and what to draw at each decoding step. No widgets in here.

    A step is one position of the step slider: a token (sequential), a Jacobi iteration (parallel) or one
    network pass of diagonal decoding, which draws a token in every frame in flight. `active(step)` lists
    the frames drawing at that step: always one frame, except in diagonal mode, where frames overlap.
    """

    DECODINGS = ("sequential", "parallel", "diagonal")
    LAGS = (8, 16, 32, 64)  # the widget's choices for diagonal decoding (64: frames one after another)
    HEATMAPS = ("entropy", "prob")
    UNITS = {"sequential": "token", "parallel": "iteration", "diagonal": "token"}

    def __init__(self, model, num_clips: int = 8, context: int = data.STANDARD_CONTEXT, num_frames: int = 3):
        self.model = model.eval()
        self.clips = data.standard_test_set(num_clips)
        self.context, self.num_frames = context, num_frames
        self.settings = {"clip": 0, "temperature": 1.0, "top_k": 0, "seed": 0, "decoding": "sequential", "iterations": 4,
                         "lag": 32}
        self.cache: dict[tuple, dict] = {}
        self.position = 0
        self.runs = 0
        self.row_lag = model.tokenizer.grid  # diagonal decoding keeps rows in raster order
        blank = model.tokenizer.encode(torch.zeros(1, 1, 1, 64, 64))
        self.background = int(blank.flatten().mode().values)  # the code of an empty patch: drawn where no token is yet

    def key(self) -> tuple:
        """The settings a rollout depends on: iterations only for parallel decoding, the lag only for diagonal."""
        s = self.settings
        own = {"parallel": ("iterations",), "diagonal": ("lag",)}.get(s["decoding"], ())
        return tuple(s[k] for k in ("clip", "temperature", "top_k", "seed", "decoding")) + tuple((k, s[k]) for k in own)

    def update(self, **settings):
        check_settings(self.settings, settings)
        if "decoding" in settings and settings["decoding"] not in self.DECODINGS:
            raise ValueError(f"unknown decoding {settings['decoding']!r}; expected one of {self.DECODINGS}")
        if "clip" in settings and not 0 <= settings["clip"] < len(self.clips):
            raise ValueError(f"clip must be in 0..{len(self.clips) - 1}, got {settings['clip']}")
        if "top_k" in settings and settings["top_k"] < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {settings['top_k']}")
        if "lag" in settings:
            lag, span = settings["lag"], steps_per_frame(self.model.tokenizer.grid, self.row_lag)
            if not isinstance(lag, numbers.Integral) or isinstance(lag, bool) or not 1 <= lag <= span:
                raise ValueError(f"lag must be an integer from 1 to {span} (frames one after another), got {lag!r}")
        self.settings.update(settings)

    def decoder_kwargs(self) -> dict:
        """The generate keywords of the chosen decoder."""
        s = self.settings
        if s["decoding"] == "parallel":
            return {"decoding": "parallel", "iterations": s["iterations"]}
        if s["decoding"] == "diagonal":
            return {"decoding": "diagonal", "lag": s["lag"], "row_lag": self.row_lag}
        return {"decoding": "sequential"}

    @property
    def rollout(self) -> dict | None:
        return self.cache.get(self.key())

    def sample(self, progress: bool = False) -> dict:
        """Run (or fetch from the cache) the rollout for the current settings."""
        if self.rollout is None:
            from minivid.bench import counting_calls

            s = self.settings
            context = self.clips[s["clip"] : s["clip"] + 1, : self.context]
            kwargs = self.decoder_kwargs()
            with counting_calls(self.model) as calls:
                video, trace = self.model.generate(context, self.num_frames, seed=s["seed"], progress=progress, return_trace=True,
                                                   temperature=s["temperature"], top_k=s["top_k"] or None, **kwargs)
            lengths = [len(frame_steps) for frame_steps in trace["steps"]]
            if kwargs["decoding"] == "diagonal":  # frame f draws at steps f * lag ... f * lag + its steps - 1
                offsets = [f * kwargs["lag"] for f in range(self.num_frames)]
            else:  # one frame after another
                offsets = [sum(lengths[:f]) for f in range(self.num_frames)]
            positions = [{} for _ in range(max(o + n for o, n in zip(offsets, lengths)))]  # per step: {frame: its step}
            for f, (offset, n) in enumerate(zip(offsets, lengths)):
                for i in range(n):
                    positions[offset + i][f] = i
            assert all(positions), "every decoding step draws some frame"
            self.cache[self.key()] = {"video": video[0], "trace": trace, "positions": positions, "offsets": offsets,
                                      "passes": len(calls)}
            self.runs += 1
        self.position = min(self.position, len(self.rollout["positions"]) - 1)
        return self.rollout

    def num_positions(self) -> int:
        return 0 if self.rollout is None else len(self.rollout["positions"])

    def _position(self, position: int | None) -> int:
        r = self.sample()
        position = self.position if position is None else position
        if not 0 <= position < len(r["positions"]):
            raise ValueError(f"position must be in 0..{len(r['positions']) - 1}, got {position}")
        return position

    def active(self, position: int | None = None) -> list[int]:
        """The frames drawing tokens at this step (more than one only in diagonal mode with lag < 64)."""
        return sorted(self.sample()["positions"][self._position(position)])

    def grid_at(self, position: int | None = None, frame: int | None = None) -> tuple[int, torch.Tensor]:
        """(frame, its token grid at that step; -1 where no token is drawn yet). frame: the newest one drawing if None."""
        position = self._position(position)
        r = self.sample()
        drawing = r["positions"][position]
        frame = max(drawing) if frame is None else frame
        if not 0 <= frame < self.num_frames:
            raise ValueError(f"frame must be in 0..{self.num_frames - 1}, got {frame}")
        steps = r["trace"]["steps"][frame]
        if frame in drawing:
            return frame, steps[drawing[frame]][0]
        if frame < min(drawing):  # frames finish in order: an earlier frame is done
            return frame, steps[-1][0]
        return frame, torch.full_like(steps[-1][0], -1)  # not started yet

    def new_at(self, position: int | None = None, frame: int | None = None) -> torch.Tensor:
        """Which tokens of the frame this step drew or changed: bool (gh, gw); all False if it is not drawing."""
        position = self._position(position)
        frame, grid = self.grid_at(position, frame)
        step = self.sample()["positions"][position].get(frame)
        if step is None:
            return torch.zeros_like(grid, dtype=torch.bool)
        before = self.sample()["trace"]["steps"][frame][step - 1][0] if step else torch.full_like(grid, -1)
        return grid != before

    def order(self, frame: int) -> torch.Tensor:
        """For each token of a generated frame, the decoding step (counted within the frame) at which it took its final value."""
        steps = torch.stack(self.sample()["trace"]["steps"][frame])[:, 0]  # (steps, gh, gw)
        final = steps[-1]
        settled = torch.ones_like(final, dtype=torch.bool)
        order = torch.zeros_like(final)
        for i in range(len(steps) - 1, -1, -1):  # walk back while the token already equals its final value
            settled &= steps[i] == final
            order[settled] = i
        return order

    def fixed_at(self, frame: int) -> torch.Tensor:
        """For each token of a generated frame, the step of the slider at which it took its final value."""
        return self.order(frame) + self.sample()["offsets"][frame]

    def shown_frames(self, position: int | None = None) -> list[int]:
        """The frames whose grids the panels show: those drawing now, padded to the most ever drawn at once."""
        positions = self.sample()["positions"]
        width = max(len(p) for p in positions)
        first = min(self.active(position))
        first = max(0, min(first, self.num_frames - width))
        return list(range(first, first + width))

    def frames_at(self, position: int | None = None) -> torch.Tensor:
        """The generated frames as seen at this step, (num_frames, 1, 64, 64): frames not started black."""
        position = self._position(position)
        drawing = self.active(position)
        tokens = self.sample()["trace"]["tokens"][0].clone()  # (num_frames, gh, gw)
        for frame in drawing:
            _, grid = self.grid_at(position, frame)
            tokens[frame] = torch.where(grid >= 0, grid, torch.full_like(grid, self.background))
        frames = self.model.tokenizer.decode(tokens[None])[0]
        frames[max(drawing) + 1 :] = 0
        return frames

    def strip(self, position: int | None = None) -> np.ndarray:
        """uint8 image: the last context frame, then the generated frames at this step, all at one scale."""
        last = self.clips[self.settings["clip"], self.context - 1 : self.context]
        return frames_strip(torch.cat([last, self.frames_at(position)]))

    def step_label(self, position: int | None = None) -> str:
        """Where this step is: which frame(s), which token (sequential, diagonal) or iteration (parallel)."""
        position = self._position(position)
        r = self.sample()
        unit = self.UNITS[self.settings["decoding"]]
        parts = [f"frame {f + 1}/{self.num_frames}, {unit} {i + 1}/{len(r['trace']['steps'][f])}"
                 for f, i in sorted(r["positions"][position].items())]
        if self.settings["decoding"] != "diagonal":
            return parts[0]
        return f"step {position + 1}/{len(r['positions'])}: " + " and ".join(parts)

    def passes_label(self) -> str:
        """Network passes this clip took (counted), next to what token-by-token decoding takes."""
        r = self.sample()
        s = self.settings
        made = f"{r['passes']} network passes for this clip of {self.num_frames} frame{'s' * (self.num_frames > 1)}"
        if s["decoding"] == "sequential":
            return f"{made} (token by token: one to read the context, then one per token)"
        sequential = self.model.network_evaluations(self.context, self.num_frames)
        parallel = f"parallel, at most {s['iterations']} iterations a frame"
        name = parallel if s["decoding"] == "parallel" else f"diagonal, lag {s['lag']}"
        return f"{made} ({name}): {r['passes'] / sequential:.0%} of token by token's {sequential}"

    def panels_png(self, position: int | None = None, heatmap: str = "entropy") -> bytes:
        """Per frame shown: token grid (colour = step fixed, red = drawn at this step), and a heatmap of entropy or
        chosen-token probability. One frame side by side with its heatmap; several: grids above, heatmaps below."""
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle

        if heatmap not in self.HEATMAPS:
            raise ValueError(f"unknown heatmap {heatmap!r}; expected one of {self.HEATMAPS}")
        position = self._position(position)
        frames = self.shown_frames(position)
        drawing = self.active(position)
        r = self.sample()
        grids = {f: self.grid_at(position, f)[1] for f in frames}
        fixed = {f: self.fixed_at(f) for f in frames}
        values = {f: r["trace"][heatmap][0, f].float() for f in frames}
        vmin = r["offsets"][frames[0]]
        vmax = max(vmin + 1, max(int(fixed[f].max()) for f in frames))
        top = max(float(values[f].max()) for f in frames) if heatmap == "entropy" else 1.0
        if len(frames) == 1:
            fig = Figure(figsize=(7.2, 3.3), dpi=80)
            axes = [tuple(fig.subplots(1, 2))]
        else:
            fig = Figure(figsize=(3.6 * len(frames), 6.4), dpi=80)
            grid_axes, heat_axes = fig.subplots(2, len(frames))
            axes = list(zip(grid_axes, heat_axes))
        for f, (ax_order, ax_heat) in zip(frames, axes):
            grid = grids[f]
            drawn = grid >= 0
            ax_order.imshow(np.where(drawn.numpy(), fixed[f].numpy(), np.nan), cmap="viridis", vmin=vmin, vmax=vmax)
            for (row, col), value in np.ndenumerate(grid.numpy()):
                if value >= 0:
                    ax_order.text(col, row, str(value), ha="center", va="center", fontsize=7, color="white")
            for row, col in self.new_at(position, f).nonzero().tolist():  # this step's tokens
                ax_order.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
            status = "drawing" if f in drawing else "done" if f < min(drawing) else "not started"
            ax_order.set_title(f"frame {f + 1} ({status}): token ids\n(colour = step fixed, red = this step)", fontsize=8)
            im = ax_heat.imshow(np.where(drawn.numpy(), values[f].numpy(), np.nan), cmap="magma", vmin=0, vmax=top)
            ax_heat.set_title(f"frame {f + 1}: " + ("entropy (nats)" if heatmap == "entropy" else "p(chosen token)"), fontsize=8)
            for ax in (ax_order, ax_heat):
                ax.set_xticks([])
                ax.set_yticks([])
        fig.colorbar(im, ax=axes[-1][1], fraction=0.046)
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
                                      disabled=s["decoding"] != "parallel")
        self.lag = W.Dropdown(options=list(TokenRolloutState.LAGS), value=s["lag"], description="lag", style=LABEL,
                              layout=W.Layout(width="110px"), disabled=s["decoding"] != "diagonal")
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
        self.passes = W.HTML()
        self.frames, self.panels = image_slot(), image_slot(pixels=False)
        for control in (self.clip, self.temperature, self.top_k, self.seed, self.decoding, self.iterations, self.lag):
            control.observe(self._on_setting, names="value")
        self.heatmap.observe(self._on_position, names="value")
        self.run.on_click(self._on_run)
        self.position.observe(self._on_position, names="value")
        self._layout(
            controls=[W.HBox([self.clip, self.seed, labelled("order", self.decoding), self.iterations, self.lag]),
                      W.HBox([self.temperature, self.top_k, labelled("heatmap", self.heatmap)]), W.HBox([self.run, self.status])],
            before=[],
            results=[self.passes, W.HBox([self.play, self.position, self.step_label]),
                     W.HTML("<b>last context frame, then the generated frames</b> (those being drawn decoded from the tokens "
                            "drawn so far)"),
                     self.frames, self.panels],
        )

    def _on_setting(self, change=None):
        self.iterations.disabled = self.decoding.value != "parallel"  # only parallel decoding iterates
        self.lag.disabled = self.decoding.value != "diagonal"  # only diagonal decoding overlaps frames
        self.state.update(clip=self.clip.value, temperature=float(self.temperature.value), top_k=int(self.top_k.value),
                          seed=int(self.seed.value), decoding=self.decoding.value, iterations=int(self.iterations.value),
                          lag=int(self.lag.value))
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
        self.passes.value = f"<b>{self.state.passes_label()}</b>"
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
                (self.state.passes_label(), self.panels.value)]
