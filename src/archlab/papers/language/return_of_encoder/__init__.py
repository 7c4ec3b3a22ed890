"""Return of the Encoder (Elfeki, Liu, Voegele, 2025): see ``model.py`` and README.md."""

from archlab.papers.language.return_of_encoder.data import (
    KeywordTask,
    KeywordTaskConfig,
    causal_loss,
    seq2seq_loss,
)
from archlab.papers.language.return_of_encoder.model import (
    SPEC,
    DecoderOnlyLM,
    EncoderDecoderLM,
    MuConfig,
    build,
    count_parameters,
    distillation_loss,
    kd_objective,
    matched_decoder_only,
    n_parameters,
)

__all__ = [
    "SPEC",
    "DecoderOnlyLM",
    "EncoderDecoderLM",
    "KeywordTask",
    "KeywordTaskConfig",
    "MuConfig",
    "build",
    "causal_loss",
    "count_parameters",
    "distillation_loss",
    "kd_objective",
    "matched_decoder_only",
    "n_parameters",
    "seq2seq_loss",
]
