"""HNeRV: A Hybrid Neural Representation for Videos.

Hao Chen, Matthew Gwilliam, Ser-Nam Lim, Abhinav Shrivastava, CVPR 2023, arXiv 2304.02633.
Paper card and deviations: README.md beside this file.

A video is a small decoder plus one tiny *content-adaptive embedding* per frame: a ConvNeXt
encoder (trained jointly, discarded after training) maps each frame to a ``d_embed x h x w``
embedding, and HNeRV blocks (``k x k`` conv, PixelShuffle, GELU) with kernels growing 1 -> 5
and widths shrinking by ``reduce = 1.2`` decode it back (``ks 0_1_5 --reduce 1.2``), which moves
parameters towards the high-resolution layers. The stored size is the decoder plus the
embeddings (``HNeRVConfig.stored_size``), and ``fc_dim`` is solved to meet a budget
(``at_size``), as in the official ``train_nerv_all.py``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.baselines.nerv import NeRVDecoder, count_params, solve_fc_dim
from archlab.errors import ArchlabError
from archlab.registry import PaperSpec


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of ``(B, C, H, W)`` (ConvNeXt's ``channels_first``)."""

    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:  # (B, C, H, W) -> (B, C, H, W)
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """7x7 depthwise conv, LayerNorm, ``D -> 4D -> D`` MLP with GELU, layer scale, residual."""

    def __init__(self, d: int, layer_scale: float = 1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(d, d, 7, padding=3, groups=d)
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.pw1 = nn.Linear(d, 4 * d)
        self.pw2 = nn.Linear(4 * d, d)
        self.gamma = nn.Parameter(torch.full((d,), layer_scale))

    def forward(self, x: Tensor) -> Tensor:  # (B, D, H, W) -> (B, D, H, W)
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))  # (B, H, W, D)
        y = self.gamma * self.pw2(F.gelu(self.pw1(y)))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtEncoder(nn.Module):
    """HNeRV's frame encoder: one patchify conv (kernel = stride) per stage, each followed by
    ``n_blocks`` ConvNeXt blocks; LayerNorm after the first conv and before the others.

    Args:
        strides: downsampling of each stage (``enc_strds``).
        dims: channels of each stage (``enc_dim 64_16``: 64 ... 64, 16).
        n_blocks: ConvNeXt blocks per stage.
    """

    def __init__(self, strides: tuple[int, ...], dims: tuple[int, ...], n_blocks: int = 1):
        super().__init__()
        layers = []
        for i, (s, d) in enumerate(zip(strides, dims)):
            if i == 0:
                down = nn.Sequential(nn.Conv2d(3, d, s, stride=s), LayerNorm2d(d))
            else:
                down = nn.Sequential(
                    LayerNorm2d(dims[i - 1]), nn.Conv2d(dims[i - 1], d, s, stride=s)
                )
            layers.append(nn.Sequential(down, *[ConvNeXtBlock(d) for _ in range(n_blocks)]))
        self.stages = nn.Sequential(*layers)
        for m in self.modules():  # the official _init_weights
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, frames: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, d_embed, H/S, W/S)
        return self.stages(frames)


@dataclass(frozen=True)
class HNeRVConfig:
    """Hyper-parameters of HNeRV (the official code's flag names).

    Attributes:
        frame_size: ``(H, W)``; divisible by ``prod(enc_strides)``.
        n_frames: frames T of the video (the stored size counts one embedding per frame).
        enc_strides: encoder downsampling per stage (``enc_strds``).
        enc_dim: encoder width of every stage but the last.
        d_embed: embedding channels (the last encoder stage's width).
        enc_blocks: ConvNeXt blocks per encoder stage.
        dec_strides: decoder upsampling per block (``dec_strds``); ``prod(enc_strides) /
            prod(dec_strides)`` is the stem's ``fc_hw`` (1 in the paper).
        fc_dim: stem width (solved from a size budget by ``at_size``).
        ks: ``(first, last)`` decoder kernel sizes (``ks 0_1_5`` -> ``(1, 5)``).
        reduce: width reduction per block.
        lower_width: smallest block width.
    """

    frame_size: tuple[int, int] = (64, 64)
    n_frames: int = 32
    enc_strides: tuple[int, ...] = (4, 2, 2, 2)
    enc_dim: int = 64
    d_embed: int = 16
    enc_blocks: int = 1
    dec_strides: tuple[int, ...] = (4, 2, 2, 2)
    fc_dim: int = 64
    ks: tuple[int, int] = (1, 5)
    reduce: float = 1.2
    lower_width: int = 12

    def __post_init__(self) -> None:
        if min(self.n_frames, self.enc_dim, self.d_embed, self.fc_dim, self.lower_width) < 1:
            raise ArchlabError("HNeRV n_frames, enc_dim, d_embed, fc_dim, lower_width must be >= 1")
        if (
            not self.enc_strides
            or not self.dec_strides
            or min(self.enc_strides + self.dec_strides) < 1
        ):
            raise ArchlabError("HNeRV enc_strides and dec_strides must be non-empty, >= 1")
        h, w = self.frame_size
        s_enc = math.prod(self.enc_strides)
        if h % s_enc or w % s_enc:
            raise ArchlabError(f"HNeRV frames {h}x{w} must be divisible by the encoder's total "
                               f"stride {s_enc} (enc_strides {self.enc_strides})")  # fmt: skip
        if s_enc % math.prod(self.dec_strides):
            raise ArchlabError(f"HNeRV prod(enc_strides) {s_enc} must be a multiple of "
                               f"prod(dec_strides) {math.prod(self.dec_strides)}")  # fmt: skip

    @property
    def embed_hw(self) -> tuple[int, int]:
        """``(h, w)`` of a frame's embedding."""
        s = math.prod(self.enc_strides)
        return self.frame_size[0] // s, self.frame_size[1] // s

    @property
    def fc_hw(self) -> tuple[int, int]:
        side = math.prod(self.enc_strides) // math.prod(self.dec_strides)
        return side, side

    @property
    def n_embedding(self) -> int:
        """Stored embedding values of the whole video: ``T * d_embed * h * w``."""
        return self.n_frames * self.d_embed * self.embed_hw[0] * self.embed_hw[1]

    def decoder_size(self) -> int:
        return count_params(lambda: HNeRV(self).decoder)

    def stored_size(self) -> int:
        """The paper's model size: decoder parameters plus all embeddings (not the encoder)."""
        return self.decoder_size() + self.n_embedding

    def at_size(self, target: int, closest: bool = False) -> HNeRVConfig:
        """This config with the largest ``fc_dim`` whose stored size is at most ``target``
        (``closest``: or the next one, when nearer; ``solve_fc_dim``)."""
        size = lambda d: dataclasses.replace(self, fc_dim=d).stored_size()  # noqa: E731
        fc_dim = solve_fc_dim(size, target, closest=closest)
        return dataclasses.replace(self, fc_dim=fc_dim)


