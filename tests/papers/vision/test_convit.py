"""ConViT: timm parity on random configs, GPSA invariants from the paper, input errors."""

from __future__ import annotations

import math

import pytest
import torch

from archlab.papers.vision.convit import (
    GPSA,
    ConViT,
    ConViTConfig,
    config_from_timm,
    from_timm,
    local_init_offsets,
    mean_attention_distance,
    relative_positions,
)

timm_convit = pytest.importorskip("timm.models.convit")

TINY = ConViTConfig(
    image_size=16, patch_size=4, n_classes=5, n_heads=4, d_head=8, n_layers=3, local_up_to_layer=2
)


def random_timm_configs(n: int, seed: int = 0) -> list[dict]:
    rng = torch.Generator().manual_seed(seed)

    def pick(options):
        return options[int(torch.randint(len(options), (1,), generator=rng))]

    configs = []
    for _ in range(n):
        img, patch = pick([(16, 4), (16, 2), (24, 4), (32, 8), (12, 3)])
        depth = pick([2, 3, 4])
        configs.append(
            dict(
                img_size=img,
                patch_size=patch,
                in_chans=pick([1, 3]),
                num_classes=pick([3, 10]),
                embed_dim=pick([4, 8]),  # per head
                num_heads=pick([1, 2, 3, 4, 9]),
                depth=depth,
                local_up_to_layer=pick(list(range(depth))),
                locality_strength=pick([0.5, 1.0, 2.0]),
                mlp_ratio=pick([2.0, 4.0]),
                qkv_bias=pick([False, True]),
                use_pos_embed=pick([False, True]),
                global_pool=pick(["token", "avg"]),
            )
        )
    return configs


@pytest.mark.parametrize("kwargs", random_timm_configs(8), ids=lambda k: str(sorted(k.items())))
def test_parity_with_timm_random_configs(kwargs):
    torch.manual_seed(0)
    ref = timm_convit.ConVit(**kwargs).eval()
    with torch.no_grad():  # move every weight off its init (gates, v_pos bias, ...)
        for p in ref.parameters():
            p.add_(0.2 * torch.randn_like(p))
    ours = from_timm(ref).eval()
    x = torch.randn(3, kwargs["in_chans"], kwargs["img_size"], kwargs["img_size"])
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)
    n_ref = sum(p.numel() for p in ref.parameters())
    assert sum(p.numel() for p in ours.parameters()) == n_ref


def test_parity_with_timm_convit_tiny_and_same_init():
    import timm

    torch.manual_seed(0)
    # ConViT-Ti's blocks (4 heads x 48, 12 blocks, 10 GPSA) on 64 x 64 images to stay fast
    ref = timm.create_model("convit_tiny", pretrained=False, num_classes=10, img_size=64).eval()
    cfg = config_from_timm(ref)
    assert (cfg.n_heads, cfg.d_head, cfg.n_layers, cfg.local_up_to_layer) == (4, 48, 12, 10)
    ours = from_timm(ref).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-5)
    # our own init reproduces the reference's deterministic parts (local init, gates, V = I)
    fresh = ConViT(cfg)
    for ours_block, ref_block in zip(fresh.gpsa_blocks, ref.blocks):
        torch.testing.assert_close(
            ours_block.self_attn.v_pos.weight, ref_block.attn.pos_proj.weight
        )
        torch.testing.assert_close(ours_block.self_attn.gating, ref_block.attn.gating_param)
        torch.testing.assert_close(ours_block.self_attn.v_proj.weight, ref_block.attn.v.weight)


def test_from_timm_rejects_other_models():
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(img_size=16, patch_size=4, embed_dim=16, depth=1, num_heads=2)
    with pytest.raises(TypeError, match="timm.models.convit.ConVit"):
        from_timm(vit)
    with pytest.raises(TypeError, match="ConVit"):
        from_timm(torch.nn.Linear(2, 2))
    bad = timm_convit.ConVit(
        img_size=16, patch_size=4, embed_dim=4, num_heads=2, depth=2, local_up_to_layer=2
    )
    with pytest.raises(ValueError, match="class token never joins"):
        from_timm(bad)


def test_relative_positions_match_timm():
    ref = timm_convit.GPSA(8, num_heads=2).get_rel_indices(25)[0]  # (N, N, 3)
    torch.testing.assert_close(relative_positions(5), ref)


