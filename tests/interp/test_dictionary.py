"""Sparse dictionaries: sae_lens parity on copied weights and the directory round trip in both
directions, training on planted features through the engine, TopK / JumpReLU mechanics,
decoder-norm constraint, dead-latent resampling, the activation store and the metrics."""

from __future__ import annotations

import json

import pytest
import torch

from archlab.baselines.gpt2 import GPT2, GPT2Config
from archlab.engine.trainer import TrainConfig, Trainer
from archlab.interp import (
    ActivationStore,
    DictionaryConfig,
    DictionaryError,
    SparseDictionary,
    ce_loss_recovered,
    dictionary_loss,
    dictionary_metrics,
    from_sae_lens,
    load_sae_lens,
    save_sae_lens,
    to_sae_lens,
)

sae_lens = pytest.importorskip("sae_lens")

KINDS = [
    ("relu", None),
    ("topk", None),
    ("jumprelu", None),
    ("relu", 12),
    ("jumprelu", 12),
]


def random_dictionary(arch: str, d_out: int | None, seed: int = 0) -> SparseDictionary:
    g = torch.Generator().manual_seed(seed)
    cfg = DictionaryConfig(d_in=8, d_sae=24, architecture=arch, d_out=d_out, k=5)
    dic = SparseDictionary(cfg, g)
    with torch.no_grad():
        for p in (dic.b_enc, dic.b_dec, dic.W_dec):
            p.add_(0.3 * torch.randn(p.shape, generator=g))
        if arch == "jumprelu":
            dic.log_threshold.copy_(torch.rand(24, generator=g).mul(0.5).add(0.05).log())
    return dic


