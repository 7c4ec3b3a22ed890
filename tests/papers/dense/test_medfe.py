"""MEDFE and its PConv U-Net baseline: partial-convolution algebra, the bilateral propagation
activation against loop references, hole-content independence, shapes and bad input."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

import archlab
from archlab.lab.profiling import n_params
from archlab.papers.dense.medfe import (
    MEDFE,
    VARIANTS,
    BilateralPropagation,
    BranchSupervision,
    MEDFEConfig,
    PartialConv2d,
    PConvUNet,
    PConvUNetConfig,
    gaussian_affinity,
)

TINY = VARIANTS["tiny"]


def holes_box(b: int, size: int) -> torch.Tensor:
    holes = torch.zeros(b, 1, size, size)
    holes[:, :, size // 4 : size // 2, size // 8 : 3 * size // 4] = 1.0
    return holes


# --- partial convolution ---------------------------------------------------------------------


def test_partial_conv_with_full_mask_is_a_plain_conv_inside():
    """Away from the border a full mask gives the plain convolution; at the border the zero
    padding counts as missing and is renormalised (NVIDIA's "partial-conv padding")."""
    torch.manual_seed(0)
    pconv = PartialConv2d(3, 5, 3, 1, 1)
    conv = torch.nn.Conv2d(3, 5, 3, 1, 1)
    conv.load_state_dict(pconv.state_dict())
    x = torch.randn(2, 3, 8, 8)
    y, m = pconv(x, torch.ones(2, 1, 8, 8))
    ref = conv(x)
    torch.testing.assert_close(y[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1])
    bias = conv.bias.view(1, -1)
    torch.testing.assert_close(y[..., 0, 0] - bias, (ref[..., 0, 0] - bias) * 9 / 4)  # corner
    assert torch.equal(m, torch.ones(2, 1, 8, 8))


def test_partial_conv_ignores_holes_renormalises_and_updates_the_mask():
    torch.manual_seed(0)
    pconv = PartialConv2d(1, 1, 3, 1, 1, bias=True)
    with torch.no_grad():
        pconv.weight.fill_(1.0 / 9)  # a box filter
        pconv.bias.fill_(0.25)
    mask = torch.ones(1, 1, 8, 8)
    mask[..., 2:7, 2:7] = 0.0  # a 5x5 hole
    x = torch.full((1, 1, 8, 8), 0.7)
    y, new_mask = pconv(x, mask)
    noisy = x + 5.0 * torch.randn(x.shape) * (1 - mask)  # different hole content
    y2, _ = pconv(noisy, mask)
    torch.testing.assert_close(y, y2)  # hole pixels are never seen
    expected_mask = (F.conv2d(mask, torch.ones(1, 1, 3, 3), padding=1) > 0).float()
    assert torch.equal(new_mask, expected_mask)  # the hole shrinks by the kernel's reach
    assert new_mask[0, 0, 4, 4] == 0 and y[0, 0, 4, 4] == 0  # window fully in the hole
    # a constant image through a box filter: sum(1)/sum(M) renormalisation restores 0.7
    # wherever the window sees a known pixel (inside the image, away from the zero padding)
    inner = new_mask[0, 0, 1:7, 1:7].bool()
    torch.testing.assert_close(
        y[0, 0, 1:7, 1:7][inner], torch.full_like(y[0, 0, 1:7, 1:7][inner], 0.95)
    )


def test_pconv_unet_ignores_hole_content_and_keeps_shape():
    torch.manual_seed(0)
    model = PConvUNet(PConvUNetConfig(widths=(8, 16, 16), kernels=(7, 5, 3))).eval()
    x = torch.rand(2, 3, 16, 16)
    holes = holes_box(2, 16)
    with torch.no_grad():
        a = model(x, holes)
        b = model(x + holes * torch.rand(2, 3, 16, 16), holes)
    assert a.shape == x.shape
    torch.testing.assert_close(a, b)


# --- bilateral propagation activation --------------------------------------------------------


def official_gaussian(h: int, w: int, v: float) -> torch.Tensor:
    """``util.gussin`` of the official code, for any size (loops as there)."""
    rows = []
    for i in range(h):
        for k in range(w):
            g = [
                [math.exp(-((x - i) ** 2 + (y - k) ** 2) / (2 * v * v)) / (2 * math.pi * v * v)
                 for y in range(w)]
                for x in range(h)
            ]  # fmt: skip
            t = torch.tensor(g, dtype=torch.float64)
            rows.append((t / t.sum()).flatten())
    return torch.stack(rows).float()


def test_gaussian_affinity_equals_the_official_kernel():
    torch.testing.assert_close(gaussian_affinity(5, 4, 1.5), official_gaussian(5, 4, 1.5))
    torch.testing.assert_close(gaussian_affinity(6, 6, 1.5).sum(1), torch.ones(36))


def range_term_loop(x: torch.Tensor, k: int) -> torch.Tensor:
    """The BPA range term position by position (neighbours outside the map excluded)."""
    B, D, h, w = x.shape
    out = torch.zeros_like(x)
    s = torch.sigmoid(x)
    r = k // 2
    for b in range(B):
        for i in range(h):
            for j in range(w):
                sims, feats = [], []
                for di in range(-r, r + 1):
                    for dj in range(-r, r + 1):
                        p, q = i + di, j + dj
                        if 0 <= p < h and 0 <= q < w:
                            sims.append((s[b, :, i, j] * s[b, :, p, q]).mean())
                            feats.append(x[b, :, p, q])
                wts = torch.stack(sims).softmax(0)
                out[b, :, i, j] = (wts[:, None] * torch.stack(feats)).sum(0)
    return out


def test_bpa_range_and_spatial_terms_match_loop_references():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 6)
    bpa = BilateralPropagation(sigma_s=1.5, kernel=3)
    torch.testing.assert_close(bpa.range(x), range_term_loop(x, 3))
    g = gaussian_affinity(5, 6, 1.5)
    ref = torch.einsum("nm,bdm->bdn", g, x.flatten(2)).view_as(x)
    torch.testing.assert_close(bpa.spatial(x), ref)
    assert bpa(x).shape == (2, 8, 5, 6)


