"""MEDFE: Rethinking Image Inpainting via a Mutual Encoder-Decoder with Feature Equalizations.

Hongyu Liu, Bin Jiang, Yibing Song, Wei Huang, Chao Yang, ECCV 2020, arXiv 2007.06929.
Paper card, deviations and measured results: README.md beside this file.

After the official PyTorch code (KumapowerLIU/Rethinking-Inpainting-MEDFE: ``models/Encoder.py``,
``Decoder.py``, ``PCconv.py``, ``InnerCos.py``):

- **Encoder** (pix2pix): ``n_layers`` 4x4 stride-2 convolutions on the masked image and its
  validity mask, then dilated residual blocks at the bottom. The first ``n_texture_layers``
  (shallow) features form the **texture** branch, the others (deep) the **structure** branch.
- **Branches** (``MutualEqualization``): shallow features are brought down (strided convs), deep
  ones up (bilinear + 1x1), to one scale ``s`` (that of the last texture layer), concatenated per
  branch and reduced to ``d_branch`` channels. Each branch's holes are filled by three parallel
  stacks of partial convolutions with kernels 3, 5, 7 (``n_pconv_layers`` each), concatenated and
  reduced by a 1x1 conv. A 1x1 conv + tanh maps each filled branch to an image that is supervised
  (``aux``): structure -> an edge-preserving smoothed ground truth, texture -> the ground truth,
  both at scale ``s``.
- **Feature equalisation**: the two branches are concatenated and fused, reweighted per channel
  (squeeze-excitation, the *channel equalisation*), then the **bilateral propagation activation**
  (``BilateralPropagation``, *spatial equalisation*): a spatial term (Gaussian-weighted average
  over all positions, sigma ``sigma_s``) and a range term (softmax over a ``k x k``
  neighbourhood of feature similarities, weighting the neighbours' features), concatenated and
  fused by a 1x1 conv.
- The equalised features are added to every encoder skip (resized up for the texture layers,
  strided down for the structure layers) and a pix2pix decoder (transposed convs, tanh) outputs
  the image.

``use_bpa=False`` is the paper's ablation without the bilateral propagation activation (the
channel equalisation stays; the 1x1 fusion then sees the SE features in place of both terms, so
the parameter count is unchanged). ``bpa_variant="released"`` computes the BPA as the
official code does (its terms reshaped from position-major to channels without a transpose).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.nn.conv import SqueezeExcite
from archlab.papers.dense.medfe.pconv import PartialConv2d, check_inpainting_input
from archlab.registry import PaperSpec


def _in(d: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(d, affine=True)


def _norm(kind: str, d: int) -> nn.Module:
    """The encoder/decoder normalisation (official ``get_norm_layer``, affine)."""
    return _in(d) if kind == "instance" else nn.BatchNorm2d(d)


class ConvINAct(nn.Sequential):
    """conv -> InstanceNorm (affine) -> optional LeakyReLU(0.2) (the official ``ConvDown``
    unit; bias-free as there)."""

    def __init__(self, d_in: int, d_out: int, kernel: int, stride: int, padding: int, act=True):
        layers: list[nn.Module] = [nn.Conv2d(d_in, d_out, kernel, stride, padding, bias=False)]
        layers.append(_in(d_out))
        if act:
            layers.append(nn.LeakyReLU(0.2))
        super().__init__(*layers)


def _strided_down(d_in: int, d_out: int, n: int, last_act: bool) -> nn.Sequential:
    """``n`` 4x4 stride-2 ``ConvINAct`` from ``d_in`` to ``d_out`` channels (widths double up to
    ``d_out``); ``n == 0`` -> a 1x1 ``ConvINAct``."""
    if n == 0:
        return nn.Sequential(ConvINAct(d_in, d_out, 1, 1, 0, act=last_act))
    layers, d = [], d_in
    for i in range(n):
        nxt = d_out if i == n - 1 else min(2 * d, d_out)
        layers.append(ConvINAct(d, nxt, 4, 2, 1, act=last_act or i < n - 1))
        d = nxt
    return nn.Sequential(*layers)


class ResizeConv(nn.Module):
    """Bilinear resize to a given size, then 1x1 ``ConvINAct`` (the official ``ConvUp``)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.conv = ConvINAct(d_in, d_out, 1, 1, 0)

    def forward(self, x: Tensor, size: tuple[int, int]) -> Tensor:
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.conv(x)


