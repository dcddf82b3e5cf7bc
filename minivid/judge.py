"""The judge: does a clip show what its caption says? A small CNN trained on the generator's own labels.

Text-to-video is scored by faithfulness, the share of generated clips whose digits and directions match
their captions. Nobody can watch thousands of clips, so a classifier does, trained on captioned Moving
MNIST where the truth is known exactly (`data.clip_labels`). It reads the first `num_frames` frames of a
clip, stacked as the channels of one image (so it sees where each digit starts and where it goes), and
answers two questions:

* digits: how many digits of each class 0-9 the clip holds (0, 1 or 2: a classifier per class);
* motion: for each class and each of the 8 compass directions, how many digits of that class move that
  way (80 more small classifiers), so two digits are judged without saying which one is "first".

A caption is judged faithful when the digit counts match it exactly and every (digit, direction) it names
is seen at least as often as it is named. Directions get a tolerance: a direction counts as named when the
digit's initial motion lies within its 45-degree sector widened by `tolerance` degrees on each side (10 by
default). Positions are whole pixels, so a digit heading at 22 degrees and one at 23 look the same for
several frames; no judge could split them at the sector boundary, and no viewer would call either one
wrong for "right" or "up-right". A direction turned by 90 degrees is always outside (67.5 > 22.5 + 10),
which is what `accuracy` checks the judge rejects.

    judge = minivid.pretrained("judge")
    judge.score(clips, ["a 3 moving down-left and a 7 moving right", ...])   # per clip: True / False
    accuracy(judge)                                                          # on real test clips
    faithfulness(model, judge, guidance=3.0)                                 # on a text-to-video model
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from minivid import captions, data
from minivid.metrics import validate_video

NUM_CLASSES = 10
NUM_DIRECTIONS = len(captions.DIRECTIONS)
SECTOR = 360.0 / NUM_DIRECTIONS  # 45 degrees
TRAIN_SPEED = (0.07, 0.13)  # speeds the judge trains on, one per clip: the range the shipped generators learned


@dataclass(frozen=True)
class Config:
    num_frames: int = 10  # frames read: enough to see each digit's heading even after a bounce
    channels: tuple = (32, 64, 128, 128)  # widths at 64, 32, 16 and 8 px
    hidden: int = 256  # the shared feature vector both heads read
    max_count: int = 2  # most digits of one class in a clip (Moving MNIST has 2 digits in all)
    tolerance: float = 10.0  # degrees a direction may lie outside its sector and still count (see above)
    noise: float = 0.1  # training clips get Gaussian noise of a std drawn up to this: generated clips are not clean


PRESETS = {
    "nano": Config(channels=(8, 8, 16, 16), hidden=32),  # 0.06 M, for tests
    "small": Config(),  # 3.1 M
}


# --------------------------------------------------------------------------------------------
# labels -> training targets
# --------------------------------------------------------------------------------------------


def angular_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| in degrees on the circle, in [0, 180]."""
    return (torch.remainder(a - b + 180.0, 360.0) - 180.0).abs()


def targets(digits: torch.Tensor, angles: torch.Tensor, config: Config):
    """The judge's answers for clips with digit classes `digits` (b, d) and initial angles `angles` (b, d).

    Returns counts (b, 10) and motion (b, 10, 8), both in 0..max_count: motion counts the digits of each
    class that move within each direction's sector widened by `tolerance`.
    """
    one_hot = F.one_hot(digits, NUM_CLASSES)  # (b, d, 10)
    counts = one_hot.sum(dim=1).clamp(max=config.max_count)  # (b, 10)
    centers = torch.arange(NUM_DIRECTIONS, device=angles.device) * SECTOR  # (8,)
    near = angular_distance(angles[..., None], centers) <= SECTOR / 2 + config.tolerance  # (b, d, 8)
    motion = torch.einsum("bdc,bds->bcs", one_hot.float(), near.float()).long().clamp(max=config.max_count)
    return counts, motion  # (b, 10), (b, 10, 8)


