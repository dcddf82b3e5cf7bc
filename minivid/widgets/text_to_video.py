"""Text to video: type a caption, pick a guidance scale and a seed, watch the clip, read the judge's verdict.

    from minivid import pretrained, widgets
    widgets.TextToVideo(pretrained("dit"), judge=pretrained("judge")).show()

The caption follows the grammar of `minivid.captions` ("a 3 moving right and a 7 moving up-left"); a
caption the grammar cannot read shows the parser's one error, with the vocabulary, inside the widget.
*Generate* makes a clip from nothing but the caption (no context frames), with classifier-free guidance
of the chosen scale (0 = none), and the judge (`minivid.judge`) says what it sees in the clip's first
frames: which digits, moving which way, and whether that matches the caption, phrase by phrase.

The logic is the plain class `TextToVideoState`, which the tests drive without a browser; `verdict`
is the judge's reading of one clip against its caption, as the widget shows it.
"""

from __future__ import annotations

import time
from html import escape

import numpy as np
import torch

from minivid import captions, viz
from minivid.widgets.methods import check_settings
from minivid.widgets.view import (LABEL, WidgetView, check_zoom, error_html, frames_rows, image_slot, png_bytes, show_png,
                                  table_png)

DEFAULT_CAPTION = "a 3 moving right and a 7 moving up-left"


def verdict(judge, video: torch.Tensor, caption: str) -> dict:
    """The judge's reading of one clip (t, c, h, w) against its caption.

    Returns {'caption': the caption written canonically, 'seen': what the judge sees, as a caption (None: no
    digit), 'digits' / 'directions' / 'faithful': the overall verdict of `judge.score`, 'phrases': one entry per
    named digit {'digit', 'direction', 'digit_seen', 'direction_seen', 'seen_directions'}, and 'unexpected':
    digits the judge sees that the caption does not name}.
    """
    phrases = captions.parse(caption)  # a bad caption fails here with the parser's error
    clip = video[None]  # (1, t, c, h, w)
    overall = judge.score(clip, caption)
    seen = judge.read(clip)
    counts, motion = seen["digits"][0], seen["motion"][0]  # (10,), (10, 8)
    named = torch.zeros_like(counts)
    for digit, _ in phrases:
        named[digit] += 1
    rows = []
    for digit, direction in phrases:
        k = captions.DIRECTIONS.index(direction)
        times = sum(1 for d, name in phrases if (d, name) == (digit, direction))
        rows.append({"digit": digit, "direction": direction,
                     "digit_seen": bool(counts[digit] >= named[digit]),
                     "direction_seen": bool(motion[digit, k] >= times),
                     "seen_directions": [captions.DIRECTIONS[j] for j in range(len(captions.DIRECTIONS)) if motion[digit, j] >= 1]})
    unexpected = [d for d in range(10) for _ in range(max(0, int(counts[d] - named[d])))]
    return {"caption": captions.canonical(caption), "seen": judge.describe(clip)[0],
            **{name: bool(value[0]) for name, value in overall.items()}, "phrases": rows, "unexpected": unexpected}


def verdict_rows(v: dict) -> list[list[str]]:
    """The verdict as a table of text: a header, one row per named digit, one per digit nobody asked for."""
    def mark(ok):
        return "yes" if ok else "NO"

    rows = [["the caption asks for", "digit seen", "direction seen", "the judge sees it moving"]]
    for p in v["phrases"]:
        rows.append([f"{captions.article(p['digit'])} {p['digit']} moving {p['direction']}", mark(p["digit_seen"]),
                     mark(p["direction_seen"]), ", ".join(p["seen_directions"]) or "-"])
    for digit in v["unexpected"]:
        rows.append([f"(not asked for) a {digit}", "extra", "", ""])
    return rows


def verdict_line(v: dict) -> str:
    """One line: match or not, and what the judge saw."""
    result = "MATCH" if v["faithful"] else "NO MATCH"
    parts = [f"digits {'right' if v['digits'] else 'wrong'}", f"directions {'right' if v['directions'] else 'wrong'}"]
    return f"judge: {result} ({', '.join(parts)}); it sees: {v['seen'] or 'no digit'}"


