"""What the four widget front ends share on screen.

- Pictures at their natural size or an integer zoom, with crisp pixels: frames are upscaled here by
  repeating pixels, and each image gets an explicit width and height, so the browser never stretches
  it to the width of the notebook.
- Labels that are not cut off (`LABEL` style), progress bars and errors inside the widget (the
  JupyterLab log console, where callbacks print by default, is hidden), and results greyed out
  while they belong to settings that have since changed.
- `preview()`: the widget's current pictures as one PNG, for notebooks read without a running kernel.
"""

from __future__ import annotations

import html
import io
import struct

import numpy as np

from minivid import viz

# One stylesheet, shipped inside every widget (an HTML widget that takes no space).
STYLE = """<style>
.minivid-pixels, .minivid-pixels img { image-rendering: pixelated; }
.minivid-stale { opacity: 0.35; filter: grayscale(1); }
.minivid-table th, .minivid-table td { padding: 1px 12px 1px 0; text-align: right; }
.minivid-table th:first-child, .minivid-table td:first-child { text-align: left; }
</style>"""

# Controls show their whole description ("temperature", not "temperat...").
LABEL = {"description_width": "initial"}

STALE = "minivid-stale"


def check_zoom(zoom) -> int:
    if isinstance(zoom, bool) or int(zoom) != zoom or zoom < 1:
        raise ValueError(f"zoom must be a positive integer (1 = natural size), got {zoom!r}")
    return int(zoom)


def png_bytes(array: np.ndarray, zoom: int = 1) -> bytes:
    """uint8 (h, w) or (h, w, 3) -> PNG bytes, each pixel repeated `zoom` times in both directions."""
    from PIL import Image

    zoom = check_zoom(zoom)
    array = np.asarray(array)
    if zoom > 1:
        array = array.repeat(zoom, axis=0).repeat(zoom, axis=1)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def figure_png(fig) -> bytes:
    """A matplotlib Figure as PNG bytes (for an ipywidgets Image), one PNG pixel per screen pixel."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, read from its header."""
    png = bytes(png)
    if not png.startswith(b"\x89PNG\r\n\x1a\n") or len(png) < 24:
        raise ValueError("not a PNG image")
    return struct.unpack(">II", png[16:24])


def error_html(message: str, block: bool = False) -> str:
    """An error message for a widget's HTML slot, escaped and in red; block=True keeps its line breaks."""
    tag, style = ("pre", "color:#b00020; white-space:pre-wrap") if block else ("span", "color:#b00020")
    return f"<{tag} style='{style}'>{html.escape(message)}</{tag}>"


def frames_strip(frames, every: int = 1) -> np.ndarray:
    """uint8 image of frames (t, c, h, w) side by side, 2 grey pixels apart; every n-th frame."""
    image = viz.tile(frames[::every][:, None], gap=2)[0]  # (h, shown * w + gaps, c)
    return image[..., 0] if image.shape[-1] == 1 else image


def frames_rows(frames, per_row: int = 10, gap_value: int = 255) -> np.ndarray:
    """uint8 image of frames (t, c, h, w), `per_row` to a row (a short last row is padded white), rows 4 pixels
    apart in the grey level `gap_value`."""
    rows = [frames_strip(frames[i : i + per_row]) for i in range(0, len(frames), per_row)]
    width = rows[0].shape[1]
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1])), constant_values=255) for r in rows]
    gap = np.full((4, width), gap_value, dtype=np.uint8)
    return np.concatenate([part for r in rows for part in (r, gap)][:-1], axis=0)


def labelled(text: str, control):
    """A control with its label on the same line (ToggleButtons put their own description above the buttons)."""
    import ipywidgets as W

    return W.HBox([W.Label(text), control])


def image_slot(pixels: bool = True):
    """An empty ipywidgets Image, hidden until `show_png` gives it a picture (no broken-image icon)."""
    import ipywidgets as W

    image = W.Image(format="png", layout=W.Layout(display="none"))
    if pixels:
        image.add_class("minivid-pixels")
    return image


def show_png(image, png: bytes):
    """Put a PNG into an Image widget at exactly its own size in screen pixels."""
    width, height = png_size(png)
    image.value = png
    image.layout.width, image.layout.height = f"{width}px", f"{height}px"
    image.layout.display = None


def _font(size: int = 13):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        return ImageFont.load_default()


