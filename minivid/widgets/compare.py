"""Method comparison: the same test context through every method, side by side, with the protocol's numbers.

    from minivid import metrics, pretrained, widgets
    widgets.Compare({"diffusion": pretrained("diffusion"), "autoregressive": pretrained("autoregressive"),
                     "copy last frame": metrics.copy_last_frame}).show()

Pick a test clip, the sampling knobs and a seed, press *Compare*: each method predicts the clip's
10 future frames from its 10 context frames. You get the videos side by side (truth first), a table
of MSE / SSIM / PSNR, network evaluations, wall time and parameters, and the curves per future frame.
Knobs reach only the methods whose `generate` takes them; results are cached per method and setting.
`minivid bench` is the same comparison over many clips, from a terminal.

The logic is the plain class `CompareState`, which the tests drive without a browser.
"""

from __future__ import annotations

import time

import torch

from minivid import bench, data, metrics, viz
from minivid.widgets.methods import MethodsState, MethodsView
from minivid.widgets.view import LABEL, figure_png, image_slot, show_png, table_png


class CompareState(MethodsState):
    """Settings, cached predictions and their scores, the table and the curves. No widgets in here."""

    KNOBS = ("steps", "temperature", "schedule")  # passed to generate where it takes them
    FIXED = ("clip", "seed")

    def __init__(self, models: dict, num_clips: int = 8):
        super().__init__(models, {"clip": 0, "seed": 0, "steps": 10, "temperature": 1.0, "schedule": "pyramid"})
        self.clips = data.standard_test_set(num_clips)

    def check(self, settings: dict):
        if "clip" in settings and not 0 <= settings["clip"] < len(self.clips):
            raise ValueError(f"clip must be in 0..{len(self.clips) - 1}, got {settings['clip']}")

    def result(self, name: str, progress: bool = False) -> dict:
        """This method's prediction and scores for the current settings: {'video', 'mse', 'ssim', 'psnr', per-frame
        curves, 'evaluations', 'seconds', 'parameters'}; cached. (Each method takes seconds: no progress bar.)"""
        key = self.key(name)
        if key not in self.cache:
            clip = self.clips[self.settings["clip"] : self.settings["clip"] + 1]
            context, future = clip[:, : data.STANDARD_CONTEXT], clip[:, data.STANDARD_CONTEXT :]
            model = self.models[name]
            generate = metrics.as_generate(model, self.kwargs(name))
            start = time.perf_counter()
            with bench.counting_calls(model) as calls, torch.no_grad():
                video = generate(context, future.shape[1], self.settings["seed"]).float().cpu()
            seconds = time.perf_counter() - start
            scores = metrics.per_frame_metrics(video, future)  # {name: (1, frames)}
            result = {"video": video[0], "evaluations": len(calls), "seconds": seconds,
                      "parameters": sum(p.numel() for p in model.parameters()) if isinstance(model, torch.nn.Module) else 0}
            for metric in ("mse", "ssim", "psnr"):
                result[f"{metric}_per_frame"] = scores[metric][0]
                result[metric] = float(scores[metric][0].mean())
            self.cache[key] = result
            self.runs += 1
        return self.cache[key]

    def table(self) -> list[dict]:
        """One row per method: the numbers the widget's table shows."""
        return [{"method": name, "mse": r["mse"], "ssim": r["ssim"], "psnr": r["psnr"], "evaluations": r["evaluations"],
                 "seconds": r["seconds"], "parameters": r["parameters"]} for name, r in self.run().items()]

    HEADER = ("method", "MSE", "SSIM", "PSNR", "network evals", "seconds", "parameters")

    def table_cells(self) -> list[list[str]]:
        """The table as text, one list of cells per method (columns as in HEADER)."""
        return [[r["method"], f"{r['mse']:.1f}", f"{r['ssim']:.3f}", f"{r['psnr']:.2f}", str(r["evaluations"]),
                 f"{r['seconds']:.2f}", f"{r['parameters'] / 1e6:.2f} M"] for r in self.table()]

    def table_html(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in self.HEADER)
        rows = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in self.table_cells())
        return f"<table class='minivid-table'><tr>{head}</tr>{rows}</table>"

    def table_png(self) -> bytes:
        return table_png([list(self.HEADER), *self.table_cells()])

    def figure_png(self) -> bytes:
        from matplotlib.figure import Figure

        results = self.run()
        fig = Figure(figsize=(8.0, 2.8), dpi=80)
        ax_mse, ax_ssim = fig.subplots(1, 2)
        viz.plot_per_frame({n: r["mse_per_frame"] for n, r in results.items()}, "MSE per frame", ax=ax_mse)
        viz.plot_per_frame({n: r["ssim_per_frame"] for n, r in results.items()}, "SSIM", ax=ax_ssim)
        ax_mse.legend(fontsize=7)
        return figure_png(fig)

    def videos(self) -> dict[str, torch.Tensor]:
        """{title: (10, 1, 64, 64)}: the true future, then each method's prediction."""
        shown = {"truth": self.clips[self.settings["clip"], data.STANDARD_CONTEXT :]}
        shown.update({name: r["video"] for name, r in self.run().items()})
        return shown


class Compare(MethodsView):
    """The ipywidgets front end of `CompareState`. zoom: integer scale of the videos (1 = natural size)."""

    title = "Compare"
    verb = "running"

    def __init__(self, models: dict, num_clips: int = 8, zoom: int = 2):
        import ipywidgets as W

        self.state = CompareState(models, num_clips=num_clips)
        s = self.state.settings
        short = W.Layout(width="130px")
        self.clip = W.Dropdown(options=list(range(num_clips)), value=s["clip"], description="test clip", style=LABEL, layout=short)
        self.seed = W.IntText(value=s["seed"], description="seed", style=LABEL, layout=short)
        self.steps = W.IntSlider(value=s["steps"], min=1, max=50, description="steps", style=LABEL)
        self.temperature = W.FloatSlider(value=s["temperature"], min=0.1, max=2.0, step=0.1, description="temperature", style=LABEL)
        self.schedule = W.Dropdown(options=["pyramid", "synchronous", "autoregressive"], value=s["schedule"],
                                   description="schedule", style=LABEL, layout=W.Layout(width="220px"))
        self.run = W.Button(description="Compare", button_style="primary", icon="play")
        self.status = W.Label("press Compare (each method takes seconds on a CPU)")
        self.table = W.HTML()
        self.plot = image_slot(pixels=False)
        rows = self._wire((self.clip, self.seed, self.steps, self.temperature, self.schedule), [self.clip, self.seed], fps=6, zoom=zoom)
        self._layout(controls=rows, before=[], results=[self.movies, self.table, self.plot])

    def _refresh(self):
        self.status.value = f"test clip {self.state.settings['clip']}: 10 context frames -> 10 predicted (cached)"
        self.table.value = self.state.table_html()
        show_png(self.plot, self.state.figure_png())
        self._play()
        self._show_results()

    def _preview_parts(self):
        if not self.state.done():
            return []
        return [*self._video_parts(), ("", self.state.table_png()), ("", self.plot.value)]
