"""Feed-forward blocks against their closed forms (Shazeer 2020 for the GLU family)."""

import math

import pytest
import torch

from archlab.nn import ACTIVATIONS, FeedForward, GLUFeedForward, get_activation


def _x():
    torch.manual_seed(0)
    return torch.randn(2, 3, 8)


def test_activations_closed_form():
    x = torch.linspace(-4, 4, 101)
    erf_gelu = 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    tanh_gelu = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(get_activation("gelu")(x), erf_gelu)
    torch.testing.assert_close(get_activation("gelu_tanh")(x), tanh_gelu)
    torch.testing.assert_close(get_activation("silu")(x), x * torch.sigmoid(x))
    torch.testing.assert_close(get_activation("relu")(x), x.clamp(min=0))
    with pytest.raises(ValueError, match="activation must be one of"):
        get_activation("swishy")


def test_gelu_tanh_is_gpt2_gelu_new():
    activations = pytest.importorskip("transformers.activations")
    x = torch.linspace(-4, 4, 101)
    torch.testing.assert_close(get_activation("gelu_tanh")(x), activations.ACT2FN["gelu_new"](x))


@pytest.mark.parametrize("activation", ["gelu", "relu", "gelu_tanh", "silu"])
def test_feed_forward_closed_form(activation):
    x = _x()
    ffn = FeedForward(8, 32, activation=activation)
    act = ACTIVATIONS[activation]
    w1, b1, w2, b2 = ffn.fc1.weight, ffn.fc1.bias, ffn.fc2.weight, ffn.fc2.bias
    torch.testing.assert_close(ffn(x), act(x @ w1.T + b1) @ w2.T + b2)


@pytest.mark.parametrize(
    ("activation", "gate"),
    [
        ("sigmoid", torch.sigmoid),  # GLU
        ("identity", lambda z: z),  # Bilinear
        ("relu", torch.relu),  # ReGLU
        ("gelu", lambda z: 0.5 * z * (1 + torch.erf(z / math.sqrt(2)))),  # GEGLU
        ("silu", lambda z: z * torch.sigmoid(z)),  # SwiGLU
    ],
)
def test_glu_variants_closed_form(activation, gate):
    x = _x()
    ffn = GLUFeedForward(8, 12, activation=activation)
    assert ffn.gate_proj.bias is None  # no biases, as in the paper
    W, V, W2 = ffn.gate_proj.weight, ffn.up_proj.weight, ffn.down_proj.weight
    expected = (gate(x @ W.T) * (x @ V.T)) @ W2.T  # FFN_GLU(x) = (act(xW) * xV) W2
    torch.testing.assert_close(ffn(x), expected)
