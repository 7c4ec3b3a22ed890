"""LM-head neuron decoding (arXiv 2501.02688): label MLP neurons through the unembedding,
check them by clamping, compare labels across fine-tuning."""

from archlab.papers.interp.lmhead_neurons.model import (
    SPEC,
    NeuronError,
    SwiGLUConfig,
    SwiGLULM,
    clamp_neuron,
    decode_neurons,
    head_parts,
    hidden_point,
    top1_agreement,
    top_tokens,
    up_projection,
)

__all__ = [
    "SPEC",
    "NeuronError",
    "SwiGLUConfig",
    "SwiGLULM",
    "clamp_neuron",
    "decode_neurons",
    "head_parts",
    "hidden_point",
    "top1_agreement",
    "top_tokens",
    "up_projection",
]