class TextToVideoState:
    """Settings, cached clips with their verdicts, and what to draw. No widgets in here.

    num_frames: frames generated per clip (default: the model's clip length, e.g. 20); the judge reads
    the first `judge.config.num_frames` of them.
    """

    def __init__(self, model, judge=None, num_frames: int | None = None):
        self.model = model.eval()
        self.judge = judge.eval() if judge is not None else None
        self.num_frames = int(num_frames or model.config.num_frames)
        if self.judge is not None and self.num_frames < self.judge.config.num_frames:
            raise ValueError(f"the judge reads {self.judge.config.num_frames} frames; generate at least that many, "
                             f"got num_frames={self.num_frames}")
        self.settings = {"caption": DEFAULT_CAPTION, "guidance": 3.0, "seed": 0, "steps": int(model.config.sample_steps)}
        self.cache: dict[tuple, dict] = {}
        self.runs = 0  # how many clips were actually generated (the tests check the cache)

    def update(self, **settings):
        """Change settings. A caption is kept even when the grammar cannot read it (`caption_error` says why),
        so a person can go on typing; the other settings are checked here."""
        check_settings(self.settings, settings)
        if "caption" in settings and not isinstance(settings["caption"], str):
            raise ValueError(f"caption must be a string, e.g. '{DEFAULT_CAPTION}', got {settings['caption']!r}")
        if "guidance" in settings and not settings["guidance"] >= 0:
            raise ValueError(f"guidance must be >= 0 (0 = no guidance; 1 to 5 is typical), got {settings['guidance']}")
        if "seed" in settings and (isinstance(settings["seed"], bool) or int(settings["seed"]) != settings["seed"]):
            raise ValueError(f"seed must be an integer, got {settings['seed']!r}")
        self.settings.update(settings)

    def caption_error(self) -> str | None:
        """The parser's one error for the current caption (naming what is allowed), or None if it reads well."""
        try:
            captions.parse(self.settings["caption"])
        except ValueError as err:
            return str(err)
        return None

    def key(self) -> tuple:
        """The cache key: the caption written canonically (so 'A 3 moving RIGHT' is 'a 3 moving right'), guidance,
        seed, steps. Raises the parser's ValueError for a bad caption."""
        s = self.settings
        return captions.canonical(s["caption"]), float(s["guidance"]), int(s["seed"]), int(s["steps"])

    @property
    def result(self) -> dict | None:
        """The cached clip for the current settings, or None (not generated yet, or the caption is bad)."""
        if self.caption_error() is not None:
            return None
        return self.cache.get(self.key())

    def generate(self, progress: bool = False) -> dict:
        """Generate (or fetch from the cache) the clip for the current settings: {'video' (t, 1, 64, 64),
        'seconds', 'evaluations', 'verdict' (None without a judge)}. A bad caption raises the parser's error."""
        key = self.key()
        if key not in self.cache:
            caption, guidance, seed, steps = key
            context = torch.zeros(1, 0, 1, 64, 64)  # text to video: no context frames
            start = time.perf_counter()
            video = self.model.generate(context, self.num_frames, seed=seed, progress=progress, steps=steps,
                                        caption=caption, guidance=guidance)[0].float().cpu()
            seconds = time.perf_counter() - start
            self.cache[key] = {"video": video, "seconds": seconds,
                               "evaluations": self.model.network_evaluations(0, self.num_frames, steps=steps, guidance=guidance),
                               "verdict": verdict(self.judge, video, caption) if self.judge is not None else None}
            self.runs += 1
        return self.cache[key]

    def strip(self, per_row: int = 10) -> np.ndarray:
        """uint8 image of the current clip's frames, `per_row` to a row (the first row: what the judge reads)."""
        return frames_rows(self.generate()["video"], per_row, gap_value=128)

    def summary(self) -> str:
        r = self.generate()
        s = self.settings
        return (f"'{self.key()[0]}', guidance {s['guidance']:g}, seed {s['seed']}: {len(r['video'])} frames, "
                f"{s['steps']} steps, {r['evaluations']} network evaluations, {r['seconds']:.1f} s")


