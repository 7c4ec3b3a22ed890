"""HybridGNet: ChebConv parity with torch_geometric, IGSC sampling parity with torchvision's
RoIAlign, the graph pooling of the official code, shapes, the loss and bad inputs."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from archlab.papers.dense.hybridgnet import (
    VARIANTS,
    ChebConv,
    HybridGNet,
    HybridGNetConfig,
    pooling_matrices,
    sample_windows,
    scaled_laplacian,
)
from archlab.papers.dense.hybridgnet.data import JSRT_LANDMARKS, landmark_adjacency
from archlab.papers.dense.hybridgnet.experiment import broken_masks

TINY = VARIANTS["tiny"]


def _random_graph(n: int, p: float, seed: int, weighted: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(n, n, generator=g) < p).float()
    a = ((a + a.T) > 0).float()
    a.fill_diagonal_(0)
    a[2, :] = a[:, 2] = 0  # an isolated node
    if weighted:
        w = torch.rand(n, n, generator=g) + 0.1
        a = a * (w + w.T) / 2
    return a


@pytest.mark.parametrize("K", [1, 2, 3, 6])
@pytest.mark.parametrize("weighted", [False, True])
def test_chebconv_matches_torch_geometric(K, weighted):
    """Same weights -> same output as ``torch_geometric.nn.ChebConv`` (sym, lambda_max = 2)."""
    pyg = pytest.importorskip("torch_geometric.nn")
    torch.manual_seed(K)
    adj = _random_graph(24, 0.15, seed=K, weighted=weighted)
    edge_index = adj.nonzero().T
    edge_weight = adj[edge_index[0], edge_index[1]] if weighted else None
    ref = pyg.ChebConv(5, 7, K, normalization="sym")
    ours = ChebConv(5, 7, K)
    ours.load_state_dict(ref.state_dict())  # same parameter names: lins.k.weight, bias
    lap = scaled_laplacian(adj, "sym")
    x = torch.randn(24, 5)
    torch.testing.assert_close(ours(x, lap), ref(x, edge_index, edge_weight), atol=1e-5, rtol=1e-5)
    xb = torch.randn(3, 24, 5)  # batched node features, as HybridGNet uses them
    torch.testing.assert_close(
        ours(xb, lap), ref(xb, edge_index, edge_weight), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("normalization", [None, "rw"])
def test_chebconv_other_normalisations_match_torch_geometric(normalization):
    pyg = pytest.importorskip("torch_geometric.nn")
    torch.manual_seed(0)
    adj = _random_graph(16, 0.2, seed=1, weighted=True)
    edge_index = adj.nonzero().T
    ref = pyg.ChebConv(4, 3, 4, normalization=normalization)
    ours = ChebConv(4, 3, 4)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(16, 4)
    out = ref(x, edge_index, adj[edge_index[0], edge_index[1]], lambda_max=3.0)
    torch.testing.assert_close(
        ours(x, scaled_laplacian(adj, normalization, 3.0)), out, atol=1e-4, rtol=1e-4
    )


def test_chebconv_on_the_landmark_graph_and_its_laplacian():
    pyg = pytest.importorskip("torch_geometric.nn")
    adj = landmark_adjacency(JSRT_LANDMARKS)
    lap = scaled_laplacian(adj)
    # Every node has degree 2, so L_hat = L - I = -A / 2 for "sym" with lambda_max = 2.
    torch.testing.assert_close(lap, -adj / 2)
    ref = pyg.ChebConv(6, 4, 6)
    ours = ChebConv(6, 4, 6)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 120, 6)
    torch.testing.assert_close(ours(x, lap), ref(x, adj.nonzero().T), atol=1e-5, rtol=1e-5)


def test_igsc_sampling_equals_roi_align():
    """The official lookup: roi_align(output 1x1, aligned) over a 3x3 box around p * size."""
    ops = pytest.importorskip("torchvision.ops")
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, 16, 16, generator=g)
    pos = 0.15 + 0.7 * torch.rand(2, 7, 2, generator=g)  # windows inside the map
    # (Wider windows also agree unless float32 box widths round up, where roi_align takes
    # ceil(width) + 1 samples.)
    for window in (1, 3):
        r, p = window // 2, pos * 16
        boxes = [torch.cat([p[b] - r, p[b] + r + 1], dim=1) for b in range(2)]  # x1 y1 x2 y2
        ref = ops.roi_align(feats, boxes, output_size=(1, 1), aligned=True).view(2, 7, 5)
        torch.testing.assert_close(sample_windows(feats, pos, window), ref, atol=1e-5, rtol=1e-5)


def test_pooling_matrices_are_the_official_ones():
    down, up = pooling_matrices(JSRT_LANDMARKS)
    assert down.shape == (60, 120) and up.shape == (120, 60)  # ceil(44/2)+ceil(50/2)+ceil(26/2)
    torch.testing.assert_close(down.sum(1), torch.ones(60))
    torch.testing.assert_close(up.sum(1), torch.ones(120))
    y = torch.randn(60, 3)
    fine = up @ y
    torch.testing.assert_close(fine[0:44:2], y[0:22])  # even nodes copy a coarse node
    torch.testing.assert_close(fine[1], (y[0] + y[1]) / 2)  # odd ones average two
    torch.testing.assert_close(fine[43], y[21])  # the last odd node of a contour copies
    x = torch.randn(120, 3)
    torch.testing.assert_close((down @ x)[0], (x[0] + x[1]) / 2)
    odd = pooling_matrices((5,))[0]  # a contour of odd length keeps its last node
    torch.testing.assert_close(odd[2], torch.tensor([0.0, 0, 0, 0, 1]))


def test_forward_shapes_and_intermediate_positions():
    torch.manual_seed(0)
    model = HybridGNet(TINY).eval()
    x = torch.rand(2, 1, 64, 64)
    out = model.forward_all(x)
    assert out.landmarks.shape == (2, 120, 2)
    assert out.pos1.shape == (2, 60, 2) and out.pos2.shape == (2, 120, 2)
    assert out.mu.shape == out.logvar.shape == (2, TINY.latents)
    torch.testing.assert_close(model(x), out.landmarks)
    plain = HybridGNet(replace(TINY, igsc=False))
    assert plain.SC_1 is None and plain.forward_all(x).pos1 is None
    flat = HybridGNet(replace(TINY, pooling=False)).forward_all(x)
    assert flat.pos1.shape == (2, 120, 2)
    # The IGSC widens the decoder's input by the sampled channels and the 2 coordinates.
    assert model.graphConv_up4.in_channels == TINY.filters[4] + TINY.widths[TINY.l1 - 1] + 2
    assert plain.graphConv_up4.in_channels == TINY.filters[4]


def test_eval_uses_the_mean_and_training_samples_the_latent():
    torch.manual_seed(0)
    model = HybridGNet(replace(TINY, running_stats=True))
    x = torch.rand(2, 1, 64, 64)
    model.train()
    a, b = model(x), model(x)
    assert not torch.allclose(a, b)  # z = mu + eps * sigma
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


def test_loss_is_the_official_sum():
    torch.manual_seed(0)
    model = HybridGNet(TINY).train()
    x, target = torch.rand(3, 1, 64, 64), torch.rand(3, 120, 2)
    out = model.forward_all(x)
    loss, logs = model.loss(out, target)
    mse = torch.nn.functional.mse_loss
    kld = -0.5 * torch.mean(1 + out.logvar - out.mu**2 - out.logvar.exp())
    expected = (
        mse(out.landmarks, target)
        + mse(out.pos1, model.down @ target)
        + mse(out.pos2, target)
        + 1e-5 * kld
    )
    torch.testing.assert_close(loss, expected)
    assert set(logs) == {"mse", "kld"}
    with pytest.raises(ValueError, match="target must be"):
        model.loss(out, target[:, :100])


def test_gradients_reach_the_encoder_through_the_skip_connections():
    """With IGSC the landmarks depend on the encoder maps directly, not only through z."""
    torch.manual_seed(0)
    model = HybridGNet(TINY).eval()
    x = torch.rand(1, 1, 64, 64)
    out = model.forward_all(x)
    maps_grad = torch.autograd.grad(out.landmarks.sum(), model.SC_2.graphConv_pre.lins[0].weight)
    assert maps_grad[0].abs().sum() > 0


def test_paper_config_defaults():
    cfg = VARIANTS["paper"]
    assert (cfg.image_size, cfg.latents, cfg.K, cfg.window, cfg.kld_weight) == (
        1024,
        64,
        6,
        3,
        1e-5,
    )
    assert cfg.widths == (8, 16, 32, 64, 128, 128) and cfg.filters == (2, 32, 32, 32, 16, 16, 16)
    assert (cfg.l1, cfg.l2, cfg.igsc, cfg.pooling) == (6, 5, True, True)
    assert cfg.n_landmarks == (44, 50, 26) and not cfg.running_stats


def test_bad_inputs_and_configs():
    model = HybridGNet(TINY).eval()
    with pytest.raises(ValueError, match="1 input channels"):
        model(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="divisible by 32"):
        model(torch.rand(1, 1, 60, 60))
    with pytest.raises(ValueError, match="image_size=64"):
        model(torch.rand(1, 1, 96, 96))
    with pytest.raises(ValueError, match="2-D input"):
        model(torch.rand(1, 1, 8, 64, 64))
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((1, 1, 64, 64), float("nan")))
    with pytest.raises(ValueError, match="multiple of 32"):
        HybridGNetConfig(image_size=100)
    with pytest.raises(ValueError, match="even"):
        HybridGNetConfig(f=7)
    with pytest.raises(ValueError, match="odd"):
        HybridGNetConfig(window=2)
    with pytest.raises(ValueError, match="levels"):
        HybridGNetConfig(l1=7)
    with pytest.raises(ValueError, match="K"):
        ChebConv(3, 3, 0)
    with pytest.raises(ValueError, match="square"):
        scaled_laplacian(torch.ones(3, 4))


def test_broken_masks_flags_split_holed_and_missing_organs():
    """The occlusion check's "broken" mask: some organ not exactly one component without holes."""
    good = torch.zeros(12, 12, dtype=torch.long)
    good[1:5, 1:5], good[1:5, 7:11], good[7:11, 4:8] = 1, 2, 3
    split, holed, missing = good.clone(), good.clone(), good.clone()
    split[1:5, 2] = 0  # right lung in two pieces
    holed[2, 8] = 0  # a hole in the left lung
    missing[missing == 3] = 0  # no heart
    flags = broken_masks(torch.stack([good, split, holed, missing]))
    assert flags.tolist() == [False, True, True, True]


