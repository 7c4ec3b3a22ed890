"""BART against transformers' BartForConditionalGeneration on small random-weight models.

Both directions of the Hugging Face format (transformers -> archlab and archlab ->
transformers), logits with padding on both sides, the loss, greedy and beam-search tokens, and
the errors for bad directories and bad inputs.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from archlab.hf import InputError, PretrainedFormatError
from archlab.papers.language.bart import SPEC, Bart, BartConfig, shift_tokens_right

transformers = pytest.importorskip("transformers")

V, PAD, BOS, EOS = 64, 1, 0, 2


def hf_config(**overrides):
    kw = dict(
        vocab_size=V,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=48,
        max_position_embeddings=40,
        scale_embedding=True,
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=EOS,
        forced_eos_token_id=None,
    )
    return transformers.BartConfig(**(kw | overrides))


def randomize(model) -> None:
    """Random norms, biases and final_logits_bias, so that a misplaced one shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.3)
        for name, b in model.named_buffers():
            if name.endswith("final_logits_bias"):
                b.normal_()


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    torch.manual_seed(0)
    hf = transformers.BartForConditionalGeneration(hf_config(init_std=0.5)).eval()
    randomize(hf)
    path = tmp_path_factory.mktemp("bart_hf")
    hf.save_pretrained(path)
    return hf, path


def batch():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, V, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 4:] = 0
    ids = ids.masked_fill(mask == 0, PAD)
    dec = torch.randint(3, V, (3, 6), generator=g)
    dec[:, 0] = EOS
    dec_mask = torch.ones_like(dec)
    dec_mask[0, 4:] = 0
    return ids, mask, dec, dec_mask


def test_transformers_directory_gives_the_same_logits(hf_dir):
    hf, path = hf_dir
    ours = Bart.from_pretrained(str(path))
    assert not ours.training and ours.cfg.scale_embedding
    ids, mask, dec, dec_mask = batch()
    with torch.no_grad():
        expected = hf(
            input_ids=ids,
            attention_mask=mask,
            decoder_input_ids=dec,
            decoder_attention_mask=dec_mask,
        ).logits
        got = ours(ids, mask, dec, dec_mask)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
        # decoder inputs shifted from input_ids (denoising) when none are given
        torch.testing.assert_close(
            ours(ids, mask), hf(input_ids=ids, attention_mask=mask).logits, atol=1e-4, rtol=0
        )
        # memory and incremental decoding with the cache give the same last-token logits
        memory = ours.encode(ids, mask)
        hf_memory = hf.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(memory, hf_memory, atol=1e-4, rtol=0)
        full = ours(ids, mask, dec)
        cache = ours.new_cache()
        for t in range(dec.shape[1]):
            logits, cache = ours.decode_step(dec[:, t : t + 1], memory, mask, cache)
            torch.testing.assert_close(logits, full[:, t], atol=1e-4, rtol=0)


def test_loss_matches_transformers(hf_dir):
    hf, path = hf_dir
    ours = Bart.from_pretrained(str(path))
    ids, mask, dec, _ = batch()
    labels = torch.randint(3, V, (3, 5))
    labels[0, 3:] = -100
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask, labels=labels)
        got = ours(ids, mask, labels=labels)
    torch.testing.assert_close(got.loss, expected.loss, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-4, rtol=0)
    shifted = transformers.models.bart.modeling_bart.shift_tokens_right(labels, PAD, EOS)
    assert torch.equal(shift_tokens_right(labels, PAD, EOS), shifted)


def test_gradients_match_transformers(hf_dir):
    hf, path = hf_dir
    ours = Bart.from_pretrained(str(path))
    ids, mask, dec, dec_mask = batch()
    labels = torch.randint(3, V, dec.shape)
    hf.zero_grad()
    hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, labels=labels).loss.backward()
    ours(ids, mask, dec, labels=labels).loss.backward()
    hf_grads = dict(hf.named_parameters())
    pairs = [
        ("shared.weight", "model.shared.weight"),
        (
            "encoder.layers.0.self_attn.q_proj.weight",
            "model.encoder.layers.0.self_attn.q_proj.weight",
        ),
        (
            "decoder.layers.1.cross_attn.v_proj.weight",
            "model.decoder.layers.1.encoder_attn.v_proj.weight",
        ),
        ("decoder_positions.weight", "model.decoder.embed_positions.weight"),
    ]
    ours_params = dict(ours.named_parameters())
    for mine, theirs in pairs:
        torch.testing.assert_close(
            ours_params[mine].grad, hf_grads[theirs].grad, atol=1e-4, rtol=1e-4
        )
    hf.zero_grad()


