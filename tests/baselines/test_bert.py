"""BERT against transformers' BertForMaskedLM on small random-weight models.

Both directions of the Hugging Face format, logits and hidden states with padding and token
types, the loss, the MLM head on its own, pretraining checkpoints (pooler / NSP ignored), and
bad directories / inputs.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from archlab.baselines.bert import SPEC, Bert, BertConfig, MLMHead
from archlab.hf import PretrainedFormatError

transformers = pytest.importorskip("transformers")

V = 64


def hf_config(**overrides):
    kw = dict(
        vocab_size=V,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=24,
        type_vocab_size=3,
    )
    return transformers.BertConfig(**(kw | overrides))


def randomize(model) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "norm" in name or name.endswith("bias"):
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.3)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    torch.manual_seed(0)
    hf = transformers.BertForMaskedLM(hf_config()).eval()
    randomize(hf)
    path = tmp_path_factory.mktemp("bert_hf")
    hf.save_pretrained(path)
    return hf, path


def batch():
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(1, V, (3, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 3:] = 0
    token_types = torch.zeros_like(ids)
    token_types[:, 5:] = 1
    token_types[0, 8:] = 2
    return ids.masked_fill(mask == 0, 0), mask, token_types


def test_transformers_directory_gives_the_same_logits(hf_dir):
    hf, path = hf_dir
    ours = Bert.from_pretrained(str(path))
    ids, mask, token_types = batch()
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, token_type_ids=token_types)
        torch.testing.assert_close(ours(ids, mask, token_types), expected.logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(ours(ids), hf(ids).logits, atol=1e-4, rtol=0)
        hidden = hf.bert(ids, attention_mask=mask, token_type_ids=token_types).last_hidden_state
        torch.testing.assert_close(ours.encode(ids, mask, token_types), hidden, atol=1e-4, rtol=0)
        # the MLM head on its own, on any hidden states
        head = ours.mlm_head
        assert isinstance(head, MLMHead)
        torch.testing.assert_close(
            head(hidden, ours.word_embeddings.weight), hf.cls(hidden), atol=1e-4, rtol=0
        )


def test_loss_matches_transformers(hf_dir):
    hf, path = hf_dir
    ours = Bert.from_pretrained(str(path))
    ids, mask, _ = batch()
    labels = torch.full_like(ids, -100)
    labels[:, 1] = ids[:, 1]
    labels[0, 4] = 7
    with torch.no_grad():
        expected = hf(ids, attention_mask=mask, labels=labels).loss
        got = ours(ids, mask, labels=labels)
    torch.testing.assert_close(got.loss, expected, atol=1e-5, rtol=0)


def test_saved_directory_loads_in_transformers(tmp_path):
    torch.manual_seed(1)
    ours = Bert(SPEC.variants["tiny"]).eval()
    randomize(ours)
    ours.save_pretrained(str(tmp_path))
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert "cls.predictions.decoder.weight" not in stored and "cls.predictions.bias" in stored
    ids = torch.randint(1, ours.cfg.vocab_size, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        expected = ours(ids, mask)
        for cls in (transformers.BertForMaskedLM, transformers.AutoModelForMaskedLM):
            hf = cls.from_pretrained(tmp_path).eval()
            torch.testing.assert_close(
                hf(ids, attention_mask=mask).logits, expected, atol=1e-4, rtol=0
            )
    again = Bert.from_pretrained(str(tmp_path))
    assert again.cfg == ours.cfg
    for (k, a), b in zip(ours.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_pretraining_checkpoint_loads(tmp_path):
    """``BertForPreTraining`` files (pooler and next-sentence head) load as transformers does."""
    torch.manual_seed(2)
    pre = transformers.BertForPreTraining(hf_config()).eval()
    pre.save_pretrained(tmp_path)
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert any(k.startswith("bert.pooler.") for k in stored)
    ours = Bert.from_pretrained(str(tmp_path))
    mlm = transformers.BertForMaskedLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(1, V, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), mlm(ids).logits, atol=1e-4, rtol=0)


def test_bad_directories_and_inputs(hf_dir, tmp_path):
    hf, path = hf_dir
    (tmp_path / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes())
    config = json.loads((path / "config.json").read_text())
    cases = [
        ({"model_type": "bart"}, "model_type='bart'; expected 'bert'"),
        ({"num_attention_heads": 5}, "hidden_size=32 must be divisible by num_attention_heads=5"),
        ({"max_position_embeddings": 30}, "position_embeddings.weight has shape"),
        ({"is_decoder": True}, "is_decoder=True is not supported"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type='relative_key'"),
        ({"hidden_act": "tanh"}, "hidden_act must be one of"),
    ]
    for changes, message in cases:
        (tmp_path / "config.json").write_text(json.dumps(config | changes))
        with pytest.raises(PretrainedFormatError, match=message):
            Bert.from_pretrained(str(tmp_path))
    # a bare BertModel has no MLM head: refused, naming what is missing
    (tmp_path / "config.json").write_text(json.dumps(config))
    tensors = load_file(str(path / "model.safetensors"))
    save_file(
        {k: v for k, v in tensors.items() if k.startswith("bert.")},
        str(tmp_path / "model.safetensors"),
    )
    with pytest.raises(PretrainedFormatError, match=r"missing 5 tensor\(s\).*cls\.predictions"):
        Bert.from_pretrained(str(tmp_path))

    ours = Bert.from_pretrained(str(path))
    ids, mask, token_types = batch()
    for call, message in [
        (lambda: ours(ids.float()), "integer tensor"),
        (lambda: ours(torch.randint(1, V, (1, 25))), "24 positions"),
        (lambda: ours(ids, mask, token_types + 3), r"token_type_ids must hold ids in \[0, 3\)"),
        (lambda: ours(ids, mask, token_types[:, :4]), "token_type_ids must have the shape"),
        (lambda: ours(ids, mask.float() * 0.5), "only 0"),
        (lambda: ours(ids - 1), r"ids in \[0, 64\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(ValueError, match="divisible"):
        BertConfig(hidden_size=30, num_attention_heads=4)
