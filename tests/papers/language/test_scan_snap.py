"""Invariants of Scan and Snap (arXiv 2305.16380): model, data generator, and dynamics."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from archlab.papers.language.scan_snap import (
    ScanSnapConfig,
    ScanSnapTransformer,
    ScanSnapYZ,
    SequenceClasses,
    build,
    next_token_loss,
)
from archlab.papers.language.scan_snap.data import BASE, TINY, SequenceClassesConfig
from archlab.papers.language.scan_snap.experiment import entropy, snap_step, spearman
from archlab.papers.language.scan_snap.model import SPEC, layout_for


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- data
def test_layout_sizes_and_probabilities():
    classes = SequenceClasses(BASE)
    assert BASE.M == 5 + 4 * 10 + 2 + 4
    torch.testing.assert_close(classes.probs.sum(1), torch.ones(BASE.n_next))
    # the query m = psi(n) is shared by n_next_per_query next tokens
    assert classes.query.tolist() == [45, 45, 46, 46]
    # distinct tokens are listed in increasing P(l|n)
    for n in range(BASE.n_next):
        p = classes.probs[n, classes.distinct[n]]
        assert bool((p[1:] > p[:-1]).all())


def test_distinct_tokens_occur_only_with_their_class():
    classes = SequenceClasses(BASE)
    x, y, n = classes.sample(2000, 64, _gen())
    context = x[:, :-1]
    assert bool((x[:, -1] == classes.query[n]).all()), "the last token is the query psi(n)"
    assert bool((y == classes.next_token[n]).all())
    seen_with = {}
    for row, cls in zip(context.tolist(), n.tolist()):
        for tok in set(row):
            seen_with.setdefault(tok, set()).add(cls)
    for k in range(BASE.n_next):
        for tok in classes.distinct[k].tolist():
            assert seen_with.get(tok, {k}) == {k}, f"distinct token {tok} left class {k}"
    for tok in classes.common.tolist():
        assert len(seen_with[tok]) == BASE.n_next, "a common token occurs in every class"
    banned = set(classes.query.tolist()) | set(classes.next_token.tolist())
    assert not banned & set(context.flatten().tolist()), "query/next tokens are not context"


def test_sampling_is_deterministic_and_balanced():
    classes = SequenceClasses(TINY)
    a = classes.sample(32, 16, _gen(3))
    b = classes.sample(32, 16, _gen(3))
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    x, _, n = classes.balanced(5, 16, _gen())
    assert x.shape == (5 * TINY.n_next, 16)
    assert torch.bincount(n).tolist() == [5] * TINY.n_next


def test_bad_layouts_raise():
    with pytest.raises(ValueError):
        SequenceClassesConfig(p_min=0.0)
    with pytest.raises(ValueError):
        layout_for(ScanSnapConfig(M=7))
    with pytest.raises(ValueError):
        ScanSnapConfig(M=1)
    with pytest.raises(ValueError, match="T must be >= 2"):
        SequenceClasses(TINY).sample(4, 1, _gen())


# ---------------------------------------------------------------- error paths
@pytest.mark.parametrize("name", ["tiny", "transformer"])
@pytest.mark.parametrize("bad", [-1, "M"], ids=["negative", "M"])
def test_token_ids_outside_the_vocabulary_raise_a_value_error(name, bad):
    model = build(SPEC.variants[name])
    M = model.cfg.M
    x = torch.randint(0, M, (2, 8), generator=_gen())
    model(x)  # in range: fine
    for where in (0, -1):  # a context token, the query token
        y = x.clone()
        y[1, where] = M if bad == "M" else bad
        with pytest.raises(ValueError, match=rf"token ids must lie in \[0, {M - 1}\]"):
            model(y)


def test_sequences_must_be_integer_and_at_least_two_tokens_long():
    model = build(SPEC.variants["tiny"])
    with pytest.raises(ValueError, match="T >= 2"):
        model(torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="integer token ids"):
        model(torch.zeros(3, 4))


def test_the_model_has_no_sequence_length_field_and_reads_any_length():
    """T is the data's sequence length, not the model's: no positional encoding, no parameter
    depends on it (README: "T")."""
    assert "T" not in {f.name for f in dataclasses.fields(ScanSnapConfig)}
    with pytest.raises(TypeError):
        ScanSnapConfig(T=64)
    model = ScanSnapYZ(ScanSnapConfig(M=TINY.M, zero_init=False))
    classes = SequenceClasses(TINY)
    for T in (2, 16, 200):
        x, _, _ = classes.sample(4, T, _gen())
        out = model(x)
        assert out.logits.shape == (4, TINY.M) and out.attention.shape == (4, T - 1)


# ---------------------------------------------------------------- model
def test_zero_init_gives_uniform_attention_over_the_context():
    cfg = ScanSnapConfig(M=TINY.M)
    model = ScanSnapYZ(cfg)
    x, _, _ = SequenceClasses(TINY).sample(8, 16, _gen())
    out = model(x)
    torch.testing.assert_close(out.attention, torch.full((8, 15), 1 / 15))
    # the mixture is then the empirical token frequency of the context
    counts = torch.zeros(8, cfg.M).scatter_add(1, x[:, :-1], torch.ones(8, 15)) / 15
    torch.testing.assert_close(out.mixture, counts)
    assert torch.equal(out.logits, torch.zeros(8, cfg.M))


def test_attention_reads_z_of_query_row_and_key_column():
    cfg = ScanSnapConfig(M=6, zero_init=False)
    model = ScanSnapYZ(cfg)
    x = torch.tensor([[0, 1, 1, 5]])
    z = model.Z.detach()[5, [0, 1, 1]]
    torch.testing.assert_close(model(x).attention[0], z.softmax(0))
    f = model(x).mixture[0]
    torch.testing.assert_close(f.sum(), torch.tensor(1.0))
    logits = model.Y.detach() @ (f / f.norm())
    torch.testing.assert_close(model(x).logits[0], logits)
    assert model.cfg.attend_to_query is False
    wide = ScanSnapYZ(ScanSnapConfig(M=6, attend_to_query=True))
    assert wide(x).attention.shape == (1, 4)


def test_transformer_with_orthonormal_embeddings_equals_its_yz_reparametrisation():
    cfg = ScanSnapConfig(M=8, d=8, zero_init=False)
    torch.manual_seed(0)
    tf = ScanSnapTransformer(cfg)
    with torch.no_grad():
        tf.U.weight.copy_(torch.linalg.qr(torch.randn(8, 8))[0])  # orthonormal rows
    Y, Z = tf.pairwise_logits()
    yz = ScanSnapYZ(ScanSnapConfig(M=8))
    with torch.no_grad():
        yz.Y.copy_(Y)
        yz.Z.copy_(Z)
    x = torch.randint(0, 8, (5, 6), generator=_gen())
    a, b = tf(x), yz(x)
    torch.testing.assert_close(a.attention, b.attention)
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(a.mixture, b.mixture)


def test_build_and_param_groups():
    assert isinstance(build(SPEC.variants["base"]), ScanSnapYZ)
    tf = build(SPEC.variants["transformer"])
    assert isinstance(tf, ScanSnapTransformer)
    for model in (build(SPEC.variants["tiny"]), tf):
        groups = model.param_groups(lr_Z=0.5, lr_Y=5.0)
        assert [g["lr"] for g in groups] == [0.5, 5.0]
        ids = {id(p) for g in groups for p in g["params"]}
        assert ids == {id(p) for p in model.parameters()}


# ---------------------------------------------------------------- dynamics
def test_z_gradient_scans_distinct_over_common_tokens():
    """The scan (the paper's dynamics of Z).

    Once the decoder ``Y`` has learned while the attention is still uniform, gradient descent
    on ``Z`` raises the attention logits of a query's distinct tokens, lowers those of the
    common tokens, and raises the frequent distinct tokens most.
    """
    classes = SequenceClasses(TINY)
    model = ScanSnapYZ(ScanSnapConfig(M=TINY.M))
    g = _gen()
    opt = torch.optim.SGD([model.Y], lr=1.0)  # decoder only: Z stays 0 (uniform attention)
    for _ in range(5):
        x, y, _ = classes.sample(512, 16, g)
        loss, _ = next_token_loss(model, (x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.zero_grad()
    x, y, _ = classes.balanced(8192, 16, g)
    next_token_loss(model, (x, y))[0].backward()
    step = -model.Z.grad  # the gradient-descent direction of Z
    m = int(classes.query[0])
    assert step[m, classes.common].sum() < 0, "common tokens lose attention"
    for n in range(TINY.n_next):
        distinct = classes.distinct[n]
        assert step[m, distinct].sum() > 0, "distinct tokens gain attention"
        rho = spearman(step[m, distinct].numpy(), classes.probs[n, distinct].numpy())
        assert rho > 0.5, "frequent distinct tokens gain most"


def test_short_training_moves_attention_off_common_tokens():
    classes = SequenceClasses(BASE)
    torch.manual_seed(0)
    model = ScanSnapYZ(ScanSnapConfig())
    opt = torch.optim.SGD(model.param_groups(lr_Z=3.0, lr_Y=30.0), lr=3.0, momentum=0.9)
    x_eval, _, _ = classes.balanced(64, 64, _gen(1))
    before = model(x_eval).mixture[:, classes.common].sum(1).mean()
    g = _gen()
    for _ in range(40):
        x, y, _ = classes.sample(128, 64, g)
        loss, _ = next_token_loss(model, (x, y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = model(x_eval).mixture[:, classes.common].sum(1).mean()
    assert after < 0.6 * before


# ---------------------------------------------------------------- measurement helpers
def test_spearman_entropy_and_snap_step():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([3, 2, 1], [10, 20, 30]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)  # tied ranks
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    assert float(entropy(torch.ones(4))) == pytest.approx(math.log(4))
    h = np.concatenate([np.linspace(2.0, 1.0, 51), np.full(50, 1.0)])  # rate 0.02 then 0
    assert 48 <= snap_step(h) <= 55
    assert snap_step(np.full(20, 1.0)) == 0
