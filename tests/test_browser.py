"""The widgets as a learner meets them: a real JupyterLab server, headless Chromium, real mouse and keys.

Python-side tests (test_widgets.py) check the state; this one checks the pixels in the browser: the
widget renders without an error, fits on a laptop screen, shows its images at their own size, and
answers a slider dragged with the mouse and moved with the keyboard.

Needs the `playwright` package and a Chromium binary (Debian: `apt-get install -y chromium`; or set
MINIVID_CHROMIUM to the browser's path). Playwright's own browser download is not used. Skipped,
saying why, where either is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

# A tiny untrained model keeps the run short: what is tested is the widget, not the model.
NOTEBOOK_CELLS = [
    "import torch\nfrom minivid import video_diffusion, widgets\ntorch.manual_seed(0)",
    "explorer = widgets.DenoiseExplorer(video_diffusion.Model(video_diffusion.PRESETS['nano']), num_clips=2)\n"
    "explorer.steps.value = 3\n"
    "explorer.run.click()\n"
    "explorer",
]
SETTINGS = {"@jupyterlab/notebook-extension/tracker": {"autoStartDefaultKernel": True},
            "@jupyterlab/apputils-extension/notification": {"fetchNews": "false"}}
LAPTOP_HEIGHT = 700  # px: the widget must fit on one laptop screen


def find_chromium() -> str | None:
    candidates = [os.environ.get("MINIVID_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                  shutil.which("google-chrome")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """A JupyterLab server on 127.0.0.1 with its own token, settings and a root folder of its own."""

    def __init__(self, root: Path, timeout: float = 90):
        self.root, self.port, self.token = root, free_port(), os.urandom(16).hex()
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / ".config"), "JUPYTERLAB_SETTINGS_DIR": str(root / ".settings"),
               "JUPYTERLAB_WORKSPACES_DIR": str(root / ".workspaces"), "JUPYTER_RUNTIME_DIR": str(root / ".runtime")}
        for name, setting in SETTINGS.items():  # start the kernel on open; no news pop-up over the notebook
            path = root / ".settings" / f"{name}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(setting))
        self.log = open(root / ".jupyterlab.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
             "--ServerApp.port_retries=0", "--ServerApp.allow_root=True", f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}"],
            cwd=root, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{self.url('api/status')}", timeout=2)
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"JupyterLab did not start; its log:\n{(root / '.jupyterlab.log').read_text()[-3000:]}")
                time.sleep(0.5)

    def kernel_states(self) -> list[str]:
        with urllib.request.urlopen(self.url("api/sessions"), timeout=5) as response:
            return [session["kernel"]["execution_state"] for session in json.load(response)]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs `pip install playwright`")
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("the browser test needs Chromium: `apt-get install -y chromium`, or set MINIVID_CHROMIUM to its path")
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-dev-shm-usage"])
        except sync_api.Error as exc:  # there, but cannot start here (missing libraries, a locked-down container)
            pytest.skip(f"Chromium at {chromium} did not start: {exc}")
        yield browser
        browser.close()


def open_notebook(browser, lab: JupyterLab, name: str, errors: list[str]):
    """Open a notebook in JupyterLab (1280 x 800, a laptop screen) once its kernel is idle; errors collects page and console errors."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(f"page: {exc}"))
    page.goto(lab.url(f"lab/tree/{name}"))
    page.locator(".jp-Notebook").wait_for(timeout=60_000)
    # The widget manager answers only once the kernel is connected: run nothing before it is idle, or a
    # widget may be displayed before its model exists ("Error: widget model not found").
    deadline = time.monotonic() + 60
    while lab.kernel_states() != ["idle"]:
        assert time.monotonic() < deadline, f"the notebook's kernel did not start: {lab.kernel_states()}"
        time.sleep(0.5)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=60_000)
    return page


def run_all(page):
    """Run > Run All Cells, with the mouse, as a learner would."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def error_outputs(page):
    """Tracebacks, stderr and 'Error displaying widget' in the notebook's outputs."""
    return page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'], "
                        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error'], "
                        ".jp-OutputArea-output:has-text('Error displaying widget')")


def wait_for(page, locator, timeout: float = 60):
    """Wait until `locator` shows; fail at once, with the message, if an error output shows first."""
    errors = error_outputs(page)
    locator.or_(errors).first.wait_for(timeout=timeout * 1000)
    assert errors.count() == 0, errors.all_inner_texts()


def widget_errors(page, errors: list[str]) -> list[str]:
    """Widget errors shown in the page and in the JS console, and uncaught page errors."""
    return error_outputs(page).all_inner_texts() + [e for e in errors if "widget" in e.lower() or "model" in e.lower()
                                                    or e.startswith("page:")]


def new_pixels(locator, old: bytes, timeout: float = 30) -> bytes:
    """Screenshots of `locator` until its pixels differ from `old` (an image loads a moment after its label)."""
    deadline = time.monotonic() + timeout
    while (new := locator.screenshot()) == old:
        assert time.monotonic() < deadline, "the image on screen did not change"
        time.sleep(0.2)
    return new


def report_failure(page, folder: Path):
    """Keep a screenshot of the page at a failure, and say where it and JupyterLab's log are."""
    if page is not None:
        page.screenshot(path=folder / "failure.png")
        print(f"the page at the failure: {folder / 'failure.png'}; JupyterLab's log: {folder / '.jupyterlab.log'}")


