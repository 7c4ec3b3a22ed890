"""Attention LSTM seq2seq baseline with a fixed position vocabulary: see ``model.py``."""

from archlab.baselines.lstm_seq2seq.model import (
    SPEC,
    AdditiveAttention,
    Decoded,
    LSTMSeq2Seq,
    LSTMSeq2SeqConfig,
    allowed_symbols,
)

__all__ = [
    "SPEC",
    "AdditiveAttention",
    "Decoded",
    "LSTMSeq2Seq",
    "LSTMSeq2SeqConfig",
    "allowed_symbols",
]
