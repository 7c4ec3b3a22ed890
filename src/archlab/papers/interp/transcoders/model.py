"""Transcoders Find Interpretable LLM Feature Circuits.

Jacob Dunefsky, Philippe Chlenski, Neel Nanda, NeurIPS 2024, arXiv 2406.11944. Official code:
github.com/jacobdunefsky/transcoder_circuits. Paper card and deviations: README.md beside this
file.

A transcoder is a wide, sparsely activating stand-in for one MLP sublayer: it reads the MLP's
input ``x`` and predicts the MLP's output, ``z = ReLU(W_enc^T x + b_enc)``,
``y_hat = W_dec^T z + b_dec``, trained on ``|y_hat - MLP(x)|^2 + lambda |z|_1``. The library's
``archlab.interp.SparseDictionary`` with ``d_out`` set is that model (and loads into / from
``sae_lens.Transcoder``). What this paper adds is circuit analysis through the MLP:

- ``weight_attribution``: the input-independent attribution of an upstream feature ``i`` (its
  decoder vector ``f_dec,i``, the direction it writes) to transcoder latent ``j``:
  ``f_dec,i . f_enc,j`` (a column of ``W_enc``);
- ``input_attribution``: the input-dependent one, ``a_i(x) (f_dec,i . f_enc,j)``: the upstream
  feature's activation on this input times the weight term (exact, because the transcoder's
  pre-activation is linear in its input).
"""

from __future__ import annotations

import torch
from torch import Tensor

from archlab.interp.dictionary import DictionaryConfig, DictionaryError, SparseDictionary
from archlab.registry import PaperSpec


def weight_attribution(upstream_decoder: Tensor, transcoder: SparseDictionary) -> Tensor:
    """``f_dec,i . f_enc,j`` for every upstream feature ``i`` (rows of ``upstream_decoder``,
    (n_up, d_in)) and transcoder latent ``j``: (n_up, d_sae)."""
    if upstream_decoder.ndim != 2 or upstream_decoder.shape[1] != transcoder.cfg.d_in:
        raise DictionaryError(
            f"upstream_decoder must be (n_features, {transcoder.cfg.d_in}) (the transcoder's "
            f"input width), got {tuple(upstream_decoder.shape)}"
        )
    return upstream_decoder @ transcoder.W_enc


def input_attribution(
    upstream_acts: Tensor, upstream_decoder: Tensor, transcoder: SparseDictionary
) -> Tensor:
    """``a_i(x) (f_dec,i . f_enc,j)``: (N, n_up) activations -> (N, n_up, d_sae)."""
    w = weight_attribution(upstream_decoder, transcoder)
    if upstream_acts.shape[-1] != w.shape[0]:
        raise DictionaryError(f"upstream_acts has {upstream_acts.shape[-1]} features, the "
                              f"decoder {w.shape[0]}")  # fmt: skip
    return upstream_acts[..., :, None] * w


def build(cfg: DictionaryConfig) -> SparseDictionary:
    if not cfg.transcoder:
        raise DictionaryError("a transcoder needs d_out (the MLP's output width)")
    return SparseDictionary(cfg)


VARIANTS = {
    "tiny": DictionaryConfig(d_in=8, d_sae=32, d_out=8),
    # the experiment's: d = 64 residual width, 512 latents
    "base": DictionaryConfig(d_in=64, d_sae=512, d_out=64, l1_coefficient=3e-3),
    # GPT-2 small's MLP sublayers with the paper's 24,576 latents
    "gpt2": DictionaryConfig(d_in=768, d_sae=24576, d_out=768),
}

SPEC = PaperSpec(
    slug="transcoders",
    family="interp",
    title="Transcoders Find Interpretable LLM Feature Circuits",
    arxiv="2406.11944",
    claim=(
        "A transcoder (a sparse, wide replacement of an MLP sublayer trained to predict its "
        "output from its input) reconstructs as faithfully as an SAE on the MLP's output at "
        "matched sparsity, and its weights give input-independent attributions through the MLP "
        "that recover the feature-to-feature edges the MLP computes."
    ),
    config=DictionaryConfig,
    build=build,
    variants=VARIANTS,
    example_input=lambda model, batch_size: (torch.randn(batch_size, model.cfg.d_in),),
    fidelity="simplified",
    experiment="archlab.papers.interp.transcoders.experiment",
)
