"""Decoding specialised feature neurons in LLMs with the final projection layer.

Harry J. Davies, 2025, arXiv 2501.02688 (no official code). Paper card and deviations:
README.md beside this file.

An MLP up-projection neuron ``i`` of layer ``l`` reads the residual stream along its weight
row ``w_i`` (D,). Read through the final norm's scale ``g`` and the LM head ``W_U`` (V, D), that
direction is a distribution over tokens, ``p_i = softmax(W_U (g * w_i))``, whose top tokens
label the neuron (``decode_neurons``). The label is checked causally by clamping the neuron's
activation (``clamp_neuron``: the hidden unit that the down-projection reads) and measuring the
probability of the label token; ``top1_agreement`` compares two models' labels (a pretrained
model and its fine-tuned version).

``SwiGLULM`` is the decoder-only LM the miniature studies: Llama's layout at toy size
(RMSNorm pre-norm, rotary attention, SwiGLU MLPs with ``gate_proj``/``up_proj``/``down_proj``,
an untied LM head). The tools take any model whose layers are ``archlab.nn`` decoder layers
with a ``FeedForward`` or ``GLUFeedForward`` MLP.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.errors import ArchlabError
from archlab.interp.hooks import patch
from archlab.nn import Decoder, DecoderLayer, RMSNorm, RotaryEmbedding
from archlab.nn.mlp import FeedForward, GLUFeedForward
from archlab.registry import PaperSpec


class NeuronError(ArchlabError, ValueError):
    """A layer or neuron index out of range, or a model without an MLP the tools know."""


@dataclass(frozen=True)
class SwiGLUConfig:
    """A Llama-layout decoder LM.

    Attributes:
        vocab_size: tokens V.
        d_model: width D.
        n_layers: decoder layers.
        n_heads: attention heads.
        d_hidden: MLP up-projection neurons per layer.
        max_len: longest sequence.
    """

    vocab_size: int = 256
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_hidden: int = 512
    max_len: int = 64

    def __post_init__(self) -> None:
        if min(self.vocab_size, self.d_model, self.n_layers, self.n_heads, self.d_hidden) < 1:
            raise ValueError("every SwiGLUConfig size must be >= 1")


class SwiGLULM(nn.Module):
    """(B, T) token ids -> (B, T, V) next-token logits."""

    def __init__(self, cfg: SwiGLUConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        rotary = RotaryEmbedding(cfg.d_model // cfg.n_heads)
        layers = [
            DecoderLayer(cfg.d_model, cfg.n_heads, cfg.d_hidden, cross_attention=False,
                         activation="silu", glu=True, norm="rmsnorm", norm_first=True,
                         bias=False, rotary=rotary)
            for _ in range(cfg.n_layers)
        ]  # fmt: skip
        self.decoder = Decoder(layers, RMSNorm(cfg.d_model))
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.lm_head(self.decoder(self.embed(tokens)))


# ---------------------------------------------------------------------- the method
def _layers(model: nn.Module) -> list[nn.Module]:
    stacks = [m for m in model.modules() if isinstance(m, Decoder)]
    if not stacks:
        raise NeuronError(f"{type(model).__name__} has no archlab.nn Decoder")
    return list(stacks[0].layers)


def _mlp(model: nn.Module, layer: int) -> tuple[str, nn.Module]:
    layers = _layers(model)
    if not 0 <= layer < len(layers):
        raise NeuronError(f"layer {layer} out of range: the model has {len(layers)} layers")
    ffn = layers[layer].ffn
    if not isinstance(ffn, (FeedForward, GLUFeedForward)):
        raise NeuronError(f"layer {layer}'s MLP is a {type(ffn).__name__}; expected an archlab.nn "
                          "FeedForward or GLUFeedForward")  # fmt: skip
    return ("up_proj" if isinstance(ffn, GLUFeedForward) else "fc1"), ffn


def up_projection(model: nn.Module, layer: int) -> Tensor:
    """The up-projection weight rows of ``layer`` (n_neurons, D): ``up_proj`` of a gated MLP
    (the paper's), ``fc1`` of a plain one."""
    name, ffn = _mlp(model, layer)
    return getattr(ffn, name).weight


def head_parts(model: nn.Module) -> tuple[Tensor, Tensor]:
    """The final norm's scale ``g`` (D,) and the unembedding ``W_U`` (V, D) of a decoder LM
    with an ``lm_head`` (or tied ``wte`` embeddings)."""
    stack = next(m for m in model.modules() if isinstance(m, Decoder))
    if stack.norm is None or getattr(stack.norm, "weight", None) is None:
        raise NeuronError("the decoder has no final norm with a scale")
    if isinstance(getattr(model, "lm_head", None), nn.Linear):
        unembed = model.lm_head.weight
    elif isinstance(getattr(model, "wte", None), nn.Embedding):
        unembed = model.wte.weight  # tied (GPT-2)
    else:
        raise NeuronError(f"{type(model).__name__} has neither lm_head nor tied wte embeddings")
    return stack.norm.weight, unembed


@torch.no_grad()
def decode_neurons(model: nn.Module, layer: int) -> Tensor:
    """``softmax(W_U (g * w_i))`` for every up-projection neuron of ``layer``: (n_neurons, V)."""
    g, unembed = head_parts(model)
    return F.softmax((up_projection(model, layer) * g) @ unembed.T, dim=-1)


def top_tokens(probs: Tensor, k: int = 5) -> tuple[Tensor, Tensor]:
    """The ``k`` most probable tokens of each decoded neuron: (values, indices)."""
    return probs.topk(k, dim=-1)


def hidden_point(model: nn.Module, layer: int) -> str:
    """The hook point of ``layer``'s hidden units (the down-projection's input)."""
    _, ffn = _mlp(model, layer)
    path = next(n for n, m in model.named_modules() if m is ffn)
    out = "down_proj" if isinstance(ffn, GLUFeedForward) else "fc2"
    return f"{path}.{out}:input"


@contextmanager
def clamp_neuron(model: nn.Module, layer: int, neuron: int | Tensor, value: float) -> Iterator:
    """Clamp hidden unit(s) ``neuron`` of ``layer`` to ``value`` at every position during the
    body (the paper's causal check)."""
    n = up_projection(model, layer).shape[0]
    idx = torch.as_tensor(neuron).flatten()
    if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise NeuronError(f"neuron index out of range: layer {layer} has {n} neurons")

    def clamp(h: Tensor) -> Tensor:
        h = h.clone()
        h[..., idx] = value
        return h

    with patch(model, {hidden_point(model, layer): clamp}):
        yield


def top1_agreement(a: nn.Module, b: nn.Module, layer: int) -> float:
    """The fraction of ``layer``'s neurons whose top-1 decoded token is the same in ``a`` and
    ``b`` (a pretrained model and its fine-tuned copy)."""
    ta, tb = decode_neurons(a, layer).argmax(-1), decode_neurons(b, layer).argmax(-1)
    return float((ta == tb).float().mean())


VARIANTS = {
    "tiny": SwiGLUConfig(
        vocab_size=32, d_model=16, n_layers=1, n_heads=2, d_hidden=32, max_len=16
    ),  # fmt: skip
    "base": SwiGLUConfig(),
}

SPEC = PaperSpec(
    slug="lmhead_neurons",
    family="interp",
    title="Decoding specialised feature neurons in LLMs with the final projection layer",
    arxiv="2501.02688",
    claim=(
        "Decoding MLP up-projection weights through the final norm and the LM head labels "
        "concept neurons by their top token; clamping such a neuron raises its token's "
        "probability far more than clamping a random neuron of the same layer; and most "
        "neurons keep their top token after fine-tuning."
    ),
    config=SwiGLUConfig,
    build=SwiGLULM,
    variants=VARIANTS,
    example_input=lambda model, batch_size: (
        torch.randint(0, model.cfg.vocab_size, (batch_size, 8)),
    ),
    fidelity="simplified",
    experiment="archlab.papers.interp.lmhead_neurons.experiment",
)
