"""The hook points of the ``gpt2`` baseline equal TransformerLens's ``run_with_cache`` on the
same weights (copied through transformers' GPT-2), and patching/ablation through the names
changes the forward pass as TransformerLens's hooks do."""

from __future__ import annotations

import pytest
import torch

from archlab.baselines.gpt2 import GPT2, GPT2Config
from archlab.baselines.gpt2.hf import config_to_hf, state_dict_to_hf
from archlab.interp import ablate, patch, run_with_cache

transformers = pytest.importorskip("transformers")
tl = pytest.importorskip("transformer_lens")

CFG = GPT2Config(vocab_size=61, n_positions=24, n_embd=32, n_layer=2, n_head=4)


def randomized_gpt2() -> GPT2:
    torch.manual_seed(0)
    model = GPT2(CFG)
    with torch.no_grad():  # non-trivial LayerNorms and biases (initialised at 1 and 0)
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.2 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def models():
    ours = randomized_gpt2()
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config_to_hf(CFG)))
    hf.load_state_dict(state_dict_to_hf(ours), strict=False)
    cfg = tl.HookedTransformerConfig(
        n_layers=CFG.n_layer, d_model=CFG.n_embd, d_head=CFG.n_embd // CFG.n_head,
        n_heads=CFG.n_head, d_mlp=4 * CFG.n_embd, d_vocab=CFG.vocab_size, n_ctx=CFG.n_positions,
        act_fn="gelu_new", normalization_type="LN", eps=CFG.layer_norm_epsilon,
        default_prepend_bos=False,
    )  # fmt: skip
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    theirs = tl.HookedTransformer(cfg)
    theirs.load_and_process_state_dict(
        convert_gpt2_weights(hf, cfg), fold_ln=False, center_writing_weights=False,
        center_unembed=False, fold_value_biases=False,
    )  # fmt: skip
    theirs.set_use_attn_result(True)
    return ours, theirs.eval()


POINTS = [
    "hook_embed",
    *(
        f"blocks.{i}.{p}"
        for i in range(CFG.n_layer)
        for p in (
            "hook_resid_pre", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k",
            "attn.hook_v", "attn.hook_pattern", "attn.hook_z", "attn.hook_result",
            "hook_attn_out", "hook_resid_mid", "ln2.hook_normalized", "mlp.hook_pre",
            "mlp.hook_post", "hook_mlp_out", "hook_resid_post",
        )
    ),
    "ln_final.hook_normalized",
]  # fmt: skip


def test_every_hook_point_equals_transformer_lens(models):
    ours, theirs = models
    tokens = torch.randint(0, CFG.vocab_size, (3, 11), generator=torch.Generator().manual_seed(1))
    logits, cache = run_with_cache(ours, tokens, names=POINTS)
    tl_logits, tl_cache = theirs.run_with_cache(tokens)
    assert torch.allclose(logits, tl_logits, atol=1e-5)
    for name in POINTS:
        assert cache[name].shape == tl_cache[name].shape, name
        assert torch.allclose(cache[name], tl_cache[name], atol=2e-5), name


def test_the_default_cache_holds_every_transformer_lens_point(models):
    ours, _ = models
    _, cache = run_with_cache(ours, torch.zeros(1, 4, dtype=torch.long))
    assert set(POINTS) <= set(cache)


def test_head_ablation_and_patching_match_transformer_lens(models):
    ours, theirs = models
    tokens = torch.randint(0, CFG.vocab_size, (2, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), ablate(ours, {"blocks.1.attn.hook_z": [0, 2]}):
        ablated = ours(tokens)

    def zero_heads(z, hook):
        z[:, :, [0, 2]] = 0
        return z

    tl_ablated = theirs.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_z", zero_heads)])
    assert torch.allclose(ablated, tl_ablated, atol=1e-5)
    assert not torch.allclose(ablated, ours(tokens), atol=1e-3)
    # pattern patching: uniform causal attention in layer 0
    T = tokens.shape[1]
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1)[:, None]
    uniform = uniform.expand(2, CFG.n_head, T, T)
    with torch.no_grad(), patch(ours, {"blocks.0.attn.hook_pattern": uniform}):
        patched = ours(tokens)
    tl_patched = theirs.run_with_hooks(
        tokens, fwd_hooks=[("blocks.0.attn.hook_pattern", lambda p, hook: uniform.clone())]
    )
    assert torch.allclose(patched, tl_patched, atol=1e-5)
