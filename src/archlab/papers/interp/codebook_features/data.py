"""The paper's finite-state-machine task: random walks on a graph of states, each state
emitted as a fixed string of tokens.

``n_states`` states, each with ``n_successors`` distinct successors (drawn at random, not
itself); state ``s`` is written as its ``digits`` base-``n_symbols`` digits. A sequence is a
walk of uniformly chosen transitions from a random start. A next-token model that has learned
the machine must know the current state to continue validly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class FSMConfig:
    n_states: int = 48
    n_successors: int = 4
    n_symbols: int = 8
    digits: int = 2
    walk: int = 16  # states per sequence

    def __post_init__(self) -> None:
        if self.n_symbols**self.digits < self.n_states:
            raise ValueError(f"{self.n_symbols}^{self.digits} strings cannot name "
                             f"{self.n_states} states")  # fmt: skip


class FSM:
    def __init__(self, cfg: FSMConfig, g: torch.Generator):
        self.cfg = cfg
        succ = []
        for s in range(cfg.n_states):
            others = torch.tensor([t for t in range(cfg.n_states) if t != s])
            succ.append(others[torch.randperm(len(others), generator=g)[: cfg.n_successors]])
        self.successors = torch.stack(succ)  # (n_states, n_successors)
        valid = torch.zeros(cfg.n_states, cfg.n_states, dtype=torch.bool)
        valid[torch.arange(cfg.n_states)[:, None], self.successors] = True
        self.valid = valid  # valid[s, t]: t may follow s
        powers = cfg.n_symbols ** torch.arange(cfg.digits - 1, -1, -1)
        self.codes = (torch.arange(cfg.n_states)[:, None] // powers) % cfg.n_symbols  # (S, D)

    @property
    def seq_len(self) -> int:
        return self.cfg.walk * self.cfg.digits

    def walks(self, n: int, g: torch.Generator) -> Tensor:  # (n, walk) states
        c = self.cfg
        states = torch.empty(n, c.walk, dtype=torch.long)
        states[:, 0] = torch.randint(0, c.n_states, (n,), generator=g)
        for t in range(1, c.walk):
            pick = torch.randint(0, c.n_successors, (n,), generator=g)
            states[:, t] = self.successors[states[:, t - 1], pick]
        return states

    def tokens(self, states: Tensor) -> Tensor:  # (n, walk) -> (n, walk * digits)
        return self.codes[states].flatten(1)

    def decode(self, digits: Tensor) -> Tensor:  # (..., digits) -> (...,) states (or -1)
        powers = self.cfg.n_symbols ** torch.arange(self.cfg.digits - 1, -1, -1)
        s = (digits * powers).sum(-1)
        return torch.where(s < self.cfg.n_states, s, torch.full_like(s, -1))
