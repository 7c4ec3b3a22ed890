"""The paper's seq2seq baseline: attention LSTM seq2seq fed the chosen point's coordinates.

Vinyals et al. 2015 compare Ptr-Net with a sequence-to-sequence model with attention whose
output dictionary is a fixed set of positions; like Ptr-Net, its decoder reads at step ``i`` the
input vector ``P_{C_{i-1}}`` of the element output at the previous step (paper Fig. 1a). The
shared ``archlab.baselines.lstm_seq2seq.LSTMSeq2Seq`` feeds a learned embedding of the previous
output *symbol* instead; this subclass keeps its encoder, attention, output layer and decoding
rules and changes only what the decoder reads: the linear embedding (the same ``embed`` that the
encoder reads) of the previous chosen element's coordinates, and a learned start vector at step
0 (as Ptr-Net). The symbol embedding is removed.
"""

from __future__ import annotations

import torch
from torch import nn

from archlab.baselines.lstm_seq2seq import Decoded, LSTMSeq2Seq, LSTMSeq2SeqConfig, allowed_symbols
from archlab.baselines.lstm_seq2seq.model import NEG


class CoordFedSeq2Seq(LSTMSeq2Seq):
    """Attention seq2seq over a fixed position vocabulary whose decoder reads the coordinates
    of the previously output element (the paper's baseline).

    ``forward(inputs, lengths, targets)`` is teacher-forced; ``decode`` is greedy, restricted
    to valid symbols exactly as ``LSTMSeq2Seq.decode``.
    """

    def __init__(self, cfg: LSTMSeq2SeqConfig):
        super().__init__(cfg)
        del self.symbol_embed
        self.start = nn.Parameter(torch.empty(cfg.d_embed))  # decoder input at step 0
        self.reset_parameters()

    def _previous(self, embedded: torch.Tensor, symbols: torch.Tensor) -> torch.Tensor:
        """Decoder inputs: embedded inputs (B, n, E), previous symbols (B, T) -> (B, T, E).

        Symbol ``j >= 1`` names input position ``j - 1``; the end token and padding (after the
        end, ignored by the loss) read position 0.
        """
        index = (symbols - 1).clamp(min=0, max=embedded.shape[1] - 1)  # (B, T)
        return embedded.gather(1, index[..., None].expand(-1, -1, embedded.shape[-1]))

    def forward(
        self, inputs: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced log-probabilities (B, T, K), as ``LSTMSeq2Seq.forward``."""
        if int(targets.max()) >= self.n_symbols:
            raise ValueError(
                f"target names position {int(targets.max()) - 1}, outside this model's fixed "
                f"vocabulary of {self.cfg.n_positions} positions"
            )
        memory, mask, state = self.encode(inputs, lengths)  # (B, n, D), (B, n)
        embedded = self.embed(inputs)  # (B, n, E)
        b, t_out = targets.shape
        prev = self._previous(embedded, targets[:, :-1].clamp(min=0))  # (B, T-1, E)
        dec_in = torch.cat([self.start.expand(b, 1, -1), prev], dim=1)  # (B, T, E)
        dec_out, _ = self.decoder(dec_in, state)  # (B, T, D)
        scores = self._logits(memory, mask, dec_out)  # (B, T, K)

        picked = nn.functional.one_hot(targets.clamp(min=0), self.n_symbols).bool()  # (B, T, K)
        picked[..., 0] = False
        chosen = (picked.cumsum(1) - picked.long()) > 0  # (B, T, K) output before each step
        is_first = (torch.arange(t_out, device=targets.device)[None] == 0).expand(b, -1)
        allowed = allowed_symbols(
            self._valid(lengths)[:, None].expand_as(chosen),
            chosen,
            is_first,
            self.cfg.mask_chosen,
            self.cfg.permutation_output,
            chosen.sum(-1) >= lengths[:, None],
        )
        return scores.masked_fill(~allowed, NEG).log_softmax(-1)  # (B, T, K)

    @torch.no_grad()
    def decode(
        self, inputs: torch.Tensor, lengths: torch.Tensor, max_len: int | None = None
    ) -> Decoded:
        """Greedy decoding restricted to valid symbols, feeding back the chosen coordinates."""
        memory, mask, state = self.encode(inputs, lengths)
        embedded = self.embed(inputs)  # (B, n, E)
        b, n = mask.shape
        if max_len is None:
            max_len = n + 1 if self.cfg.mask_chosen else 2 * n + 1
        valid = self._valid(lengths)  # (B, K)
        chosen = torch.zeros_like(valid)
        done = torch.zeros(b, dtype=torch.bool, device=valid.device)
        log_prob = torch.zeros(b, device=valid.device)
        x = self.start.expand(b, 1, -1)  # (B, 1, E)
        tokens = []
        for t in range(max_len):
            d, state = self.decoder(x, state)  # (B, 1, D)
            scores = self._logits(memory, mask, d)[:, 0]  # (B, K)
            allowed = allowed_symbols(
                valid,
                chosen,
                t == 0,
                self.cfg.mask_chosen,
                self.cfg.permutation_output,
                chosen.sum(-1) >= lengths,
            )
            logp = scores.masked_fill(~allowed, float("-inf")).log_softmax(-1)  # (B, K)
            pick = logp.argmax(-1)  # (B,)
            log_prob = log_prob + torch.where(done, 0.0, logp.gather(1, pick[:, None])[:, 0])
            pick = pick.masked_fill(done, 0)
            tokens.append(pick.masked_fill(done, -1))
            one_hot = nn.functional.one_hot(pick, self.n_symbols).bool()
            chosen = chosen | (one_hot & (pick > 0)[:, None])
            done = done | (pick == 0)
            if bool(done.all()):
                break
            x = self._previous(embedded, pick[:, None])  # (B, 1, E)
        tokens = torch.stack(tokens, 1)  # (B, T)
        ended = (tokens <= 0).long().cumsum(1) > 0
        return Decoded(torch.where(ended, -1, tokens - 1), (~ended).sum(1), log_prob)
