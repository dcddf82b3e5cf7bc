"""A deterministic video predictor that stacks frames as channels (after SimVP, Gao et al. 2022).

A small 2D encoder turns each frame (and whether it is given) into a 16x16 feature map. The translator
stacks the feature maps of all frames as channels and mixes them with plain 2D residual convolutions, so
every output frame sees every input frame at once. A decoder turns each frame's features back into pixels,
with a skip from the encoder's full-resolution features. No attention and no 3D layers: most of the work
happens at 16x16, so it costs a few percent of the 3D UNet, and on motion as regular as Moving MNIST's
this simple design is a strong deterministic predictor.

Shapes: frames (b, t, c, h, w) in [-1, 1], read only where given; given (b, t), 1 = given; t <= `frames`
(shorter clips are padded with frames that are not given). Out: (b, t, c, h, w), a guess of every frame.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def conv_block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.GroupNorm(4, c_out), nn.SiLU())


class ResConv(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(conv_block(width, width), nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(8, width))

    def forward(self, x):
        return F.silu(x + self.body(x))


HIDDEN, BLOCKS = 16, 6  # the default shape: channels per frame (encoder and decoder), translator blocks


def check_shape_has_predictor(hidden: int, blocks: int, has_frame_stack: bool, family: str, hint: str) -> None:
    """A config's predictor_hidden / predictor_blocks shape a frame stack: refuse them changed where there is none."""
    if (hidden, blocks) != (HIDDEN, BLOCKS) and not has_frame_stack:
        raise ValueError(f"predictor_hidden and predictor_blocks shape a frame-stack predictor: give the {family} one, "
                         f"e.g. {hint}")


class FrameStackPredictor(nn.Module):
    def __init__(self, frames: int, width: int, channels: int = 1, hidden: int = HIDDEN, blocks: int = BLOCKS):
        super().__init__()
        if width < 8 or width % 8 or hidden < 4 or hidden % 4 or blocks < 1:
            raise ValueError(f"a frame-stack predictor needs a width that is a positive multiple of 8, channels per "
                             f"frame (predictor_hidden) a positive multiple of 4 and at least one translator block "
                             f"(predictor_blocks); got width {width}, predictor_hidden {hidden}, predictor_blocks {blocks}")
        self.frames, self.hidden = frames, hidden
        self.enc_full = conv_block(channels + 1, hidden)  # 64x64: the frame and its given-mask
        self.enc_down = nn.Sequential(conv_block(hidden, hidden, stride=2), conv_block(hidden, hidden, stride=2))  # -> 16x16
        self.mix_in = nn.Conv2d(frames * hidden, width, 1)  # all frames' features, stacked as channels
        self.translator = nn.Sequential(*[ResConv(width) for _ in range(blocks)])
        self.mix_out = nn.Conv2d(width, frames * hidden, 1)
        self.dec_up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), conv_block(hidden, hidden),
            nn.Upsample(scale_factor=2, mode="nearest"), conv_block(hidden, hidden),
        )
        self.dec_out = nn.Sequential(conv_block(2 * hidden, hidden), nn.Conv2d(hidden, channels, 1))

    def forward(self, frames: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
        b, t, c, h, w = frames.shape
        if t > self.frames:
            raise ValueError(f"this predictor sees at most {self.frames} frames, got {t}")
        mask = given.to(frames.dtype)[:, :, None, None, None].expand(b, t, 1, h, w)
        x = torch.cat([frames * mask, mask], dim=2)
        x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, self.frames - t))  # missing frames: not given, zeros
        full = self.enc_full(x.flatten(0, 1))  # (b T) hidden h w
        low = self.enc_down(full)  # (b T) hidden h/4 w/4
        z = low.reshape(b, self.frames * self.hidden, *low.shape[-2:])
        z = self.mix_out(self.translator(self.mix_in(z)))
        z = self.dec_up(z.reshape(b * self.frames, self.hidden, *low.shape[-2:]))
        out = self.dec_out(torch.cat([z, full], dim=1))
        return out.reshape(b, self.frames, c, h, w)[:, :t]