class TextToVideo(WidgetView):
    """The ipywidgets front end of `TextToVideoState`. zoom: integer scale of the 64-pixel frames (1 = natural size)."""

    title = "TextToVideo"

    def __init__(self, model, judge=None, num_frames: int | None = None, zoom: int = 2):
        import ipywidgets as W

        self.zoom = check_zoom(zoom)
        self.state = TextToVideoState(model, judge=judge, num_frames=num_frames)
        s = self.state.settings
        self.caption = W.Text(value=s["caption"], description="caption", continuous_update=False, style=LABEL,
                              layout=W.Layout(width="460px"))
        self.guidance = W.FloatSlider(value=s["guidance"], min=0.0, max=5.0, step=0.5, description="guidance", style=LABEL)
        self.seed = W.IntText(value=s["seed"], description="seed", style=LABEL, layout=W.Layout(width="120px"))
        self.steps = W.IntSlider(value=s["steps"], min=1, max=100, description="steps", style=LABEL)
        self.run = W.Button(description="Generate", button_style="primary", icon="play")
        self.status = W.Label("press Generate (a few seconds on a CPU)")
        self.error = W.HTML(layout=W.Layout(display="none"))
        self.movie = W.Output()
        self.movie.add_class("minivid-pixels")
        self.image = image_slot()
        self.verdict = W.HTML()
        for control in (self.caption, self.guidance, self.seed, self.steps):
            control.observe(self._on_setting, names="value")
        self.run.on_click(self._on_run)
        vocabulary = ", ".join(captions.VOCAB[1:])
        self._layout(
            controls=[W.HTML(f"<small>words: {vocabulary}</small>"), W.HBox([self.caption, self.seed]),
                      W.HBox([self.guidance, self.steps], layout=W.Layout(flex_flow="row wrap")), W.HBox([self.run, self.status])],
            before=[self.error],
            results=[W.HBox([self.movie, self.verdict], layout=W.Layout(flex_flow="row wrap", align_items="flex-start")),
                     W.HTML("<b>every frame</b> (the judge reads the first row)"), self.image],
        )

    def _on_setting(self, change=None):
        self.state.update(caption=self.caption.value, guidance=float(self.guidance.value), seed=int(self.seed.value),
                          steps=int(self.steps.value))
        message = self.state.caption_error()
        self.error.value = "" if message is None else error_html(message)
        self.error.layout.display = "none" if message is None else None
        self.run.disabled = message is not None
        if self.state.result is not None:  # cached: show at once
            self._refresh()
            return
        self._mark_stale()
        if message is not None:
            self.status.value = "fix the caption to generate (the error is shown below)"

    def _on_run(self, button=None):
        if self.state.caption_error() is not None:  # the button is disabled then; a click from code lands here
            return
        if self._work("generating...", lambda: self.state.generate(progress=True)):
            self._refresh()

    def _refresh(self):
        r = self.state.generate()
        self.status.value = self.state.summary() + " (cached)"
        self.movie.clear_output(wait=True)
        with self.movie:
            viz.show_videos({"generated": r["video"]}, width=64 * self.zoom, fps=8, codec="gif")
        show_png(self.image, png_bytes(self.state.strip(), 1))
        self.verdict.value = _verdict_html(r["verdict"])
        self._show_results()

    def _preview_parts(self):
        r = self.state.result
        if r is None:
            return []
        parts = [(self.state.summary(), self.image.value)]
        if r["verdict"] is not None:
            parts.append((verdict_line(r["verdict"]), table_png(verdict_rows(r["verdict"]))))
        return parts


def _verdict_html(v: dict | None) -> str:
    if v is None:
        return "<i>no judge given: pass judge=minivid.pretrained('judge') to check the clip against its caption</i>"
    colour = "#1b7f3b" if v["faithful"] else "#b00020"
    head = (f"<b style='color:{colour}'>{'match' if v['faithful'] else 'no match'}</b>: the judge sees "
            f"<i>{escape(v['seen'] or 'no digit')}</i>")
    rows = verdict_rows(v)
    table = "".join("<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{escape(c)}</{'th' if i == 0 else 'td'}>" for c in row)
                    + "</tr>" for i, row in enumerate(rows))
    return f"<div style='margin-left:16px'>{head}<table class='minivid-table'>{table}</table></div>"
