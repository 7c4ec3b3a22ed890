"""Codebook features: snap parity with the codebook-features package and with
vector-quantize-pytorch, straight-through training, forcing codes, the FSM task and the
alignment counts."""

from __future__ import annotations

import pytest
import torch

import archlab
from archlab.papers.interp.codebook_features import (
    CodebookConfig,
    CodebookError,
    CodebookLayer,
    CodebookTransformer,
    HeadCodebooks,
    snap,
)
from archlab.papers.interp.codebook_features.data import FSM, FSMConfig
from archlab.papers.interp.codebook_features.experiment import (
    accuracy,
    precise_units,
    states_covered,
)

HOOK_KWARGS = {"cosine": False, "keep_k_codes": False, "disable_for_tkns": [],
               "disable_codes": [], "disable_topk": 0, "disable_sim_idx": []}  # fmt: skip


@pytest.mark.parametrize(("kind", "cls"), [("euclidean", "EuclideanSnapFunction"),
                                           ("inner", "InnerProductSnapFunction")])  # fmt: skip
def test_snap_equals_the_codebook_features_package(kind, cls):
    models = pytest.importorskip("codebook_features.models")
    g = torch.Generator().manual_seed(0)
    x, codes = torch.randn(2, 5, 8, generator=g), torch.randn(20, 8, generator=g)
    for k in (1, 3):
        out, ids = snap(x, codes, k, kind)
        ref, ref_ids = getattr(models, cls).apply(x, codes, k, HOOK_KWARGS)
        assert torch.allclose(out, ref, atol=1e-6)
        assert torch.equal(ids.sort(-1).values, ref_ids.sort(-1).values)


def test_nearest_code_equals_vector_quantize_pytorch():
    vqp = pytest.importorskip("vector_quantize_pytorch")
    torch.manual_seed(0)
    vq = vqp.VectorQuantize(dim=8, codebook_size=16).eval()
    layer = CodebookLayer(8, 16, k=1)
    with torch.no_grad():
        layer.codes.copy_(vq._codebook.embed[0])
    x = torch.randn(3, 7, 8)
    with torch.no_grad():
        quantized, indices, _ = vq(x)
        assert torch.allclose(layer(x), quantized, atol=1e-6)
        assert torch.equal(layer.codes_of(x)[..., 0], indices)


def test_gradients_go_straight_through_and_codes_learn_from_the_task():
    layer = CodebookLayer(4, 6, k=2)
    x = torch.randn(5, 4, requires_grad=True)
    w = torch.randn(4)
    (layer(x) @ w).sum().backward()
    assert torch.allclose(x.grad, w.expand(5, 4))  # identity to the input
    used = layer.codes_of(x.detach()).unique()
    assert (layer.codes.grad[used].abs().sum(1) > 0).all()
    unused = torch.ones(6, dtype=torch.bool)
    unused[used] = False
    assert (layer.codes.grad[unused] == 0).all()


def test_the_output_is_a_mean_of_k_codes():
    layer = CodebookLayer(4, 10, k=3)
    x = torch.randn(2, 4)
    ids = layer.codes_of(x)
    assert torch.allclose(layer(x), layer.codes[ids].mean(-2))


def test_forcing_codes_replaces_only_the_given_positions():
    layer = CodebookLayer(4, 10, k=2)
    x = torch.randn(2, 6, 4)
    clean = layer(x)
    with layer.force([3, 7], positions=slice(4, None)):
        forced = layer(x)
    assert torch.allclose(forced[:, 4:], layer.codes[[3, 7]].mean(0).expand(2, 2, 4))
    assert torch.equal(forced[:, :4], clean[:, :4])
    assert torch.equal(layer(x), clean)  # removed after the block
    with pytest.raises(CodebookError, match="code ids must be in"):
        with layer.force([10]):
            pass