def test_bpa_preserves_constant_maps_and_reduces_to_identity():
    x = torch.full((1, 3, 6, 6), 0.3)
    bpa = BilateralPropagation(1.5, 3)
    torch.testing.assert_close(bpa(x), torch.full((1, 6, 6, 6), 0.3))
    y = torch.randn(1, 3, 6, 6)
    torch.testing.assert_close(BilateralPropagation(1e-3, 1)(y), torch.cat([y, y], 1))


def official_base_terms(x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The spatial and range terms of the official ``BASE.forward`` for one image ``x`` (C, h,
    w), step by step as there: Gaussian weights expanded over ``(h*w, C, h, w)`` and summed;
    ``Selfpatch`` patches of the zero-padded sigmoid / feature maps, a softmax over each padded
    3x3 window; each ``(h*w, C)`` result ``view``-ed as ``(1, C, h, w)`` (no transpose)."""
    c, h, w = x.shape
    gus = official_gaussian(h, w, sigma).view(h * w, 1, h, w)
    spatial = (gus * x.expand(h * w, c, h, w)).sum(-1).sum(-1).contiguous().view(1, c, h, w)

    def patches(img: torch.Tensor, k: int) -> torch.Tensor:  # Selfpatch._extract_patches
        win = img.unfold(1, k, 1).unfold(2, k, 1)  # (C, h', w', k, k)
        return win.permute(1, 2, 0, 3, 4).contiguous().view(-1, img.shape[0], k, k)

    s = torch.sigmoid(x)
    feats = patches(torch.nn.functional.pad(x, (1, 1, 1, 1)), 3)  # (hw, C, 3, 3)
    sims = patches(torch.nn.functional.pad(s, (1, 1, 1, 1)), 3)
    centre = patches(s, 1).expand_as(sims)
    a = (centre * sims).mean(1).contiguous().view(h * w, -1).softmax(1).view(h * w, 1, 3, 3)
    rng = (a * feats).sum(-1).sum(-1).contiguous().view(1, c, h, w)
    return spatial, rng


def test_released_bpa_reproduces_the_official_reshape_on_a_fixed_tensor():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 4, generator=g)  # C=3 and h*w=16: the reshape mixes them
    released = BilateralPropagation(1.5, 3, variant="released")
    for b in range(2):
        spatial, rng = official_base_terms(x[b], 1.5)
        torch.testing.assert_close(released.spatial(x[b : b + 1]), spatial)
        torch.testing.assert_close(released.range(x[b : b + 1]), rng)
    out = released(x)
    assert out.shape == (2, 6, 4, 4)
    # the mixing itself: channel d at position p holds entry d*h*w + p of the position-major
    # (h*w, C) buffer, i.e. position (d*16 + p) // 3, channel (d*16 + p) % 3 of the paper's term
    paper = BilateralPropagation(1.5, 3).spatial(x)
    flat = paper.flatten(2).transpose(1, 2).flatten(1)  # (B, h*w*C) position-major
    torch.testing.assert_close(released.spatial(x).flatten(1), flat)
    assert released.spatial(x)[0, 1, 0, 0] == paper[0, 16 % 3, 16 // 3 // 4, 16 // 3 % 4]
    assert not torch.allclose(released.spatial(x), paper)


def test_released_and_paper_bpa_differ_only_in_layout_and_padding():
    x = torch.randn(1, 4, 5, 5, generator=torch.Generator().manual_seed(1))
    paper = BilateralPropagation(1.5, 3)
    released = BilateralPropagation(1.5, 3, variant="released")
    # away from the border the range softmax is the same, so the released range term is the
    # paper's, transposed position-major and reshaped
    inner = released.range(x).flatten(1).view(25, 4)[[6, 7, 8, 11, 12, 13, 16, 17, 18]]
    torch.testing.assert_close(
        inner, paper.range(x).flatten(2)[0].T[[6, 7, 8, 11, 12, 13, 16, 17, 18]]
    )
    with pytest.raises(ValueError, match="variant"):
        BilateralPropagation(1.5, 3, variant="transposed")
    with pytest.raises(ValueError, match="bpa_variant"):
        MEDFEConfig(bpa_variant="transposed")
    model = MEDFE(dataclasses.replace(TINY, bpa_variant="released"))
    assert model.equalization.equalize.bpa.variant == "released"
    assert n_params(model) == n_params(MEDFE(TINY))


# --- MEDFE -----------------------------------------------------------------------------------


def test_medfe_ignores_hole_content_and_returns_branch_images():
    torch.manual_seed(0)
    model = MEDFE(TINY).eval()
    x = torch.rand(2, 3, 32, 32)
    holes = holes_box(2, 32)
    with torch.no_grad():
        out, aux = model(x, holes, return_aux=True)
        out2 = model(x + holes * torch.randn(2, 3, 32, 32), holes)
    assert out.shape == x.shape and 0 <= out.min() and out.max() <= 1
    torch.testing.assert_close(out, out2)
    s = 32 // 2**TINY.n_texture_layers
    assert aux["structure"].shape == aux["texture"].shape == (2, TINY.d_branch, s, s)
    head = BranchSupervision(TINY.d_branch, 3)
    images = head.images(aux)
    assert images["structure"].shape == (2, 3, s, s) and 0 <= images["texture"].min()
    loss = head(aux, x, x)
    assert loss.ndim == 0 and loss > 0


def test_bpa_ablation_keeps_the_size_and_changes_the_output():
    with_bpa, without = MEDFE(VARIANTS["mini"]), MEDFE(VARIANTS["mini-no-bpa"])
    assert n_params(with_bpa) == n_params(without)
    assert without.equalization.equalize.bpa is None


def test_official_branch_weight_sharing():
    shared = MEDFE(TINY).equalization
    assert shared.texture_fill is shared.structure_fill
    own = MEDFE(dataclasses.replace(TINY, share_branch_weights=False))
    assert own.equalization.texture_fill is not own.equalization.structure_fill
    assert n_params(own) > n_params(MEDFE(TINY))


def test_paper_config_layout():
    cfg = MEDFEConfig()
    assert cfg.widths == (64, 128, 256, 512, 512, 512) and cfg.multiple == 64
    assert cfg.pconv_kernels == (3, 5, 7) and cfg.n_pconv_layers == 5


@pytest.mark.parametrize(
    "x, holes, match",
    [
        (torch.rand(1, 3, 24, 24), torch.zeros(1, 1, 24, 24), "divisible by 16"),
        (torch.rand(1, 1, 32, 32), torch.zeros(1, 1, 32, 32), "3 input channels"),
        (torch.rand(1, 3, 32, 32), torch.zeros(1, 3, 32, 32), "hole mask"),
        (torch.rand(1, 3, 32, 32), torch.zeros(1, 1, 16, 16), "does not match"),
        (torch.rand(1, 3, 32, 32), torch.full((1, 1, 32, 32), 0.5), "only 0"),
        (torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32), "whole image"),
        (torch.full((1, 3, 32, 32), float("nan")), torch.zeros(1, 1, 32, 32), "NaN"),
    ],
)
def test_bad_input_is_one_clear_error(x, holes, match):
    with pytest.raises(ValueError, match=match):
        MEDFE(TINY)(x, holes)
    if "divisible" not in match:
        with pytest.raises(ValueError, match=match):
            PConvUNet(PConvUNetConfig(widths=(8, 16), kernels=(3, 3)))(x, holes)


def test_bad_configs():
    with pytest.raises(ValueError, match="n_texture_layers"):
        MEDFEConfig(n_layers=4, n_texture_layers=4)
    with pytest.raises(ValueError, match="odd"):
        MEDFEConfig(pconv_kernels=(3, 4))
    with pytest.raises(ValueError, match="norm"):
        MEDFEConfig(norm="group")
    with pytest.raises(ValueError, match="same"):
        PConvUNetConfig(widths=(8, 16), kernels=(3,))


def test_build_by_name():
    model = archlab.build("medfe/tiny", use_bpa=False)
    assert isinstance(model, MEDFE) and not model.cfg.use_bpa


def test_feature_equalization_is_se_then_bpa_then_fusion():
    """Channel then spatial equalisation: fuse(BPA(SE(x))); without BPA fuse([SE(x), SE(x)])."""
    from archlab.papers.dense.medfe.model import FeatureEqualization

    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    for use_bpa in (True, False):
        eq = FeatureEqualization(8, 2, 1.5, 3, use_bpa).eval()
        with torch.no_grad():
            se = eq.channel(x)
            y = BilateralPropagation(1.5, 3)(se) if use_bpa else torch.cat([se, se], 1)
            torch.testing.assert_close(eq(x), eq.fuse(y))


def test_equalised_map_is_added_to_every_skip_and_holes_drive_the_fill_mask():
    """Mutual equalisation: skip_j = redistribute_j(x) + f_j for every encoder level, x the
    equalised map; the partial convolutions see known = (mean hole fraction of the cell < 1/2)
    at the equalisation scale."""
    torch.manual_seed(0)
    model = MEDFE(TINY).eval()
    me = model.equalization
    nt = TINY.n_texture_layers
    feats = [torch.randn(1, w, 32 >> (i + 1), 32 >> (i + 1)) for i, w in enumerate(TINY.widths)]
    holes = holes_box(1, 32)
    seen = {}
    h1 = me.equalize.register_forward_hook(lambda m, i, o: seen.__setitem__("x", o))
    h2 = me.texture_fill.register_forward_hook(lambda m, i, o: seen.__setitem__("mask", i[1]))
    with torch.no_grad():
        out, _ = me(feats, holes)
        h1.remove()
        h2.remove()
        x = seen["x"]
        for j, f in enumerate(feats):
            red = me.texture_out[j](x, f.shape[-2:]) if j < nt else me.structure_out[j - nt](x)
            torch.testing.assert_close(out[j], red + f)
    s = 32 >> nt
    known = (F.adaptive_avg_pool2d(holes, s) < 0.5).float()
    torch.testing.assert_close(seen["mask"], known)
    assert 0 < known.sum() < known.numel()


def test_branch_supervision_is_the_l1_of_both_branch_images():
    """L = |img(structure) - resize(smoothed gt)|_1 + |img(texture) - resize(gt)|_1 with
    img = (tanh(conv1x1) + 1) / 2 at the equalisation scale."""
    torch.manual_seed(0)
    head = BranchSupervision(4, 3)
    branches = {"structure": torch.randn(2, 4, 8, 8), "texture": torch.randn(2, 4, 8, 8)}
    gt, smooth = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)

    def img(t):
        return (torch.tanh(head.to_image[0](t)) + 1) / 2

    def down(t):
        return F.interpolate(t, size=(8, 8), mode="bilinear", align_corners=False)

    ref = F.l1_loss(img(branches["structure"]), down(smooth)) + F.l1_loss(
        img(branches["texture"]), down(gt)
    )
    torch.testing.assert_close(head(branches, gt, smooth), ref)
