"""Position-wise feed-forward blocks: the two-layer MLP and the gated (GLU) family.

``FeedForward``: ``fc2(dropout(act(fc1(x))))`` (Vaswani et al. 2017; GELU in BERT, BART and
GPT-2, whose ``gelu_new`` is ``gelu_tanh`` here).

``GLUFeedForward``: Shazeer, "GLU Variants Improve Transformer", 2020, arXiv 2002.05202:
``down_proj(act(gate_proj(x)) * up_proj(x))``; the activation names the variant: ``sigmoid`` GLU,
``identity`` Bilinear, ``relu`` ReGLU, ``gelu`` GEGLU, ``silu`` SwiGLU. Projections are named as
in LLaMA (``gate_proj``, ``up_proj``, ``down_proj``) and have no bias by default, as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _identity(x: Tensor) -> Tensor:
    return x


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": partial(F.gelu, approximate="tanh"),
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "identity": _identity,
}
"""Activations by name. ``gelu`` is the exact (erf) GELU; ``gelu_tanh`` is GPT-2's ``gelu_new``."""

GLU_VARIANTS = {
    "sigmoid": "GLU",
    "identity": "Bilinear",
    "relu": "ReGLU",
    "gelu": "GEGLU",
    "gelu_tanh": "GEGLU (tanh)",
    "silu": "SwiGLU",
}
"""Names of the gated feed-forward variants by gate activation (Shazeer 2020)."""


def get_activation(name: str) -> Callable[[Tensor], Tensor]:
    """The activation function called ``name`` (a key of ``ACTIVATIONS``).

    Raises:
        ValueError: for an unknown name; the message lists the valid ones.
    """
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"activation must be one of {', '.join(ACTIVATIONS)}; got {name!r}"
        ) from None


def apply_dropout(module: nn.Dropout, x: Tensor) -> Tensor:
    """``module(x)`` in training with p > 0, else ``x`` itself (no module call at inference)."""
    return module(x) if module.training and module.p > 0 else x


class FeedForward(nn.Module):
    """Two-layer MLP ``fc2(dropout(act(fc1(x))))``.

    Args:
        d_model: input and output width D.
        d_hidden: hidden width (usually 4 * D).
        activation: a key of ``ACTIVATIONS``.
        bias: whether ``fc1`` and ``fc2`` have biases.
        dropout: dropout on the hidden activations (BART's ``activation_dropout``).
    """

    def __init__(
        self,
        d_model: int,
        d_hidden: int,
        activation: str = "gelu",
        bias: bool = True,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.activation = activation
        self.act = get_activation(activation)
        self.fc1 = nn.Linear(d_model, d_hidden, bias=bias)
        self.fc2 = nn.Linear(d_hidden, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (..., D) -> (..., D)
        h = apply_dropout(self.dropout, self.act(self.fc1(x)))  # (..., d_hidden)
        return self.fc2(h)

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"


class GLUFeedForward(nn.Module):
    """Gated feed-forward ``down_proj(dropout(act(gate_proj(x)) * up_proj(x)))`` (Shazeer 2020).

    Args:
        d_model: input and output width D.
        d_hidden: width of the gated hidden layer (Shazeer keeps parameters equal to a 4*D MLP with
            ``d_hidden = 8*D/3``).
        activation: applied to the gate; ``"silu"`` SwiGLU, ``"gelu"`` GEGLU, ``"relu"`` ReGLU,
            ``"sigmoid"`` GLU, ``"identity"`` Bilinear.
        bias: whether the three projections have biases (the paper has none).
        dropout: dropout on the gated hidden activations.
    """

    def __init__(
        self,
        d_model: int,
        d_hidden: int,
        activation: str = "silu",
        bias: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.activation = activation
        self.act = get_activation(activation)
        self.gate_proj = nn.Linear(d_model, d_hidden, bias=bias)
        self.up_proj = nn.Linear(d_model, d_hidden, bias=bias)
        self.down_proj = nn.Linear(d_hidden, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (..., D) -> (..., D)
        h = self.act(self.gate_proj(x)) * self.up_proj(x)  # (..., d_hidden)
        return self.down_proj(apply_dropout(self.dropout, h))

    def extra_repr(self) -> str:
        return f"activation={self.activation!r} ({GLU_VARIANTS[self.activation]})"
