"""Partial convolutions and the partial-convolution U-Net (the MEDFE paper's PConv baseline).

Guilin Liu, Fitsum A. Reda, Kevin J. Shih, Ting-Chun Wang, Andrew Tao, Bryan Catanzaro, "Image
Inpainting for Irregular Holes Using Partial Convolutions", ECCV 2018, arXiv 1804.07723;
formulation of NVIDIA's reference ``PartialConv2d`` (NVIDIA/partialconv, single-channel mask).

A partial convolution sees only known pixels: with ``M`` the validity mask (1 = known),

    x' = W^T (X * M) * sum(1) / sum(M) + b   where sum(M) > 0, else 0,
    m' = 1                                   where sum(M) > 0, else 0,

``sum(1)`` being the window size ``k x k``. The mask shrinks the hole by the kernel's reach at
every layer, so deep layers see a fully valid map. Kept inside the MEDFE folder (the rule of two:
it moves to ``archlab.nn`` when a second paper needs it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.nn.conv import check_dense_input


class PartialConv2d(nn.Conv2d):
    """``Conv2d`` renormalised over the known pixels, with mask update.

    ``forward(x, mask)``: ``x`` (B, C_in, H, W), ``mask`` (B, 1, H, W) with 1 = known ->
    ``(y (B, C_out, H', W'), new_mask (B, 1, H', W'))``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        k0, k1 = self.kernel_size
        self.register_buffer("_ones", torch.ones(1, 1, k0, k1), persistent=False)
        self.window = float(k0 * k1)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        with torch.no_grad():
            count = F.conv2d(
                mask.to(x.dtype), self._ones.to(x.dtype), None, self.stride, self.padding,
                self.dilation,
            )  # (B, 1, H', W'): known pixels in each window  # fmt: skip
            new_mask = (count > 0).to(x.dtype)
            ratio = self.window / count.clamp_min(1.0) * new_mask
        raw = F.conv2d(
            x * mask, self.weight, None, self.stride, self.padding, self.dilation, self.groups
        )
        out = raw * ratio
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1) * new_mask
        return out, new_mask


class PConvLayer(nn.Module):
    """Partial conv -> optional BatchNorm -> optional activation; passes the mask along."""

    def __init__(self, d_in: int, d_out: int, kernel: int, stride: int, bn: bool, act: str | None):
        super().__init__()
        self.conv = PartialConv2d(d_in, d_out, kernel, stride, kernel // 2, bias=not bn)
        self.norm = nn.BatchNorm2d(d_out) if bn else nn.Identity()
        self.act = {"relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU(0.2), None: nn.Identity()}[act]

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        x, mask = self.conv(x, mask)
        return self.act(self.norm(x)), mask


@dataclass(frozen=True)
class PConvUNetConfig:
    """Partial-convolution U-Net (Liu et al. 2018, Table/Sec. 3.3).

    Attributes:
        n_channels: image channels C.
        widths: encoder widths; layer i has stride 2 (the paper: 64, 128, 256, 512 x 5).
        kernels: encoder kernel sizes (the paper: 7, 5, 5, 3, 3, ...).
    """

    n_channels: int = 3
    widths: tuple[int, ...] = (64, 128, 256, 512, 512, 512, 512, 512)
    kernels: tuple[int, ...] = (7, 5, 5, 3, 3, 3, 3, 3)

    def __post_init__(self) -> None:
        if len(self.widths) != len(self.kernels) or len(self.widths) < 1:
            raise ValueError("widths and kernels need the same (>= 1) number of entries")
        if min(self.widths) < 1 or min(self.kernels) < 1 or self.n_channels < 1:
            raise ValueError("widths, kernels and n_channels must be positive")

    @property
    def multiple(self) -> int:
        return 2 ** len(self.widths)


class PConvUNet(nn.Module):
    """``forward(image, holes) -> image``: ``image`` (B, C, H, W) in [0, 1], ``holes``
    (B, 1, H, W) with 1 = missing. Hole pixels of the input are ignored (zeroed).

    Encoder: stride-2 partial convs (BN + ReLU, no BN on the first). Decoder: nearest 2x
    upsampling of features and masks, concatenation with the encoder's (features and masks),
    3x3 partial conv, BN, LeakyReLU(0.2); the last layer concatenates the input image and mask
    and outputs the image (no BN, no activation).
    """

    def __init__(self, cfg: PConvUNetConfig):
        super().__init__()
        self.cfg = cfg
        w, k, C = cfg.widths, cfg.kernels, cfg.n_channels
        self.encoder = nn.ModuleList(
            [
                PConvLayer(C if i == 0 else w[i - 1], w[i], k[i], 2, bn=i > 0, act="relu")
                for i in range(len(w))
            ]
        )
        skips = [C, *w[:-1]]  # skip feature widths, full resolution first
        self.decoder = nn.ModuleList()
        d_in = w[-1]
        for i in reversed(range(len(w))):
            last = i == 0
            d_out = C if last else w[i - 1]
            self.decoder.append(
                PConvLayer(
                    d_in + skips[i], d_out, 3, 1, bn=not last, act=None if last else "leaky_relu"
                )
            )
            d_in = d_out

    def forward(self, image: Tensor, holes: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        check_inpainting_input(
            image, holes, self.cfg.n_channels, self.cfg.multiple, "PConvUNet", self
        )
        mask = 1.0 - holes
        x = image * mask
        feats, masks = [x], [mask]
        h, m = x, mask
        for layer in self.encoder:
            h, m = layer(h, m)  # (B, w_i, H / 2^(i+1), ...)
            feats.append(h)
            masks.append(m)
        feats.pop()
        masks.pop()
        for layer in self.decoder:
            h = F.interpolate(h, scale_factor=2, mode="nearest")
            m = F.interpolate(m, scale_factor=2, mode="nearest")
            skip, skip_m = feats.pop(), masks.pop()
            # the paper keeps a mask per channel; with one mask channel the concatenated map is
            # valid where either part is, and each part is zeroed where its own mask is 0
            h = torch.cat([h * m, skip * skip_m], dim=1)
            m = torch.maximum(m, skip_m)
            h, m = layer(h, m)
        return h


def check_inpainting_input(
    image: Tensor,
    holes: Tensor,
    n_channels: int,
    multiple: int,
    name: str,
    like: nn.Module | None = None,
) -> None:
    """One clear ``ValueError`` for a bad (image, holes) pair (``like``: the model, whose dtype
    the image must have)."""
    check_dense_input(image, n_channels=n_channels, multiple=multiple, name=name, like=like)
    if not isinstance(holes, Tensor) or holes.ndim != 4 or holes.shape[1] != 1:
        shape = tuple(holes.shape) if isinstance(holes, Tensor) else type(holes).__name__
        raise ValueError(f"{name}: expected a hole mask (B, 1, H, W), got {shape}")
    if holes.shape[0] != image.shape[0] or holes.shape[-2:] != image.shape[-2:]:
        raise ValueError(
            f"{name}: hole mask {tuple(holes.shape)} does not match image {tuple(image.shape)}"
        )
    if not torch.isfinite(holes).all() or ((holes != 0) & (holes != 1)).any():
        raise ValueError(f"{name}: the hole mask must hold only 0 (known) and 1 (hole)")
    if bool((holes.flatten(1).amin(1) == 1).any()):
        raise ValueError(f"{name}: a hole mask covers the whole image (nothing to inpaint from)")


__all__ = [
    "PConvLayer",
    "PConvUNet",
    "PConvUNetConfig",
    "PartialConv2d",
    "check_inpainting_input",
]
