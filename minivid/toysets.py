"""Two more toy video sets, each testing a skill Moving MNIST does not, plus a registry of all three.

    bouncing_balls   grey discs of different sizes (masses) that collide elastically with the walls
                     AND with each other: a model must learn interactions, not just independent motion.
                     In the spirit of Sutskever et al. (2008), "The Recurrent Temporal RBM".
    moving_shapes    coloured squares, discs and triangles (3 channels) moving and bouncing; a shape
                     drawn later hides the ones below it: a model must keep colour and identity through
                     occlusion, where Moving MNIST simply adds overlapping digits by per-pixel max.

Like `minivid.data`, every clip is a pure function of (seed, index) (the same counter-based random
numbers), generation is vectorized over clips, and videos are float32 (b, t, c, h, w) in [0, 1].
Pixel values are multiples of 1/255, so a set stored as uint8 (`minivid.io`) loads back exactly.

    from minivid import toysets
    balls = toysets.generate("bouncing_balls", range(8), seed=0)   # (8, 20, 1, 64, 64)
    shapes = toysets.generate("moving_shapes", range(8), seed=0)   # (8, 20, 3, 64, 64)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from einops import rearrange

from minivid import data

# --------------------------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------------------------


def _set_seed(salt: int, seed: int, split: str) -> int:
    """A 32-bit seed for one (set, seed, split), so each set and split draws its own numbers."""
    if split not in data.SPLITS:
        raise ValueError(f"split must be one of {data.SPLITS}, got {split!r}")
    key = torch.tensor([salt * 1_000_003 + 2 * int(seed) + data.SPLITS.index(split)], dtype=torch.int64)
    return int(data._hash32(key)[0])


def _indices(indices, device=None) -> torch.Tensor:
    idx = torch.as_tensor(indices, dtype=torch.int64, device=device).reshape(-1)
    if idx.numel() and int(idx.min()) < 0:
        raise ValueError("clip indices must be >= 0")
    return idx


def _check(num_frames: int, count: int, count_name: str, max_count: int, size: int, speed: float, min_size: int = 16):
    if int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if int(count) != count or not 1 <= count <= max_count:
        raise ValueError(f"{count_name} must be an integer from 1 to {max_count}, got {count!r}")
    if int(size) != size or size < min_size:
        raise ValueError(f"size must be an integer >= {min_size}, got {size!r}")
    if not (isinstance(speed, (int, float)) and speed >= 0):
        raise ValueError(f"speed must be a number >= 0, got {speed!r}")


def _quantize(video: torch.Tensor) -> torch.Tensor:
    """Round to multiples of 1/255, so uint8 storage is lossless."""
    return torch.round(video * 255).div_(255)


def _pixel_centres(size: int, device) -> torch.Tensor:
    return (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size  # (size,) in (0, 1)


# --------------------------------------------------------------------------------------------
# bouncing balls: elastic collisions between balls and with the walls
# --------------------------------------------------------------------------------------------

GRID = 3  # balls start in distinct cells of a GRID x GRID grid, so they never start overlapping
BALL_SUBSTEPS = 4  # physics steps per frame; small steps keep collisions from being missed


def bouncing_balls_states(indices, seed: int = 0, split: str = "train", num_frames: int = 20, num_balls: int = 3,
                          speed: float = 0.05, radius: tuple[float, float] = (0.07, 0.12)):
    """Simulate the balls: positions (b, t, n, 2) as (row, col) in [0, 1], velocities (b, t, n, 2)
    in box units per frame, and radii (b, n) in box units. Mass is proportional to radius squared.

    Each ball starts in its own grid cell with `speed` in a uniform random direction. The physics
    runs in float64 on the CPU (only +, -, *, /, sqrt), so a clip is bit-identical whatever batch
    it is simulated in. The loop is over time steps; every step is vectorized over clips.
    """
    idx = _indices(indices).cpu()
    lo, hi = radius
    if not 0 < lo <= hi <= 0.5 / GRID:
        raise ValueError(f"radius must be (min, max) with 0 < min <= max <= {0.5 / GRID:.3f}, got {radius!r}")
    s = _set_seed(1, seed, split)
    n = num_balls

    def draw(stream: int) -> torch.Tensor:  # one uniform per (clip, ball): (b, n), float64
        return data._per_digit(s, idx, n, stream).double()

    cells = torch.argsort(torch.stack([data.uniform(s, idx, 100 + k) for k in range(GRID * GRID)], dim=1), dim=1)[:, :n]
    r = lo + (hi - lo) * draw(0)  # (b, n)
    slack = 0.5 / GRID - r  # how far the centre may move from the cell centre and stay inside the cell
    cell_centre = torch.stack([cells // GRID, cells % GRID], dim=-1).double().add(0.5).div(GRID)  # (b, n, 2)
    jitter = torch.stack([2 * draw(1) - 1, 2 * draw(2) - 1], dim=-1) * slack[..., None]
    pos = cell_centre + jitter  # (b, n, 2)
    theta = 2 * math.pi * draw(3)
    vel = speed * torch.stack([torch.sin(theta), torch.cos(theta)], dim=-1)  # (b, n, 2), box units per frame
    mass = r**2
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]

    positions, velocities = [pos], [vel]
    for _ in range(num_frames - 1):
        for _ in range(BALL_SUBSTEPS):
            pos = pos + vel / BALL_SUBSTEPS
            # walls: reflect the position about the wall and point the velocity back inside
            low, high = pos < r[..., None], pos > 1 - r[..., None]
            pos = torch.where(low, 2 * r[..., None] - pos, torch.where(high, 2 * (1 - r[..., None]) - pos, pos))
            vel = torch.where(low, vel.abs(), torch.where(high, -vel.abs(), vel))
            # balls: an elastic collision for every pair that overlaps and is approaching
            for i, j in pairs:
                delta = pos[:, j] - pos[:, i]  # (b, 2)
                dist = delta.pow(2).sum(-1).sqrt().clamp_min(1e-12)
                normal = delta / dist[:, None]
                u = ((vel[:, i] - vel[:, j]) * normal).sum(-1)  # closing speed along the normal
                hit = (dist < r[:, i] + r[:, j]) & (u > 0)
                m_i, m_j = mass[:, i], mass[:, j]
                impulse = torch.where(hit, 2 * u / (m_i + m_j), 0.0)[:, None] * normal  # conserves momentum and energy
                vel = vel.clone()
                vel[:, i] = vel[:, i] - m_j[:, None] * impulse
                vel[:, j] = vel[:, j] + m_i[:, None] * impulse
        positions.append(pos)
        velocities.append(vel)
    return torch.stack(positions, dim=1), torch.stack(velocities, dim=1), r  # (b, t, n, 2), (b, t, n, 2), (b, n)


def bouncing_balls(indices, seed: int = 0, split: str = "train", num_frames: int = 20, num_balls: int = 3,
                   size: int = 64, speed: float = 0.05, radius: tuple[float, float] = (0.07, 0.12),
                   device=None) -> torch.Tensor:
    """Bouncing-balls clips number `indices`: (b, t, 1, size, size) float32 in [0, 1].

    num_balls: 1 to 9. speed: box widths per frame (0.05 is 3.2 px at 64x64). radius: range of
    ball radii in box widths (0.07-0.12 is 4.5-7.7 px at 64x64). Discs are anti-aliased; overlaps
    (only ever a sliver, during a collision) combine by max.
    """
    _check(num_frames, num_balls, "num_balls", GRID * GRID, size, speed)
    positions, _, r = bouncing_balls_states(indices, seed, split, num_frames, num_balls, speed, radius)
    centres = (positions * size).float().to(device)  # (b, t, n, 2) in pixels
    r_px = (r * size).float().to(centres.device)[:, None, :, None, None]  # (b, 1, n, 1, 1)
    # Draw each ball in a small window around it (not the whole canvas), then paste the windows
    # with the same max-scatter as Moving MNIST's digits.
    window = math.ceil(2 * radius[1] * size) + 3  # the largest disc plus its anti-aliased rim
    corner = torch.floor(centres - window / 2)  # (b, t, n, 2): window's top-left pixel
    local = torch.arange(window, device=centres.device) + 0.5  # (window,) pixel centres inside the window
    dy = (corner[..., 0:1] + local - centres[..., 0:1])[..., :, None]  # (b, t, n, window, 1)
    dx = (corner[..., 1:2] + local - centres[..., 1:2])[..., None, :]  # (b, t, n, 1, window)
    discs = (r_px - (dy**2 + dx**2).sqrt() + 0.5).clamp(0, 1)  # (b, t, n, window, window), 1-pixel soft edge
    video = data.render(discs, corner.long(), size)  # (b, t, h, w)
    return _quantize(video)[:, :, None]  # (b, t, 1, h, w)


# --------------------------------------------------------------------------------------------
# moving shapes: colour, shape identity and occlusion
# --------------------------------------------------------------------------------------------

SHAPES = ("square", "disc", "triangle")
COLOURS = torch.tensor([  # saturated, so every shape is visible in at least one channel at full strength
    [1.0, 0.2, 0.2],  # red
    [0.2, 0.9, 0.2],  # green
    [0.3, 0.4, 1.0],  # blue
    [1.0, 0.9, 0.1],  # yellow
    [1.0, 0.3, 1.0],  # magenta
    [0.1, 0.9, 0.9],  # cyan
])


def moving_shapes_params(indices, seed: int = 0, split: str = "train", num_frames: int = 20, num_shapes: int = 2,
                         speed: float = 0.1, shape_size: tuple[float, float] = (0.22, 0.34)):
    """Each clip's shapes: kind (b, n) index into SHAPES, colour (b, n) index into COLOURS, side
    length (b, n) in canvas widths, and trajectories (b, t, n, 2) in [0, 1] of the free range
    (`minivid.data.trajectories`: constant velocity, reflected at the walls). Shape n is drawn last.
    """
    idx = _indices(indices).cpu()
    lo, hi = shape_size
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"shape_size must be (min, max) with 0 < min <= max <= 1, got {shape_size!r}")
    s = _set_seed(2, seed, split)
    kind = (data._per_digit(s, idx, num_shapes, 4) * len(SHAPES)).long().clamp_max(len(SHAPES) - 1)
    colour = (data._per_digit(s, idx, num_shapes, 5) * len(COLOURS)).long().clamp_max(len(COLOURS) - 1)
    side = lo + (hi - lo) * data._per_digit(s, idx, num_shapes, 6)
    positions, _ = data.trajectories(idx, s, num_frames, num_shapes, speed)
    return kind, colour, side, positions


def moving_shapes(indices, seed: int = 0, split: str = "train", num_frames: int = 20, num_shapes: int = 2,
                  size: int = 64, speed: float = 0.1, shape_size: tuple[float, float] = (0.22, 0.34),
                  device=None) -> torch.Tensor:
    """Moving-shapes clips number `indices`: (b, t, 3, size, size) float32 RGB in [0, 1].

    num_shapes: 1 to 6. speed: fraction of the free range per frame, as in Moving MNIST.
    shape_size: range of side lengths in canvas widths (0.22-0.34 is 14-22 px at 64x64).
    Shapes are drawn in order on black, each hiding what is below it (occlusion, not max).
    """
    _check(num_frames, num_shapes, "num_shapes", len(COLOURS), size, speed)
    kind, colour, side, positions = moving_shapes_params(indices, seed, split, num_frames, num_shapes, speed, shape_size)
    side_px = torch.round(side * size).long().clamp(1, size)  # (b, n)
    sprite = int(side_px.max()) if side_px.numel() else 1
    # Each shape's mask in the top-left corner of a sprite x sprite tile, holding its layer number 1..n.
    grid = torch.arange(sprite, dtype=torch.float32) + 0.5
    half = side_px[..., None, None] / 2  # (b, n, 1, 1) in pixels
    dy = (grid[:, None] - half) / half  # (b, n, sprite, 1): -1..1 across the shape
    dx = (grid[None, :] - half) / half  # (b, n, 1, sprite)
    square = (dy.abs() <= 1) & (dx.abs() <= 1)
    disc = dy**2 + dx**2 <= 1
    triangle = (dy.abs() <= 1) & (2 * dx.abs() <= dy + 1)  # apex up, base at the bottom
    k = kind[..., None, None]
    masks = torch.where(k == 0, square, torch.where(k == 1, disc, triangle))  # (b, n, sprite, sprite)
    layer = torch.arange(1, num_shapes + 1, dtype=torch.float32)[None, :, None, None]
    sprites = (masks * layer).to(device)
    offsets = (positions * (size - side_px[:, None, :, None])).long().to(sprites.device)  # (b, t, n, 2)
    # The max over layer numbers is the topmost shape at each pixel (0: background): occlusion.
    top = data.render(sprites, offsets, size).long()  # (b, t, h, w)
    palette = _quantize(torch.cat([torch.zeros(len(colour), 1, 3), COLOURS[colour]], dim=1)).to(top.device)  # (b, 1 + n, 3)
    b, t = top.shape[:2]
    video = torch.empty(b, t, 3, size, size, device=top.device)
    for c in range(3):  # look each pixel's colour up, one channel at a time
        video[:, :, c] = torch.gather(palette[..., c], 1, rearrange(top, "b t h w -> b (t h w)")).view(b, t, size, size)
    return video  # (b, t, 3, h, w)


# --------------------------------------------------------------------------------------------
# the registry: one name per set, so the CLI, io and notebooks treat them alike
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToySet:
    name: str
    make: Callable[..., torch.Tensor]  # make(indices, seed, split, num_frames, <count>, size, ..., device)
    channels: int  # 1 grey, 3 RGB
    count_arg: str  # the keyword that sets how many objects a clip holds
    default_count: int
    skill: str  # what the set tests, in one line


TOY_SETS: dict[str, ToySet] = {
    "moving_mnist": ToySet("moving_mnist", data.moving_mnist, 1, "num_digits", 2,
                           "independent constant-velocity motion with wall bounces; overlaps add by max"),
    "bouncing_balls": ToySet("bouncing_balls", bouncing_balls, 1, "num_balls", 3,
                             "interactions: elastic collisions between balls of different masses"),
    "moving_shapes": ToySet("moving_shapes", moving_shapes, 3, "num_shapes", 2,
                            "colour and identity through occlusion (later shapes hide earlier ones)"),
}


def get(name: str) -> ToySet:
    if name not in TOY_SETS:
        raise ValueError(f"unknown toy set {name!r}; expected one of {sorted(TOY_SETS)}")
    return TOY_SETS[name]


def generate(name: str, indices, seed: int = 0, split: str = "train", num_frames: int = 20,
             num_objects: int | None = None, size: int = 64, device=None, **kwargs) -> torch.Tensor:
    """Clips number `indices` of toy set `name`: (b, t, c, h, w) float32 in [0, 1].

    num_objects sets the digits / balls / shapes per clip (the set's default if None); other
    keywords go to the set's own function (e.g. speed=0.05, digits='full').
    """
    toy = get(name)
    count = toy.default_count if num_objects is None else num_objects
    kwargs[toy.count_arg] = count
    return toy.make(indices, seed=seed, split=split, num_frames=num_frames, size=size, device=device, **kwargs)
