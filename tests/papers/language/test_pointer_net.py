"""Pointer Networks: invariants of the paper, the data generators and the seq2seq baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from archlab.baselines.lstm_seq2seq import LSTMSeq2Seq, LSTMSeq2SeqConfig
from archlab.papers.language.pointer_net import (
    SPEC,
    PointerNet,
    PointerNetConfig,
    allowed_positions,
    pointer_loss,
    tasks,
)

SORT = PointerNetConfig(d_input=1, d_embed=16, d_hidden=24, permutation_output=True)
HULL = PointerNetConfig(d_input=2, d_embed=16, d_hidden=24)


def make(cfg, seed: int = 0) -> PointerNet:
    torch.manual_seed(seed)
    return PointerNet(cfg).eval()


def sort_batch(batch_size=6, n_min=3, n_max=9, seed=0):
    return tasks.sorting_batch(batch_size, torch.Generator().manual_seed(seed), n_min, n_max)


# ----------------------------------------------------------------------------- the pointer
def test_pointer_attention_is_the_papers_formula():
    model = make(HULL)
    att = model.attention
    e = torch.randn(2, 5, 24)  # (B, N, D) encoder states
    d = torch.randn(2, 3, 24)  # (B, T, D) decoder states
    u = att(att.keys(e), d)  # (B, T, N)
    W1, W2, v = att.W1.weight, att.W2.weight, att.v.weight[0]
    for b in range(2):
        for i in range(3):
            for j in range(5):
                expected = v @ torch.tanh(W1 @ e[b, j] + W2 @ d[b, i])
                torch.testing.assert_close(u[b, i, j], expected, rtol=1e-5, atol=1e-6)


def test_forward_is_a_distribution_over_input_positions():
    model = make(SORT)
    batch = sort_batch()
    logp = model(batch["inputs"], batch["lengths"], batch["targets"])  # (B, T, N)
    n_pos = int(batch["lengths"].max()) + 1
    assert logp.shape == (*batch["targets"].shape, n_pos)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(logp.shape[:2]))
    # padding positions have probability 0
    for b, n in enumerate(batch["lengths"].tolist()):
        assert (logp[b, :, n + 1 :].exp() == 0).all()


def test_init_is_uniform_in_init_range():
    model = make(PointerNetConfig(d_embed=8, d_hidden=8, init_range=0.05))
    for name, p in model.named_parameters():
        if not name.startswith("embed."):
            assert p.abs().max() <= 0.05, name


def test_end_token_rules():
    valid = torch.tensor([[True, True, True, False]])  # end + 2 inputs + padding
    none = torch.zeros_like(valid)
    first = allowed_positions(valid, none, True, True, False)
    assert first.tolist() == [[False, True, True, False]]  # no empty output
    later = allowed_positions(valid, none, False, True, True)
    assert later.tolist() == [[False, True, True, False]]  # permutation: not all chosen yet
    done = torch.tensor([[False, True, True, False]])
    assert allowed_positions(valid, done, False, True, True).tolist() == [[True] + [False] * 3]


# ----------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("num_beams", [1, 3])
def test_masked_decoding_always_emits_a_permutation(num_beams):
    model = make(SORT)  # untrained: validity comes from the masks alone
    batch = sort_batch(batch_size=8, n_min=2, n_max=12, seed=1)
    out = model.decode(batch["inputs"], batch["lengths"], num_beams=num_beams)
    for b, n in enumerate(batch["lengths"].tolist()):
        assert int(out.lengths[b]) == n
        assert sorted(out.indices[b, :n].tolist()) == list(range(n))
        assert (out.indices[b, n:] == -1).all()


def test_hull_decoding_never_repeats_a_point_and_is_never_empty():
    model = make(HULL)
    batch = tasks.convex_hull_batch(8, torch.Generator().manual_seed(0), 4, 12)
    out = model.decode(batch["inputs"], batch["lengths"], num_beams=2)
    for b, n in enumerate(batch["lengths"].tolist()):
        pred = out.indices[b, : int(out.lengths[b])].tolist()
        assert 1 <= len(pred) <= n and len(set(pred)) == len(pred) and max(pred) < n


def test_beam_width_one_equals_greedy():
    model = make(SORT, seed=3)
    batch = sort_batch(batch_size=8, seed=2)
    greedy = model.decode(batch["inputs"], batch["lengths"], num_beams=1)
    memory, embedded, state = model.encode(batch["inputs"], batch["lengths"])
    valid = model._valid(batch["lengths"], memory.shape[1])
    keys = model.attention.keys(memory)
    with torch.no_grad():
        tokens, log_prob = model._beam(keys, embedded, state, valid, memory.shape[1], 1)
    beam1 = tasks.targets_to_indices(tokens)
    width = greedy.indices.shape[1]
    torch.testing.assert_close(beam1[:, :width], greedy.indices)
    torch.testing.assert_close(log_prob, greedy.log_prob)


def test_decoded_log_prob_equals_teacher_forced_log_prob():
    """Step-by-step decoding and the teacher-forced forward compute the same distribution."""
    model = make(HULL, seed=1)
    batch = tasks.convex_hull_batch(5, torch.Generator().manual_seed(4), 5, 9)
    for num_beams in (1, 3):
        out = model.decode(batch["inputs"], batch["lengths"], num_beams=num_beams)
        targets = torch.where(out.indices >= 0, out.indices + 1, tasks.IGNORE_INDEX)
        targets = torch.cat([targets, torch.full((5, 1), tasks.IGNORE_INDEX)], 1)
        targets[torch.arange(5), out.lengths] = tasks.END
        with torch.no_grad():
            logp = model(batch["inputs"], batch["lengths"], targets)  # (B, T, N)
        real = targets != tasks.IGNORE_INDEX
        picked = logp.gather(2, targets.clamp(min=0)[..., None])[..., 0] * real
        torch.testing.assert_close(picked.sum(1), out.log_prob, rtol=1e-4, atol=1e-4)


def test_beam_search_finds_no_worse_sequences_on_average():
    model = make(SORT, seed=5)
    batch = sort_batch(batch_size=16, n_min=5, n_max=8, seed=5)
    greedy = model.decode(batch["inputs"], batch["lengths"]).log_prob
    beam = model.decode(batch["inputs"], batch["lengths"], num_beams=4).log_prob
    assert beam.mean() >= greedy.mean() - 1e-5


# ----------------------------------------------------------------------------- padding
def test_padding_does_not_change_an_examples_log_probs():
    model = make(HULL, seed=2)
    batch = tasks.convex_hull_batch(4, torch.Generator().manual_seed(7), 5, 12)
    logp = model(batch["inputs"], batch["lengths"], batch["targets"])  # (B, T, N)
    for b, n in enumerate(batch["lengths"].tolist()):
        t_b = int((batch["targets"][b] != tasks.IGNORE_INDEX).sum())
        alone = model(
            batch["inputs"][b : b + 1, :n],
            batch["lengths"][b : b + 1],
            batch["targets"][b : b + 1, :t_b],
        )
        torch.testing.assert_close(logp[b, :t_b, : n + 1], alone[0], rtol=1e-5, atol=1e-5)


def test_decoding_ignores_what_is_in_the_padding():
    model = make(SORT, seed=4)
    batch = sort_batch(batch_size=6, seed=6)
    noisy = batch["inputs"].clone()
    pad = torch.arange(noisy.shape[1])[None] >= batch["lengths"][:, None]
    noisy[pad] = torch.rand(int(pad.sum()), 1) * 5
    for k in (1, 3):
        a = model.decode(batch["inputs"], batch["lengths"], num_beams=k)
        b = model.decode(noisy, batch["lengths"], num_beams=k)
        assert torch.equal(a.indices, b.indices)


# ----------------------------------------------------------------------------- data
def test_convex_hull_targets_match_scipy_in_canonical_order():
    from scipy.spatial import ConvexHull

    g = torch.Generator().manual_seed(0)
    for n_min, n_max in [(3, 6), (5, 20), (40, 40)]:
        batch = tasks.convex_hull_batch(64, g, n_min, n_max)
        orders = tasks.targets_to_indices(batch["targets"])
        for b, n in enumerate(batch["lengths"].tolist()):
            pts = batch["inputs"][b, :n].double().numpy()
            ccw = ConvexHull(pts).vertices.tolist()  # scipy: counter-clockwise in 2-D
            k = ccw.index(min(ccw))
            expected = ccw[k:] + ccw[:k]
            got = [i for i in orders[b].tolist() if i >= 0]
            assert got == expected == tasks.convex_hull_order(pts)
            area = tasks.polygon_area(pts[got])
            assert area == pytest.approx(ConvexHull(pts).volume)  # 2-D "volume" is the area
            signed = np.sum(
                pts[got, 0] * np.roll(pts[got, 1], -1) - pts[got, 1] * np.roll(pts[got, 0], -1)
            )
            assert signed > 0  # counter-clockwise


def test_sorting_targets_are_the_argsort():
    batch = sort_batch(batch_size=10, n_min=1, n_max=12, seed=3)
    orders = tasks.targets_to_indices(batch["targets"])
    for b, n in enumerate(batch["lengths"].tolist()):
        values = batch["inputs"][b, :n, 0].tolist()
        assert orders[b, :n].tolist() == tasks.sort_order(values)
        assert (orders[b, n:] == -1).all() and batch["targets"][b, n] == tasks.END
        assert (batch["inputs"][b, n:] == 0).all()


def test_area_coverage_and_same_polygon():
    square = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]], dtype=float)
    area = tasks.polygon_area(square[:4])
    assert area == 1.0
    assert tasks.area_coverage(square, [0, 1, 2, 3], area) == 1.0
    assert tasks.area_coverage(square, [3, 2, 1, 0], area) == 1.0  # clockwise: same polygon
    assert tasks.area_coverage(square, [0, 1, 2], area) == 0.5
    assert tasks.area_coverage(square, [0, 1, 4, 2, 3], area) == 0.75  # simple, concave
    assert tasks.area_coverage(square, [0, 2, 1, 3], area) == 0.0  # bow tie: self-intersecting
    assert tasks.area_coverage(square, [0, 1, 2, 2], area) == 0.0  # repeated vertex
    assert tasks.area_coverage(square, [0, 1], area) == 0.0  # not a polygon
    assert tasks.same_polygon([2, 3, 0, 1], [0, 1, 2, 3])
    assert tasks.same_polygon([0, 3, 2, 1], [0, 1, 2, 3])
    assert not tasks.same_polygon([0, 2, 1, 3], [0, 1, 2, 3])
    assert not tasks.same_polygon([0, 1, 2], [0, 1, 2, 3])


# ----------------------------------------------------------------------------- training glue
@pytest.mark.parametrize("variant", ["tiny", "sort"])
def test_task_data_loss_and_eval(variant):
    cfg = SPEC.variants[variant]
    if variant == "sort":
        cfg = PointerNetConfig(d_input=1, d_embed=8, d_hidden=8, permutation_output=True)
    task = SPEC.task(cfg, 0)
    model = make(cfg).train()
    batch = task.data(4, torch.Generator().manual_seed(0))
    loss, metrics = task.loss_fn(model, batch)
    assert torch.isfinite(loss) and 0 <= metrics["step_acc"] <= 1
    loss.backward()
    with torch.no_grad():
        assert set(task.eval_fn(model.eval())) == {f"exact@{10 if variant == 'sort' else 20}"}


def test_config_validation():
    with pytest.raises(ValueError, match="mask_chosen"):
        PointerNetConfig(mask_chosen=False, permutation_output=True)
    with pytest.raises(ValueError, match="d_hidden"):
        PointerNetConfig(d_hidden=0)
    with pytest.raises(ValueError, match="inputs must be"):
        make(HULL)(torch.rand(2, 5, 1), torch.tensor([5, 5]), torch.zeros(2, 1, dtype=torch.long))


# ----------------------------------------------------------------------------- the baseline
S2S = LSTMSeq2SeqConfig(d_input=1, d_embed=16, d_hidden=24, n_positions=10, permutation_output=True)


def make_s2s(cfg=S2S, seed=0) -> LSTMSeq2Seq:
    torch.manual_seed(seed)
    return LSTMSeq2Seq(cfg).eval()


def test_seq2seq_output_vocabulary_is_fixed():
    model = make_s2s()
    batch = sort_batch(batch_size=4, n_min=3, n_max=6)
    logp = model(batch["inputs"], batch["lengths"], batch["targets"])
    assert logp.shape == (*batch["targets"].shape, 11)  # 10 positions + end, whatever n is
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(logp.shape[:2]))
    loss, _ = pointer_loss(model, batch)  # same targets and loss as Ptr-Net
    assert torch.isfinite(loss)


def test_seq2seq_cannot_name_positions_beyond_its_vocabulary():
    model = make_s2s()
    long = sort_batch(batch_size=4, n_min=15, n_max=15)
    with pytest.raises(ValueError, match="fixed"):
        model(long["inputs"], long["lengths"], long["targets"])
    out = model.decode(long["inputs"], long["lengths"])
    assert int(out.indices.max()) <= 9 and (out.lengths <= 10).all()


def test_seq2seq_masked_decoding_emits_permutations_within_its_vocabulary():
    model = make_s2s(seed=1)
    batch = sort_batch(batch_size=8, n_min=2, n_max=10, seed=8)
    out = model.decode(batch["inputs"], batch["lengths"])
    for b, n in enumerate(batch["lengths"].tolist()):
        assert sorted(out.indices[b, :n].tolist()) == list(range(n))


def test_seq2seq_padding_and_teacher_forcing_consistency():
    model = make_s2s(seed=2)
    batch = sort_batch(batch_size=4, n_min=3, n_max=8, seed=9)
    logp = model(batch["inputs"], batch["lengths"], batch["targets"])
    for b, n in enumerate(batch["lengths"].tolist()):
        alone = model(
            batch["inputs"][b : b + 1, :n],
            batch["lengths"][b : b + 1],
            batch["targets"][b : b + 1, : n + 1],
        )
        torch.testing.assert_close(logp[b, : n + 1], alone[0], rtol=1e-5, atol=1e-5)
    out = model.decode(batch["inputs"], batch["lengths"])
    targets = torch.where(out.indices >= 0, out.indices + 1, tasks.IGNORE_INDEX)
    targets = torch.cat([targets, torch.full((4, 1), tasks.IGNORE_INDEX)], 1)
    targets[torch.arange(4), out.lengths] = tasks.END
    with torch.no_grad():
        lp = model(batch["inputs"], batch["lengths"], targets)
    real = targets != tasks.IGNORE_INDEX
    picked = lp.gather(2, targets.clamp(min=0)[..., None])[..., 0] * real
    torch.testing.assert_close(picked.sum(1), out.log_prob, rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- mechanism tests
def test_forward_is_the_papers_encoder_decoder_recurrence_on_fixed_weights():
    """The whole teacher-forced pass recomputed by hand from the modules' weights: the encoder
    reads ``[end, x_1..x_n]``, the decoder starts from the encoder's final ``(h, c)``, is fed the
    learned start vector and then the *embedding of the input chosen at the previous step*, and
    ``p = softmax_j v^T tanh(W1 e_j + W2 d_i)`` (the end token masked at step 0 only, since
    ``mask_chosen=False``)."""
    # init_range 1 (not 0.08) so that the decoder state visibly moves the pointer scores
    cfg = PointerNetConfig(d_input=2, d_embed=8, d_hidden=12, mask_chosen=False, init_range=1.0)
    model = make(cfg, seed=3)
    torch.manual_seed(0)
    x = torch.rand(1, 5, 2)
    targets = torch.tensor([[2, 4, 2, 1, 0]])  # repeats allowed without mask_chosen
    got = model(x, torch.tensor([5]), targets)[0]  # (T, N)
    with torch.no_grad():
        seq = torch.cat([model.end[None], model.embed(x[0])], 0)  # (N, E), end token first
        memory, state = model.encoder(seq[None])  # (1, N, D)
        prev = [model.start] + [seq[j] for j in targets[0, :-1].tolist()]
        dec_out, _ = model.decoder(torch.stack(prev)[None], state)  # (1, T, D)
        att = model.attention
        W1, W2, v = att.W1.weight, att.W2.weight, att.v.weight[0]
        u = torch.stack(
            [
                torch.stack([v @ torch.tanh(W1 @ memory[0, j] + W2 @ d) for j in range(6)])
                for d in dec_out[0]
            ]
        )  # (T, N)
        u[0, 0] = float("-inf")  # no empty output
        expected = u.log_softmax(-1)
    torch.testing.assert_close(got[1:], expected[1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[0, 1:], expected[0, 1:], rtol=1e-5, atol=1e-5)
    assert got[0, 0] < -1e8


# ----------------------------------------------------------------------------- the paper's baseline
def make_coord_s2s(seed: int = 0, **kw) -> LSTMSeq2Seq:
    torch.manual_seed(seed)
    cfg = LSTMSeq2SeqConfig(
        d_input=1, d_embed=12, d_hidden=16, n_positions=10, feed="coordinates", **kw
    )
    return LSTMSeq2Seq(cfg).eval()


def test_coord_fed_seq2seq_decoder_reads_the_previous_chosen_coordinates():
    """The teacher-forced pass recomputed by hand: the decoder starts from the encoder's final
    state, reads the learned start vector, then ``embed(x_{C_{i-1}})`` (the previous chosen
    element's coordinates, not a symbol embedding); the output layer is the fixed vocabulary."""
    model = make_coord_s2s(seed=4, mask_chosen=False, init_range=1.0)
    assert not hasattr(model, "symbol_embed")
    x = torch.rand(1, 5, 1, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([[3, 1, 3, 5, 0]])  # symbol j names input j - 1
    got = model(x, torch.tensor([5]), targets)[0]  # (T, K)
    with torch.no_grad():
        memory, mask, state = model.encode(x, torch.tensor([5]))
        prev = [model.start] + [model.embed(x[0, j - 1]) for j in targets[0, :-1].tolist()]
        dec_out, _ = model.decoder(torch.stack(prev)[None], state)  # (1, T, D)
        scores = model._logits(memory, mask, dec_out)[0]  # (T, K)
        scores[:, 6:] = -1e9  # positions past n = 5
        scores[0, 0] = -1e9  # no empty output
        expected = scores.log_softmax(-1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # moving the point chosen at step 0 changes step 1's scores (it is fed back), not step 0's
    x2 = x.clone()
    x2[0, 2, 0] += 0.5
    got2 = model(x2, torch.tensor([5]), targets)[0]
    assert not torch.allclose(got2[1], got[1])


def test_coord_fed_seq2seq_decode_matches_teacher_forcing_and_emits_permutations():
    model = make_coord_s2s(seed=5, permutation_output=True)
    batch = sort_batch(batch_size=6, n_min=3, n_max=10, seed=11)
    out = model.decode(batch["inputs"], batch["lengths"])
    for b, n in enumerate(batch["lengths"].tolist()):
        assert sorted(out.indices[b, :n].tolist()) == list(range(n))
    targets = torch.where(out.indices >= 0, out.indices + 1, tasks.IGNORE_INDEX)
    targets = torch.cat([targets, torch.full((6, 1), tasks.IGNORE_INDEX)], 1)
    targets[torch.arange(6), out.lengths] = tasks.END
    with torch.no_grad():
        lp = model(batch["inputs"], batch["lengths"], targets)
    real = targets != tasks.IGNORE_INDEX
    picked = lp.gather(2, targets.clamp(min=0)[..., None])[..., 0] * real
    torch.testing.assert_close(picked.sum(1), out.log_prob, rtol=1e-4, atol=1e-4)
    loss, _ = pointer_loss(model, batch)
    assert torch.isfinite(loss)


def test_seq2seq_feed_is_validated_and_selects_what_the_decoder_reads():
    with pytest.raises(ValueError, match="feed must be one of"):
        LSTMSeq2SeqConfig(feed="coords")
    by_symbol = LSTMSeq2Seq(LSTMSeq2SeqConfig(d_input=1, d_embed=8, d_hidden=8, n_positions=5))
    assert hasattr(by_symbol, "symbol_embed") and not hasattr(by_symbol, "start")
    assert not hasattr(make_coord_s2s(), "symbol_embed")
