"""PC compression: exact marginals and conditionals against enumeration, the Chow-Liu tree
against a brute-force maximum spanning tree, EM's monotone likelihood, the coder's bit-exact
round trip, code length against the NLL, corrupt streams and bad input. Each mechanism the card
names has a test that fails when it is broken."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from archlab.papers.fields.pc_compression import (
    HCLT,
    CompressionInputError,
    EMSchedule,
    HCLTConfig,
    chow_liu_tree,
    fit_hclt,
    mutual_information,
)
from archlab.papers.fields.pc_compression.coder import (
    CODER_SLACK_BITS,
    HEADER_BITS,
    CorruptStreamError,
    decode,
    encode,
    encode_with_sizes,
)
from archlab.papers.fields.pc_compression.experiment import bpd
from archlab.papers.fields.pc_compression.model import max_spanning_tree, root_tree


def tree_data(n: int, d: int, seed: int, flip: float = 0.1) -> torch.Tensor:
    """Binary samples from a random tree (each variable copies a random earlier one, flipped
    with probability ``flip``), in a shuffled variable order: (n, d)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, d, dtype=torch.long)
    x[:, 0] = torch.randint(0, 2, (n,), generator=g)
    for i in range(1, d):
        src = int(torch.randint(0, i, (1,), generator=g))
        x[:, i] = x[:, src] ^ (torch.rand(n, generator=g) < flip).long()
    return x[:, torch.randperm(d, generator=g)]


def random_model(shape=(2, 5), n_cats=2, n_latents=2, seed=0) -> HCLT:
    torch.manual_seed(seed)
    model = HCLT(HCLTConfig(shape=shape, n_cats=n_cats, n_latents=n_latents))
    with torch.no_grad():  # sharper than the default initialisation
        for p in model.parameters():
            p.normal_(0, 1.5)
    model.set_tree(chow_liu_tree(tree_data(300, model.cfg.n_vars, seed), n_cats))
    return model


def enumerate_joint(model: HCLT) -> tuple[torch.Tensor, torch.Tensor]:
    """Every assignment (V^D, D) and its probability, summing over every latent assignment."""
    root, edge, leaf = (t.detach().exp() for t in model.log_params())
    d, k, v = model.cfg.n_vars, model.cfg.n_latents, model.cfg.n_cats
    xs = torch.tensor(list(itertools.product(range(v), repeat=d)))  # (V^D, D)
    zs = torch.tensor(list(itertools.product(range(k), repeat=d)))  # (K^D, D)
    pz = root[zs[:, model.root]].clone()
    for i, p in enumerate(model.parent.tolist()):
        if p >= 0:
            pz = pz * edge[i, zs[:, p], zs[:, i]]
    px_z = torch.ones(len(xs), len(zs), dtype=torch.float64)
    for i in range(d):
        px_z = px_z * leaf[i][zs[:, i]][:, xs[:, i]].T  # (V^D, K^D)
    return xs, px_z @ pz


def test_marginals_equal_exhaustive_enumeration():
    model = random_model()  # 10 variables, K = 2
    xs, joint = enumerate_joint(model)
    assert joint.sum().item() == pytest.approx(1.0, abs=1e-12)
    g = torch.Generator().manual_seed(1)
    queries = xs[torch.randint(0, len(xs), (6,), generator=g)]
    for observed in (torch.ones(10, dtype=torch.bool), torch.arange(10) < 4,
                     torch.tensor([1, 0, 0, 1, 1, 0, 1, 0, 0, 1], dtype=torch.bool),
                     torch.zeros(10, dtype=torch.bool)):  # fmt: skip
        got = model.log_marginal(queries, observed).exp().detach()
        match = (xs[:, observed][:, None] == queries[:, observed][None]).all(-1)  # (V^D, 6)
        want = (joint[:, None] * match).sum(0)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(model(xs).exp().detach(), joint, atol=1e-9, rtol=1e-6)