def test_saved_directory_loads_in_transformers(tmp_path):
    torch.manual_seed(1)
    ours = Bart(BartConfig(**{**SPEC.variants["tiny"].__dict__, "scale_embedding": True})).eval()
    randomize(ours)
    ours.save_pretrained(str(tmp_path))
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert "lm_head.weight" not in stored and "model.shared.weight" in stored  # as transformers 5
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "bart" and config["architectures"] == [
        "BartForConditionalGeneration"
    ]
    hf = transformers.BartForConditionalGeneration.from_pretrained(tmp_path).eval()
    auto = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, ours.cfg.vocab_size, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    dec = torch.randint(3, ours.cfg.vocab_size, (2, 4), generator=g)
    with torch.no_grad():
        expected = ours(ids, mask, dec)
        for model in (hf, auto):
            got = model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits
            torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    again = Bart.from_pretrained(str(tmp_path))
    assert again.cfg == ours.cfg
    for (k, a), (_, b) in zip(ours.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k


@pytest.fixture(scope="module")
def peaked(tmp_path_factory):
    """A model with peaked logits (no near ties), and an eos that greedy decoding produces."""
    torch.manual_seed(1)
    hf = transformers.BartForConditionalGeneration(hf_config(init_std=1.0)).eval()
    path = tmp_path_factory.mktemp("bart_peaked")
    hf.save_pretrained(path)
    ids = torch.randint(4, V, (3, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    free = hf.generate(ids, attention_mask=mask, max_new_tokens=10, eos_token_id=None)
    return hf, Bart.from_pretrained(str(path)), ids, mask, int(free[0, 4])


@pytest.mark.parametrize(
    ("num_beams", "length_penalty", "early_stopping"),
    [(1, 1.0, False), (3, 1.0, False), (3, 1.5, True), (4, 0.0, "never")],
)
def test_generate_same_tokens_as_transformers(peaked, num_beams, length_penalty, early_stopping):
    hf, ours, ids, mask, eos = peaked
    kw = dict(
        max_new_tokens=10,
        num_beams=num_beams,
        length_penalty=length_penalty,
        early_stopping=early_stopping,
        eos_token_id=eos,
        pad_token_id=PAD,
    )
    expected = hf.generate(ids, attention_mask=mask, do_sample=False, **kw)
    got = ours.generate(ids, mask, **kw)
    assert torch.equal(got, expected)
    assert torch.equal(ours.generate(ids, mask, use_cache=False, **kw), got)


# --------------------------------------------------------------------------- bad input


def _write_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    for k, v in changes.items():
        if v is None:
            config.pop(k, None)
        else:
            config[k] = v
    (path / "config.json").write_text(json.dumps(config))


@pytest.fixture()
def copy_dir(hf_dir, tmp_path):
    _, path = hf_dir
    for f in ("config.json", "model.safetensors"):
        (tmp_path / f).write_bytes((path / f).read_bytes())
    return tmp_path


def test_bad_directories(copy_dir, tmp_path_factory):
    with pytest.raises(PretrainedFormatError, match="not a directory"):
        Bart.from_pretrained(str(copy_dir / "nope"))
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(PretrainedFormatError, match="config.json"):
        Bart.from_pretrained(str(empty))
    (empty / "config.json").write_text((copy_dir / "config.json").read_text())
    with pytest.raises(PretrainedFormatError, match="model.safetensors"):
        Bart.from_pretrained(str(empty))
    (empty / "pytorch_model.bin").write_bytes(b"not unpickled")
    with pytest.raises(PretrainedFormatError, match="does not unpickle"):
        Bart.from_pretrained(str(empty))
    (empty / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(PretrainedFormatError, match="not a readable safetensors"):
        Bart.from_pretrained(str(empty))
    (empty / "config.json").write_text("{not json")
    with pytest.raises(PretrainedFormatError, match="not valid JSON"):
        Bart.from_pretrained(str(empty))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model_type": "gpt2"}, "model_type='gpt2'; expected 'bart'"),
        ({"model_type": None}, "model_type=None"),
        ({"encoder_attention_heads": 5}, "divisible by encoder_attention_heads=5"),
        ({"d_model": "32"}, "d_model must be int"),
        ({"normalize_before": True}, "normalize_before=True is not supported"),
        ({"tie_word_embeddings": False}, "tie_word_embeddings=False is not supported"),
        ({"activation_function": "mish"}, "activation_function must be one of"),
        ({"vocab_size": V + 1}, r"has shape \(1, 64\); config.json implies \(1, 65\)"),
        ({"encoder_ffn_dim": 65}, "fc1.weight has shape"),
        ({"decoder_layers": 3}, "missing"),
        ({"encoder_layers": 1}, "unexpected"),
    ],
)
def test_bad_configs(copy_dir, changes, message):
    _write_config(copy_dir, **changes)
    with pytest.raises(PretrainedFormatError, match=message):
        Bart.from_pretrained(str(copy_dir))


def test_bad_weights(copy_dir):
    tensors = load_file(str(copy_dir / "model.safetensors"))
    removed = dict(tensors)
    del removed["model.decoder.layers.1.fc2.bias"]
    save_file(removed, str(copy_dir / "model.safetensors"))
    with pytest.raises(PretrainedFormatError, match=r"missing 1 tensor.*layers\.1\.fc2\.bias"):
        Bart.from_pretrained(str(copy_dir))
    untied = dict(tensors, **{"lm_head.weight": torch.randn_like(tensors["model.shared.weight"])})
    save_file(untied, str(copy_dir / "model.safetensors"))
    with pytest.raises(PretrainedFormatError, match="lm_head.weight differs"):
        Bart.from_pretrained(str(copy_dir))
    # a bare BartModel checkpoint (no "model." prefix, no final_logits_bias) loads
    bare = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    save_file(bare, str(copy_dir / "model.safetensors"))
    model = Bart.from_pretrained(str(copy_dir))
    assert model.final_logits_bias.abs().sum() == 0


def test_bad_inputs(hf_dir):
    _, path = hf_dir
    ours = Bart.from_pretrained(str(path))
    ids, mask, dec, _ = batch()
    too_long = torch.randint(3, V, (1, 41))
    cases = [
        (lambda: ours(ids.float(), mask, dec), "integer tensor"),
        (lambda: ours(ids[0], None, dec), r"shape \(B, T\)"),
        (lambda: ours(too_long), "40 positions"),
        (lambda: ours(ids, mask, torch.randint(3, V, (3, 41))), "decoder_input_ids reaches"),
        (lambda: ours(ids + V, mask, dec), r"ids in \[0, 64\)"),
        (lambda: ours(ids, mask[:, :5], dec), "attention_mask must have the shape"),
        (lambda: ours(ids, mask * 2, dec), "only 0"),
        (lambda: ours(ids, mask, labels=torch.randn(3, 5)), "labels must be an integer"),
        (lambda: ours.generate(ids, mask, max_new_tokens=41), "max_new_tokens=41 exceeds"),
        (lambda: ours.generate(ids, mask, num_beams=0), "num_beams"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(InputError):
        ours.encode(too_long)
    with pytest.raises(ValueError, match="divisible"):
        BartConfig(d_model=30, encoder_attention_heads=4)


def test_registry_build_pretrained(hf_dir):
    import archlab
    from archlab.papers import INDEX

    _, path = hf_dir
    assert isinstance(SPEC.from_pretrained(str(path)), Bart)
    if "bart" not in INDEX:
        pytest.skip("bart is not registered yet")
    assert isinstance(archlab.build("bart", pretrained=str(path)), Bart)
    with pytest.raises(archlab.ArchlabError):
        archlab.build("bart", pretrained=str(path), d_model=64)
