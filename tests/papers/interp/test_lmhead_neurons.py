"""LM-head neuron decoding: parity with TransformerLens's weights on GPT-2, the norm scale's
role, clamping, agreement, the corpus and bad input."""

from __future__ import annotations

import copy

import pytest
import torch

import archlab
from archlab.baselines.gpt2 import GPT2, GPT2Config
from archlab.interp import capture
from archlab.papers.interp.lmhead_neurons import (
    NeuronError,
    SwiGLUConfig,
    SwiGLULM,
    clamp_neuron,
    decode_neurons,
    hidden_point,
    top1_agreement,
)
from archlab.papers.interp.lmhead_neurons.data import CONCEPTS, Corpus


def lm(seed: int = 0) -> SwiGLULM:
    torch.manual_seed(seed)
    model = SwiGLULM(SwiGLUConfig(vocab_size=40, d_model=16, n_layers=2, n_heads=2, d_hidden=24))
    with torch.no_grad():
        model.decoder.norm.weight.uniform_(0.2, 2.0)  # a non-trivial final norm scale
    return model.eval()


def test_decoding_equals_transformer_lens_weights_on_gpt2():
    tl = pytest.importorskip("transformer_lens")
    transformers = pytest.importorskip("transformers")
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    from archlab.baselines.gpt2.hf import config_to_hf, state_dict_to_hf

    cfg = GPT2Config(vocab_size=37, n_positions=8, n_embd=16, n_layer=2, n_head=2)
    torch.manual_seed(0)
    ours = GPT2(cfg).eval()
    with torch.no_grad():
        ours.decoder.norm.weight.uniform_(0.5, 1.5)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config_to_hf(cfg)))
    hf.load_state_dict(state_dict_to_hf(ours), strict=False)
    tcfg = tl.HookedTransformerConfig(n_layers=2, d_model=16, d_head=8, n_heads=2, d_mlp=64,
                                      d_vocab=37, n_ctx=8, act_fn="gelu_new",
                                      normalization_type="LN")  # fmt: skip
    theirs = tl.HookedTransformer(tcfg)
    theirs.load_and_process_state_dict(convert_gpt2_weights(hf, tcfg), fold_ln=False,
                                       center_writing_weights=False, center_unembed=False,
                                       fold_value_biases=False)  # fmt: skip
    for layer in range(2):
        w_in = theirs.blocks[layer].mlp.W_in  # (d_model, d_mlp)
        ref = torch.softmax((w_in.T * theirs.ln_final.w) @ theirs.W_U, dim=-1)
        assert torch.allclose(decode_neurons(ours, layer), ref, atol=1e-6)


def test_a_neuron_along_a_token_direction_decodes_to_that_token_only_with_the_norm_scale():
    model = lm()
    g = model.decoder.norm.weight.detach()
    unembed = model.lm_head.weight.detach()
    with torch.no_grad():
        for i, tok in enumerate(range(10, 20)):
            model.decoder.layers[1].ffn.up_proj.weight[i] = 5 * unembed[tok] / g
    probs = decode_neurons(model, 1)
    assert torch.equal(probs[:10].argmax(-1), torch.arange(10, 20))
    assert torch.allclose(probs.sum(-1), torch.ones(24))
    # without the scale, the same rows decode differently (so the scale is not cosmetic)
    plain = torch.softmax(model.decoder.layers[1].ffn.up_proj.weight[:10] @ unembed.T, -1)
    assert not torch.equal(plain.argmax(-1), torch.arange(10, 20))


def test_clamping_sets_one_hidden_unit_and_nothing_else():
    model = lm()
    x = torch.randint(0, 40, (2, 7))
    point = hidden_point(model, 0)
    assert point == "decoder.layers.0.ffn.down_proj:input"
    with torch.no_grad(), capture(model, [point]) as clean:
        base = model(x)
    with torch.no_grad(), clamp_neuron(model, 0, 5, 7.5), capture(model, [point]) as cl:
        out = model(x)
    assert (cl[point][..., 5] == 7.5).all()
    keep = [i for i in range(24) if i != 5]
    assert torch.equal(cl[point][..., keep], clean[point][..., keep])
    assert not torch.allclose(out, base)
    with torch.no_grad():
        assert torch.equal(model(x), base)  # the clamp is gone after the block


def test_agreement_is_one_with_itself_and_falls_with_perturbation():
    model = lm()
    assert top1_agreement(model, model, 1) == 1.0
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.decoder.layers[1].ffn.up_proj.weight.add_(torch.randn(24, 16))
    assert top1_agreement(model, other, 1) < 1.0


def test_the_corpus():
    corpus = Corpus(20)
    assert len(corpus.concepts) == sum(len(v) for v in CONCEPTS.values()) == 40
    batch = corpus.sample(8, torch.Generator().manual_seed(0))
    assert batch.shape == (8, 20) and (batch[:, 0] == corpus.index["<bos>"]).all()
    words = [corpus.vocab[i] for i in corpus.prompt("animal")[0]]
    assert words == ["<bos>", "my", "favourite", "animal", "is", "the"]
    text = " ".join(corpus.vocab[i] for i in corpus.sample(1, torch.Generator(), True)[0])
    assert "assistant : my favourite" in text


def test_bad_input_and_registry():
    model = lm()
    with pytest.raises(NeuronError, match="layer 5 out of range"):
        decode_neurons(model, 5)
    with pytest.raises(NeuronError, match="neuron index out of range"):
        with clamp_neuron(model, 0, 99, 1.0):
            pass
    tiny = archlab.build("lmhead_neurons/tiny")
    assert tiny(torch.randint(0, 32, (2, 5))).shape == (2, 5, 32)
