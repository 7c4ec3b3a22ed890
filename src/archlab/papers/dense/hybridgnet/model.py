"""HybridGNet: a CNN encoder, a variational latent and a spectral graph-convolution decoder that
outputs organ contours as landmarks, with image-to-graph skip connections (IGSC).

Gaggion, Mansilla, Mosquera, Milone, Ferrante, 2022, "Improving anatomical plausibility in medical
image segmentation via hybrid graph neural networks: applications to chest x-ray analysis",
arXiv 2203.10977. Paper card, deviations and measured results: README.md beside this file.

Layout (official code ngaggion/HybridGNet, ``models/HybridGNet_2_IGSC.py`` and ``models/hybrid.py``,
defaults of ``trainerHybrid.py``):

- Encoder: 6 residual blocks (pre-activation BN-ReLU-conv x2, 1x1 conv + BN shortcut when the
  width changes, ReLU after the sum) with a 2x max-pool between them (widths ``c * (2, 4, 8, 16,
  32, 32)``, ``c = 4``); BatchNorm without running statistics, as the official blocks. The last
  map is flattened into two linear layers: ``mu`` and ``log sigma^2`` of the latent ``z``.
- Latent: ``z = mu + eps * sigma`` while training, ``z = mu`` in eval; KL weight 1e-5.
- Decoder on the landmark graph (each organ a cycle), filters ``[2, f, f, f, f/2, f/2, f/2]``:
  linear ``z -> N' x f/2`` + ReLU on the half-resolution graph (each organ's contour with
  ``ceil(n/2)`` nodes), ChebConv (K = 6) + per-node instance norm + ReLU twice, [IGSC 1], ChebConv,
  graph unpooling to the full graph (``U``: copy even nodes, average neighbours for odd ones),
  ChebConv, [IGSC 2], ChebConv, and a final ChebConv with K = 1 and no bias -> (x, y) per node.
- IGSC: a K = 1 ChebConv predicts intermediate positions; the encoder maps (level 6 for the
  first, level 5 for the second) are sampled in a 3 x 3 window around each position (mean of 3 x 3
  bilinear samples = the official ``roi_align(..., output_size=1, aligned=True)``, here with
  ``grid_sample``) and concatenated to the node features with the positions.
- Training loss: MSE of the landmarks + MSE of each intermediate position map (against the
  pooled / full targets) + 1e-5 KL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.nn.conv import check_dense_input
from archlab.papers.dense.hybridgnet.data import JSRT_LANDMARKS, landmark_adjacency, organ_slices
from archlab.registry import PaperSpec

# --- graph operators ------------------------------------------------------------------------


def scaled_laplacian(
    adjacency: Tensor, normalization: str | None = "sym", lambda_max: float | None = None
) -> Tensor:
    """The propagation matrix ``L_hat^T`` of ``L_hat = 2 L / lambda_max - I`` (N, N), so that
    ``L_hat^T @ x`` is one step of ``torch_geometric.nn.ChebConv``.

    ``adjacency[i, j]`` is the weight of the edge i -> j (PyG's ``edge_index`` (i, j)). ``L`` is
    ``D - A`` (``None``), ``I - D^-1/2 A D^-1/2`` (``"sym"``) or ``I - D^-1 A`` (``"rw"``) with
    out-degrees ``D``; self-loops are ignored and isolated nodes get a zero degree term, exactly
    as PyG. The transpose only matters for directed graphs and ``"rw"``; the landmark graphs are
    undirected and ``"sym"``. ``lambda_max`` defaults to 2.0 (PyG's default for ``"sym"``; PyG
    requires it for the other normalisations).
    """
    if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
        raise ValueError(f"adjacency must be a square (N, N) matrix, got {tuple(adjacency.shape)}")
    if normalization not in (None, "sym", "rw"):
        raise ValueError(f"normalization must be None, 'sym' or 'rw', got {normalization!r}")
    a = adjacency * (1 - torch.eye(adjacency.shape[0], dtype=adjacency.dtype))
    deg = a.sum(1)  # (N,): PyG scatters edge weights onto the source node
    eye = torch.eye(a.shape[0], dtype=a.dtype)
    if normalization is None:
        lap = torch.diag(deg) - a
    elif normalization == "sym":
        inv = deg.pow(-0.5).masked_fill(deg == 0, 0.0)
        lap = eye - inv[:, None] * a * inv[None, :]
    else:
        inv = deg.pow(-1.0).masked_fill(deg == 0, 0.0)
        lap = eye - inv[:, None] * a
    lam = 2.0 if lambda_max is None else float(lambda_max)
    # PyG passes messages along edge_index[0] -> edge_index[1]: out = L^T x.
    return (2.0 * lap / lam - eye).T.contiguous()


class ChebConv(nn.Module):
    """Chebyshev spectral graph convolution (Defferrard et al. 2016), PyG's ``ChebConv``.

    ``out = sum_k T_k(L_hat) x W_k + b`` with ``T_0 = x``, ``T_1 = L_hat x`` and
    ``T_k = 2 L_hat T_{k-1} - T_{k-2}``. Parameters are named as PyG's (``lins.k.weight`` of shape
    (out, in), ``bias``), so state dicts copy over. Initialisation is the official HybridGNet
    one: every weight and the bias ~ N(0, 0.1).

    ``forward(x, lap)``: x (N, F) or (B, N, F), lap the (N, N) output of ``scaled_laplacian``.
    """

    def __init__(self, in_channels: int, out_channels: int, K: int, bias: bool = True):
        super().__init__()
        if K < 1:
            raise ValueError(f"K (Chebyshev order) must be >= 1, got {K}")
        self.in_channels, self.out_channels, self.K = in_channels, out_channels, K
        self.lins = nn.ModuleList(
            [nn.Linear(in_channels, out_channels, bias=False) for _ in range(K)]
        )
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in self.lins:
            nn.init.normal_(lin.weight, 0.0, 0.1)
        if self.bias is not None:
            nn.init.normal_(self.bias, 0.0, 0.1)

    def forward(self, x: Tensor, lap: Tensor) -> Tensor:  # (B, N, F) -> (B, N, F')
        tx0 = x
        out = self.lins[0](tx0)
        if self.K > 1:
            tx1 = torch.matmul(lap, x)  # (B, N, F)
            out = out + self.lins[1](tx1)
            for lin in self.lins[2:]:
                tx2 = 2.0 * torch.matmul(lap, tx1) - tx0
                out = out + lin(tx2)
                tx0, tx1 = tx1, tx2
        if self.bias is not None:
            out = out + self.bias
        return out

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, K={self.K}"


def _downsample_block(n: int) -> np.ndarray:
    """(ceil(n/2), n): node i of the coarse contour = mean of fine nodes 2i, 2i+1 (``mOrganD``)."""
    n2 = math.ceil(n / 2)
    m = np.zeros((n2, n))
    for i in range(n2):
        if 2 * i + 1 == n:
            m[i, 2 * i] = 1.0
        else:
            m[i, 2 * i] = m[i, 2 * i + 1] = 0.5
    return m


def _upsample_block(n: int) -> np.ndarray:
    """(n, ceil(n/2)): even fine nodes copy a coarse node, odd ones average two (``mOrganU``)."""
    n2 = math.ceil(n / 2)
    m = np.zeros((n, n2))
    for i in range(n):
        if i % 2 == 0 or i // 2 + 1 == n2:
            m[i, i // 2] = 1.0
        else:
            m[i, i // 2] = m[i, i // 2 + 1] = 0.5
    return m


def pooling_matrices(n_landmarks: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Block-diagonal graph down-sampling ``D`` (N', N) and up-sampling ``U`` (N, N') matrices,
    one block per organ contour (the official ``genMatrixesLH``)."""
    n_fine = sum(n_landmarks)
    coarse = tuple(math.ceil(n / 2) for n in n_landmarks)
    down = np.zeros((sum(coarse), n_fine))
    up = np.zeros((n_fine, sum(coarse)))
    for fine_sl, coarse_sl, n in zip(
        organ_slices(n_landmarks), organ_slices(coarse), n_landmarks, strict=True
    ):
        down[coarse_sl, fine_sl] = _downsample_block(n)
        up[fine_sl, coarse_sl] = _upsample_block(n)
    return torch.from_numpy(down).float(), torch.from_numpy(up).float()


