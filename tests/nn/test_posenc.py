"""Positional encodings: learned offset, sinusoidal closed form, rotary against complex numbers."""

import math

import pytest
import torch

from archlab.nn import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEmbedding,
    apply_rotary,
    sinusoidal_positions,
)


def test_learned_positions_offset():
    emb = LearnedPositionalEmbedding(10, 4, offset=2)  # BART
    assert emb.weight.shape == (12, 4)
    pos = torch.tensor([[0, 1, 9]])
    torch.testing.assert_close(emb(pos), emb.weight[[2, 3, 11]][None])
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        emb(torch.tensor([10]))


def test_sinusoidal_closed_form():
    n, d = 12, 8
    table = sinusoidal_positions(n, d)
    for p in range(n):
        for i in range(d // 2):
            angle = p / 10000 ** (2 * i / d)
            assert table[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    halves = sinusoidal_positions(n, d, interleaved=False)
    torch.testing.assert_close(halves[:, : d // 2], table[:, 0::2])
    torch.testing.assert_close(halves[:, d // 2 :], table[:, 1::2])
    module = SinusoidalPositionalEmbedding(n, d)
    torch.testing.assert_close(module(torch.tensor([[3, 5]])), table[[3, 5]][None])
    assert not module.state_dict()  # fixed: nothing to save
    with pytest.raises(ValueError, match="even d_model"):
        sinusoidal_positions(4, 7)


def test_sinusoidal_halves_is_transformers_marian():
    marian = pytest.importorskip("transformers.models.marian.modeling_marian")
    ref = marian.MarianSinusoidalPositionalEmbedding(16, 8).create_weight()
    torch.testing.assert_close(sinusoidal_positions(16, 8, interleaved=False), ref)


def _complex_rope(x, positions, base, interleaved):
    """RoPE as multiplication of feature pairs, seen as complex numbers, by exp(i p theta_j)."""
    d = x.shape[-1]
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (d/2,)
    rot = torch.polar(torch.ones_like(theta), positions.double()[:, None] * theta)  # (T, d/2)
    xd = x.double()
    if interleaved:
        z = torch.complex(xd[..., 0::2], xd[..., 1::2]) * rot
        return torch.stack([z.real, z.imag], -1).flatten(-2).float()
    z = torch.complex(xd[..., : d // 2], xd[..., d // 2 :]) * rot
    return torch.cat([z.real, z.imag], -1).float()


@pytest.mark.parametrize("interleaved", [False, True])
def test_rotary_closed_form(interleaved):
    torch.manual_seed(0)
    q, k = torch.randn(2, 4, 6, 8), torch.randn(2, 2, 6, 8)
    positions = torch.tensor([0, 1, 2, 7, 30, 100])
    rq, rk = apply_rotary(q, k, positions, base=500.0, interleaved=interleaved)
    torch.testing.assert_close(
        rq, _complex_rope(q, positions, 500.0, interleaved), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(
        rk, _complex_rope(k, positions, 500.0, interleaved), atol=1e-5, rtol=0
    )
    rope = RotaryEmbedding(8, base=500.0, interleaved=interleaved)
    mq, mk = rope(q, k, positions)
    torch.testing.assert_close(mq, rq)
    torch.testing.assert_close(mk, rk)


def test_rotary_relative_invariance_and_norm():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)
    rope = RotaryEmbedding(16)

    def score(m, n):
        rq, _ = rope(q, q, torch.tensor([m]))
        _, rk = rope(k, k, torch.tensor([n]))
        return (rq * rk).sum().item()

    assert score(5, 2) == pytest.approx(score(103, 100), abs=1e-4)
    assert score(0, 0) == pytest.approx((q * k).sum().item(), abs=1e-5)
    assert score(5, 2) != pytest.approx(score(5, 4), abs=1e-3)
    rq, _ = rope(q, q, torch.tensor([77]))
    torch.testing.assert_close(rq.norm(), q.norm())  # a rotation


def test_rotary_batched_positions_and_partial():
    torch.manual_seed(0)
    q = torch.randn(2, 2, 3, 8)
    positions = torch.tensor([[0, 1, 2], [5, 6, 7]])
    rq, _ = apply_rotary(q, q, positions)
    for b in range(2):
        torch.testing.assert_close(rq[b : b + 1], apply_rotary(q[b : b + 1], q, positions[b])[0])
    rope = RotaryEmbedding(8, d_rotary=4)  # GPT-NeoX rotary_pct = 0.5
    pq, _ = rope(q, q, positions)
    torch.testing.assert_close(pq[..., 4:], q[..., 4:])
    torch.testing.assert_close(pq[..., :4], apply_rotary(q[..., :4], q[..., :4], positions)[0])
