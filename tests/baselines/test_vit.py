"""ViT / DeiT baseline: timm parity (ViT and distilled DeiT), config and input errors."""

from __future__ import annotations

import pytest
import torch

from archlab.baselines.vit import VARIANTS, ViT, ViTConfig, from_timm

vision_transformer = pytest.importorskip("timm.models.vision_transformer")

CONFIGS = [
    dict(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=4, num_classes=10),
    dict(
        img_size=16,
        patch_size=2,
        embed_dim=24,
        depth=3,
        num_heads=3,
        num_classes=5,
        in_chans=1,
        qkv_bias=False,
        mlp_ratio=2.0,
    ),
    dict(
        img_size=24,
        patch_size=8,
        embed_dim=16,
        depth=1,
        num_heads=2,
        num_classes=7,
        global_pool="avg",
    ),
]


def _perturb(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))


@pytest.mark.parametrize("kwargs", CONFIGS, ids=["base", "no-qkv-bias", "avg-pool"])
def test_parity_with_timm_vit(kwargs):
    torch.manual_seed(0)
    ref = vision_transformer.VisionTransformer(**kwargs).eval()
    _perturb(ref)
    ours = from_timm(ref).eval()
    x = torch.randn(3, kwargs.get("in_chans", 3), kwargs["img_size"], kwargs["img_size"])
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())


def test_parity_with_timm_deit_distilled():
    from timm.models.deit import VisionTransformerDistilled

    torch.manual_seed(0)
    ref = VisionTransformerDistilled(
        img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=4, num_classes=10
    ).eval()
    _perturb(ref)
    ours = from_timm(ref).eval()
    assert ours.cfg.distilled
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)
        ref.set_distilled_training(True)
        ref.train()
        cls_ref, dist_ref = ref(x)
        cls_ours, dist_ours = ours.forward_heads(x)
        torch.testing.assert_close(cls_ours, cls_ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(dist_ours, dist_ref, rtol=0, atol=1e-5)


def test_from_timm_rejects_other_models_and_settings():
    from timm.models.convit import ConVit

    convit = ConVit(
        img_size=16, patch_size=4, embed_dim=4, num_heads=2, depth=2, local_up_to_layer=1
    )
    with pytest.raises(TypeError, match="VisionTransformer"):
        from_timm(convit)
    layer_scale = vision_transformer.VisionTransformer(
        img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2, init_values=1e-5
    )
    with pytest.raises(ValueError, match="LayerScale"):
        from_timm(layer_scale)


def test_distilled_heads_average_at_inference():
    torch.manual_seed(0)
    model = ViT(VARIANTS["tiny_distilled"]).eval()
    x = torch.randn(2, 3, 32, 32)
    cls, dist = model.forward_heads(x)
    torch.testing.assert_close(model(x), (cls + dist) / 2)
    assert model.pos_embed.shape[1] == 64 + 2


def test_bad_inputs_and_configs():
    model = ViT(VARIANTS["tiny"])
    with pytest.raises(ValueError, match="size 32x32"):
        model(torch.randn(1, 3, 28, 28))
    with pytest.raises(ValueError, match="3 channel"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="must divide image_size"):
        ViTConfig(image_size=30, patch_size=4)
    with pytest.raises(ValueError, match="n_heads=5 must divide d_model=64"):
        ViTConfig(d_model=64, n_heads=5)
    with pytest.raises(ValueError, match="global_pool must be 'token'"):
        ViTConfig(distilled=True, global_pool="avg")


def test_paper_sizes():
    """DeiT-Ti / S / B have about 5.7M / 22M / 86M parameters."""
    expected = {"ti": 5.7e6, "s": 22e6, "b": 86.6e6}
    for name, n in expected.items():
        with torch.device("meta"):
            model = ViT(VARIANTS[name])
        count = sum(p.numel() for p in model.parameters())
        assert abs(count - n) / n < 0.03, (name, count)
