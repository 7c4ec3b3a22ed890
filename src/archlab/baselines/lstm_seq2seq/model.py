"""LSTM encoder-decoder with content attention over a FIXED output vocabulary (seq2seq baseline).

Sutskever, Vinyals, Le 2014 (arXiv 1409.3215) with the additive attention of Bahdanau, Cho,
Bengio 2014 (arXiv 1409.0473) and Luong et al.'s attentional output layer: the baseline that
Pointer Networks (arXiv 1506.03134) compares against. The decoder reads, per ``feed``, either a
learned embedding of the previous output *symbol* (``"symbol"``, the usual seq2seq) or, as in
Pointer Networks' Fig. 1a, the input embedding of the element output at the previous step
(``"coordinates"``; a learned start vector at step 0); at step ``i`` attention blends the encoder
states into a context
``c_i = sum_j a_ij e_j`` with ``a_i = softmax_j(v^T tanh(W1 e_j + W2 d_i))``, and a softmax over a
fixed vocabulary of ``K = n_positions + 1`` symbols gives the output: symbol 0 is the end token
and symbol ``j >= 1`` means "input position ``j - 1``", the same target convention as Ptr-Net.
It cannot name a position ``>= n_positions``, whatever the input length.

For a fair comparison, decoding applies the same validity rules as Ptr-Net: positions past the
input length and (with ``mask_chosen``) positions already output are excluded, the end token is
never first, and with ``permutation_output`` it is only valid once every input was output (or
when nothing else is left, which happens when ``n > n_positions``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from archlab.registry import PaperSpec

NEG = -1e9  # score of invalid symbols in teacher-forced log-probs (finite)
FEEDS = ("symbol", "coordinates")  # what the decoder reads (LSTMSeq2SeqConfig.feed)


@dataclass(frozen=True)
class LSTMSeq2SeqConfig:
    """Hyper-parameters of the attention seq2seq baseline.

    Attributes:
        d_input: size of one input element (1 for numbers, 2 for planar points).
        d_embed: width of the input embedding and of the output-symbol embedding.
        d_hidden: LSTM width and attention width.
        n_layers: stacked LSTM layers in the encoder and in the decoder.
        n_positions: size of the fixed position vocabulary (outputs name positions
            ``0..n_positions-1``, plus the end token).
        feed: what the decoder reads at each step: ``"symbol"`` (a learned embedding of the
            previous output symbol) or ``"coordinates"`` (the input embedding of the element
            the previous symbol names, and a learned start vector at step 0).
        mask_chosen: positions already output cannot be output again.
        permutation_output: the end token is valid only once every input was output.
        init_range: parameters start uniform in ``[-init_range, init_range]``.
    """

    d_input: int = 2
    d_embed: int = 256
    d_hidden: int = 256
    n_layers: int = 1
    n_positions: int = 50
    mask_chosen: bool = True
    permutation_output: bool = False
    init_range: float = 0.08
    feed: str = "symbol"

    def __post_init__(self) -> None:
        if self.feed not in FEEDS:
            raise ValueError(f"feed must be one of {FEEDS}, got {self.feed!r}")
        for name in ("d_input", "d_embed", "d_hidden", "n_layers", "n_positions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.init_range <= 0:
            raise ValueError(f"init_range must be > 0, got {self.init_range}")
        if self.permutation_output and not self.mask_chosen:
            raise ValueError("permutation_output=True needs mask_chosen=True")


class Decoded(NamedTuple):
    """Output of ``decode``: indices (B, T) with -1 after the end, lengths (B,), log_prob (B,)."""

    indices: torch.Tensor
    lengths: torch.Tensor
    log_prob: torch.Tensor


def allowed_symbols(
    valid: torch.Tensor,
    chosen: torch.Tensor,
    is_first: torch.Tensor | bool,
    mask_chosen: bool,
    permutation_output: bool,
    all_chosen: torch.Tensor,
) -> torch.Tensor:
    """Which output symbols may come next (symbol 0 is the end token).

    Args:
        valid: (..., K) symbols naming a real input position (and the end token).
        chosen: (..., K) symbols already output (symbol 0 is never marked).
        is_first: whether this is the first output step, broadcastable to ``valid[..., 0]``.
        mask_chosen: exclude symbols already output.
        permutation_output: allow the end token only when ``all_chosen``.
        all_chosen: (...) whether every input position has been output.

    Returns:
        (..., K) bool; at least one symbol is allowed (the end token as a last resort).
    """
    allowed = valid & ~chosen if mask_chosen else valid.clone()
    end_ok = ~torch.as_tensor(is_first, device=valid.device).expand_as(allowed[..., 0])
    if permutation_output:
        end_ok = end_ok & all_chosen
    allowed[..., 0] = end_ok | ~allowed[..., 1:].any(-1)
    return allowed


class AdditiveAttention(nn.Module):
    """Bahdanau attention: weights ``softmax_j(v^T tanh(W1 e_j + W2 d_i))`` blend ``e_j``."""

    def __init__(self, d_hidden: int):
        super().__init__()
        self.W1 = nn.Linear(d_hidden, d_hidden, bias=False)
        self.W2 = nn.Linear(d_hidden, d_hidden, bias=False)
        self.v = nn.Linear(d_hidden, 1, bias=False)

    def forward(
        self, memory: torch.Tensor, queries: torch.Tensor, memory_mask: torch.Tensor
    ) -> torch.Tensor:
        """Context vectors: memory (B, n, D), queries (B, T, D), mask (B, n) -> (B, T, D)."""
        hidden = torch.tanh(self.W1(memory)[:, None] + self.W2(queries)[:, :, None])  # (B,T,n,D)
        scores = self.v(hidden).squeeze(-1)  # (B, T, n)
        scores = scores.masked_fill(~memory_mask[:, None], float("-inf"))
        return scores.softmax(-1) @ memory  # (B, T, D)


class LSTMSeq2Seq(nn.Module):
    """Attention seq2seq whose outputs are symbols from a fixed position vocabulary.

    ``forward(inputs, lengths, targets)`` is teacher-forced; ``decode`` is greedy.
    """

    def __init__(self, cfg: LSTMSeq2SeqConfig):
        super().__init__()
        self.cfg = cfg
        self.n_symbols = cfg.n_positions + 1  # K: end token + positions
        self.embed = nn.Linear(cfg.d_input, cfg.d_embed)
        if cfg.feed == "symbol":
            self.symbol_embed = nn.Embedding(self.n_symbols + 1, cfg.d_embed)  # + start symbol
        else:
            self.start = nn.Parameter(torch.empty(cfg.d_embed))  # decoder input at step 0
        self.encoder = nn.LSTM(cfg.d_embed, cfg.d_hidden, cfg.n_layers, batch_first=True)
        self.decoder = nn.LSTM(cfg.d_embed, cfg.d_hidden, cfg.n_layers, batch_first=True)
        self.attention = AdditiveAttention(cfg.d_hidden)
        self.combine = nn.Linear(2 * cfg.d_hidden, cfg.d_hidden)  # W_c [d_i; c_i]
        self.out = nn.Linear(cfg.d_hidden, self.n_symbols)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Parameters uniform in ``[-init_range, init_range]``, as Ptr-Net's; the input
        embedding keeps PyTorch's default init (as in ``archlab.papers...pointer_net``)."""
        for name, p in self.named_parameters():
            if not name.startswith("embed."):
                nn.init.uniform_(p, -self.cfg.init_range, self.cfg.init_range)
        self.embed.reset_parameters()

    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor):
        """Encoder states (B, n, D), their mask (B, n) and the final LSTM state (L, B, D) x 2."""
        if inputs.dim() != 3 or inputs.shape[-1] != self.cfg.d_input:
            raise ValueError(
                f"inputs must be (B, n, {self.cfg.d_input}), got {tuple(inputs.shape)}"
            )
        x = self.embed(inputs)  # (B, n, E)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B,n,D)
        mask = torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]  # (B, n)
        return memory, mask, state

    def _read(self, inputs: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Decoder inputs (B, T, E) for previous symbols (B, T), where symbol ``n_symbols``
        is the start: their embedding (``feed="symbol"``), or the input embedding of the element
        that symbol ``j >= 1`` names (position ``j - 1``; the end token reads position 0, only
        ever after the end, where the loss ignores it) and the start vector
        (``feed="coordinates"``)."""
        if self.cfg.feed == "symbol":
            return self.symbol_embed(previous)
        embedded = self.embed(inputs)  # (B, n, E)
        index = (previous - 1).clamp(min=0, max=embedded.shape[1] - 1)  # (B, T)
        read = embedded.gather(1, index[..., None].expand(-1, -1, embedded.shape[-1]))
        is_start = (previous == self.n_symbols)[..., None]  # (B, T, 1)
        return torch.where(is_start, self.start.to(read.dtype), read)  # (B, T, E)

    def _valid(self, lengths: torch.Tensor) -> torch.Tensor:
        """Symbols naming a real position, plus the end token: (B,) -> (B, K)."""
        return torch.arange(self.n_symbols, device=lengths.device)[None] <= lengths[:, None]

    def _logits(self, memory, mask, dec_out):
        """Output scores over the vocabulary: decoder states (B, T, D) -> (B, T, K)."""
        context = self.attention(memory, dec_out, mask)  # (B, T, D)
        return self.out(torch.tanh(self.combine(torch.cat([dec_out, context], -1))))

    def forward(
        self, inputs: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced log-probabilities.

        Args:
            inputs: (B, n, d_input) padded input elements.
            lengths: (B,) number of real elements.
            targets: (B, T) symbols (0 = end, j = position j-1; negative = padding); every
                symbol must be ``<= n_positions``.

        Returns:
            (B, T, K) log-probabilities over the ``K = n_positions + 1`` symbols.
        """
        if int(targets.max()) >= self.n_symbols:
            raise ValueError(
                f"target names position {int(targets.max()) - 1}, outside this model's fixed "
                f"vocabulary of {self.cfg.n_positions} positions"
            )
        memory, mask, state = self.encode(inputs, lengths)  # (B, n, D), (B, n)
        b, t_out = targets.shape
        start = torch.full((b, 1), self.n_symbols, dtype=torch.long, device=targets.device)
        prev = torch.cat([start, targets[:, :-1].clamp(min=0)], dim=1)  # (B, T)
        dec_out, _ = self.decoder(self._read(inputs, prev), state)  # (B, T, D)
        scores = self._logits(memory, mask, dec_out)  # (B, T, K)

        picked = nn.functional.one_hot(targets.clamp(min=0), self.n_symbols).bool()  # (B, T, K)
        picked[..., 0] = False
        chosen = (picked.cumsum(1) - picked.long()) > 0  # (B, T, K) output before each step
        n_chosen = chosen.sum(-1)  # (B, T)
        is_first = (torch.arange(t_out, device=targets.device)[None] == 0).expand(b, -1)
        allowed = allowed_symbols(
            self._valid(lengths)[:, None].expand_as(chosen),
            chosen,
            is_first,
            self.cfg.mask_chosen,
            self.cfg.permutation_output,
            n_chosen >= lengths[:, None],
        )
        return scores.masked_fill(~allowed, NEG).log_softmax(-1)  # (B, T, K)

    @torch.no_grad()
    def decode(
        self, inputs: torch.Tensor, lengths: torch.Tensor, max_len: int | None = None
    ) -> Decoded:
        """Greedy decoding restricted to valid symbols.

        Args:
            inputs: (B, n, d_input) padded input elements.
            lengths: (B,) number of real elements.
            max_len: most output steps, end token included (default ``n + 1``, or ``2n + 1``
                without ``mask_chosen``).

        Returns:
            ``Decoded(indices (B, T), lengths (B,), log_prob (B,))``.
        """
        memory, mask, state = self.encode(inputs, lengths)
        b, n = mask.shape
        if max_len is None:
            max_len = n + 1 if self.cfg.mask_chosen else 2 * n + 1
        valid = self._valid(lengths)  # (B, K)
        chosen = torch.zeros_like(valid)
        done = torch.zeros(b, dtype=torch.bool, device=valid.device)
        log_prob = torch.zeros(b, device=valid.device)
        prev = torch.full((b, 1), self.n_symbols, dtype=torch.long, device=valid.device)
        tokens = []
        for t in range(max_len):
            d, state = self.decoder(self._read(inputs, prev), state)  # (B, 1, D)
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
            prev = pick[:, None]
        tokens = torch.stack(tokens, 1)  # (B, T)
        ended = (tokens <= 0).long().cumsum(1) > 0
        return Decoded(torch.where(ended, -1, tokens - 1), (~ended).sum(1), log_prob)


def _example_input(model: LSTMSeq2Seq, batch_size: int) -> tuple[torch.Tensor, ...]:
    """Positional ``forward`` args: ``n = 6`` random elements and a random permutation target."""
    g = torch.Generator().manual_seed(0)
    n = min(6, model.cfg.n_positions)
    inputs = torch.rand(batch_size, n, model.cfg.d_input, generator=g)  # (B, n, d_input)
    lengths = torch.full((batch_size,), n, dtype=torch.long)  # (B,)
    perm = torch.stack([torch.randperm(n, generator=g) for _ in range(batch_size)]) + 1
    targets = torch.cat([perm, torch.zeros(batch_size, 1, dtype=torch.long)], dim=1)  # (B, n+1)
    return inputs, lengths, targets


VARIANTS = {
    "tiny": LSTMSeq2SeqConfig(d_embed=16, d_hidden=32, n_positions=10),
    "base": LSTMSeq2SeqConfig(),
}

SPEC = PaperSpec(
    slug="lstm_seq2seq",
    family="language",
    title="LSTM encoder-decoder with additive attention (fixed output vocabulary)",
    arxiv="1409.0473",
    claim=(
        "Baseline: an attention seq2seq model emits symbols from a fixed vocabulary, so it "
        "cannot name input positions beyond its vocabulary size."
    ),
    config=LSTMSeq2SeqConfig,
    build=LSTMSeq2Seq,
    variants=VARIANTS,
    example_input=_example_input,
    capabilities=frozenset({"seq2seq"}),
    fidelity="faithful",
    experiment=None,
)