def test_conditionals_are_ratios_of_marginals_and_posteriors_match_autograd():
    model = random_model(shape=(2, 4), n_cats=3, n_latents=3, seed=2)
    x = torch.randint(0, 3, (5, 8), generator=torch.Generator().manual_seed(3))
    for k in range(8):
        before = (torch.arange(8) < k).expand(5, 8)
        probs = model.conditional(x, k, before)  # (5, V)
        torch.testing.assert_close(probs.sum(-1), torch.ones(5, dtype=torch.float64))
        want = []
        for v in range(3):
            xv = x.clone()
            xv[:, k] = v
            want.append(model.log_marginal(xv, torch.arange(8) <= k).exp().detach())
        want = torch.stack(want, -1)
        torch.testing.assert_close(probs, want / want.sum(-1, keepdim=True), atol=1e-9, rtol=0)
    # the cached coder (only the changed ancestors re-evaluated) gives the same conditionals
    state = model.start_coding(5)
    for k in range(8):
        naive = model.conditional(x, k, (torch.arange(8) < k).expand(5, 8))
        torch.testing.assert_close(model.next_conditional(state, k), naive, atol=1e-12, rtol=0)
        model.observe(state, k, x[:, k])
    assert model.node_evaluations(cached=True) < model.node_evaluations(cached=False)
    # the downward pass's P(Z_k | x_<k) equals the gradient of log p w.r.t. the leaf logs
    post = model.posteriors(x, (torch.arange(8) < 5).expand(5, 8))  # (5, D, K)
    torch.testing.assert_close(post.sum(-1), torch.ones(5, 8, dtype=torch.float64))
    leaf5 = model.log_params()[2][5].exp().detach()  # (K, V)
    naive5 = model.conditional(x, 5, (torch.arange(8) < 5).expand(5, 8))
    torch.testing.assert_close(post[:, 5] @ leaf5, naive5, atol=1e-12, rtol=0)


def brute_force_max_tree(w: torch.Tensor) -> list[tuple[int, int]]:
    d = w.shape[0]
    pairs = list(itertools.combinations(range(d), 2))
    best, best_w = None, -math.inf
    for edges in itertools.combinations(pairs, d - 1):
        comp = list(range(d))

        def find(a, comp=comp):
            while comp[a] != a:
                a = comp[a]
            return a

        ok = True
        for a, b in edges:
            ra, rb = find(a), find(b)
            if ra == rb:
                ok = False
                break
            comp[ra] = rb
        if ok and (total := sum(float(w[a, b]) for a, b in edges)) > best_w:
            best, best_w = sorted(edges), total
    return best


def test_chow_liu_tree_is_the_brute_force_maximum_mutual_information_tree():
    x = tree_data(400, 6, seed=4, flip=0.25)
    mi = mutual_information(x, 2)
    # the MI of one pair by hand
    a, b = x[:, 0].numpy(), x[:, 1].numpy()
    ref = 0.0
    for u in (0, 1):
        for v in (0, 1):
            p = np.mean((a == u) & (b == v))
            if p > 0:
                ref += p * math.log(p / (np.mean(a == u) * np.mean(b == v)))
    assert float(mi[0, 1]) == pytest.approx(ref, abs=1e-12)
    assert max_spanning_tree(mi) == brute_force_max_tree(mi)
    parent = chow_liu_tree(x, 2)
    edges = sorted((min(i, int(p)), max(i, int(p))) for i, p in enumerate(parent) if p >= 0)
    assert edges == brute_force_max_tree(mi)
    assert int((root_tree(6, edges) < 0).sum()) == 1


def test_em_increases_the_train_log_likelihood_every_iteration():
    x = tree_data(300, 10, seed=5)
    cfg = HCLTConfig(shape=(2, 5), n_cats=2, n_latents=4, pseudocount=0.0)
    _, hist = fit_hclt(cfg, x, EMSchedule(0, 64, 1.0, 1.0, 12), torch.Generator().manual_seed(0))
    ll = np.array(hist["train_ll"])
    assert np.all(np.diff(ll) >= -1e-9), ll
    assert ll[-1] > ll[0] + 0.5


def test_independent_model_is_k1_with_smoothed_frequencies():
    x = tree_data(200, 8, seed=6)
    cfg = HCLTConfig(shape=(2, 4), n_cats=2, n_latents=1, pseudocount=1.0)
    model, _ = fit_hclt(cfg, x, EMSchedule(0, 512, 1, 1, 1), torch.Generator().manual_seed(0))
    freq = (torch.stack([(x == v).sum(0) for v in (0, 1)], -1) + 0.5) / (200 + 1.0)  # (D, V)
    torch.testing.assert_close(model.log_params()[2][:, 0].exp().detach(), freq.double())


