"""Pointer Networks — Vinyals, Fortunato, Jaitly, 2015 (arXiv 1506.03134).

An LSTM encoder reads the input elements (scalars or 2-D points, linearly embedded); an LSTM
decoder is fed the element chosen at the previous step, and at step ``i`` the additive attention
scores ``u^i_j = v^T tanh(W1 e_j + W2 d_i)`` over the encoder states ``e_j`` are themselves the
output distribution ``p(C_i | C_<i, P) = softmax_j(u^i)``: the output dictionary is the input.

Output positions: position 0 is a learned "end" element that the encoder reads before the inputs
(the paper's end-of-sequence symbol), and position ``j >= 1`` is input element ``j - 1``; a batch
of variable ``n`` is padded and masked by ``lengths``. Decoding (greedy and beam search) only
considers valid outputs: padding is never chosen, already chosen elements are masked when
``mask_chosen``, the end token is never the first output, and with ``permutation_output`` the end
token is only valid once every element has been chosen (sorting). Deviations from the paper are
listed in this folder's README.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from archlab.registry import PaperSpec, Task

NEG = -1e9  # score of invalid positions in teacher-forced log-probs (finite, so sums stay finite)


@dataclass(frozen=True)
class PointerNetConfig:
    """Ptr-Net hyper-parameters (paper Sections 2.3 and 4).

    Attributes:
        d_input: size of one input element (1 for sorting numbers, 2 for planar points).
        d_embed: width of the linear embedding of an input element (fed to both LSTMs).
        d_hidden: LSTM width, and width of the pointer attention's ``W1``, ``W2``, ``v``.
        n_layers: stacked LSTM layers in the encoder and in the decoder.
        mask_chosen: positions already pointed to cannot be pointed to again.
        permutation_output: the output is a permutation of the input (sorting): the end token is
            valid only once every element has been chosen. Needs ``mask_chosen``.
        init_range: parameters start uniform in ``[-init_range, init_range]`` (paper: 0.08); the
            input embedding, which the paper does not have, keeps PyTorch's default init.
    """

    d_input: int = 2
    d_embed: int = 256
    d_hidden: int = 256
    n_layers: int = 1
    mask_chosen: bool = True
    permutation_output: bool = False
    init_range: float = 0.08

    def __post_init__(self) -> None:
        for name in ("d_input", "d_embed", "d_hidden", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.init_range <= 0:
            raise ValueError(f"init_range must be > 0, got {self.init_range}")
        if self.permutation_output and not self.mask_chosen:
            raise ValueError("permutation_output=True needs mask_chosen=True")


class Decoded(NamedTuple):
    """Output of ``decode``.

    Attributes:
        indices: (B, T) chosen input indices ``0..n-1`` in output order, ``-1`` after the end.
        lengths: (B,) number of chosen elements before the end token.
        log_prob: (B,) log-probability of the whole output sequence (end token included).
    """

    indices: torch.Tensor
    lengths: torch.Tensor
    log_prob: torch.Tensor


def allowed_positions(
    valid: torch.Tensor,
    chosen: torch.Tensor,
    is_first: torch.Tensor | bool,
    mask_chosen: bool,
    permutation_output: bool,
) -> torch.Tensor:
    """Which output positions may be chosen next (position 0 is the end token).

    Args:
        valid: (..., N) real positions (the end token and the ``n`` inputs, not padding).
        chosen: (..., N) positions already chosen (position 0 is never marked).
        is_first: whether this is the first output step, broadcastable to ``valid[..., 0]``.
        mask_chosen: exclude chosen positions.
        permutation_output: allow the end token only when every input has been chosen.

    Returns:
        (..., N) bool; at least one position is allowed (the end token as a last resort).
    """
    allowed = valid & ~chosen if mask_chosen else valid.clone()  # (..., N)
    end_ok = ~torch.as_tensor(is_first, device=valid.device).expand_as(allowed[..., 0])
    if permutation_output:
        end_ok = end_ok & (chosen | ~valid)[..., 1:].all(-1)
    none_left = ~allowed[..., 1:].any(-1)
    allowed[..., 0] = end_ok | none_left
    return allowed


class PointerAttention(nn.Module):
    """Additive attention used as a pointer: ``u_j = v^T tanh(W1 e_j + W2 d_i)`` (paper eq. 3).

    Args:
        d_hidden: width of the encoder states ``e_j``, the decoder states ``d_i`` and ``W1``/``W2``.
    """

    def __init__(self, d_hidden: int):
        super().__init__()
        self.W1 = nn.Linear(d_hidden, d_hidden, bias=False)
        self.W2 = nn.Linear(d_hidden, d_hidden, bias=False)
        self.v = nn.Linear(d_hidden, 1, bias=False)

    def keys(self, memory: torch.Tensor) -> torch.Tensor:
        """``W1 e_j``, computed once per input: (B, N, D) -> (B, N, D)."""
        return self.W1(memory)

    def forward(self, keys: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Scores ``u``: keys (B, N, D) from ``keys``, decoder states (B, T, D) -> (B, T, N)."""
        hidden = torch.tanh(keys[:, None] + self.W2(queries)[:, :, None])  # (B, T, N, D)
        return self.v(hidden).squeeze(-1)  # (B, T, N)


