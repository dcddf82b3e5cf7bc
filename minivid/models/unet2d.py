"""The image UNet the video model grows from, and the inflation that grows it.

An image UNet is the 3D UNet with its temporal layers switched off (`temporal=False`): every frame
goes through the same 2D residual blocks and spatial attention on its own. Inflation
(Ho et al. 2022, "Video Diffusion Models"; Singer et al. 2022, "Make-A-Video") copies those 2D
weights into a video network and adds the temporal layers, whose last projections start at zero,
so at initialisation the video network *is* the image network applied frame by frame:

    image = UNet3D(image_config(base_channels=48))              # train on single frames
    video = UNet3D(UNetConfig(base_channels=48, in_channels=3))  # same widths, temporal on
    inflate(image, video)                                        # video(x) == image(x) per frame

The video network's extra input channels (context frame and mask) get zero stem weights, so at
initialisation they change nothing either; fine-tuning then learns to use them.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from minivid.models.unet3d import UNet3D, UNetConfig


def image_config(**overrides) -> UNetConfig:
    """A UNetConfig for an image model: one input channel, no temporal layers."""
    return replace(UNetConfig(in_channels=1, temporal=False), **overrides)


def _same_shape(image_cfg: UNetConfig, video_cfg: UNetConfig) -> bool:
    keys = ("base_channels", "channel_mults", "blocks_per_level", "attention_levels", "heads", "patch", "out_channels")
    return all(tuple(getattr(image_cfg, k)) == tuple(getattr(video_cfg, k)) if isinstance(getattr(image_cfg, k), (tuple, list))
               else getattr(image_cfg, k) == getattr(video_cfg, k) for k in keys)


def widened_stem(weight: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A stem's weight for a network with more input channels: the new channels' weights at zero, so they add
    nothing at first. Stem weights are (out, in_channels * patch^2, 3, 3), channel-major: new channels come last.
    Returned unchanged when the shapes already agree or differ otherwise (the caller then reports the mismatch)."""
    same_rest = weight.shape[:1] + weight.shape[2:] == target.shape[:1] + target.shape[2:]
    if weight.shape == target.shape or not same_rest or target.shape[1] < weight.shape[1]:
        return weight
    stem = torch.zeros_like(target)
    stem[:, : weight.shape[1]] = weight
    return stem


@torch.no_grad()
def inflate(image_net: UNet3D, video_net: UNet3D) -> UNet3D:
    """Copy an image UNet's weights into a video UNet of the same widths; returns video_net.

    Temporal layers keep their (zero-output) initialisation; stem weights for input channels the
    image model did not have are set to zero.
    """
    ic, vc = image_net.config, video_net.config
    if ic.temporal:
        raise ValueError("inflate() expects an image network (temporal=False) as its source")
    if not _same_shape(ic, vc):
        raise ValueError("the image and video networks must share widths, levels, heads and patch size to inflate")
    if vc.in_channels < ic.in_channels:
        raise ValueError(f"the video network has {vc.in_channels} input channels, fewer than the image network's {ic.in_channels}")
    target = video_net.state_dict()
    copied = 0
    for name, weight in image_net.state_dict().items():
        if name not in target:
            raise ValueError(f"image weight {name} has no place in the video network")
        if name == "stem.weight":
            weight = widened_stem(weight, target[name])
        target[name].copy_(weight)
        copied += 1
    for name, tensor in target.items():  # every non-temporal parameter must have come from the image
        if ".temporal." not in name and name not in image_net.state_dict():
            raise ValueError(f"video weight {name} has no counterpart in the image network")
    video_net.load_state_dict(target)
    return video_net


def grow(source: UNet3D, target: UNet3D) -> UNet3D:
    """Copy a trained network into one that only adds zero-initialised parts; returns target.

    Every source weight must have a place of the same shape, except the stem, which may take more input
    channels (e.g. the `guess` channel): their weights start at zero. Target weights the source lacks must
    be new space-time attention layers, whose zero output layer keeps the network's function unchanged.
    """
    src, dst = source.state_dict(), target.state_dict()
    for name, weight in src.items():
        if name == "stem.weight" and name in dst:
            weight = widened_stem(weight, dst[name])
        if name not in dst or dst[name].shape != weight.shape:
            raise ValueError(f"cannot grow: weight {name} {tuple(weight.shape)} has no place of that shape in the new network")
        dst[name].copy_(weight)
    added = [name for name in dst if name not in src]
    if any(".spacetime." not in name for name in added):
        raise ValueError(f"cannot grow: the new network also adds {[n for n in added if '.spacetime.' not in n][:3]}")
    target.load_state_dict(dst)
    return target
