"""RMSNorm against torch.nn.RMSNorm and its closed form; make_norm by name."""

import pytest
import torch
from torch import nn

from archlab.nn import LayerNorm, RMSNorm, make_norm


def test_rmsnorm_closed_form_and_torch():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16) * 3 + 1
    norm = RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    torch.testing.assert_close(norm(x), expected, rtol=1e-5, atol=1e-6)
    ref = nn.RMSNorm(16, eps=1e-6)
    ref.load_state_dict(norm.state_dict())
    torch.testing.assert_close(norm(x), ref(x), rtol=1e-5, atol=1e-6)


def test_rmsnorm_half_precision_normalises_in_float32():
    x = torch.randn(2, 8) * 100
    y = RMSNorm(8).to(torch.bfloat16)(x.to(torch.bfloat16))
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), RMSNorm(8)(x), rtol=2e-2, atol=2e-2)


def test_make_norm():
    assert isinstance(make_norm("layernorm", 8, 1e-12), LayerNorm)
    assert make_norm("layernorm", 8, 1e-12).eps == 1e-12
    assert isinstance(make_norm("rmsnorm", 8), RMSNorm)
    with pytest.raises(ValueError, match="layernorm, rmsnorm"):
        make_norm("batchnorm", 8)