class PointerNet(nn.Module):
    """Ptr-Net: LSTM encoder, LSTM decoder, pointer attention over the input positions.

    ``forward(inputs, lengths, targets)`` is the teacher-forced training pass; ``decode`` is
    greedy or beam-search inference restricted to valid outputs.
    """

    def __init__(self, cfg: PointerNetConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Linear(cfg.d_input, cfg.d_embed)
        self.end = nn.Parameter(torch.empty(cfg.d_embed))  # input position 0: the end token
        self.start = nn.Parameter(torch.empty(cfg.d_embed))  # decoder input at step 0
        self.encoder = nn.LSTM(cfg.d_embed, cfg.d_hidden, cfg.n_layers, batch_first=True)
        self.decoder = nn.LSTM(cfg.d_embed, cfg.d_hidden, cfg.n_layers, batch_first=True)
        self.attention = PointerAttention(cfg.d_hidden)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Paper parameters uniform in ``[-init_range, init_range]`` (paper Section 4).

        The input embedding is not in the paper (its LSTMs read the raw coordinates); it keeps
        PyTorch's default init, so embedded points have about the scale of the raw inputs. With
        it also at +-0.08 the embedded points are ~10x smaller, the pointer's ``tanh`` stays
        linear, the query ``W2 d_i`` cancels in the softmax, and training stalls on a plateau.
        """
        for name, p in self.named_parameters():
            if not name.startswith("embed."):
                nn.init.uniform_(p, -self.cfg.init_range, self.cfg.init_range)
        self.embed.reset_parameters()

    # ------------------------------------------------------------------ encoder
    def encode(self, inputs: torch.Tensor, lengths: torch.Tensor):
        """Run the encoder over ``[end, x_1..x_n]``.

        Args:
            inputs: (B, n, d_input), padded past ``lengths``.
            lengths: (B,) number of real elements.

        Returns:
            ``(memory (B, N, D), embedded (B, N, d_embed), state)`` with ``N = n + 1`` positions
            (position 0 is the end token) and ``state`` the LSTM ``(h, c)``, each (L, B, D), at
            each example's last real position.
        """
        if inputs.dim() != 3 or inputs.shape[-1] != self.cfg.d_input:
            raise ValueError(
                f"inputs must be (B, n, {self.cfg.d_input}), got {tuple(inputs.shape)}"
            )
        b = inputs.shape[0]
        x = self.embed(inputs)  # (B, n, E)
        x = torch.cat([self.end.expand(b, 1, -1), x], dim=1)  # (B, N, E)
        packed = pack_padded_sequence(
            x, (lengths + 1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, state = self.encoder(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B,N,D)
        return memory, x, state

    def _valid(self, lengths: torch.Tensor, n_positions: int) -> torch.Tensor:
        """Real positions (end token + inputs): (B,) -> (B, N)."""
        return torch.arange(n_positions, device=lengths.device)[None] <= lengths[:, None]

    # ------------------------------------------------------------------ training pass
    def forward(
        self, inputs: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced log-probabilities of every output step.

        Args:
            inputs: (B, n, d_input) padded input elements.
            lengths: (B,) number of real elements per example.
            targets: (B, T) pointer positions (0 = end, j = input j-1; negative = padding).

        Returns:
            (B, T, N) log-probabilities over the ``N = n + 1`` positions; invalid positions
            (padding, chosen ones, a too-early end) get about ``-1e9``.
        """
        memory, embedded, state = self.encode(inputs, lengths)  # (B, N, D), (B, N, E)
        b, n_pos, _ = memory.shape
        prev = targets[:, :-1].clamp(min=0)  # (B, T-1)
        prev_embedded = embedded.gather(1, prev[..., None].expand(-1, -1, embedded.shape[-1]))
        dec_in = torch.cat([self.start.expand(b, 1, -1), prev_embedded], dim=1)  # (B, T, E)
        dec_out, _ = self.decoder(dec_in, state)  # (B, T, D)
        scores = self.attention(self.attention.keys(memory), dec_out)  # (B, T, N)

        picked = nn.functional.one_hot(targets.clamp(min=0), n_pos).bool()  # (B, T, N)
        picked[..., 0] = False
        chosen = (picked.cumsum(1) - picked.long()) > 0  # (B, T, N) chosen before each step
        is_first = torch.arange(targets.shape[1], device=targets.device)[None] == 0  # (1, T)
        valid = self._valid(lengths, n_pos)[:, None]  # (B, 1, N)
        allowed = allowed_positions(
            valid.expand_as(chosen),
            chosen,
            is_first.expand(b, -1),
            self.cfg.mask_chosen,
            self.cfg.permutation_output,
        )
        return scores.masked_fill(~allowed, NEG).log_softmax(-1)  # (B, T, N)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def decode(
        self,
        inputs: torch.Tensor,
        lengths: torch.Tensor,
        num_beams: int = 1,
        max_len: int | None = None,
    ) -> Decoded:
        """Greedy (``num_beams=1``) or beam-search decoding restricted to valid outputs.

        Args:
            inputs: (B, n, d_input) padded input elements.
            lengths: (B,) number of real elements.
            num_beams: beam width; 1 is greedy decoding.
            max_len: most output steps, end token included (default ``n + 1`` when chosen
                positions are masked, else ``2n + 1``).

        Returns:
            ``Decoded(indices (B, T), lengths (B,), log_prob (B,))``; the best beam per example.
        """
        if num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {num_beams}")
        memory, embedded, state = self.encode(inputs, lengths)  # (B, N, D), (B, N, E)
        n_pos = memory.shape[1]
        if max_len is None:
            max_len = n_pos if self.cfg.mask_chosen else 2 * n_pos - 1
        keys = self.attention.keys(memory)  # (B, N, D)
        valid = self._valid(lengths, n_pos)  # (B, N)
        if num_beams == 1:
            tokens, log_prob = self._greedy(keys, embedded, state, valid, max_len)
        else:
            tokens, log_prob = self._beam(keys, embedded, state, valid, max_len, num_beams)
        return _to_decoded(tokens, log_prob)

    def _step(self, keys, embedded, x, state, valid, chosen, is_first):
        """One decoder step: input (B, 1, E) -> masked log-probs (B, N), new state."""
        d, state = self.decoder(x, state)  # (B, 1, D)
        scores = self.attention(keys, d)[:, 0]  # (B, N)
        allowed = allowed_positions(
            valid, chosen, is_first, self.cfg.mask_chosen, self.cfg.permutation_output
        )
        return scores.masked_fill(~allowed, float("-inf")).log_softmax(-1), state

    def _greedy(self, keys, embedded, state, valid, max_len):
        """Pick the most likely valid position at each step; returns tokens (B, T), log_prob (B,).

        Tokens are pointer positions: 0 is the end token, -1 pads after it.
        """
        b, n_pos, d_embed = embedded.shape
        chosen = torch.zeros_like(valid)  # (B, N)
        done = torch.zeros(b, dtype=torch.bool, device=valid.device)
        log_prob = torch.zeros(b, device=valid.device)
        x = self.start.expand(b, 1, -1)  # (B, 1, E)
        tokens = []
        for t in range(max_len):
            logp, state = self._step(keys, embedded, x, state, valid, chosen, t == 0)  # (B, N)
            pick = logp.argmax(-1)  # (B,)
            log_prob = log_prob + torch.where(done, 0.0, logp.gather(1, pick[:, None])[:, 0])
            pick = pick.masked_fill(done, 0)
            tokens.append(pick.masked_fill(done, -1))
            chosen = chosen | (nn.functional.one_hot(pick, n_pos).bool() & (pick > 0)[:, None])
            done = done | (pick == 0)
            if bool(done.all()):
                break
            x = embedded.gather(1, pick[:, None, None].expand(-1, 1, d_embed))  # (B, 1, E)
        return torch.stack(tokens, 1), log_prob  # (B, T), (B,)

    def _beam(self, keys, embedded, state, valid, max_len, k):
        """Beam search of width ``k`` over valid positions; returns the best beam's tokens (B, T)
        and its log-probability (B,). Finished beams are only extended by padding (score + 0).
        """
        b, n_pos, d_embed = embedded.shape
        dev = valid.device

        def tile(t, dim=0):  # (B, ...) -> (B*K, ...) along ``dim``
            return t.repeat_interleave(k, dim=dim)

        keys, embedded, valid = tile(keys), tile(embedded), tile(valid)
        state = tuple(tile(s, dim=1) for s in state)  # (L, B*K, D)
        chosen = torch.zeros_like(valid)  # (B*K, N)
        done = torch.zeros(b * k, dtype=torch.bool, device=dev)
        score = torch.full((b, k), float("-inf"), device=dev)
        score[:, 0] = 0.0  # one live beam at the start
        history = torch.zeros(b * k, 0, dtype=torch.long, device=dev)
        x = self.start.expand(b * k, 1, -1)  # (B*K, 1, E)
        end_only = torch.full((n_pos,), float("-inf"), device=dev)
        end_only[0] = 0.0
        for t in range(max_len):
            logp, state = self._step(keys, embedded, x, state, valid, chosen, t == 0)  # (BK, N)
            logp = torch.where(done[:, None], end_only, logp)  # finished beams only pad
            cand = (score[..., None] + logp.view(b, k, n_pos)).view(b, k * n_pos)  # (B, K*N)
            score, flat = cand.topk(k, dim=-1)  # (B, K)
            beam = (flat // n_pos + torch.arange(b, device=dev)[:, None] * k).view(-1)  # (BK,)
            pick = (flat % n_pos).view(-1)  # (B*K,)
            state = tuple(s[:, beam] for s in state)
            pick = torch.where(done[beam], -1, pick)
            chosen = chosen[beam] | (
                nn.functional.one_hot(pick.clamp(min=0), n_pos).bool() & (pick > 0)[:, None]
            )
            done = done[beam] | (pick <= 0)
            history = torch.cat([history[beam], pick[:, None]], dim=1)  # (B*K, t+1)
            if bool(done.all()):
                break
            x = embedded.gather(1, pick.clamp(min=0)[:, None, None].expand(-1, 1, d_embed))
        best = score.argmax(-1) + torch.arange(b, device=dev) * k  # (B,)
        return history[best], score.gather(1, (best % k)[:, None])[:, 0]


def _to_decoded(tokens: torch.Tensor, log_prob: torch.Tensor) -> Decoded:
    """Pointer tokens (B, T) (0 = end, -1 = after end) -> input indices with -1 after the end."""
    ended = (tokens <= 0).long().cumsum(1) > 0  # (B, T) at or after the end token
    indices = torch.where(ended, -1, tokens - 1)  # (B, T)
    return Decoded(indices, (~ended).sum(1), log_prob)


# ----------------------------------------------------------------------------- registry entry
def _example_input(model: PointerNet, batch_size: int) -> tuple[torch.Tensor, ...]:
    """Positional ``forward`` args: ``n = 6`` random elements and a random permutation target."""
    g = torch.Generator().manual_seed(0)
    n = 6
    inputs = torch.rand(batch_size, n, model.cfg.d_input, generator=g)  # (B, n, d_input)
    lengths = torch.full((batch_size,), n, dtype=torch.long)  # (B,)
    perm = torch.stack([torch.randperm(n, generator=g) for _ in range(batch_size)]) + 1
    targets = torch.cat([perm, torch.zeros(batch_size, 1, dtype=torch.long)], dim=1)  # (B, n+1)
    return inputs, lengths, targets


def pointer_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Teacher-forced cross-entropy over the output steps, and per-step accuracy."""
    from archlab.papers.language.pointer_net.tasks import IGNORE_INDEX

    log_probs = model(batch["inputs"], batch["lengths"], batch["targets"])  # (B, T, N)
    targets = batch["targets"]  # (B, T)
    loss = nn.functional.nll_loss(
        log_probs.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX
    )
    real = targets != IGNORE_INDEX
    acc = ((log_probs.argmax(-1) == targets) & real).sum() / real.sum()
    return loss, {"step_acc": acc.detach()}  # a tensor: the engine reads it at log steps


def _task(cfg: PointerNetConfig, seed: int) -> Task:
    """The training task of a config, as in ``experiment.py``.

    Sorting when ``permutation_output`` (``d_input=1``, n in [5, 10]), else the planar convex
    hull (``d_input=2``, n in [5, 20]); each batch shares one n. ``eval_fn`` reports the greedy
    exact match on 256 fixed examples at the largest training n.
    """
    from archlab.papers.language.pointer_net import tasks

    if cfg.permutation_output:
        if cfg.d_input != 1:
            raise ValueError("the sorting task (permutation_output=True) needs d_input=1")
        make, n_min, n_max = tasks.sorting_batch, 5, 10
    else:
        if cfg.d_input != 2:
            raise ValueError("the convex hull task needs d_input=2")
        make, n_min, n_max = tasks.convex_hull_batch, 5, 20

    def data(batch_size: int, generator: torch.Generator) -> dict:
        return tasks.bucketed_batch(make, batch_size, generator, n_min, n_max)

    test = make(256, torch.Generator().manual_seed(10**6 * (seed + 1) + n_max), n_max, n_max)
    target = tasks.targets_to_indices(test["targets"])  # (256, T)

    def eval_fn(model: PointerNet) -> dict[str, float]:
        out = model.decode(test["inputs"], test["lengths"]).indices  # (256, T')
        width = max(out.shape[1], target.shape[1])
        out = nn.functional.pad(out, (0, width - out.shape[1]), value=-1)
        tgt = nn.functional.pad(target, (0, width - target.shape[1]), value=-1)
        return {f"exact@{n_max}": float((out == tgt).all(1).float().mean())}

    return Task(data=data, loss_fn=pointer_loss, eval_fn=eval_fn)


VARIANTS = {
    "tiny": PointerNetConfig(d_embed=16, d_hidden=32),
    "base": PointerNetConfig(),
    "sort": PointerNetConfig(d_input=1, d_embed=64, d_hidden=64, permutation_output=True),
    "hull": PointerNetConfig(d_input=2, d_embed=128, d_hidden=128),
}

SPEC = PaperSpec(
    slug="pointer_net",
    family="language",
    title="Pointer Networks",
    arxiv="1506.03134",
    claim=(
        "Pointing at input positions lets one model emit outputs over a variable-size "
        "dictionary: Ptr-Net sorts and finds planar convex hulls, generalizes to n beyond its "
        "training lengths, and beats a seq2seq model with attention whose output vocabulary "
        "is a fixed set of positions."
    ),
    config=PointerNetConfig,
    build=PointerNet,
    variants=VARIANTS,
    example_input=_example_input,
    task=_task,
    train_defaults={
        "steps": 2000,
        "batch_size": 64,
        "lr": 2e-3,
        "optimizer": "adam",
        "schedule": "cosine",
        "grad_clip": 2.0,
    },
    capabilities=frozenset({"seq2seq", "pointer"}),
    fidelity="faithful",
    experiment="archlab.papers.language.pointer_net.experiment",
)
