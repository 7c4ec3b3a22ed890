"""NeRV: Neural Representations for Videos (the baseline of HNeRV and NeRV++).

Hao Chen, Bo He, Hanyu Wang, Yixuan Ren, Ser-Nam Lim, Abhinav Shrivastava, NeurIPS 2021,
arXiv 2110.13903. A video is a network ``t -> frame``: the positional encoding of the
normalised frame index ``t = idx / T`` goes through the stem (a 1x1 convolution, NeRV's MLP) to
an ``fh x fw`` feature map, then NeRV blocks (conv, PixelShuffle, GELU) upsample it to the frame,
and a 3x3 head gives RGB. Configured as the NeRV baseline of the official HNeRV code
(``--embed pe_1.25_80 --fc_hw 8_16 --dec_strds 5 4 2 2 --ks 0_3_3 --reduce 2``); the stem width
``fc_dim`` is what a parameter budget solves for (``NeRVConfig.at_size``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from archlab.baselines.nerv.blocks import (
    NeRVDecoder,
    PositionalEncoding,
    check_decoder_geometry,
    count_params,
    solve_fc_dim,
)
from archlab.errors import ArchlabError
from archlab.registry import PaperSpec


@dataclass(frozen=True)
class NeRVConfig:
    """Hyper-parameters of NeRV (the official code's flag names).

    Attributes:
        frame_size: ``(H, W)`` of the frames; must equal ``fc_hw * prod(strides)``.
        pe_base: positional-encoding base ``b`` (``pe_1.25_80``).
        pe_levels: positional-encoding levels ``L`` (2 L input channels).
        fc_hw: ``(fh, fw)`` of the stem's feature map.
        fc_dim: stem width (solved from a parameter budget by ``at_size``).
        strides: upsampling factor of each NeRV block (``dec_strds``).
        ks: ``(first, last)`` kernel sizes of the blocks (``ks 0_3_3`` -> ``(3, 3)``).
        reduce: width reduction per block.
        lower_width: smallest block width.
    """

    frame_size: tuple[int, int] = (64, 64)
    pe_base: float = 1.25
    pe_levels: int = 80
    fc_hw: tuple[int, int] = (4, 4)
    fc_dim: int = 64
    strides: tuple[int, ...] = (4, 2, 2)
    ks: tuple[int, int] = (3, 3)
    reduce: float = 2.0
    lower_width: int = 12

    def __post_init__(self) -> None:
        if min(self.fc_dim, self.pe_levels, self.lower_width, *self.ks) < 1 or self.pe_base <= 0:
            raise ArchlabError("NeRV fc_dim, pe_levels, lower_width, ks must be >= 1, "
                               "pe_base > 0")  # fmt: skip
        if not self.strides or min(self.strides) < 1 or self.reduce <= 0:
            raise ArchlabError(f"NeRV strides {self.strides} must be >= 1 and reduce > 0")
        check_decoder_geometry(self.frame_size, self.fc_hw, self.strides, "NeRV")

    def n_params(self) -> int:
        """The model's size (all of it is stored: no embeddings)."""
        return count_params(lambda: NeRV(self))

    def at_size(self, target: int, closest: bool = False) -> NeRVConfig:
        """This config with the largest ``fc_dim`` whose size is at most ``target``
        (``closest``: or the next one, when nearer; ``solve_fc_dim``)."""
        size = lambda d: dataclasses.replace(self, fc_dim=d).n_params()  # noqa: E731
        fc_dim = solve_fc_dim(size, target, closest=closest)
        return dataclasses.replace(self, fc_dim=fc_dim)


class NeRV(nn.Module):
    """``t (B,) in [0, 1) -> frames (B, 3, H, W)`` in [0, 1]."""

    def __init__(self, cfg: NeRVConfig):
        super().__init__()
        self.cfg = cfg
        self.encoding = PositionalEncoding(cfg.pe_base, cfg.pe_levels)
        self.decoder = NeRVDecoder(self.encoding.d_out, cfg.fc_dim, cfg.fc_hw, cfg.strides,
                                   cfg.ks, cfg.reduce, cfg.lower_width)  # fmt: skip

    def forward(self, t: Tensor) -> Tensor:  # (B,) -> (B, 3, H, W)
        if t.dim() != 1:
            raise ArchlabError(f"NeRV takes normalised frame indices t of shape (B,), got "
                               f"{tuple(t.shape)}")  # fmt: skip
        return self.decoder(self.encoding(t))

    @staticmethod
    def frame_times(n_frames: int) -> Tensor:
        """The official normalisation ``t = idx / T`` of frames ``0..T-1``: (T,)."""
        return torch.arange(n_frames, dtype=torch.float32) / n_frames


VARIANTS = {
    "tiny": NeRVConfig(frame_size=(16, 16), pe_levels=16, fc_hw=(2, 2), fc_dim=16, strides=(4, 2)),
    "base": NeRVConfig(),
    # the official baseline on Bunny 640x1280 at 1.5 M parameters (NeRVConfig.at_size(1_500_000))
    "bunny": NeRVConfig(frame_size=(640, 1280), fc_hw=(8, 16), fc_dim=53, strides=(5, 4, 2, 2)),
}


def _example_input(model: NeRV, batch_size: int) -> tuple[Tensor]:
    return (torch.rand(batch_size),)


SPEC = PaperSpec(
    slug="nerv",
    family="fields",
    title="NeRV: Neural Representations for Videos",
    arxiv="2110.13903",
    claim="Baseline: a video as a network from the positional encoding of the frame index.",
    config=NeRVConfig,
    build=NeRV,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"video", "neural-field"}),
    fidelity="faithful",
    experiment=None,
)

__all__ = ["SPEC", "VARIANTS", "NeRV", "NeRVConfig"]