class HNeRV(nn.Module):
    """``frames (B, 3, H, W) -> reconstructions (B, 3, H, W)``; ``encode`` / ``decode`` expose
    the embeddings (the stored representation) and the decoder."""

    def __init__(self, cfg: HNeRVConfig):
        super().__init__()
        self.cfg = cfg
        dims = (cfg.enc_dim,) * (len(cfg.enc_strides) - 1) + (cfg.d_embed,)
        self.encoder = ConvNeXtEncoder(cfg.enc_strides, dims, cfg.enc_blocks)
        self.decoder = NeRVDecoder(cfg.d_embed, cfg.fc_dim, cfg.fc_hw, cfg.dec_strides, cfg.ks,
                                   cfg.reduce, cfg.lower_width)  # fmt: skip

    def encode(self, frames: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, d_embed, h, w)
        if (
            frames.dim() != 4
            or frames.shape[1] != 3
            or tuple(frames.shape[2:]) != tuple(self.cfg.frame_size)
        ):
            h, w = self.cfg.frame_size
            raise ArchlabError(f"HNeRV expects frames (B, 3, {h}, {w}), got "
                               f"{tuple(frames.shape)}")  # fmt: skip
        return self.encoder(frames)

    def decode(self, embedding: Tensor) -> Tensor:  # (B, d_embed, h, w) -> (B, 3, H, W)
        return self.decoder(embedding)

    def forward(self, frames: Tensor) -> Tensor:  # (B, 3, H, W) -> (B, 3, H, W)
        return self.decode(self.encode(frames))


def interpolate_embeddings(embeddings: Tensor, index: int | float) -> Tensor:
    """The embedding at a (fractional) frame position, linearly between its two neighbours:
    ``embeddings (T, d, h, w)``, ``index`` in ``[0, T-1]`` -> ``(d, h, w)`` (HNeRV's frame
    interpolation: decode the interpolated embedding)."""
    n = embeddings.shape[0]
    if not 0 <= index <= n - 1:
        raise ArchlabError(f"interpolation position {index} outside the frames 0..{n - 1}")
    lo = min(int(math.floor(index)), n - 2) if n > 1 else 0
    w = float(index) - lo
    return embeddings[lo] * (1 - w) + embeddings[min(lo + 1, n - 1)] * w


VARIANTS = {
    "tiny": HNeRVConfig(
        frame_size=(16, 16),
        n_frames=4,
        enc_strides=(4, 2),
        enc_dim=16,
        d_embed=8,
        dec_strides=(4, 2),
        fc_dim=16,
    ),  # fmt: skip
    "base": HNeRVConfig(),
    # the official Bunny model: 640x1280, 132 frames, 1.5 M (HNeRVConfig.at_size(1_500_000))
    "bunny": HNeRVConfig(
        frame_size=(640, 1280),
        n_frames=132,
        enc_strides=(5, 4, 4, 2, 2),
        dec_strides=(5, 4, 4, 2, 2),
        fc_dim=67,
    ),  # fmt: skip
}


def _example_input(model: HNeRV, batch_size: int) -> tuple[Tensor]:
    return (torch.rand(batch_size, 3, *model.cfg.frame_size),)


SPEC = PaperSpec(
    slug="hnerv",
    family="fields",
    title="HNeRV: A Hybrid Neural Representation for Videos",
    arxiv="2304.02633",
    claim=(
        "At equal size (decoder + embeddings), content-adaptive embeddings and balanced HNeRV "
        "blocks fit a video >= 2 dB better than NeRV and converge faster."
    ),
    config=HNeRVConfig,
    build=HNeRV,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"video", "neural-field"}),
    fidelity="faithful",
    experiment="archlab.papers.fields.hnerv.experiment",
)