class PConvStack(nn.Module):
    """``n`` partial conv (kernel ``k``, same padding) -> InstanceNorm -> LeakyReLU layers,
    passing the updated mask along (the official ``PCBActiv(innorm=True)`` sequence)."""

    def __init__(self, d: int, kernel: int, n: int):
        super().__init__()
        self.convs = nn.ModuleList(
            [PartialConv2d(d, d, kernel, 1, kernel // 2, bias=False) for _ in range(n)]
        )
        self.norms = nn.ModuleList([_in(d) for _ in range(n)])

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        for conv, norm in zip(self.convs, self.norms):
            x, mask = conv(x, mask)
            x = F.leaky_relu(norm(x), 0.2)
        return x, mask


class MultiScaleFill(nn.Module):
    """Parallel partial-conv stacks with kernels ``kernels`` on one branch, concatenated and
    reduced to ``d`` channels by ``reduce`` (given, as the official code shares it).
    ``(B, d, s, s), mask (B, 1, s, s) -> (B, d, s, s)``."""

    def __init__(self, d: int, kernels: tuple[int, ...], n_layers: int):
        super().__init__()
        self.stacks = nn.ModuleList([PConvStack(d, k, n_layers) for k in kernels])

    def forward(self, x: Tensor, mask: Tensor, reduce: nn.Module) -> Tensor:
        return reduce(torch.cat([stack(x, mask)[0] for stack in self.stacks], dim=1))


@functools.lru_cache(maxsize=16)
def gaussian_affinity(h: int, w: int, sigma: float) -> Tensor:
    """Row-normalised Gaussian weights between all positions of an ``h x w`` map:
    ``(h*w, h*w)``, row ``i`` = ``exp(-|p_i - p_j|^2 / 2 sigma^2) / sum_j (...)`` (the official
    ``util.gussin``, for any size)."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()], 1).double()  # (N, 2)
    d2 = torch.cdist(pos, pos).square()
    g = torch.exp(-d2 / (2 * sigma * sigma))
    return (g / g.sum(1, keepdim=True)).float()


class BilateralPropagation(nn.Module):
    """The bilateral propagation activation (BPA) of MEDFE (the official ``BASE`` after SE).

    For a map ``x`` (B, D, h, w) and position ``i``:

    - spatial term: ``sum_j g_s(i, j) x_j`` with ``g_s`` a Gaussian of the distance between
      positions ``i`` and ``j`` (sigma ``sigma_s``), normalised over all positions ``j``;
    - range term: ``sum_{j in N_k(i)} softmax_j(f(x_i, x_j)) x_j`` over the ``k x k``
      neighbourhood, with ``f(x_i, x_j) = mean_c sigmoid(x_i)_c sigmoid(x_j)_c``;

    both concatenated: ``(B, D, h, w) -> (B, 2D, h, w)``.

    ``variant="paper"`` computes these equations (neighbours outside the map excluded from the
    softmax). ``variant="released"`` computes them as the official ``BASE`` does: each term is
    first formed position-major, ``(h*w, D)``, and then ``view``-ed as ``(D, h, w)`` without a
    transpose, so output channel ``d`` at position ``p`` holds entry ``d*h*w + p`` of the
    position-major buffer (positions and channels mixed); the range term's zero padding takes
    part in the softmax (similarity 0, feature 0), as there.
    """

    VARIANTS = ("paper", "released")

    def __init__(self, sigma_s: float = 1.5, kernel: int = 3, variant: str = "paper"):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"the range kernel must be odd and >= 1, got {kernel}")
        if variant not in self.VARIANTS:
            raise ValueError(f"BPA variant must be one of {self.VARIANTS}, got {variant!r}")
        self.sigma_s, self.kernel, self.variant = sigma_s, kernel, variant

    def _layout(self, terms: Tensor, shape: torch.Size) -> Tensor:
        """``(B, D, N)`` channel-major terms -> ``(B, D, h, w)``: transposed back (paper) or
        the official reshape of the position-major ``(B, N, D)`` buffer (released)."""
        if self.variant == "released":
            return terms.transpose(1, 2).reshape(shape)
        return terms.view(shape)

    def spatial(self, x: Tensor) -> Tensor:  # (B, D, h, w) -> (B, D, h, w)
        B, D, h, w = x.shape
        g = gaussian_affinity(h, w, float(self.sigma_s)).to(x)  # (N, N)
        return self._layout(x.flatten(2) @ g.T, x.shape)

    def range(self, x: Tensor) -> Tensor:  # (B, D, h, w) -> (B, D, h, w)
        B, D, h, w = x.shape
        k, pad = self.kernel, self.kernel // 2
        s = torch.sigmoid(x)
        neigh_s = F.unfold(s, k, padding=pad).view(B, D, k * k, h * w)  # (B, D, k², N)
        neigh_x = F.unfold(x, k, padding=pad).view(B, D, k * k, h * w)
        sim = (s.flatten(2).unsqueeze(2) * neigh_s).mean(1)  # (B, k², N)
        if self.variant == "paper":  # padding excluded from the softmax
            ones = torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device)
            inside = F.unfold(ones, k, padding=pad)
            sim = sim.masked_fill(inside.view(1, k * k, h * w) == 0, float("-inf"))
        weights = sim.softmax(dim=1)  # over the neighbourhood
        return self._layout((neigh_x * weights.unsqueeze(1)).sum(2), x.shape)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.spatial(x), self.range(x)], dim=1)


class FeatureEqualization(nn.Module):
    """Channel equalisation (SE) then spatial equalisation (BPA), fused by a 1x1 conv.
    ``(B, D, s, s) -> (B, D, s, s)``."""

    def __init__(
        self,
        d: int,
        se_reduction: int,
        sigma_s: float,
        kernel: int,
        use_bpa: bool,
        bpa_variant: str = "paper",
    ):
        super().__init__()
        self.channel = SqueezeExcite(d, se_reduction)
        self.bpa = BilateralPropagation(sigma_s, kernel, bpa_variant) if use_bpa else None
        self.fuse = ConvINAct(2 * d, d, 1, 1, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.channel(x)
        y = self.bpa(x) if self.bpa is not None else torch.cat([x, x], dim=1)
        return self.fuse(y)


@dataclass(frozen=True)
class MEDFEConfig:
    """Hyper-parameters of MEDFE (official defaults for 256x256 images).

    Attributes:
        n_channels: image channels C.
        d_base: ``ngf``, width of the first encoder layer (layer i: ``d_base * min(2**i, 8)``).
        n_layers: encoder (= decoder) layers, each halving the resolution.
        n_texture_layers: the shallow layers forming the texture branch; the others form the
            structure branch; the branches meet at the scale of the last texture layer.
        d_branch: branch width at the equalisation scale (256).
        pconv_kernels: kernels of the parallel partial-conv stacks (3, 5, 7).
        n_pconv_layers: partial-conv layers per stack (5).
        n_res_blocks: dilated residual blocks at the bottom of the encoder (4).
        res_dilation: their dilation (5).
        se_reduction: squeeze-excitation reduction (16).
        sigma_s: spatial Gaussian sigma of the BPA, in feature-map pixels (1.5).
        range_kernel: neighbourhood side of the BPA's range term (3).
        use_bpa: the bilateral propagation activation (False: the paper's ablation).
        bpa_variant: ``"paper"`` (the paper's equations) or ``"released"`` (the official
            code's computation: position-major terms reshaped to channels without a
            transpose, zero padding inside the range softmax; ``BilateralPropagation``).
        share_branch_weights: the official code fills both branches with the same partial-conv
            stacks and 1x1 reductions; False gives each branch its own.
        norm: normalisation of the encoder and decoder (the official ``--norm`` option:
            ``"instance"`` by default, or ``"batch"``); the branch and equalisation modules
            always use InstanceNorm, as the official code.
    """

    n_channels: int = 3
    d_base: int = 64
    n_layers: int = 6
    n_texture_layers: int = 3
    d_branch: int = 256
    pconv_kernels: tuple[int, ...] = (3, 5, 7)
    n_pconv_layers: int = 5
    n_res_blocks: int = 4
    res_dilation: int = 5
    se_reduction: int = 16
    sigma_s: float = 1.5
    range_kernel: int = 3
    use_bpa: bool = True
    bpa_variant: str = "paper"
    share_branch_weights: bool = True
    norm: str = "instance"

    def __post_init__(self) -> None:
        if self.norm not in ("instance", "batch"):
            raise ValueError(f"norm must be 'instance' or 'batch', got {self.norm!r}")
        if self.bpa_variant not in BilateralPropagation.VARIANTS:
            raise ValueError(
                f"bpa_variant must be one of {BilateralPropagation.VARIANTS}, "
                f"got {self.bpa_variant!r}"
            )
        for name in ("n_channels", "d_base", "d_branch", "n_pconv_layers", "se_reduction"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.n_texture_layers < self.n_layers:
            raise ValueError(
                f"need 1 <= n_texture_layers < n_layers, got {self.n_texture_layers} and "
                f"{self.n_layers}"
            )
        if not self.pconv_kernels or any(k < 1 or k % 2 == 0 for k in self.pconv_kernels):
            raise ValueError(f"pconv_kernels must be odd and positive, got {self.pconv_kernels}")
        if self.n_res_blocks < 0 or self.res_dilation < 1 or self.sigma_s <= 0:
            raise ValueError("need n_res_blocks >= 0, res_dilation >= 1 and sigma_s > 0")

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.d_base * min(2**i, 8) for i in range(self.n_layers))

    @property
    def multiple(self) -> int:
        """Every input side must be divisible by the total stride ``2 ** n_layers``."""
        return 2**self.n_layers


class ResnetBlock(nn.Module):
    """Dilated residual block of the encoder bottom (reflection padding, IN, ReLU)."""

    def __init__(self, d: int, dilation: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(dilation),
            nn.Conv2d(d, d, 3, dilation=dilation, bias=False),
            nn.InstanceNorm2d(d),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(d, d, 3, bias=False),
            nn.InstanceNorm2d(d),
        )
        self.dilation = dilation

    def forward(self, x: Tensor) -> Tensor:
        if self.dilation >= min(x.shape[-2:]):
            raise ValueError(
                f"MEDFE: the bottom map {tuple(x.shape[-2:])} is too small for dilation "
                f"{self.dilation}; use a larger input or a smaller res_dilation"
            )
        return x + self.body(x)


class MutualEqualization(nn.Module):
    """The official ``PCconv`` module: texture/structure branches, multi-scale partial-conv
    filling, feature equalisation and the redistribution to the skips."""

    def __init__(self, cfg: MEDFEConfig):
        super().__init__()
        self.cfg = cfg
        w, nt, d = cfg.widths, cfg.n_texture_layers, cfg.d_branch
        self.texture_in = nn.ModuleList(
            [_strided_down(w[j], d, nt - 1 - j, last_act=True) for j in range(nt)]
        )
        self.structure_in = nn.ModuleList([ResizeConv(w[j], d) for j in range(nt, cfg.n_layers)])
        n_tex, n_str = nt, cfg.n_layers - nt
        n_fill = len(cfg.pconv_kernels)

        def reduce(n_in: int) -> ConvINAct:
            return ConvINAct(n_in * d, d, 1, 1, 0)

        if cfg.share_branch_weights and n_tex == n_str:
            shared_in = reduce(n_tex)
            self.texture_reduce, self.structure_reduce = shared_in, shared_in
        else:
            self.texture_reduce, self.structure_reduce = reduce(n_tex), reduce(n_str)
        if cfg.share_branch_weights:
            fill = MultiScaleFill(d, cfg.pconv_kernels, cfg.n_pconv_layers)
            self.texture_fill, self.structure_fill = fill, fill
            shared_out = reduce(n_fill) if n_fill != n_tex else self.texture_reduce
            self.texture_fill_reduce, self.structure_fill_reduce = shared_out, shared_out
        else:
            self.texture_fill = MultiScaleFill(d, cfg.pconv_kernels, cfg.n_pconv_layers)
            self.structure_fill = MultiScaleFill(d, cfg.pconv_kernels, cfg.n_pconv_layers)
            self.texture_fill_reduce, self.structure_fill_reduce = reduce(n_fill), reduce(n_fill)
        self.fuse = ConvINAct(2 * d, 2 * d, 1, 1, 0)
        self.equalize = FeatureEqualization(
            2 * d, cfg.se_reduction, cfg.sigma_s, cfg.range_kernel, cfg.use_bpa, cfg.bpa_variant
        )
        self.texture_out = nn.ModuleList([ResizeConv(2 * d, w[j]) for j in range(nt)])
        self.structure_out = nn.ModuleList(
            [
                _strided_down(2 * d, w[j], j - nt + 1, last_act=False)
                for j in range(nt, cfg.n_layers)
            ]
        )

    def forward(self, feats: list[Tensor], holes: Tensor):
        """``feats``: encoder features (full resolution first); ``holes`` (B, 1, H, W).

        Returns the equalised skips (same shapes as ``feats``) and the filled (structure,
        texture) branch features (B, d_branch, s, s), before equalisation.
        """
        nt = self.cfg.n_texture_layers
        s = tuple(feats[nt - 1].shape[-2:])
        acts = [F.leaky_relu(f, 0.2) for f in feats]
        tex = torch.cat([m(a) for m, a in zip(self.texture_in, acts[:nt])], 1)  # (B, nt d, s, s)
        struct = torch.cat([m(a, s) for m, a in zip(self.structure_in, acts[nt:])], 1)
        tex, struct = self.texture_reduce(tex), self.structure_reduce(struct)  # (B, d, s, s)
        # known cells at the equalisation scale: less than half of the cell is hole
        known = (F.adaptive_avg_pool2d(holes, s) < 0.5).to(tex.dtype)  # (B, 1, s, s)
        tex = self.texture_fill(tex, known, self.texture_fill_reduce)
        struct = self.structure_fill(struct, known, self.structure_fill_reduce)
        aux = (struct, tex)
        x = self.equalize(self.fuse(torch.cat([struct, tex], 1)))  # (B, 2d, s, s)
        out = [m(x, f.shape[-2:]) + f for m, f in zip(self.texture_out, feats[:nt])]
        out += [m(x) + f for m, f in zip(self.structure_out, feats[nt:])]
        return out, aux


class MEDFE(nn.Module):
    """``forward(image, holes) -> image``; ``image`` (B, C, H, W) in [0, 1], ``holes``
    (B, 1, H, W) with 1 = missing (hole pixels of ``image`` are ignored).

    ``forward(..., return_aux=True)`` also returns the filled branch features
    ``{"structure", "texture"}`` (B, d_branch, s, s) for the branch losses (``BranchSupervision``).
    """

    def __init__(self, cfg: MEDFEConfig):
        super().__init__()
        self.cfg = cfg
        w, C = cfg.widths, cfg.n_channels
        enc: list[nn.Module] = [nn.Conv2d(C + 1, w[0], 4, 2, 1)]
        for i in range(1, cfg.n_layers):
            layers = [nn.LeakyReLU(0.2), nn.Conv2d(w[i - 1], w[i], 4, 2, 1)]
            if i < cfg.n_layers - 1:
                layers.append(_norm(cfg.norm, w[i]))
            enc.append(nn.Sequential(*layers))
        self.encoder = nn.ModuleList(enc)
        self.middle = nn.Sequential(
            *[ResnetBlock(w[-1], cfg.res_dilation) for _ in range(cfg.n_res_blocks)]
        )
        self.equalization = MutualEqualization(cfg)
        dec: list[nn.Module] = []
        for i in reversed(range(cfg.n_layers)):
            d_in = w[i] if i == cfg.n_layers - 1 else 2 * w[i]
            if i == 0:
                dec.append(
                    nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(d_in, C, 4, 2, 1), nn.Tanh())
                )
            else:
                dec.append(
                    nn.Sequential(
                        nn.ReLU(),
                        nn.ConvTranspose2d(d_in, w[i - 1], 4, 2, 1),
                        _norm(cfg.norm, w[i - 1]),
                    )
                )
        self.decoder = nn.ModuleList(dec)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official ``init_weights('normal', 0.02)``: conv/linear weights N(0, 0.02),
        biases 0 (the partial-conv sums are not parameters)."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, image: Tensor, holes: Tensor, return_aux: bool = False):
        check_inpainting_input(image, holes, self.cfg.n_channels, self.cfg.multiple, "MEDFE", self)
        x = (image * 2.0 - 1.0) * (1.0 - holes)  # [-1, 1], holes at 0 (the mean colour)
        h = torch.cat([x, 1.0 - holes], dim=1)  # image + validity mask, (B, C + 1, H, W)
        feats = []
        for layer in self.encoder:
            h = layer(h)  # (B, w_i, H / 2^(i+1), ...)
            feats.append(h)
        feats[-1] = self.middle(feats[-1])
        skips, (structure, texture) = self.equalization(feats, holes)
        h = skips[-1]
        for k, layer in enumerate(self.decoder):
            if k > 0:
                h = torch.cat([h, skips[-1 - k]], dim=1)
            h = layer(h)
        out = (h + 1.0) / 2.0  # (B, C, H, W) in [0, 1]
        if return_aux:
            return out, {"structure": structure, "texture": texture}
        return out


class BranchSupervision(nn.Module):
    """The branch losses (the official ``InnerCos``): one shared 1x1 conv + tanh maps each filled
    branch to an image at the equalisation scale; L1 of the structure branch against the
    smoothed ground truth and of the texture branch against the ground truth, both resized
    bilinearly to that scale. Like ``InnerCos`` it holds parameters, trained with the model.
    """

    def __init__(self, d_branch: int, n_channels: int):
        super().__init__()
        self.to_image = nn.Sequential(nn.Conv2d(d_branch, n_channels, 1), nn.Tanh())

    def images(self, branches: dict[str, Tensor]) -> dict[str, Tensor]:
        """Branch features -> images in [0, 1] at the equalisation scale."""
        return {k: (self.to_image(v) + 1.0) / 2.0 for k, v in branches.items()}

    def forward(self, branches: dict[str, Tensor], target: Tensor, structure: Tensor) -> Tensor:
        """``target`` and ``structure`` (B, C, H, W) in [0, 1] -> the summed L1 loss."""
        images = self.images(branches)
        s = images["structure"].shape[-2:]
        st = F.interpolate(structure, size=s, mode="bilinear", align_corners=False)
        te = F.interpolate(target, size=s, mode="bilinear", align_corners=False)
        return F.l1_loss(images["structure"], st) + F.l1_loss(images["texture"], te)


MINI = MEDFEConfig(
    d_base=16,
    n_layers=4,
    n_texture_layers=2,
    d_branch=32,
    n_pconv_layers=2,
    n_res_blocks=1,
    res_dilation=1,
    norm="batch",
)
"""The quick reproduction's miniature for 32x32 crops: encoder 16x16 .. 2x2, branches meet at
8x8. BatchNorm in the encoder/decoder (the official ``--norm batch`` option): InstanceNorm over
the 4x4 and 2x2 maps of this miniature erases most of their content (15.5 vs 18.5 dB in-hole
PSNR after 250 steps, seed 0)."""

VARIANTS = {
    "tiny": MEDFEConfig(
        d_base=8,
        n_layers=4,
        n_texture_layers=2,
        d_branch=16,
        n_pconv_layers=1,
        n_res_blocks=1,
        res_dilation=1,
    ),  # fmt: skip
    "mini": MINI,
    "mini-no-bpa": MEDFEConfig(**{**MINI.__dict__, "use_bpa": False}),
    "base": MEDFEConfig(),
}


def _example_input(model: MEDFE, batch_size: int) -> tuple[Tensor, Tensor]:
    size = 2 * model.cfg.multiple
    g = torch.Generator().manual_seed(0)
    image = torch.rand(batch_size, model.cfg.n_channels, size, size, generator=g)
    holes = torch.zeros(batch_size, 1, size, size)
    holes[:, :, size // 4 : size // 2, size // 4 : 3 * size // 4] = 1.0
    return image, holes


SPEC = PaperSpec(
    slug="medfe",
    family="dense",
    title=("Rethinking Image Inpainting via a Mutual Encoder-Decoder with Feature Equalizations"),
    arxiv="2007.06929",
    claim=(
        "Filling holes separately in shallow (texture) and deep (structure) features, then "
        "equalising them (channel SE + bilateral propagation) before decoding, inpaints "
        "irregular holes with a higher in-hole PSNR than a partial-convolution U-Net; removing "
        "the bilateral propagation activation lowers it."
    ),
    config=MEDFEConfig,
    build=MEDFE,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"dense", "inpainting"}),
    fidelity="faithful",
    experiment="archlab.papers.dense.medfe.experiment",
)
