"""ipywidgets front ends: each widget's logic lives in a plain class that the tests drive in Python.

    DenoiseExplorer(model)   scrub through a diffusion model's denoising steps (logic: DenoiseState)
    TokenRollout(model)      watch an autoregressive model fill in token grids (logic: TokenRolloutState)
    ErrorAccumulation(models)  long rollouts of several methods, errors per frame (logic: ErrorAccumulationState)
    Compare(models)          one test context through every method, side by side, with a table (logic: CompareState)
    TextToVideo(model, judge)  type a caption, watch the generated clip, read the judge's verdict (logic: TextToVideoState)
    StreamPlayer(student)    stream frames from the distilled student with a live frames-per-second readout (logic: StreamState)

Each shows its pictures at natural size or an integer `zoom` with crisp pixels, its progress and errors
inside itself, and greys its results when the settings change; `widget.preview()` returns the current
view as a PNG, for notebooks read without a kernel (`minivid.widgets.view` holds these shared parts).
"""

from minivid.widgets.compare import Compare, CompareState
from minivid.widgets.denoise import DenoiseExplorer, DenoiseState
from minivid.widgets.errors import ErrorAccumulation, ErrorAccumulationState
from minivid.widgets.stream import StreamPlayer, StreamState
from minivid.widgets.text_to_video import TextToVideo, TextToVideoState
from minivid.widgets.tokens import TokenRollout, TokenRolloutState

__all__ = ["Compare", "CompareState", "DenoiseExplorer", "DenoiseState", "ErrorAccumulation", "ErrorAccumulationState",
           "StreamPlayer", "StreamState", "TextToVideo", "TextToVideoState", "TokenRollout", "TokenRolloutState"]
