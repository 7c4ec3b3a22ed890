"""NeRV++: An Enhanced Implicit Neural Video Representation.

Ahmed Ghorbel, Wassim Hamidouche, Luce Morin, 2024, arXiv 2402.18305. Paper card and
deviations: README.md beside this file.

NeRV++ keeps the NeRV-family decoder (stem, upsampling blocks, RGB head) and changes the block:
the upsampling block (UB: conv, PixelShuffle, GELU) is sandwiched between two *separable conv2d
residual blocks* (SCRB: depthwise ``k x k`` conv, pointwise 1x1 conv, GELU, plus the input),
and a *bilinear interpolation skip* adds the bilinearly upsampled block input, projected to the
new width by a 1x1 convolution, to the block's output::

    y = SCRB_out(UB(SCRB_in(x))) + Conv1x1(bilinear_up(x))

Here the decoder reads HNeRV's content-adaptive embeddings (``archlab.papers.fields.hnerv``'s
ConvNeXt encoder), so that a comparison with HNeRV at equal size isolates the block.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.baselines.nerv import NeRVDecoder, UpBlock, count_params, solve_fc_dim
from archlab.errors import ArchlabError
from archlab.papers.fields.hnerv import ConvNeXtEncoder, HNeRVConfig
from archlab.registry import PaperSpec


class SCRB(nn.Module):
    """Separable conv2d residual block: ``x + GELU(pointwise(depthwise_k(x)))``."""

    def __init__(self, d: int, kernel: int = 3):
        super().__init__()
        self.depthwise = nn.Conv2d(d, d, kernel, padding=kernel // 2, groups=d)
        self.pointwise = nn.Conv2d(d, d, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, D, H, W) -> (B, D, H, W)
        return x + F.gelu(self.pointwise(self.depthwise(x)))


class BilinearSkip(nn.Module):
    """Bilinear upsampling by ``stride`` and a 1x1 projection ``d_in -> d_out``."""

    def __init__(self, d_in: int, d_out: int, stride: int):
        super().__init__()
        self.stride = stride
        self.proj = nn.Conv2d(d_in, d_out, 1)

    def forward(self, x: Tensor) -> Tensor:  # (B, d_in, h, w) -> (B, d_out, h s, w s)
        if self.stride > 1:
            x = F.interpolate(x, scale_factor=self.stride, mode="bilinear", align_corners=False)
        return self.proj(x)


class NeRVPPBlock(nn.Module):
    """``SCRB -> UB -> SCRB`` plus the bilinear skip.

    Args:
        d_in: input width.
        d_out: output width.
        kernel: the UB's convolution kernel.
        stride: upsampling factor.
        scrb_kernel: the SCRBs' depthwise kernel.
        scrb: with the two SCRBs (False: the plain UB, an ablation).
        bilinear_skip: with the skip (False: an ablation).
    """

    def __init__(
        self,
        d_in: int,
        d_out: int,
        kernel: int,
        stride: int,
        *,
        scrb_kernel: int = 3,
        scrb: bool = True,
        bilinear_skip: bool = True,
    ):
        super().__init__()
        self.pre = SCRB(d_in, scrb_kernel) if scrb else nn.Identity()
        self.up = UpBlock(d_in, d_out, kernel, stride)
        self.post = SCRB(d_out, scrb_kernel) if scrb else nn.Identity()
        self.skip = BilinearSkip(d_in, d_out, stride) if bilinear_skip else None

    def forward(self, x: Tensor) -> Tensor:  # (B, d_in, h, w) -> (B, d_out, h s, w s)
        y = self.post(self.up(self.pre(x)))
        return y if self.skip is None else y + self.skip(x)


@dataclass(frozen=True)
class NeRVPPConfig:
    """Hyper-parameters: HNeRV's (embedding, decoder geometry) plus the NeRV++ block's.

    Attributes:
        hnerv: encoder, embedding and decoder geometry (``HNeRVConfig``; its ``fc_dim`` is the
            stem width, solved from a size budget by ``at_size``).
        scrb_kernel: depthwise kernel of the SCRBs.
        scrb: use the SCRBs (ablation switch).
        bilinear_skip: use the bilinear skip (ablation switch).
    """

    hnerv: HNeRVConfig = HNeRVConfig()
    scrb_kernel: int = 3
    scrb: bool = True
    bilinear_skip: bool = True

    def __post_init__(self) -> None:
        if self.scrb_kernel < 1 or self.scrb_kernel % 2 == 0:
            raise ArchlabError(f"NeRV++ scrb_kernel must be odd and >= 1, got {self.scrb_kernel}")

    @property
    def fc_dim(self) -> int:
        return self.hnerv.fc_dim

    def decoder_size(self) -> int:
        return count_params(lambda: NeRVPP(self).decoder)

    def stored_size(self) -> int:
        """Decoder parameters plus all embeddings (the encoder is not stored)."""
        return self.decoder_size() + self.hnerv.n_embedding

    def at_size(self, target: int, closest: bool = False) -> NeRVPPConfig:
        """This config with the largest stem width whose stored size is at most ``target``
        (``closest``: or the next one, when nearer; ``solve_fc_dim``)."""

        def size(d: int) -> int:
            return self.with_fc_dim(d).stored_size()

        return self.with_fc_dim(solve_fc_dim(size, target, closest=closest))

    def with_fc_dim(self, fc_dim: int) -> NeRVPPConfig:
        return dataclasses.replace(self, hnerv=dataclasses.replace(self.hnerv, fc_dim=fc_dim))


class NeRVPP(nn.Module):
    """``frames (B, 3, H, W) -> reconstructions``; ``encode`` / ``decode`` as in HNeRV."""

    def __init__(self, cfg: NeRVPPConfig):
        super().__init__()
        self.cfg = cfg
        h = cfg.hnerv
        dims = (h.enc_dim,) * (len(h.enc_strides) - 1) + (h.d_embed,)
        self.encoder = ConvNeXtEncoder(h.enc_strides, dims, h.enc_blocks)
        block = functools.partial(NeRVPPBlock, scrb_kernel=cfg.scrb_kernel, scrb=cfg.scrb,
                                  bilinear_skip=cfg.bilinear_skip)  # fmt: skip
        self.decoder = NeRVDecoder(h.d_embed, h.fc_dim, h.fc_hw, h.dec_strides, h.ks, h.reduce,
                                   h.lower_width, block=block)  # fmt: skip

    def encode(self, frames: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, d_embed, h, w)
        size = tuple(self.cfg.hnerv.frame_size)
        if frames.dim() != 4 or frames.shape[1] != 3 or tuple(frames.shape[2:]) != size:
            raise ArchlabError(f"NeRV++ expects frames (B, 3, {size[0]}, {size[1]}), got "
                               f"{tuple(frames.shape)}")  # fmt: skip
        return self.encoder(frames)

    def decode(self, embedding: Tensor) -> Tensor:  # (B, d_embed, h, w) -> (B, 3, H, W)
        return self.decoder(embedding)

    def forward(self, frames: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, 3, H, W)
        return self.decode(self.encode(frames))


VARIANTS = {
    "tiny": NeRVPPConfig(
        hnerv=HNeRVConfig(
            frame_size=(16, 16),
            n_frames=4,
            enc_strides=(4, 2),
            enc_dim=16,
            d_embed=8,
            dec_strides=(4, 2),
            fc_dim=16,
        )  # fmt: skip
    ),
    "base": NeRVPPConfig(),
    "no_skip": NeRVPPConfig(bilinear_skip=False),
    "no_scrb": NeRVPPConfig(scrb=False),
}


def _example_input(model: NeRVPP, batch_size: int) -> tuple[Tensor]:
    return (torch.rand(batch_size, 3, *model.cfg.hnerv.frame_size),)


SPEC = PaperSpec(
    slug="nervpp",
    family="fields",
    title="NeRV++: An Enhanced Implicit Neural Video Representation",
    arxiv="2402.18305",
    claim=(
        "Separable conv residual blocks around each upsampling block and a bilinear skip make "
        "a NeRV-family decoder fit a video better than HNeRV's blocks at equal size."
    ),
    config=NeRVPPConfig,
    build=NeRVPP,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"video", "neural-field"}),
    fidelity="simplified",
    experiment="archlab.papers.fields.nervpp.experiment",
)