def test_igsc_concatenates_features_samples_and_positions():
    """SkipBlock (IGSC): pos = ChebConv_K=1(x), out = [x, sample(map, pos), pos]."""
    from archlab.papers.dense.hybridgnet.model import SkipBlock

    torch.manual_seed(0)
    sc = SkipBlock(5, window=3)
    lap = scaled_laplacian(landmark_adjacency((6, 4)))
    x, feats = torch.randn(2, 10, 5), torch.randn(2, 7, 8, 8)
    out, pos = sc(x, lap, feats)
    torch.testing.assert_close(pos, sc.graphConv_pre(x, lap))
    torch.testing.assert_close(out, torch.cat([x, sample_windows(feats, pos, 3), pos], -1))


def test_landmarks_see_the_encoder_maps_only_through_the_skips():
    """With IGSC, changing the level-l1 / level-l2 encoder maps (mu kept) moves the landmarks;
    without IGSC the decoder sees only z, so the same change leaves them unchanged."""
    torch.manual_seed(0)
    x = torch.rand(1, 1, 64, 64)
    for igsc in (True, False):
        model = HybridGNet(replace(TINY, igsc=igsc)).eval()
        for level in (TINY.l1, TINY.l2):
            with torch.no_grad():
                ref = model(x)
                hook = model.encoder.register_forward_hook(
                    lambda m, i, o, lv=level: (
                        o[0],
                        o[1],
                        [t + 1.0 if j == lv - 1 else t for j, t in enumerate(o[2])],
                    )
                )
                moved = model(x)
                hook.remove()
            assert torch.allclose(moved, ref) != igsc, (igsc, level)
