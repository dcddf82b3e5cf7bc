"""ipywidgets front ends: each widget's logic lives in a plain class that the tests drive in Python.

    DenoiseExplorer(model)   scrub through a diffusion model's denoising steps (logic: DenoiseState)
"""

from minivid.widgets.denoise import DenoiseExplorer, DenoiseState

__all__ = ["DenoiseExplorer", "DenoiseState"]