def _png(canvas) -> bytes:
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def stack_pngs(parts: list[tuple[str, bytes]], title: str = "") -> bytes:
    """PNGs one under the other, each under its caption (if any), a title on top: how `preview()` draws a widget."""
    from PIL import Image, ImageDraw

    font, line, pad = _font(), 18, 6
    images = [(caption, Image.open(io.BytesIO(bytes(png))).convert("RGB")) for caption, png in parts]
    texts = [title] + [caption for caption, _ in images]
    width = int(max([im.width for _, im in images] + [font.getlength(text) for text in texts])) + 2 * pad
    height = pad + line * sum(bool(text) for text in texts) + sum(im.height + pad for _, im in images) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    y = pad
    if title:
        draw.text((pad, y), title, fill="black", font=font)
        y += line
    for caption, im in images:
        if caption:
            draw.text((pad, y), caption, fill=(60, 60, 60), font=font)
            y += line
        canvas.paste(im, (pad, y))
        y += im.height + pad
    return _png(canvas.quantize(256))  # grey frames and a few plot colours: a palette halves the file


def table_png(rows: list[list[str]]) -> bytes:
    """A table of text (first row: the header, in grey) as a PNG, columns left-aligned."""
    from PIL import Image, ImageDraw

    font, line, pad = _font(), 20, 8
    widths = [max(font.getlength(row[i]) for row in rows) + 2 * pad for i in range(len(rows[0]))]
    canvas = Image.new("RGB", (int(sum(widths)) + pad, line * len(rows) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        x = pad
        for cell, width in zip(row, widths):
            draw.text((x, pad // 2 + r * line), cell, fill=(90, 90, 90) if r == 0 else "black", font=font)
            x += width
    return _png(canvas)


class WidgetView:
    """The front-end parts every widget shares. A subclass builds its controls, then calls `_layout`, and
    implements `_preview_parts()`; its run button is `self.run`, its status line `self.status`."""

    title = "widget"

    def _layout(self, controls: list, before: list, results: list):
        """The widget: controls, a progress area, `before` (always current), then the results (greyed when stale)."""
        import ipywidgets as W

        self.progress = W.Output()  # tqdm bars and tracebacks of the callbacks land here, inside the widget
        self.results = W.VBox(results, layout=W.Layout(display="none"))  # shown after the first run
        style = W.HTML(STYLE, layout=W.Layout(display="none"))
        self.widget = W.VBox([style, *controls, self.progress, *before, self.results])

    def _work(self, status: str, job) -> bool:
        """Run job() with `status` showing, the run button disabled, and its progress or error inside the widget."""
        self.status.value = status
        self.run.disabled = True
        self.progress.clear_output()
        self.failed = True
        try:
            with self.progress:  # in a notebook an exception is shown here (and stops here) instead of the hidden log
                job()
                self.failed = False
        finally:  # outside a notebook the exception goes on up, after this
            self.run.disabled = False
            if self.failed:
                self.status.value = "failed: the error is shown below"
        if not self.failed:  # in a notebook a failure gets here too: keep its traceback on show
            self.progress.clear_output()
        return not self.failed

    def _open_at(self, last: int):
        """Set the step slider (and play button) to end at `last`, draw that step, and show the results."""
        self.position.max = self.play.max = last
        if self.position.value == last:
            self._on_position()
        else:
            self.position.value = last  # observed: draws the step
        self._show_results()

    def _show_results(self):
        self.results.layout.display = None
        self.results.remove_class(STALE)

    def _mark_stale(self):
        """The settings moved away from what the results show: grey them and say what to press."""
        self.results.add_class(STALE)
        if self.results.layout.display is None:
            self.status.value = f"settings changed: press {self.run.description} (greyed: results of the earlier settings)"
        else:
            self.status.value = f"press {self.run.description} to run the model(s)"

    def is_stale(self) -> bool:
        return STALE in self.results._dom_classes

    def _preview_parts(self) -> list[tuple[str, bytes]]:
        raise NotImplementedError

    def preview(self):
        """The widget's current pictures as one PNG image (shows in notebooks read without a kernel)."""
        from IPython.display import Image

        if getattr(self, "failed", False):
            raise RuntimeError(f"{self.title}: the last run failed; its error is shown inside the widget")
        settings = ", ".join(f"{name} {value}" for name, value in self.state.settings.items())
        return Image(data=stack_pngs(self._preview_parts(), f"{self.title} ({settings})"))

    def show(self):
        from IPython.display import display

        bundle = self.widget._repr_mimebundle_()  # the widget, and a line of text for viewers that cannot show it
        bundle["text/plain"] = f"{self.title} widget (run the notebook to use it; preview() draws it as a picture)"
        display(bundle, raw=True)
        return self

    def _ipython_display_(self):
        self.show()