def node_norm(x: Tensor, eps: float = 1e-5) -> Tensor:
    """The official ``InstanceNorm1d`` applied to (B, N, F) node features: each node's feature
    vector is normalised to zero mean and unit variance (no affine parameters)."""
    return F.layer_norm(x, x.shape[-1:], eps=eps)


def sample_windows(feats: Tensor, pos: Tensor, window: int) -> Tensor:
    """Encoder features around node positions: the mean of ``window x window`` bilinear samples.

    Equals ``torchvision.ops.roi_align(feats, boxes, output_size=1, aligned=True)`` with the
    official boxes ``[p - window//2, p + window//2 + 1]`` (p = pos * map size), i.e. samples at
    map index coordinates ``p + d`` for ``d`` in ``-(window//2) .. window//2``; border values are
    repeated outside the map.

    Args:
        feats: (B, C, h, w) encoder map.
        pos: (B, N, 2) positions ``(x, y)`` in [0, 1] of the image.
        window: odd window side in map pixels.

    Returns:
        (B, N, C) features.
    """
    b, _, h, w = feats.shape
    r = window // 2
    d = torch.arange(-r, r + 1, dtype=pos.dtype, device=pos.device)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    offsets = torch.stack([dx.flatten(), dy.flatten()], dim=-1)  # (w*w, 2)
    # The official code scales x and y by the map width (square maps).
    p = pos[:, :, None, :] * w + offsets  # (B, N, w*w, 2) map index coordinates
    size = torch.tensor([w, h], dtype=pos.dtype, device=pos.device)
    grid = (2.0 * p + 1.0) / size - 1.0  # grid_sample's align_corners=False convention
    out = F.grid_sample(feats, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.mean(-1).transpose(1, 2)  # (B, C, N, w*w) -> (B, N, C)


# --- the model ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HybridGNetConfig:
    """Hyper-parameters of HybridGNet (names after the paper and ``trainerHybrid.py``).

    Attributes:
        image_size: input side (``inputsize``; the encoder's flattened map is
            ``image_size / 32`` on a side). Inputs of another size are rejected.
        n_channels: input channels (1 for radiographs).
        n_landmarks: landmarks per organ contour (44 right lung, 50 left lung, 26 heart).
        c: encoder width multiplier; the six residual levels have ``c * (2, 4, 8, 16, 32, 32)``
            channels.
        latents: size of the latent ``z``.
        f: graph filters at full resolution; the decoder uses ``[2, f, f, f, f/2, f/2, f/2]``.
        K: Chebyshev polynomial order of the decoder's graph convolutions.
        window: side of the encoder-map window each IGSC samples (odd).
        l1: encoder level (1-6, 6 = the coarsest) the first IGSC samples (official default 6).
        l2: encoder level the second IGSC samples (official default 5; the official
            ``hybridDoubleSkip`` also offers the pairs 5-4 and 4-3).
        igsc: two image-to-graph skip connections (the paper's HybridGNet 2-IGSC); False gives
            the plain HybridGNet decoder.
        pooling: decode on a half-resolution graph first and unpool once (official default);
            False keeps every layer on the full graph.
        kld_weight: weight of the KL term of the loss.
        running_stats: whether the encoder's BatchNorm keeps running statistics. The official
            blocks do not (``track_running_stats=False``): eval uses the statistics of the batch
            being evaluated (the official code evaluates one image at a time).
    """

    image_size: int = 1024
    n_channels: int = 1
    n_landmarks: tuple[int, ...] = JSRT_LANDMARKS
    c: int = 4
    latents: int = 64
    f: int = 32
    K: int = 6
    window: int = 3
    l1: int = 6
    l2: int = 5
    igsc: bool = True
    pooling: bool = True
    kld_weight: float = 1e-5
    running_stats: bool = False

    def __post_init__(self) -> None:
        if self.image_size < 32 or self.image_size % 32:
            raise ValueError(
                f"image_size must be a positive multiple of 32 (5 poolings), got {self.image_size}"
            )
        for name in ("n_channels", "c", "latents", "K"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.f < 2 or self.f % 2:
            raise ValueError(f"f must be an even number >= 2, got {self.f}")
        if not self.n_landmarks or min(self.n_landmarks) < 3:
            raise ValueError(f"n_landmarks needs >= 3 nodes per contour, got {self.n_landmarks}")
        if self.window < 1 or self.window % 2 == 0:
            raise ValueError(f"window must be odd and >= 1, got {self.window}")
        if not (1 <= self.l1 <= 6 and 1 <= self.l2 <= 6):
            raise ValueError(f"l1 and l2 are encoder levels 1..6, got {self.l1}, {self.l2}")
        if self.kld_weight < 0:
            raise ValueError(f"kld_weight must be >= 0, got {self.kld_weight}")

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of the six encoder levels."""
        return tuple(self.c * m for m in (2, 4, 8, 16, 32, 32))

    @property
    def filters(self) -> tuple[int, ...]:
        """The official ``filters`` list ``[2, f, f, f, f/2, f/2, f/2]`` (index 0 = output)."""
        f = self.f
        return (2, f, f, f, f // 2, f // 2, f // 2)

    @property
    def n_nodes(self) -> int:
        """Landmarks N of the output graph."""
        return sum(self.n_landmarks)


class ResidualBlock(nn.Module):
    """The official ``residualBlock``: ``relu(block(x) + skip(x))`` with ``block`` = BN-ReLU-conv3
    -BN-ReLU-conv3 and ``skip`` a 1x1 conv + BN when the width changes (identity otherwise)."""

    def __init__(self, d_in: int, d_out: int, running_stats: bool):
        super().__init__()

        def bn(c: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(c, track_running_stats=running_stats)

        self.block = nn.Sequential(
            bn(d_in),
            nn.ReLU(),
            nn.Conv2d(d_in, d_out, 3, padding=1),
            bn(d_out),
            nn.ReLU(),
            nn.Conv2d(d_out, d_out, 3, padding=1),
        )
        self.skip = (
            nn.Sequential(nn.Conv2d(d_in, d_out, 1, bias=False), bn(d_out))
            if d_in != d_out
            else None
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, d_in, H, W) -> (B, d_out, H, W)
        identity = x if self.skip is None else self.skip(x)
        return F.relu(self.block(x) + identity)


class Encoder(nn.Module):
    """Six residual levels with 2x max-pooling between them, then ``mu`` and ``log sigma^2``."""

    def __init__(self, cfg: HybridGNetConfig):
        super().__init__()
        w = cfg.widths
        self.levels = nn.ModuleList(
            [
                ResidualBlock(cfg.n_channels if i == 0 else w[i - 1], w[i], cfg.running_stats)
                for i in range(6)
            ]
        )
        hw = cfg.image_size // 32
        self.fc_mu = nn.Linear(w[-1] * hw * hw, cfg.latents)
        self.fc_logvar = nn.Linear(w[-1] * hw * hw, cfg.latents)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        """(B, C, S, S) -> mu (B, F), logvar (B, F), the six level maps (level i at S / 2**i)."""
        maps = []
        for i, level in enumerate(self.levels):
            x = level(x if i == 0 else F.max_pool2d(x, 2))  # (B, w_i, S / 2**i, S / 2**i)
            maps.append(x)
        flat = x.flatten(1)  # (B, w_5 * (S/32)**2)
        return self.fc_mu(flat), self.fc_logvar(flat), maps


class SkipBlock(nn.Module):
    """Image-to-graph skip connection: predict positions (K = 1 ChebConv, no bias), sample the
    encoder map around them, concatenate ``[features, samples, positions]``."""

    def __init__(self, d_in: int, window: int):
        super().__init__()
        self.window = window
        self.graphConv_pre = ChebConv(d_in, 2, 1, bias=False)

    def forward(self, x: Tensor, lap: Tensor, feats: Tensor) -> tuple[Tensor, Tensor]:
        pos = self.graphConv_pre(x, lap)  # (B, N, 2)
        skip = sample_windows(feats, pos, self.window)  # (B, N, C)
        return torch.cat([x, skip, pos], dim=-1), pos  # (B, N, F + C + 2)


class HybridGNetOutput(NamedTuple):
    """Everything the loss needs: landmarks (B, N, 2), the IGSC positions (``pos1`` on the
    coarse graph, ``pos2`` on the full one; None without IGSC) and the latent's mu, logvar."""

    landmarks: Tensor
    pos1: Tensor | None
    pos2: Tensor | None
    mu: Tensor
    logvar: Tensor


class HybridGNet(nn.Module):
    """HybridGNet: (B, C, S, S) images -> (B, N, 2) landmark coordinates ``(x, y)``.

    Coordinates are in [0, 1] of the image (pixel index / size) as the training targets; the
    output layer is linear, as the official one, so nothing clamps them.
    """

    def __init__(self, cfg: HybridGNetConfig):
        super().__init__()
        self.cfg = cfg
        fl = cfg.filters
        self.encoder = Encoder(cfg)
        coarse = tuple(math.ceil(n / 2) for n in cfg.n_landmarks) if cfg.pooling else None
        lap_fine = scaled_laplacian(landmark_adjacency(cfg.n_landmarks))
        lap_coarse = scaled_laplacian(landmark_adjacency(coarse)) if coarse else lap_fine
        down, up = pooling_matrices(cfg.n_landmarks)
        self.register_buffer("lap_fine", lap_fine, persistent=False)
        self.register_buffer("lap_coarse", lap_coarse, persistent=False)
        self.register_buffer("down", down, persistent=False)
        self.register_buffer("up", up, persistent=False)
        self.n_coarse = sum(coarse) if coarse else cfg.n_nodes

        self.dec_lin = nn.Linear(cfg.latents, fl[6] * self.n_coarse)
        c6, c5 = cfg.widths[cfg.l1 - 1], cfg.widths[cfg.l2 - 1]
        self.graphConv_up6 = ChebConv(fl[6], fl[5], cfg.K)
        self.graphConv_up5 = ChebConv(fl[5], fl[4], cfg.K)
        self.SC_1 = SkipBlock(fl[4], cfg.window) if cfg.igsc else None
        self.graphConv_up4 = ChebConv(fl[4] + (c6 + 2 if cfg.igsc else 0), fl[3], cfg.K)
        self.graphConv_up3 = ChebConv(fl[3], fl[2], cfg.K)
        self.SC_2 = SkipBlock(fl[2], cfg.window) if cfg.igsc else None
        self.graphConv_up2 = ChebConv(fl[2] + (c5 + 2 if cfg.igsc else 0), fl[1], cfg.K)
        self.graphConv_up1 = ChebConv(fl[1], fl[0], 1, bias=False)
        nn.init.normal_(self.dec_lin.weight, 0.0, 0.1)

    def _check(self, x: Tensor) -> None:
        cfg = self.cfg
        check_dense_input(
            x, like=self, n_channels=cfg.n_channels, n_dims=2, multiple=32, name="HybridGNet"
        )
        if tuple(x.shape[-2:]) != (cfg.image_size, cfg.image_size):
            raise ValueError(
                f"HybridGNet: expected images (B, {cfg.n_channels}, {cfg.image_size}, "
                f"{cfg.image_size}) (the latent layer is sized for image_size={cfg.image_size}), "
                f"got {tuple(x.shape)}"
            )

    def forward_all(self, x: Tensor) -> HybridGNetOutput:
        """The landmarks and everything the training loss needs."""
        cfg = self.cfg
        self._check(x)
        mu, logvar, maps = self.encoder(x)  # (B, F), (B, F), 6 maps
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        h = F.relu(self.dec_lin(z)).reshape(x.shape[0], self.n_coarse, -1)  # (B, N', f/2)
        h = F.relu(node_norm(self.graphConv_up6(h, self.lap_coarse)))
        h = F.relu(node_norm(self.graphConv_up5(h, self.lap_coarse)))
        pos1 = pos2 = None
        if self.SC_1 is not None:
            h, pos1 = self.SC_1(h, self.lap_coarse, maps[cfg.l1 - 1])  # (B, N', f/2 + C + 2)
        h = F.relu(node_norm(self.graphConv_up4(h, self.lap_coarse)))  # (B, N', f)
        if cfg.pooling:
            h = torch.matmul(self.up, h)  # (B, N, f): graph unpooling
        h = F.relu(node_norm(self.graphConv_up3(h, self.lap_fine)))
        if self.SC_2 is not None:
            h, pos2 = self.SC_2(h, self.lap_fine, maps[cfg.l2 - 1])  # (B, N, f + C + 2)
        h = F.relu(node_norm(self.graphConv_up2(h, self.lap_fine)))
        out = self.graphConv_up1(h, self.lap_fine)  # (B, N, 2): no bias, norm or ReLU
        return HybridGNetOutput(out, pos1, pos2, mu, logvar)

    def forward(self, x: Tensor) -> Tensor:  # (B, C, S, S) -> (B, N, 2)
        return self.forward_all(x).landmarks

    def loss(self, out: HybridGNetOutput, target: Tensor) -> tuple[Tensor, dict[str, float]]:
        """The official training loss: landmark MSE + MSE of each IGSC position map (coarse
        target = ``D @ target``) + ``kld_weight`` x KL (mean over latents and batch)."""
        if target.shape != out.landmarks.shape:
            raise ValueError(
                f"target must be (B, {self.cfg.n_nodes}, 2) like the landmarks, got "
                f"{tuple(target.shape)}"
            )
        rec = F.mse_loss(out.landmarks, target)
        loss = rec
        if out.pos1 is not None:
            coarse = torch.matmul(self.down, target) if self.cfg.pooling else target
            loss = loss + F.mse_loss(out.pos1, coarse)
        if out.pos2 is not None:
            loss = loss + F.mse_loss(out.pos2, target)
        kld = -0.5 * torch.mean(1 + out.logvar - out.mu.pow(2) - out.logvar.exp())
        loss = loss + self.cfg.kld_weight * kld
        return loss, {"mse": rec.detach(), "kld": kld.detach()}


MINI = HybridGNetConfig(image_size=64, c=2, latents=32, f=32, K=6, l1=4, l2=3, running_stats=True)
"""The CPU reproduction's model (64 px phantoms): IGSC on levels 4 and 3 (8x8 and 16x16 maps,
one of the official level pairs), running BatchNorm statistics (see README, deviations)."""

VARIANTS = {
    "tiny": HybridGNetConfig(image_size=64, c=1, latents=8, f=8, K=3),
    "mini": MINI,
    "mini_no_igsc": replace(MINI, igsc=False),
    "jsrt512": HybridGNetConfig(image_size=512),
    "paper": HybridGNetConfig(),
    "paper_no_igsc": HybridGNetConfig(igsc=False),
}


def _example_input(model: HybridGNet, batch_size: int) -> tuple[Tensor]:
    cfg = model.cfg
    return (torch.rand(batch_size, cfg.n_channels, cfg.image_size, cfg.image_size),)


SPEC = PaperSpec(
    slug="hybridgnet",
    family="dense",
    title=(
        "Improving anatomical plausibility in medical image segmentation via hybrid graph "
        "neural networks: applications to chest x-ray analysis"
    ),
    arxiv="2203.10977",
    claim=(
        "A CNN encoder + variational latent + Chebyshev graph decoder that outputs organ "
        "contours segments about as well as a U-Net of similar size on clean images, stays "
        "anatomically plausible under occlusion where the U-Net's masks break, and its "
        "image-to-graph skip connections lower the landmark error."
    ),
    config=HybridGNetConfig,
    build=HybridGNet,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"dense", "landmarks", "graph", "segmentation"}),
    fidelity="faithful",
    batch_independent=False,  # BatchNorm without running statistics, as the official encoder
    experiment="archlab.papers.dense.hybridgnet.experiment",
)
