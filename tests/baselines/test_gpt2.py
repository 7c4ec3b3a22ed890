"""GPT-2 against transformers' GPT2LMHeadModel on small random-weight models.

Both directions of the Hugging Face format, logits with left padding, the loss, incremental
decoding with the KV cache, greedy and beam-search tokens, and bad directories / inputs.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from archlab.baselines.gpt2 import GPT2, SPEC, GPT2Config
from archlab.hf import PretrainedFormatError

transformers = pytest.importorskip("transformers")

V, EOS = 64, 0


def hf_config(**overrides):
    kw = dict(
        vocab_size=V,
        n_positions=32,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_inner=48,
        bos_token_id=EOS,
        eos_token_id=EOS,
    )
    return transformers.GPT2Config(**(kw | overrides))


def randomize(model) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln_" in name or "norm" in name or name.endswith("bias"):
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.3)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(hf_config(initializer_range=0.3)).eval()
    randomize(hf)
    path = tmp_path_factory.mktemp("gpt2_hf")
    hf.save_pretrained(path)
    return hf, path


def left_padded():
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(1, V, (3, 8), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    mask[2, :5] = 0
    ids = ids.masked_fill(mask == 0, EOS)
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def test_transformers_directory_gives_the_same_logits(hf_dir):
    hf, path = hf_dir
    ours = GPT2.from_pretrained(str(path))
    ids, mask, positions = left_padded()
    real = mask.bool()
    with torch.no_grad():
        # transformers' default positions (arange), then the positions generation uses
        expected = hf(ids, attention_mask=mask).logits
        torch.testing.assert_close(ours(ids, mask)[real], expected[real], atol=1e-4, rtol=0)
        expected = hf(ids, attention_mask=mask, position_ids=positions).logits
        got = ours(ids, mask, positions)
        torch.testing.assert_close(got[real], expected[real], atol=1e-4, rtol=0)
        torch.testing.assert_close(ours(ids), hf(ids).logits, atol=1e-4, rtol=0)
        # the decoding protocol: prompt, then one token at a time with the cache
        cache = ours.new_cache()
        logits, cache = ours.forward_step(ids[:, :5], mask[:, :5], positions[:, :5], cache)
        torch.testing.assert_close(logits, expected[:, 4], atol=1e-4, rtol=0)
        for t in range(5, 8):
            logits, cache = ours.forward_step(
                ids[:, t : t + 1], mask[:, : t + 1], positions[:, t : t + 1], cache
            )
            torch.testing.assert_close(logits, expected[:, t], atol=1e-4, rtol=0)


def test_loss_matches_transformers(hf_dir):
    hf, path = hf_dir
    ours = GPT2.from_pretrained(str(path))
    ids, _, _ = left_padded()
    labels = ids.clone()
    labels[0, :4] = -100
    with torch.no_grad():
        expected = hf(ids, labels=labels).loss
        got = ours(ids, labels=labels)
    torch.testing.assert_close(got.loss, expected, atol=1e-5, rtol=0)


def test_saved_directory_loads_in_transformers(tmp_path):
    torch.manual_seed(1)
    ours = GPT2(SPEC.variants["tiny"]).eval()
    randomize(ours)
    ours.save_pretrained(str(tmp_path))
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert "lm_head.weight" not in stored and "transformer.h.0.attn.c_attn.weight" in stored
    for cls in (transformers.GPT2LMHeadModel, transformers.AutoModelForCausalLM):
        hf = cls.from_pretrained(tmp_path).eval()
        ids = torch.randint(0, ours.cfg.vocab_size, (2, 9))
        with torch.no_grad():
            torch.testing.assert_close(hf(ids).logits, ours(ids), atol=1e-4, rtol=0)
    again = GPT2.from_pretrained(str(tmp_path))
    assert again.cfg == ours.cfg
    for (k, a), b in zip(ours.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_attention_scale_options(tmp_path):
    torch.manual_seed(2)
    config = hf_config(scale_attn_weights=False, scale_attn_by_inverse_layer_idx=True)
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(tmp_path)
    ours = GPT2.from_pretrained(str(tmp_path))
    assert not ours.cfg.scale_attn_weights and ours.cfg.scale_attn_by_inverse_layer_idx
    ids = torch.randint(0, V, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, atol=1e-4, rtol=0)


def test_bare_gpt2model_checkpoint_loads(hf_dir, tmp_path):
    """The original ``gpt2`` files hold a GPT2Model: names without ``transformer.``."""
    hf, path = hf_dir
    tensors = load_file(str(path / "model.safetensors"))
    bare = {k[len("transformer.") :]: v for k, v in tensors.items()}
    bare["h.0.attn.bias"] = torch.ones(1, 1, 32, 32)  # an old causal-mask buffer: ignored
    save_file(bare, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text((path / "config.json").read_text())
    ours = GPT2.from_pretrained(str(tmp_path))
    ids = torch.randint(0, V, (1, 5))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), hf(ids).logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("num_beams", "length_penalty", "early_stopping"),
    [(1, 1.0, False), (3, 1.0, False), (3, 2.0, True), (4, 0.0, "never")],
)
def test_generate_same_tokens_as_transformers(hf_dir, num_beams, length_penalty, early_stopping):
    hf, path = hf_dir
    ours = GPT2.from_pretrained(str(path))
    ids, mask, _ = left_padded()
    free = hf.generate(ids, attention_mask=mask, max_new_tokens=12, eos_token_id=None)
    eos = int(free[0, -6])  # a token greedy decoding produces: some sequences end early
    kw = dict(
        max_new_tokens=12,
        num_beams=num_beams,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
        eos_token_id=eos,
        pad_token_id=3,
    )
    expected = hf.generate(ids, attention_mask=mask, do_sample=False, **kw)
    got = ours.generate(ids, mask, **kw)
    assert torch.equal(got, expected)
    assert torch.equal(ours.generate(ids, mask, use_cache=False, **kw), got)


def test_bad_directories_and_inputs(hf_dir, tmp_path):
    hf, path = hf_dir
    (tmp_path / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes())
    config = json.loads((path / "config.json").read_text())
    cases = [
        ({"model_type": "bert"}, "model_type='bert'; expected 'gpt2'"),
        ({"n_head": 5}, "n_embd=32 must be divisible by n_head=5"),
        ({"n_inner": 64}, r"mlp.c_fc.weight has shape \(32, 48\); config.json implies \(32, 64\)"),
        ({"n_layer": 3}, r"missing 12 tensor\(s\)"),
        ({"add_cross_attention": True}, "add_cross_attention=True is not supported"),
        ({"layer_norm_epsilon": "small"}, "layer_norm_epsilon must be int or float"),
    ]
    for changes, message in cases:
        (tmp_path / "config.json").write_text(json.dumps(config | changes))
        with pytest.raises(PretrainedFormatError, match=message):
            GPT2.from_pretrained(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(config))
    tensors = load_file(str(path / "model.safetensors"))
    untied = tensors | {"lm_head.weight": torch.zeros_like(tensors["transformer.wte.weight"])}
    save_file(untied, str(tmp_path / "model.safetensors"))
    with pytest.raises(PretrainedFormatError, match="lm_head.weight differs"):
        GPT2.from_pretrained(str(tmp_path))

    ours = GPT2.from_pretrained(str(path))
    ids, mask, _ = left_padded()
    for call, message in [
        (lambda: ours(ids.float()), "integer tensor"),
        (lambda: ours(torch.randint(0, V, (1, 33))), "32 positions"),
        (lambda: ours(ids, mask[:, :4]), "attention_mask must have the shape"),
        (lambda: ours(ids, labels=ids[:, :3]), "labels must be a tensor shaped like"),
        (lambda: ours.generate(ids, mask, max_new_tokens=30), "exceeds n_positions=32"),
        (lambda: ours.generate(ids, mask.flip(-1)), "left-padded"),
        (lambda: ours.generate(ids, mask, num_beams=0), "num_beams"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(ValueError, match="divisible"):
        GPT2Config(n_embd=30, n_head=4)
