"""The observation encoder: a GroupNorm ResNet per image key, its weights and its augmentation.

As ManiFlow: timm's ResNet with every BatchNorm replaced by GroupNorm(C // 16, C), global average
pooling, no classifier; from scratch by default, or from a local ResNet / R3M state dict (nothing
is downloaded). Augmentation is batched on the device with one random draw per sample.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.models import adapt_input_conv
from timm.models.resnet import BasicBlock, ResNet
from torch import nn

from overlayflow.settings import PolicyConfig

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale


def _group_norm(num_channels: int, **kwargs: Any) -> nn.GroupNorm:
    """timm's ``norm_layer`` hook: ManiFlow replaces every BatchNorm with GroupNorm(C // 16, C)."""
    return nn.GroupNorm(num_channels // 16, num_channels, **kwargs)


def map_resnet_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An R3M, torchvision or timm ResNet state dict → timm ResNet keys (pure).

    R3M saves ``{"r3m": {"module.convnet.conv1.weight": ..., "module.lang_enc...": ...}}``:
    ``module.`` and ``convnet.`` are stripped and everything outside the convnet (language encoder,
    reward head) is dropped. The classifier (``fc.*``) and BatchNorm running statistics are dropped
    too: the encoder has no classifier, and GroupNorm has no running statistics — BN weight/bias
    become the GroupNorm affine (same shapes), so pretrained features are a starting point, not
    reproduced exactly.
    """
    stripped = {key.removeprefix("module."): value for key, value in state.items()}
    r3m = any(key.startswith("convnet.") for key in stripped)
    mapped = {}
    for key, value in stripped.items():
        if r3m:
            if not key.startswith("convnet."):
                continue
            key = key.removeprefix("convnet.")
        if key.startswith("fc.") or key.endswith(
            ("running_mean", "running_var", "num_batches_tracked")
        ):
            continue
        mapped[key] = value
    return mapped


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a local ResNet checkpoint (tensors only: ``weights_only=True``) and map its keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"encoder weights {path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"encoder weights {path}: not a checkpoint that torch.load(weights_only=True) accepts "
            f"(expected a state dict of tensors, or R3M's {{'r3m': state_dict}}): {error}"
        ) from error
    if isinstance(obj, Mapping):
        for wrapper in ("r3m", "state_dict", "model"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"encoder weights {path}: expected a state dict of tensors (or {{'r3m': state_dict}}). "
            f"Got {type(obj).__name__}."
        )
    return map_resnet_keys(obj)


def state_mismatch(
    state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]
) -> str | None:
    """What keeps the state dict ``state`` from loading where ``own`` is (missing, unexpected
    and differently shaped tensors, a few of each named), or None when it fits."""
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    reshaped = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    parts = [
        f"{len(keys)} {what} keys {keys[:4]}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("reshaped", reshaped))
        if keys
    ]
    return "; ".join(parts) or None


TINY_CHANNELS = (16, 32, 64, 128)  # resnet_tiny's stages (settings.BACKBONE_FEATURES)


def create_backbone(backbone: str, in_chans: int) -> nn.Module:
    """The GroupNorm ResNet ``backbone`` (a `settings.BACKBONE_FEATURES` name), no classifier."""
    kwargs = dict(num_classes=0, in_chans=in_chans, global_pool="avg", norm_layer=_group_norm)
    if backbone == "resnet_tiny":
        return ResNet(BasicBlock, [1, 1, 1, 1], channels=TINY_CHANNELS, stem_width=16, **kwargs)
    return timm.create_model(backbone, pretrained=False, **kwargs)


def coordinate_channels(images: torch.Tensor) -> torch.Tensor:
    """``images`` (N, C, H, W) with two channels more: each pixel's column and row in [-1, 1].

    CoordConv (Liu et al., 2018): with them a convolution can weigh what it sees by where it is,
    so a globally pooled feature can carry an object's image position; without them only the
    padding tells a ResNet where things are.
    """
    n, _, h, w = images.shape
    rows = torch.linspace(-1.0, 1.0, h, device=images.device, dtype=images.dtype)
    cols = torch.linspace(-1.0, 1.0, w, device=images.device, dtype=images.dtype)
    grid = torch.stack(torch.meshgrid(cols, rows, indexing="xy"))  # (2, H, W): column, row
    return torch.cat([images, grid.expand(n, 2, h, w)], 1)


class ImageEncoder(nn.Module):
    """ResNet (timm, GroupNorm, global average pool) → (N, features) from (N, C, H, W) in [0, 1].

    With ``coords`` the ResNet also sees two coordinate channels (`coordinate_channels`), added
    after augmentation and normalization; a pretrained first convolution gets zero weights for
    them, so it starts as it was trained.
    """

    def __init__(
        self,
        backbone: str,
        in_chans: int,
        weights: str | None = None,
        *,
        imagenet_norm: bool = False,
        coords: bool = False,
    ) -> None:
        super().__init__()
        self.coords = coords
        self.in_chans = in_chans
        self.net = create_backbone(backbone, in_chans + 2 * coords)
        if weights is not None:
            self._load(weights, backbone)
        # ManiFlow normalizes with ImageNet statistics only for pretrained weights; from scratch
        # the [0, 1] input goes in as it is. The 6-channel layout uses the same statistics twice.
        self.imagenet_norm = imagenet_norm
        repeat = in_chans // 3
        self.register_buffer(
            "mean", torch.tensor(IMAGENET_MEAN * repeat).view(1, -1, 1, 1), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(IMAGENET_STD * repeat).view(1, -1, 1, 1), persistent=False
        )

    def _load(self, path: str, backbone: str) -> None:
        state = read_weights(path)
        own = self.net.state_dict()
        conv1 = state.get("conv1.weight")
        if conv1 is not None and conv1.ndim == 4:
            if conv1.shape[1] == 3 and self.in_chans != 3:
                conv1 = adapt_input_conv(self.in_chans, conv1)  # RGB filters repeated, × 3/C
            if self.coords and conv1.shape[1] == self.in_chans:  # zero filters for coordinates
                conv1 = torch.cat([conv1, conv1.new_zeros(conv1.shape[0], 2, *conv1.shape[2:])], 1)
            state["conv1.weight"] = conv1
        mismatch = state_mismatch(state, own)
        if mismatch is not None:
            raise ValueError(
                f"encoder weights {path} do not fit a GroupNorm {backbone}: {mismatch}"
            )
        self.net.load_state_dict(state)
        logger.info("encoder weights loaded from %s (%d tensors)", path, len(state))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.imagenet_norm:
            images = (images - self.mean) / self.std
        if self.coords:
            images = coordinate_channels(images)
        if images.is_cuda:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.net(images)


# Augmentation (training only, batched, one random draw per sample)


def _uniform(n: int, low: float, high: float, device, generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, device=device, generator=generator)


def _gray(rgb: torch.Tensor) -> torch.Tensor:
    w = rgb.new_tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
    return (rgb * w).sum(1, keepdim=True)


def _shift_hue(rgb: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    r, g, b = rgb.unbind(1)
    value, _ = rgb.max(1)
    chroma = value - rgb.min(1).values
    c = chroma.clamp_min(1e-12)
    hue = torch.where(
        value == r, ((g - b) / c) % 6, torch.where(value == g, (b - r) / c + 2, (r - g) / c + 4)
    )
    hue = torch.where(chroma > 0, hue / 6, 0.0)
    sat = torch.where(value > 0, chroma / value.clamp_min(1e-12), 0.0)
    hue = (hue + shift.view(-1, 1, 1)) % 1.0
    # HSV → RGB: f(n) = v − v·s·clamp(min(k, 4 − k), 0, 1), k = (n + 6h) mod 6, n = 5, 3, 1.
    k = (rgb.new_tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1) + 6 * hue[:, None]) % 6
    return value[:, None] * (1 - sat[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1))


def color_jitter(
    rgb: torch.Tensor,
    brightness: torch.Tensor,
    contrast: torch.Tensor,
    saturation: torch.Tensor,
    hue: torch.Tensor,
) -> torch.Tensor:
    """torchvision's adjust_brightness/contrast/saturation/hue with one factor per image (N,).

    Fixed order (torchvision's ColorJitter shuffles it per call).
    """
    f = lambda v: v.view(-1, 1, 1, 1)  # noqa: E731
    rgb = (rgb * f(brightness)).clamp(0, 1)
    mean = _gray(rgb).mean(dim=(1, 2, 3), keepdim=True)
    rgb = (f(contrast) * rgb + (1 - f(contrast)) * mean).clamp(0, 1)
    rgb = (f(saturation) * rgb + (1 - f(saturation)) * _gray(rgb)).clamp(0, 1)
    return _shift_hue(rgb, hue)


def augment_images(
    images: torch.Tensor, n_frames: int, cfg: PolicyConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random 95% crop + resize back, rotation ±5° (one affine grid_sample on all channels) and
    colour jitter on the RGB channels (the first 3; a 6-channel path half is left alone).

    ``images`` is (B·n_frames, C, S, S) in [0, 1]. Every sample gets its own draw, shared by its
    n_frames frames so the motion between them is not distorted.
    """
    n, dev = images.shape[0] // n_frames, images.device
    per_image = lambda v: v.repeat_interleave(n_frames)  # noqa: E731
    angle = per_image(_uniform(n, -cfg.rotation, cfg.rotation, dev, generator)) * math.pi / 180
    slack = 1.0 - cfg.crop  # crop centre offset range, in normalized coordinates
    tx = per_image(_uniform(n, -slack, slack, dev, generator))
    ty = per_image(_uniform(n, -slack, slack, dev, generator))
    cos, sin = cfg.crop * torch.cos(angle), cfg.crop * torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, tx], -1), torch.stack([sin, cos, ty], -1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    b, c, s, h = cfg.jitter
    factors = [per_image(_uniform(n, max(0.0, 1 - v), 1 + v, dev, generator)) for v in (b, c, s)]
    shift = per_image(_uniform(n, -h, h, dev, generator))
    rgb = color_jitter(out[:, :3], *factors, shift)
    return torch.cat([rgb, out[:, 3:]], 1) if out.shape[1] > 3 else rgb
