"""MLP-Mixer baseline (arXiv 2105.01601): timm parity, token-count errors, parameter count."""

from __future__ import annotations

import pytest
import torch

import archlab
from archlab.baselines.mlp_mixer import MixerBlock, MlpMixer, MlpMixerConfig, from_timm


def _param_count(cfg: MlpMixerConfig) -> int:
    d, n, s, c = cfg.d_model, cfg.n_patches, cfg.d_token_hidden, cfg.d_channel_hidden
    stem = cfg.n_channels * cfg.patch_size**2 * d + d
    block = 4 * d + (n * s + s + s * n + n) + (d * c + c + c * d + d)
    return stem + cfg.n_layers * block + 2 * d + d * cfg.n_classes + cfg.n_classes


def test_parameter_count_matches_the_formula():
    cfg = MlpMixerConfig(
        image_size=16,
        patch_size=4,
        n_classes=7,
        d_model=24,
        n_layers=3,
        d_token_hidden=10,
        d_channel_hidden=40,
    )
    model = MlpMixer(cfg)
    assert sum(p.numel() for p in model.parameters()) == _param_count(cfg)


def test_mixer_s16_size():
    # Mixer-S/16 at 224: 18.5M parameters in the paper (Table 1)
    model = archlab.build("mlp_mixer/s16")
    assert abs(sum(p.numel() for p in model.parameters()) / 1e6 - 18.5) < 0.2


def test_timm_parity_with_random_weights():
    mixer = pytest.importorskip("timm.models.mlp_mixer")
    ref = mixer.MlpMixer(
        num_classes=5, img_size=64, patch_size=32, num_blocks=2, embed_dim=48
    ).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ref.parameters():  # timm zero-inits the head: randomise everything
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    ours = from_timm(ref).eval()
    assert ours.cfg.n_patches == 4 and ours.cfg.d_token_hidden == 24
    x = torch.randn(3, 3, 64, 64, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_token_mixing_is_position_specific_and_channel_mixing_is_not():
    torch.manual_seed(0)
    block = MixerBlock(d_model=8, n_tokens=4, d_token_hidden=6, d_channel_hidden=12).eval()
    x = torch.randn(2, 4, 8)
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        # a channel-only sublayer would commute with a permutation of the tokens; Mixer does not
        assert not torch.allclose(block(x)[:, perm], block(x[:, perm]), atol=1e-4)
        # the token MLP is shared by the channels: permuting channels commutes with it
        cperm = torch.randperm(8)
        h = block.mlp_tokens(block.norm1(x).transpose(1, 2)).transpose(1, 2)
        hp = block.mlp_tokens(block.norm1(x)[..., cperm].transpose(1, 2)).transpose(1, 2)
        torch.testing.assert_close(h[..., cperm], hp)


def test_wrong_token_count_and_bad_images_raise_one_clear_error():
    block = MixerBlock(d_model=8, n_tokens=4, d_token_hidden=6, d_channel_hidden=12)
    with pytest.raises(ValueError, match="N=4 tokens"):
        block(torch.randn(2, 5, 8))
    model = archlab.build("mlp_mixer/tiny")
    with pytest.raises(ValueError, match="32x32"):
        model(torch.randn(2, 3, 28, 28))
    with pytest.raises(ValueError, match="channel"):
        model(torch.randn(2, 1, 32, 32))
    with pytest.raises(TypeError, match="dtype"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="must divide"):
        MlpMixerConfig(image_size=30, patch_size=4)
