"""DrBERT / BPDec (Liang & Liang, 2024): see ``model.py`` and README.md."""

from archlab.papers.language.drbert.model import (
    SPEC,
    VARIANTS,
    BertClassifier,
    DrBert,
    DrBertConfig,
    DrBertOutput,
    build,
    draw_alpha,
    gua_key_masks,
    mix_outputs,
)

__all__ = [
    "SPEC",
    "VARIANTS",
    "BertClassifier",
    "DrBert",
    "DrBertConfig",
    "DrBertOutput",
    "build",
    "draw_alpha",
    "gua_key_masks",
    "mix_outputs",
]