def test_structure_matters_hclt_beats_independent_and_a_random_tree():
    x = tree_data(1200, 16, seed=7)
    train, test = x[:800], x[800:]
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    sched = EMSchedule(2, 100, 0.9, 0.1, 15)
    hclt, _ = fit_hclt(HCLTConfig((4, 4), 2, 4), train, sched, g())
    indep, _ = fit_hclt(HCLTConfig((4, 4), 2, 1), train, sched, g())
    rand = HCLT(HCLTConfig((4, 4), 2, 4))
    rand.reset_parameters(g())
    rand.set_tree(torch.tensor([-1, 0, 0, 1, 3, 2, 2, 6, 5, 7, 9, 10, 8, 12, 11, 13]))
    from archlab.papers.fields.pc_compression.model import em_fit

    em_fit(rand, train, sched, g())
    b_hclt, b_ind, b_rand = bpd(hclt, test), bpd(indep, test), bpd(rand, test)
    assert b_hclt < 0.8 * b_ind, (b_hclt, b_ind)
    assert b_hclt < b_rand - 0.02, (b_hclt, b_rand)


@pytest.fixture(scope="module")
def fitted():
    x = tree_data(500, 12, seed=8)
    cfg = HCLTConfig(shape=(3, 4), n_cats=2, n_latents=4)
    model, _ = fit_hclt(cfg, x[:400], EMSchedule(1, 100, 0.9, 0.1, 5),
                        torch.Generator().manual_seed(0))  # fmt: skip
    return model, x[400:].view(-1, 3, 4)


def test_round_trip_is_bit_exact_on_every_image(fitted):
    model, test = fitted
    for chunk in (512, 7):  # one chunk and several
        back = decode(model, encode(model, test, chunk=chunk))
        assert back.dtype == torch.long and torch.equal(back, test)
    eight = HCLT(HCLTConfig(shape=(2, 3), n_cats=256, n_latents=3))
    imgs = torch.randint(0, 256, (9, 2, 3), generator=torch.Generator().manual_seed(9))
    assert torch.equal(decode(eight, encode(eight, imgs)), imgs)
    for i in range(3):  # an image alone in its own stream
        assert torch.equal(decode(model, encode(model, test[i : i + 1])), test[i : i + 1])


def test_code_length_is_within_one_percent_of_the_nll_plus_fixed_overhead(fitted):
    model, test = fitted
    stream, alone = encode_with_sizes(model, test, per_image=True)
    nll = bpd(model, test) * test.numel()
    bits = 8 * len(stream)
    assert nll <= bits <= 1.01 * nll + HEADER_BITS + CODER_SLACK_BITS, (bits, nll)
    nll_each = (-model.log_marginal(test).detach() / math.log(2)).numpy()
    assert np.all(alone.numpy() <= 1.01 * nll_each + HEADER_BITS + CODER_SLACK_BITS)
    assert np.all(alone.numpy() >= HEADER_BITS + nll_each - 32)


def test_a_corrupt_stream_raises_one_line(fitted):
    model, test = fitted
    stream = bytearray(encode(model, test))
    cases = {"truncated": bytes(stream[:-4]), "short": bytes(stream[:10]),
             "magic": b"XXXX" + bytes(stream[4:]), "odd": bytes(stream) + b"\x00"}  # fmt: skip
    for pos in range(22, len(stream), max(1, (len(stream) - 22) // 12)):
        bad = bytearray(stream)
        bad[pos] ^= 0x5A
        cases[f"flip@{pos}"] = bytes(bad)
    header = bytearray(stream)
    header[18] ^= 1  # the CRC (bytes 18..21)
    cases["crc"] = bytes(header)
    for name, data in cases.items():
        with pytest.raises(CorruptStreamError) as e:
            decode(model, data)
        assert "\n" not in str(e.value) and "corrupt stream" in str(e.value), name
    other = HCLT(HCLTConfig(shape=(4, 3), n_cats=2, n_latents=4))
    with pytest.raises(CorruptStreamError, match="expected a pc_compression stream of 4x3"):
        decode(other, bytes(stream))


def test_bad_input_gets_one_line_naming_what_was_expected(fitted):
    model, test = fitted
    for bad, what in ((torch.zeros(2, 28, 28, dtype=torch.long), "shape"),
                      (test + 1, "values in"), (test.float(), "dtype"),
                      (torch.zeros(3, dtype=torch.long), "shape")):  # fmt: skip
        with pytest.raises(CompressionInputError) as e:
            encode(model, bad)
        msg = str(e.value)
        assert "\n" not in msg and "expected integer images of shape (B, 3, 4)" in msg, msg
        assert what in msg
    assert issubclass(CompressionInputError, ValueError)