def test_head_codebooks_are_separate_per_head():
    heads = HeadCodebooks(n_heads=2, d_head=3, n_codes=5)
    z = torch.randn(4, 6)
    out = heads(z)
    assert torch.allclose(out[:, :3], heads.heads[0](z[:, :3]))
    assert torch.allclose(out[:, 3:], heads.heads[1](z[:, 3:]))
    assert heads.heads[0].codes.data_ptr() != heads.heads[1].codes.data_ptr()


def test_the_transformer_has_a_codebook_after_every_head_and_mlp():
    model = CodebookTransformer(CodebookConfig(d_model=16, n_layers=2, n_heads=2, d_hidden=32,
                                               mlp_codes=12, head_codes=6))  # fmt: skip
    assert len(model.codebooks()) == 2 * (2 + 1)
    assert model(torch.randint(0, 8, (3, 10))).shape == (3, 10, 8)
    plain = CodebookTransformer(CodebookConfig(mlp_codes=0, head_codes=0))
    assert plain.codebooks() == []


def test_the_fsm():
    fsm = FSM(FSMConfig(n_states=10, n_successors=3, n_symbols=4, digits=2, walk=8),
              torch.Generator().manual_seed(0))  # fmt: skip
    states = fsm.walks(50, torch.Generator().manual_seed(1))
    assert fsm.valid[states[:, :-1], states[:, 1:]].all()
    assert (fsm.successors != torch.arange(10)[:, None]).all()
    tokens = fsm.tokens(states)
    assert torch.equal(fsm.decode(tokens.unflatten(1, (8, 2))), states)
    assert fsm.decode(torch.tensor([3, 3])) == -1  # 15 names no state

    # an oracle that knows the machine is always valid
    class Oracle(torch.nn.Module):
        cfg = CodebookConfig()

        def forward(self, t):
            out = torch.full((*t.shape, 4), -1e9)
            if t.shape[1] % 2 == 0:  # a state just ended: emit a successor's first digit
                prev = fsm.decode(t[:, -2:])
                out[:, -1].scatter_(1, fsm.codes[fsm.successors[prev, 0], :1], 0.0)
            else:
                prev = fsm.decode(t[:, -3:-1])
                out[:, -1].scatter_(1, fsm.codes[fsm.successors[prev, 0], 1:], 0.0)
            return out

    assert accuracy(Oracle(), fsm, states) == 1.0


def test_precision_counts():
    active = torch.tensor([[1, 0], [1, 0], [1, 1], [0, 1]], dtype=torch.bool)
    labels = torch.tensor([2, 2, 0, 1])
    prec, state = precise_units(active, labels, 3, min_count=2)
    assert torch.allclose(prec, torch.tensor([2 / 3, 0.5])) and state[0] == 2
    assert states_covered(prec, state, 0.6, 3).tolist() == [False, False, True]
    prec, _ = precise_units(active, labels, 3, min_count=4)
    assert (prec == 0).all()


def test_registry_and_bad_input():
    model = archlab.build("codebook_features/tiny")
    assert model(torch.randint(0, 8, (2, 5))).shape == (2, 5, 8)
    with pytest.raises(CodebookError, match="input width 5 does not match"):
        CodebookLayer(4, 8)(torch.randn(2, 5))
    with pytest.raises(CodebookError, match="unknown similarity"):
        CodebookLayer(4, 8, kind="cosine")
    with pytest.raises(CodebookError, match=r"k=9 must be in \[1, n_codes=8\]"):
        CodebookLayer(4, 8, k=9)


def test_unused_codes_are_replaced_by_inputs_during_training_only():
    layer = CodebookLayer(4, 8, k=1, replace_every=3)
    with torch.no_grad():
        layer.codes[4:] = 100.0  # far away: never chosen
    x = torch.randn(16, 4)
    far = layer.codes[4:].clone()
    layer.eval()
    for _ in range(3):
        layer(x)
    assert torch.equal(layer.codes[4:], far)  # eval: untouched
    layer.train()
    for _ in range(3):
        layer(x)
    rows = layer.codes[4:]
    assert not torch.equal(rows, far)
    assert all((x == r).all(1).any() for r in rows)  # each became one of the inputs
    assert int(layer.uses.sum()) == 0  # the window restarts
