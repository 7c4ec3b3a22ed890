"""Copy a timm ``VisionTransformer`` (or DeiT's ``VisionTransformerDistilled``) into ``ViT``.

Parameter mapping (timm -> archlab); timm's fused ``qkv`` is split in three::

    patch_embed.proj        -> patch_embed.proj
    cls_token, dist_token   -> cls_token, dist_token
    pos_embed               -> pos_embed
    blocks.i.norm1          -> blocks.i.self_attn_norm
    blocks.i.attn.qkv       -> blocks.i.self_attn.{q,k,v}_proj
    blocks.i.attn.proj      -> blocks.i.self_attn.out_proj
    blocks.i.norm2          -> blocks.i.ffn_norm
    blocks.i.mlp.fc1 / fc2  -> blocks.i.ffn.fc1 / fc2
    norm (or fc_norm)       -> norm
    head, head_dist         -> head, head_dist
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.baselines.vit.model import ViT, ViTConfig


def _one(value, what: str):
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise ValueError(f"only square {what} are supported; got {tuple(value)}")
        return value[0]
    return value


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"from_timm: unsupported timm VisionTransformer setting: {what}")


def config_from_timm(model: nn.Module) -> ViTConfig:
    """The ``ViTConfig`` of a timm ``VisionTransformer`` / ``VisionTransformerDistilled``.

    Raises:
        TypeError: if ``model`` is not one of those classes.
        ValueError: for settings archlab's ViT does not have (register tokens, LayerScale,
            q/k norm, pre-norm, fc-norm, attention pooling, ...).
    """
    from timm.layers import PatchEmbed as TimmPatchEmbed
    from timm.models.deit import VisionTransformerDistilled
    from timm.models.vision_transformer import Attention, Block, VisionTransformer

    if not isinstance(model, VisionTransformer):
        raise TypeError(
            "from_timm expects a timm.models.vision_transformer.VisionTransformer (or DeiT's "
            f"VisionTransformerDistilled); got {type(model).__module__}.{type(model).__name__}"
        )
    distilled = isinstance(model, VisionTransformerDistilled)
    pe = model.patch_embed
    _require(
        type(pe) is TimmPatchEmbed and pe.flatten and pe.proj.bias is not None,
        "a patch embedding other than timm's PatchEmbed with a biased conv",
    )
    _require(isinstance(pe.norm, nn.Identity), "a norm in the patch embedding")
    _require(model.has_class_token and not model.no_embed_class, "no class token / no_embed_class")
    _require(model.num_reg_tokens == 0, "register tokens")
    _require(not model.dynamic_img_size, "dynamic_img_size")
    _require(isinstance(model.norm_pre, nn.Identity), "pre_norm")
    # archlab normalises the class token (token pooling) or the pooled mean (avg pooling)
    final_norm = model.norm if model.global_pool == "token" else model.fc_norm
    other_norm = model.fc_norm if model.global_pool == "token" else model.norm
    _require(
        isinstance(other_norm, nn.Identity),
        "fc_norm with token pooling / no fc_norm with avg pooling",
    )
    _require(model.attn_pool is None, f"global_pool={model.global_pool!r}")
    _require(model.global_pool in ("token", "avg"), f"global_pool={model.global_pool!r}")
    _require(isinstance(model.head, nn.Linear), "num_classes=0 (no head)")
    _require(isinstance(final_norm, nn.LayerNorm), "a final norm other than LayerNorm")
    blocks = list(model.blocks)
    _require(len(blocks) > 0, "depth=0")
    first = blocks[0]
    for b in blocks:
        _require(type(b) is Block and type(b.attn) is Attention, "a block other than timm's Block")
        _require(isinstance(b.ls1, nn.Identity) and isinstance(b.ls2, nn.Identity), "LayerScale")
        _require(isinstance(b.attn.q_norm, nn.Identity), "qk_norm")
        _require(isinstance(getattr(b.attn, "norm", nn.Identity()), nn.Identity), "attn norm")
        _require(isinstance(b.mlp.norm, nn.Identity), "an MLP norm")
        _require(
            isinstance(b.mlp.act, nn.GELU) and b.mlp.act.approximate == "none",
            "an MLP activation other than exact GELU",
        )
        _require(
            isinstance(b.norm1, nn.LayerNorm) and b.norm1.eps == final_norm.eps,
            "mixed norm epsilons",
        )
        _require(b.attn.qkv.bias is not None or first.attn.qkv.bias is None, "mixed qkv_bias")
    image = _one(pe.img_size, "images")
    patch = _one(pe.patch_size, "patches")
    d = model.embed_dim
    return ViTConfig(
        image_size=image,
        patch_size=patch,
        n_channels=pe.proj.in_channels,
        n_classes=model.num_classes,
        d_model=d,
        n_layers=len(blocks),
        n_heads=first.attn.num_heads,
        mlp_ratio=first.mlp.fc1.out_features / d,
        qkv_bias=first.attn.qkv.bias is not None,
        distilled=distilled,
        global_pool=model.global_pool,
        norm_eps=final_norm.eps,
    )


def state_dict_from_timm(timm_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename (and split) a timm ViT state dict into archlab ``ViT`` keys."""
    out = {}
    renames = {
        "norm1.": "self_attn_norm.",
        "norm2.": "ffn_norm.",
        "mlp.fc1.": "ffn.fc1.",
        "mlp.fc2.": "ffn.fc2.",
        "attn.proj.": "self_attn.out_proj.",
    }
    for key, value in timm_state.items():
        if key.startswith("blocks."):
            prefix, rest = key.split(".", 2)[:2], key.split(".", 2)[2]
            base = ".".join(prefix) + "."
            if rest.startswith("attn.qkv."):
                kind = rest.rsplit(".", 1)[1]  # weight | bias
                for name, part in zip("qkv", value.chunk(3, dim=0)):
                    out[f"{base}self_attn.{name}_proj.{kind}"] = part.clone()
                continue
            for old, new in renames.items():
                if rest.startswith(old):
                    rest = new + rest[len(old) :]
                    break
            out[base + rest] = value
        else:
            out["norm." + key[len("fc_norm.") :] if key.startswith("fc_norm.") else key] = value
    return out


def from_timm(model: nn.Module) -> ViT:
    """archlab's ``ViT`` with the config and weights of a timm ViT / DeiT (outputs equal).

    Args:
        model: a ``timm.models.vision_transformer.VisionTransformer`` or
            ``timm.models.deit.VisionTransformerDistilled``.

    Raises:
        TypeError: for another kind of model.
        ValueError: for timm settings archlab's ViT does not have.
    """
    cfg = config_from_timm(model)
    ours = ViT(cfg)
    ours.load_state_dict(state_dict_from_timm(model.state_dict()), strict=True)
    return ours.train(model.training)