def test_local_init_centres_each_head_on_its_offset():
    gpsa = GPSA(36, n_heads=9, grid_size=7, locality_strength=3.0)
    gpsa.local_init()
    pos = gpsa.positional_attention()  # (nh, N, N)
    centre = 3 * 7 + 3  # query in the middle of the 7 x 7 grid
    for h, dx, dy in local_init_offsets(9):
        key = int(pos[h, centre].argmax())
        assert (key % 7 - 3, key // 7 - 3) == (dx, dy)
    assert torch.equal(gpsa.v_proj.weight, torch.eye(36))


def test_gated_attention_rows_sum_to_one_and_match_forward():
    torch.manual_seed(0)
    gpsa = GPSA(16, n_heads=4, grid_size=4).eval()
    with torch.no_grad():
        gpsa.gating.copy_(torch.tensor([-2.0, 0.0, 1.0, 3.0]))
    x = torch.randn(2, 16, 16)
    maps = gpsa.attention_maps(x)
    torch.testing.assert_close(maps["gated"].sum(-1), torch.ones(2, 4, 16))
    v = gpsa.v_proj(x).view(2, 16, 4, 4).transpose(1, 2)  # (B, nh, N, hd)
    expected = gpsa.out_proj((maps["gated"] @ v).transpose(1, 2).reshape(2, 16, 16))
    with torch.no_grad():
        torch.testing.assert_close(gpsa(x), expected, rtol=1e-5, atol=1e-6)


def test_gate_limits_give_pure_positional_or_pure_content_attention():
    """sigmoid(lambda) -> 1: the output ignores content; -> 0: plain self-attention."""
    torch.manual_seed(0)
    gpsa = GPSA(16, n_heads=2, grid_size=3).eval()
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        gpsa.gating.fill_(40.0)
        maps = gpsa.attention_maps(x)
        torch.testing.assert_close(maps["gated"], maps["positional"].expand(2, -1, -1, -1))
        gpsa.gating.fill_(-40.0)
        maps = gpsa.attention_maps(x)
        torch.testing.assert_close(maps["gated"], maps["content"])


def test_gpsa_is_local_at_init():
    torch.manual_seed(0)
    model = ConViT(
        ConViTConfig(
            image_size=32,
            patch_size=4,
            n_classes=10,
            n_heads=4,
            d_head=8,
            n_layers=3,
            local_up_to_layer=2,
        )
    ).eval()
    x = torch.rand(4, 3, 32, 32)
    grid = model.patch_embed.grid_size
    uniform = mean_attention_distance(torch.full((1, 64, 64), 1 / 64), grid).item()
    for maps in model.gpsa_attention_maps(x):
        assert mean_attention_distance(maps["positional"], grid).max() < 1.0
        assert mean_attention_distance(maps["gated"], grid).max() < 0.6 * uniform
    assert math.isclose(uniform, 4.14, rel_tol=0.01)  # a uniform map on an 8 x 8 grid


def test_bad_inputs_name_what_was_expected():
    model = ConViT(TINY)
    with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\).*size 16x16"):
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match="3 channel"):
        model(torch.randn(1, 1, 16, 16))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(1, 3, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match="float32"):
        model(torch.randn(1, 3, 16, 16, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        model(torch.randn(3, 16, 16))


def test_config_validation():
    with pytest.raises(ValueError, match="local_up_to_layer"):
        ConViTConfig(n_layers=4, local_up_to_layer=4)
    with pytest.raises(ValueError, match="patch_size=5 must divide image_size=16"):
        ConViTConfig(image_size=16, patch_size=5)


def test_paper_sizes():
    """ConViT-Ti / S / B have about 6M / 27M / 86M parameters (Table 1 of the paper)."""
    from archlab.papers.vision.convit import VARIANTS

    expected = {"ti": 6e6, "s": 27e6, "b": 86e6}
    for name, n in expected.items():
        with torch.device("meta"):
            model = ConViT(VARIANTS[name])
        count = sum(p.numel() for p in model.parameters())
        assert abs(count - n) / n < 0.05, (name, count)


def test_trains_a_step_and_every_parameter_gets_a_gradient():
    model = ConViT(TINY)
    x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 5, (4,))
    torch.nn.functional.cross_entropy(model(x), y).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert model.blocks[0].self_attn.gating.grad.abs().sum() > 0


def test_forward_gate_limits_pure_positional_or_pure_content():
    """On the forward path (not ``attention_maps``): sigmoid(lambda) -> 1 gives out_proj(P v),
    blind to the queries and keys; sigmoid(lambda) -> 0 gives plain softmax(QK^T/sqrt(hd)) V."""
    torch.manual_seed(0)
    gpsa = GPSA(16, n_heads=2, grid_size=3).eval()
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        v = gpsa.v_proj(x).view(2, 9, 2, 8).transpose(1, 2)  # (B, nh, N, hd)
        q = gpsa.q_proj(x).view(2, 9, 2, 8).transpose(1, 2)
        k = gpsa.k_proj(x).view(2, 9, 2, 8).transpose(1, 2)
        gpsa.gating.fill_(40.0)
        pos = gpsa.positional_attention() @ v
        torch.testing.assert_close(gpsa(x), gpsa.out_proj(pos.transpose(1, 2).reshape(2, 9, 16)))
        gpsa.gating.fill_(-40.0)
        content = (q @ k.transpose(-2, -1) / math.sqrt(8)).softmax(-1) @ v
        expected = gpsa.out_proj(content.transpose(1, 2).reshape(2, 9, 16))
        torch.testing.assert_close(gpsa(x), expected)


def test_positional_attention_depends_only_on_the_offset():
    """softmax(v_pos . r_ij): scores are a function of (dx, dy) only, so two queries see the
    same scores for keys at the same offsets (translation equivariance, the conv bias)."""
    torch.manual_seed(0)
    gpsa = GPSA(8, n_heads=2, grid_size=5)
    with torch.no_grad():
        scores = gpsa.v_pos(gpsa.rel_pos)  # (N, N, nh)
        w, b = gpsa.v_pos.weight, gpsa.v_pos.bias
        for i, j in ((1, 13), (7, 20), (23, 2), (0, 24)):
            dx, dy = j % 5 - i % 5, j // 5 - i // 5
            r = torch.tensor([dx, dy, dx * dx + dy * dy], dtype=torch.float32)
            torch.testing.assert_close(scores[i, j], w @ r + b)
        # queries 5 = (row 1, col 0) and 13 = (row 2, col 3): offset (+1, +1), the same score
        torch.testing.assert_close(scores[5, 11], scores[13, 19])