# --------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(8, channels), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x):
        return x + self.body(x)


class Model(nn.Module):
    """clips (b, t >= num_frames, 1, 64, 64) -> count logits (b, 10, max_count + 1), (b, 10, 8, max_count + 1)."""

    family = "judge"

    def __init__(self, config: Config = Config()):
        super().__init__()
        self.config = c = config
        layers = [nn.Conv2d(c.num_frames, c.channels[0], 3, padding=1)]  # frames as channels
        for i, width in enumerate(c.channels):
            layers.append(ResBlock(width))
            if i + 1 < len(c.channels):
                layers.append(nn.Conv2d(width, c.channels[i + 1], 3, stride=2, padding=1))  # halve the resolution
        self.features = nn.Sequential(*layers, nn.GroupNorm(8, c.channels[-1]), nn.SiLU())
        side = 64 // 2 ** (len(c.channels) - 1)
        # Flatten rather than pool: where a feature sits (which digit is where) is part of the answer.
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(c.channels[-1] * side * side, c.hidden), nn.SiLU())
        self.counts = nn.Linear(c.hidden, NUM_CLASSES * (c.max_count + 1))
        self.motion = nn.Linear(c.hidden, NUM_CLASSES * NUM_DIRECTIONS * (c.max_count + 1))

    def forward(self, clips: torch.Tensor):
        x = rearrange(clips[:, : self.config.num_frames], "b t 1 h w -> b t h w") * 2 - 1  # frames as channels, [-1, 1]
        h = self.hidden(self.features(x))  # (b, hidden)
        counts = rearrange(self.counts(h), "b (c n) -> b c n", c=NUM_CLASSES)
        motion = rearrange(self.motion(h), "b (c s n) -> b c s n", c=NUM_CLASSES, s=NUM_DIRECTIONS)
        return counts, motion

    def loss(self, batch) -> torch.Tensor:
        """Cross-entropy on the 10 digit counts plus cross-entropy on the 80 motion counts."""
        clips, digits, angles = batch
        c = self.config
        clips = clips[:, : c.num_frames]
        if self.training and c.noise > 0:  # a noise level per clip, from clean to `noise`
            std = c.noise * torch.rand(len(clips), 1, 1, 1, 1, device=clips.device)
            clips = (clips + std * torch.randn_like(clips)).clamp(0, 1)
        count_target, motion_target = targets(digits, angles, c)
        counts, motion = self(clips)
        count_loss = F.cross_entropy(rearrange(counts, "b c n -> (b c) n").float(), count_target.flatten())
        motion_loss = F.cross_entropy(rearrange(motion, "b c s n -> (b c s) n").float(), motion_target.flatten())
        return count_loss + motion_loss

    # -- judging -------------------------------------------------------------------------------------

    @torch.no_grad()
    def read(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        """What the judge sees, on the CPU: 'digits' (b, 10) and 'motion' (b, 10, 8) counts (the most likely ones),
        and 'motion_scores' (b, 10, 8), the expected number of digits of each class moving each way."""
        validate_video(clips, "clips", channels=1, size=64)
        if clips.shape[1] < self.config.num_frames:
            raise ValueError(f"the judge reads the first {self.config.num_frames} frames of a clip; got {clips.shape[1]}")
        device = next(self.parameters()).device
        counts, motion = self(clips.to(device).float())
        probs = motion.float().softmax(dim=-1)  # (b, 10, 8, max_count + 1)
        expected = (probs * torch.arange(probs.shape[-1], device=device)).sum(dim=-1)
        return {"digits": counts.argmax(dim=-1).cpu(), "motion": motion.argmax(dim=-1).cpu(),
                "motion_scores": expected.cpu()}

    def score(self, clips: torch.Tensor, caption) -> dict[str, torch.Tensor]:
        """Does each clip show its caption? caption: one for all clips, or a list of one per clip.

        Returns bool tensors (b,): 'digits' (the counts of each digit class match the caption's), 'directions'
        (each named (digit, direction) is seen at least as often as it is named) and 'faithful' (both).
        """
        b = clips.shape[0]
        caption = [caption] * b if isinstance(caption, str) else list(caption)
        if len(caption) != b:
            raise ValueError(f"{b} clips need {b} captions, got {len(caption)}")
        phrases = [captions.parse(text) for text in caption]  # bad captions fail here, before the network runs
        seen = self.read(clips)
        named = torch.zeros(b, NUM_CLASSES, dtype=torch.long)  # digits per class, as the caption says
        named_motion = torch.zeros(b, NUM_CLASSES, NUM_DIRECTIONS, dtype=torch.long)  # and per direction
        for i, clip_phrases in enumerate(phrases):
            for digit, direction in clip_phrases:
                named[i, digit] += 1
                named_motion[i, digit, captions.DIRECTIONS.index(direction)] += 1
        digits = (seen["digits"] == named).all(dim=1)
        directions = (seen["motion"] >= named_motion).flatten(1).all(dim=1)
        return {"digits": digits, "directions": directions, "faithful": digits & directions}

    def describe(self, clips: torch.Tensor) -> list[str | None]:
        """What the judge sees, as captions (None where it sees no digit); digits in class order.

        Each digit gets the direction the judge most expects for its class; a second digit of the same
        class takes the same one if the judge counts two there, else the best one not next to it (one
        digit near a sector boundary is seen in both neighbouring sectors).
        """
        seen = self.read(clips)
        out = []
        for counts, motion, scores in zip(seen["digits"].tolist(), seen["motion"], seen["motion_scores"]):
            digits, directions = [], []
            for digit, n in enumerate(counts):
                ranked = scores[digit].argsort(descending=True).tolist()  # most expected direction first
                apart = [k for k in ranked[1:] if (k - ranked[0]) % NUM_DIRECTIONS not in (1, NUM_DIRECTIONS - 1)]
                for j in range(n):
                    pick = ranked[0] if j == 0 or motion[digit, ranked[0]] >= 2 else apart[0]
                    digits.append(digit)
                    directions.append(pick)
            keep = captions.MAX_DIGITS
            out.append(captions.describe(digits[:keep], directions[:keep]) if digits else None)
        return out


# --------------------------------------------------------------------------------------------
# measuring: the judge on real clips, a generator under the judge
# --------------------------------------------------------------------------------------------


def accuracy(judge: Model, num_clips: int = 1000, seed: int = data.STANDARD_TEST_SEED, split: str = "test",
             speed=0.1, batch_size: int = 250) -> dict:
    """The judge on real clips of held-out digits: how often it accepts the true caption, and rejects wrong ones.

    digits              share of clips whose digit counts it reads exactly
    directions          share of true (digit, direction) pairs it confirms
    captions            share of true captions it judges faithful (the number to trust it by; aim >= 98 %)
    wrong_digit         share of captions with one digit changed that it rejects
    wrong_direction     share of captions with one direction turned by 90 degrees that it rejects
    """
    totals = {"digits": 0.0, "directions": 0.0, "captions": 0.0, "wrong_digit": 0.0, "wrong_direction": 0.0}
    for start in range(0, num_clips, batch_size):
        idx = torch.arange(start, min(start + batch_size, num_clips))
        clips = data.moving_mnist(idx, seed=seed, split=split, num_frames=judge.config.num_frames, speed=speed)
        labels = data.clip_labels(idx, seed=seed, split=split, num_frames=judge.config.num_frames, speed=speed)
        digits, dirs = labels["digits"], labels["directions"]
        seen = judge.read(clips)
        truth_counts, _ = targets(digits, labels["angles"], judge.config)
        totals["digits"] += float((seen["digits"] == truth_counts).all(dim=1).sum())
        confirmed = seen["motion"][torch.arange(len(idx))[:, None], digits, dirs] >= 1  # (b, d)
        totals["directions"] += float(confirmed.float().mean(dim=1).sum())
        totals["captions"] += float(judge.score(clips, captions.describe_labels(labels))["faithful"].sum())
        other = (digits[:, 0] + 1 + idx % 9) % 10  # a different class for the first digit, cycling through all
        wrong = {"digits": torch.stack([other, *digits[:, 1:].T], dim=1), "directions": dirs}
        totals["wrong_digit"] += float((~judge.score(clips, captions.describe_labels(wrong))["faithful"]).sum())
        turned = torch.stack([(dirs[:, 0] + 2) % NUM_DIRECTIONS, *dirs[:, 1:].T], dim=1)  # +90 degrees
        wrong = {"digits": digits, "directions": turned}
        totals["wrong_direction"] += float((~judge.score(clips, captions.describe_labels(wrong))["faithful"]).sum())
    return {"clips": num_clips, "seed": seed, "split": split, "speed": speed,
            **{name: value / num_clips for name, value in totals.items()}}


def faithfulness(model, judge: Model, num_clips: int = 256, guidance: float = 0.0, conditional: bool = True,
                 seed: int = 0, batch_size: int = 64, num_frames: int | None = None, device=None,
                 **generate_kwargs) -> dict:
    """Text-to-video under the judge: the share of generated clips whose digits and directions match the caption.

    Captions are those of test clips (seed `seed`, held-out digits); each is generated from nothing (no
    context frames) with `guidance`. conditional=False generates without the captions (the unconditional
    baseline) and judges the clips against them all the same: the rate chance alone gives.
    """
    num_frames = num_frames or judge.config.num_frames
    _, texts = data.moving_mnist(range(num_clips), seed=seed, split="test", num_frames=1, captions=True)
    device = device or next(model.parameters()).device
    totals = {"faithful": 0.0, "digits": 0.0, "directions": 0.0}
    start = time.perf_counter()
    for i in range(0, num_clips, batch_size):
        batch = texts[i : i + batch_size]
        context = torch.zeros(len(batch), 0, 1, 64, 64, device=device)
        video = model.generate(context, num_frames, seed=seed + i, progress=False, caption=batch if conditional else None,
                               guidance=guidance if conditional else 0.0, **generate_kwargs)
        verdict = judge.score(video.cpu(), batch)
        for name in totals:
            totals[name] += float(verdict[name].sum())
    return {"clips": num_clips, "guidance": guidance, "conditional": conditional, "num_frames": num_frames,
            "generate_kwargs": generate_kwargs, "seconds": time.perf_counter() - start,
            **{name: value / num_clips for name, value in totals.items()}}


# --------------------------------------------------------------------------------------------
# the family's pieces: batches, build, rebuild
# --------------------------------------------------------------------------------------------


def make_batch(step: int, batch_size: int, seed: int = 0, device=None, speed=None):
    """Batch `step`: (clips (b, 20, 1, 64, 64) on `device`, digit classes (b, 2), initial angles (b, 2)).

    speed: the generator's speed or (low, high) range; None is TRAIN_SPEED (`--speed` sets it).
    """
    speed = TRAIN_SPEED if speed is None else speed
    idx = torch.arange(int(step) * batch_size, (int(step) + 1) * batch_size)
    clips = data.moving_mnist(idx, seed=seed, split="train", speed=speed, device=device)
    labels = data.clip_labels(idx, seed=seed, split="train", speed=speed)
    return clips, labels["digits"].to(clips.device), labels["angles"].to(clips.device)


def build(preset: str, args=None) -> Model:
    """`minivid train judge [--preset P] [--set NAME=VALUE]`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r} for judge; expected one of {sorted(PRESETS)}")
    from minivid.families import with_overrides

    return Model(with_overrides(PRESETS[preset], args))


def from_config(config: dict) -> Model:
    """Rebuild from a checkpoint's plain-data config (lists back to tuples)."""
    names = {f.name for f in fields(Config)}
    return Model(Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k in names}))
