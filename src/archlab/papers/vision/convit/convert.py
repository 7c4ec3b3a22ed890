"""Copy a timm ``ConVit`` into archlab's ``ConViT`` (outputs equal to float rounding).

Parameter mapping (timm -> archlab); timm's fused ``qk`` / ``qkv`` are split::

    patch_embed.proj, cls_token, pos_embed, norm, head   -> same names
    blocks.i.norm1 / norm2                -> blocks.i.self_attn_norm / ffn_norm
    blocks.i.mlp.fc1 / fc2                -> blocks.i.ffn.fc1 / fc2
    blocks.i.attn.proj                    -> blocks.i.self_attn.out_proj
    GPSA (i < local_up_to_layer):
    blocks.i.attn.qk                      -> blocks.i.self_attn.{q,k}_proj
    blocks.i.attn.v                       -> blocks.i.self_attn.v_proj
    blocks.i.attn.pos_proj                -> blocks.i.self_attn.v_pos
    blocks.i.attn.gating_param            -> blocks.i.self_attn.gating
    MHSA (i >= local_up_to_layer):
    blocks.i.attn.qkv                     -> blocks.i.self_attn.{q,k,v}_proj

Note that timm's ``embed_dim`` argument is the width *per head* (``d_head``): timm multiplies
it by ``num_heads``.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.papers.vision.convit.model import ConViT, ConViTConfig


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"from_timm: unsupported timm ConVit setting: {what}")


def config_from_timm(model: nn.Module) -> ConViTConfig:
    """The ``ConViTConfig`` of a ``timm.models.convit.ConVit``.

    Raises:
        TypeError: if ``model`` is not a timm ``ConVit``.
        ValueError: for settings archlab's ConViT does not have (a hybrid CNN stem, no head,
            no pooling, a class token that never joins, non-square inputs).
    """
    from timm.layers import PatchEmbed as TimmPatchEmbed
    from timm.models.convit import GPSA, MHSA, ConVit

    if not isinstance(model, ConVit):
        raise TypeError(
            "from_timm expects a timm.models.convit.ConVit; got "
            f"{type(model).__module__}.{type(model).__name__}"
        )
    pe = model.patch_embed
    _require(type(pe) is TimmPatchEmbed, "hybrid_backbone (a CNN stem)")
    _require(
        isinstance(pe.norm, nn.Identity) and pe.proj.bias is not None,
        "a patch embedding with a norm or without bias",
    )
    img, patch = tuple(pe.img_size), tuple(pe.patch_size)
    _require(
        img[0] == img[1] and patch[0] == patch[1], f"non-square img_size={img} / patch_size={patch}"
    )
    _require(model.global_pool in ("token", "avg"), f"global_pool={model.global_pool!r}")
    _require(isinstance(model.head, nn.Linear), "num_classes=0 (no head)")
    _require(model.cls_token is not None, "a pruned class token")
    blocks = list(model.blocks)
    local = model.local_up_to_layer
    _require(
        0 <= local < len(blocks),
        f"local_up_to_layer={local} with depth={len(blocks)}: the class token never joins",
    )
    heads = blocks[0].attn.num_heads
    for i, b in enumerate(blocks):
        _require(type(b.attn) is (GPSA if i < local else MHSA), f"block {i} attention type")
        _require(b.attn.num_heads == heads, "mixed head counts")
        _require(
            isinstance(b.mlp.act, nn.GELU) and b.mlp.act.approximate == "none",
            "an MLP activation other than exact GELU",
        )
        _require(
            isinstance(b.norm1, nn.LayerNorm) and b.norm1.eps == model.norm.eps,
            "mixed norm epsilons",
        )
    d = model.embed_dim
    first = blocks[0].attn
    qkv_bias = (first.qk if local else first.qkv).bias is not None
    return ConViTConfig(
        image_size=img[0],
        patch_size=patch[0],
        n_channels=pe.proj.in_channels,
        n_classes=model.num_classes,
        n_heads=heads,
        d_head=d // heads,
        n_layers=len(blocks),
        local_up_to_layer=local,
        locality_strength=float(model.locality_strength),
        mlp_ratio=blocks[0].mlp.fc1.out_features / d,
        qkv_bias=qkv_bias,
        use_pos_embed=bool(model.use_pos_embed),
        global_pool=model.global_pool,
        norm_eps=model.norm.eps,
    )


def state_dict_from_timm(
    timm_state: dict[str, torch.Tensor], local_up_to_layer: int
) -> dict[str, torch.Tensor]:
    """Rename (and split) a timm ``ConVit`` state dict into archlab ``ConViT`` keys."""
    renames = {
        "norm1.": "self_attn_norm.",
        "norm2.": "ffn_norm.",
        "mlp.fc1.": "ffn.fc1.",
        "mlp.fc2.": "ffn.fc2.",
        "attn.proj.": "self_attn.out_proj.",
        "attn.v.": "self_attn.v_proj.",
        "attn.pos_proj.": "self_attn.v_pos.",
        "attn.gating_param": "self_attn.gating",
    }
    out = {}
    for key, value in timm_state.items():
        if not key.startswith("blocks."):
            out[key] = value
            continue
        _, i, rest = key.split(".", 2)
        base = f"blocks.{i}."
        fused = {"attn.qk.": "qk", "attn.qkv.": "qkv"}
        prefix = next((p for p in fused if rest.startswith(p)), None)
        if prefix is not None:
            kind = rest[len(prefix) :]  # weight | bias
            names = fused[prefix]
            for name, part in zip(names, value.chunk(len(names), dim=0)):
                out[f"{base}self_attn.{name}_proj.{kind}"] = part.clone()
            continue
        for old, new in renames.items():
            if rest.startswith(old):
                rest = new + rest[len(old) :]
                break
        out[base + rest] = value
    return out


def from_timm(model: nn.Module) -> ConViT:
    """archlab's ``ConViT`` with the config and weights of a timm ``ConVit`` (outputs equal).

    Args:
        model: a ``timm.models.convit.ConVit`` (``timm.create_model("convit_tiny")`` or a
            directly constructed one; its ``embed_dim`` is per head).

    Raises:
        TypeError: for another kind of model.
        ValueError: for timm settings archlab's ConViT does not have.
    """
    cfg = config_from_timm(model)
    ours = ConViT(cfg)
    state = state_dict_from_timm(model.state_dict(), cfg.local_up_to_layer)
    ours.load_state_dict(state, strict=True)
    return ours.train(model.training)
