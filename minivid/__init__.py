"""minivid: a small, readable kit for learning video generation at toy scale.

    import minivid
    clips = minivid.data.standard_test_set(8)          # (b, t, c, h, w) float32 in [0, 1]
    model = minivid.pretrained("diffusion")            # shipped weights, verified by hash
    future = model.generate(clips[:, :10], num_frames=10, seed=0)

See README.md for the tour, and notebooks/ for the tutorials.
"""

from minivid import data
from minivid.checkpoints import available, pretrained

__version__ = "0.1.0"
__all__ = ["data", "pretrained", "available", "__version__"]