@contextlib.contextmanager
def notebook_in_lab(browser, folder: Path, name: str, cells: list[str] | None = None):
    """Open `name` in a fresh JupyterLab over `folder` (written first from `cells`, if given): yields (page, errors).
    A failure inside keeps a screenshot (`report_failure`); the server stops either way."""
    if cells is not None:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / name)
    lab = JupyterLab(folder)
    errors: list[str] = []
    page = None
    try:
        page = open_notebook(browser, lab, name, errors)
        yield page, errors
    except Exception:
        report_failure(page, folder)
        raise
    finally:
        lab.stop()


def test_denoise_explorer_in_jupyterlab(browser, tmp_path):
    with notebook_in_lab(browser, tmp_path, "widget.ipynb", NOTEBOOK_CELLS) as (page, errors):
        run_all(page)
        widget = page.locator(".jp-OutputArea-output > .widget-vbox").first
        label = widget.locator(".widget-html-content").filter(has_text="step 4/4")
        wait_for(page, label, timeout=90)  # sampled: opens on the clean sample
        assert label.inner_text() == "step 4/4: clean sample"

        strip = widget.locator("img.minivid-pixels").nth(1)  # the context strip, then x_t over x0
        box = strip.bounding_box()
        natural = strip.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert [round(box["width"]), round(box["height"])] == natural == [658, 132]  # at its own size, not stretched
        assert strip.evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"
        height = widget.bounding_box()["height"]
        assert height <= LAPTOP_HEIGHT, f"the widget is {height:.0f} px tall"

        # drag the step slider's handle to its left end with the mouse: back to pure noise
        clean = strip.screenshot()
        slider = widget.locator(".widget-slider").filter(has=page.get_by_text("step", exact=True))
        handle = slider.locator(".noUi-handle")
        track = slider.locator(".noUi-target").bounding_box()
        start = handle.bounding_box()
        page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
        page.mouse.down()
        page.mouse.move(track["x"] - 20, track["y"] + track["height"] / 2, steps=8)
        page.mouse.up()
        widget.locator(".widget-html-content").filter(has_text="step 1/4: t = 999").wait_for(timeout=30_000)
        noisy = new_pixels(strip, clean)  # the pixels on screen change, not only the label

        # one step on with the keyboard
        handle.focus()
        page.keyboard.press("ArrowRight")
        widget.locator(".widget-html-content").filter(has_text="step 2/4").wait_for(timeout=30_000)
        new_pixels(strip, noisy)
        assert widget_errors(page, errors) == []


@pytest.mark.parametrize("name, widget", [("06_compare_methods", "Compare"), ("08_fast_generation", "StreamPlayer")])
def test_stored_notebook_opens_without_widget_errors(browser, tmp_path, name, widget):
    """A stored tutorial notebook, opened as a learner first meets it: no widget errors, the widget previews show."""
    source = Path(__file__).resolve().parent.parent / "notebooks" / f"{name}.ipynb"
    shutil.copy(source, tmp_path / source.name)
    with notebook_in_lab(browser, tmp_path, source.name) as (page, errors):
        notebook = page.locator(".jp-Notebook")
        notebook.get_by_text(f"{widget} widget (run the notebook to use it").first.wait_for(state="attached", timeout=30_000)
        previews = page.locator(".jp-OutputArea-output[data-mime-type='image/png'] img")
        assert previews.count() >= 2  # the figures and the widgets' stored pictures
        page.wait_for_timeout(2_000)  # a stored widget view would fail about now, once the widget manager looks
        assert widget_errors(page, errors) == []


STREAM_CELLS = [
    "import torch\nfrom minivid import data, distill, widgets\ntorch.manual_seed(0)\n"
    "student = distill.Model(distill.Config(**{**distill.PRESETS['nano'].__dict__, 'num_frames': 6, 'max_context': 3}))\n"
    "with torch.no_grad():  # random weights, so the frames differ (an untrained student draws them all alike)\n"
    "    for p in student.parameters():\n"
    "        torch.nn.init.normal_(p, std=0.05)\n"
    "player = widgets.StreamPlayer(student.eval(), context=data.standard_test_set(1)[:, :3])\n"
    "player.num_frames.value = 10\n"
    "player",
]


def test_stream_player_in_jupyterlab(browser, tmp_path):
    """Start pressed with the mouse: frames stream in the background and show on screen, with the readout."""
    with notebook_in_lab(browser, tmp_path, "stream.ipynb", STREAM_CELLS) as (page, errors):
        run_all(page)
        widget = page.locator(".jp-OutputArea-output > .widget-vbox").first
        start = widget.get_by_role("button", name="Start")
        wait_for(page, start, timeout=90)
        start.click()
        done = widget.get_by_text("done: 10 frames")
        wait_for(page, done, timeout=90)  # streamed in a thread; the page heard of every frame
        assert widget.locator(".widget-html-content").filter(has_text="frame 10/10").count() == 1  # the readout
        frame = widget.locator("img.minivid-pixels").first
        box = frame.bounding_box()
        natural = frame.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        assert [round(box["width"]), round(box["height"])] == natural == [192, 192]  # 64 px at zoom 3, not stretched
        assert widget.bounding_box()["height"] <= LAPTOP_HEIGHT
        assert not start.is_disabled()  # controls are given back when the stream ends
        assert widget_errors(page, errors) == []