@pytest.mark.parametrize(("arch", "d_out"), KINDS)
def test_copied_weights_give_sae_lens_identical_encodings_and_reconstructions(arch, d_out):
    dic = random_dictionary(arch, d_out)
    theirs = to_sae_lens(dic)
    x = torch.randn(40, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(dic.encode(x), theirs.encode(x), atol=1e-6)
        assert torch.allclose(dic(x), theirs.decode(theirs.encode(x)), atol=1e-6)
        assert (dic.encode(x) > 0).any()
    back = from_sae_lens(theirs)
    with torch.no_grad():
        assert torch.allclose(back(x), dic(x), atol=1e-6)


@pytest.mark.parametrize(("arch", "d_out"), KINDS)
def test_a_directory_saved_here_loads_in_sae_lens_and_back(arch, d_out, tmp_path):
    dic = random_dictionary(arch, d_out)
    save_sae_lens(dic, tmp_path / "d", hook_name="blocks.0.hook_resid_post")
    theirs = sae_lens.SAE.load_from_disk(tmp_path / "d")
    assert theirs.cfg.metadata.hook_name == "blocks.0.hook_resid_post"
    x = torch.randn(30, 8)
    with torch.no_grad():
        assert torch.allclose(theirs.encode(x), dic.encode(x), atol=1e-6)
        assert torch.allclose(load_sae_lens(tmp_path / "d")(x), dic(x), atol=1e-6)
    assert not list((tmp_path / "d").glob("*.tmp-*"))


def test_a_sae_lens_directory_loads_here(tmp_path):
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig, TopKSAE, TopKSAEConfig

    torch.manual_seed(0)
    for sae in (TopKSAE(TopKSAEConfig(d_in=6, d_sae=10, k=3)),
                JumpReLUSAE(JumpReLUSAEConfig(d_in=6, d_sae=10))):  # fmt: skip
        with torch.no_grad():
            for p in sae.parameters():
                p.add_(0.1 * torch.rand_like(p))
        sae.save_model(tmp_path / sae.cfg.architecture())
        ours = load_sae_lens(tmp_path / sae.cfg.architecture())
        x = torch.randn(20, 6)
        with torch.no_grad():
            assert torch.allclose(ours.encode(x), sae.encode(x), atol=1e-6)
            assert torch.allclose(ours(x), sae.decode(sae.encode(x)), atol=1e-6)


def test_bad_directories_are_one_line(tmp_path):
    dic = random_dictionary("relu", None)
    save_sae_lens(dic, tmp_path / "ok")
    cases = {}
    (tmp_path / "empty").mkdir()
    cases["empty"] = "missing cfg.json"
    for name, edit, match in (
        ("shape", lambda c: c | {"d_sae": 25}, "W_enc has shape"),
        ("arch", lambda c: c | {"architecture": "gated"}, "architecture 'gated'"),
        ("norm", lambda c: c | {"normalize_activations": "layer_norm"}, "normalize_activations"),
    ):
        d = tmp_path / name
        d.mkdir()
        (d / "sae_weights.safetensors").write_bytes(
            (tmp_path / "ok/sae_weights.safetensors").read_bytes()
        )
        cfg = json.loads((tmp_path / "ok/cfg.json").read_text())
        (d / "cfg.json").write_text(json.dumps(edit(cfg)))
        cases[name] = match
    (tmp_path / "trunc").mkdir()
    (tmp_path / "trunc/cfg.json").write_text((tmp_path / "ok/cfg.json").read_text())
    (tmp_path / "trunc/sae_weights.safetensors").write_bytes(b"\x00\x01")
    cases["trunc"] = "unreadable safetensors"
    for name, match in cases.items():
        with pytest.raises(DictionaryError, match=match) as info:
            load_sae_lens(tmp_path / name)
        assert "\n" not in str(info.value)
    with pytest.raises(DictionaryError, match="sae_lens has no topk transcoder"):
        save_sae_lens(
            SparseDictionary(DictionaryConfig(4, 8, "topk", d_out=4, k=2)), tmp_path / "x"
        )


def test_widths_that_do_not_match_are_one_line():
    dic = random_dictionary("relu", None)
    with pytest.raises(
        DictionaryError, match="the input has width 7, but this dictionary expects 8"
    ):
        dic(torch.randn(3, 7))
    with pytest.raises(DictionaryError, match="unknown architecture"):
        DictionaryConfig(4, 8, "gated")


# ---------------------------------------------------------------- training
def planted(n: int, seed: int, d: int = 16, n_features: int = 48, p: float = 0.04):
    """Sparse non-negative combinations of ``n_features`` unit directions in ``d`` dims."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n_features, d, generator=g)
    feats = feats / feats.norm(dim=1, keepdim=True)
    codes = (torch.rand(n, n_features, generator=g) < p) * torch.rand(n, n_features, generator=g)
    return codes @ feats, feats


def fit(dic, x, steps=600, lr=3e-3):
    data = lambda b, g: x[torch.randint(0, len(x), (b,), generator=g)]  # noqa: E731
    cfg = TrainConfig(steps=steps, batch_size=128, lr=lr, optimizer="adam", grad_clip=None,
                      progress=False, device="cpu", log_every=100)  # fmt: skip
    Trainer(dic, dictionary_loss, cfg).fit(data)
    return dic


@pytest.mark.parametrize("arch", ["relu", "topk", "jumprelu"])
def test_training_recovers_planted_features_sparsely(arch):
    x, feats = planted(4000, 0)
    torch.manual_seed(0)
    cfg = DictionaryConfig(16, 64, arch, k=4, l1_coefficient=1e-2, l0_coefficient=5e-3,
                           init_threshold=0.02, bandwidth=0.05)  # fmt: skip
    dic = fit(SparseDictionary(cfg, torch.Generator().manual_seed(0)), x)
    m = dictionary_metrics(dic, x[:1000])
    assert m["fvu"] < 0.15, m
    assert m["l0"] < 20, m  # of 64 (an untrained ReLU dictionary fires about half)
    if arch == "topk":
        assert m["l0"] <= 4
    rows = dic.decoder()
    assert torch.allclose(rows.norm(dim=1), torch.ones(64), atol=1e-5)  # unit decoder rows
    cos = (rows @ feats.T).max(0).values  # best-matching latent per planted feature
    assert float(cos.median()) > 0.9


def test_the_jumprelu_threshold_learns_through_its_pseudo_derivative():
    dic = random_dictionary("jumprelu", None)
    x = torch.randn(64, 8)
    z = dic.pre_activations(x)
    loss, _ = dic.training_loss(x)
    loss.backward()
    assert dic.log_threshold.grad is not None and dic.log_threshold.grad.abs().sum() > 0
    # the L0 term alone: d/dtheta sum H(z - theta) = -(1/bw) #{|z - theta| < bw/2}
    dic.zero_grad()
    from archlab.interp.dictionary import _Step

    thr = dic.threshold.detach().requires_grad_()
    bw = 0.2
    _Step.apply(torch.relu(z.detach()), thr, bw).sum().backward()
    window = ((torch.relu(z.detach()) - thr.detach()).abs() < bw / 2).sum(0).float()
    assert torch.allclose(thr.grad, -window / bw)
    # the reconstruction path: d/dtheta sum z H(z - theta) = -(theta/bw) #{window}
    from archlab.interp.dictionary import _JumpReLU

    thr.grad = None
    _JumpReLU.apply(torch.relu(z.detach()), thr, bw).sum().backward()
    assert torch.allclose(thr.grad, -thr.detach() * window / bw)


def test_dead_latents_are_detected_and_resampled_by_the_training_loss():
    x, _ = planted(512, 1)
    cfg = DictionaryConfig(16, 32, "relu", dead_after=5, resample_every=10)
    dic = SparseDictionary(cfg, torch.Generator().manual_seed(0))
    with torch.no_grad():
        dic.b_enc[:8] = -100.0  # these never fire
    for _ in range(10):
        dictionary_loss(dic, x[:128])
    assert dic.dead()[:8].all() and not dic.dead()[8:].any()
    loss, metrics = dictionary_loss(dic, x[:128])  # after 10 steps: resample first
    assert metrics["resampled"] == 8.0
    assert (dic.b_enc[:8] == 0).all() and not dic.dead()[:8].any()
    assert (dic.encode(x)[:, :8] > 0).any(0).all()  # they fire again


# ---------------------------------------------------------------- store and metrics
@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    return GPT2(GPT2Config(vocab_size=23, n_positions=16, n_embd=16, n_layer=2, n_head=2)).eval()


def test_the_store_streams_activations_of_the_hook_point(lm):
    g = torch.Generator().manual_seed(0)
    tokens = lambda: torch.randint(0, 23, (4, 16), generator=g)  # noqa: E731
    store = ActivationStore(lm, "blocks.0.ln2.hook_normalized", tokens, buffer_rows=256,
                            target="blocks.0.hook_mlp_out")  # fmt: skip
    layer = lm.decoder.layers[0]
    for x, y in store.batches(12, 32, torch.Generator().manual_seed(1)):  # crosses refills
        assert x.shape == (32, 16) and y.shape == (32, 16)
        mlp_in = x * layer.ffn_norm.weight + layer.ffn_norm.bias
        assert torch.allclose(layer.ffn(mlp_in), y, atol=1e-5)  # pairs stay aligned


def test_ce_loss_recovered_is_one_for_an_exact_dictionary_and_about_zero_for_a_null_one(lm):
    tokens = torch.randint(0, 23, (4, 16), generator=torch.Generator().manual_seed(0))

    def lm_loss(logits):
        return torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, 23), tokens[:, 1:].reshape(-1)
        )

    exact = SparseDictionary(DictionaryConfig(16, 32, "relu", decoder_norm="free"))
    eye = torch.eye(16)
    with torch.no_grad():  # relu(x) - relu(-x) = x
        exact.W_enc.copy_(torch.cat([eye, -eye], 1))
        exact.W_dec.copy_(torch.cat([eye, -eye], 0))
        exact.b_enc.zero_()
        exact.b_dec.zero_()
    r = ce_loss_recovered(lm, exact, "blocks.1.hook_resid_pre", tokens, lm_loss)
    assert r["recovered"] == pytest.approx(1.0, abs=1e-4)
    null = SparseDictionary(DictionaryConfig(16, 32, "relu"))
    with torch.no_grad():
        null.b_enc.fill_(-1e3)
    r = ce_loss_recovered(lm, null, "blocks.1.hook_resid_pre", tokens, lm_loss)
    assert r["recovered"] == pytest.approx(0.0, abs=1e-4)
