"""TODO title of nervpp.

TODO: authors, year, arXiv id. Paper card and deviations: README.md beside this file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from archlab.registry import PaperSpec


@dataclass(frozen=True)
class NervppConfig:
    """Hyperparameters, named after the paper's symbols.

    Attributes:
        d_input: input width.
        d_hidden: hidden width.
        n_outputs: number of outputs.
    """

    d_input: int = 16
    d_hidden: int = 64
    n_outputs: int = 2

    def __post_init__(self) -> None:
        if min(self.d_input, self.d_hidden, self.n_outputs) < 1:
            raise ValueError("d_input, d_hidden and n_outputs must be >= 1")


class Nervpp(nn.Module):
    """TODO: the paper's model."""

    def __init__(self, cfg: NervppConfig):
        super().__init__()
        self.cfg = cfg
        self.net = nn.Sequential(
            nn.Linear(cfg.d_input, cfg.d_hidden), nn.GELU(), nn.Linear(cfg.d_hidden, cfg.n_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, K)
        return self.net(x)


VARIANTS = {
    "tiny": NervppConfig(d_hidden=16),
    "base": NervppConfig(),
}

SPEC = PaperSpec(
    slug="nervpp",
    family="fields",
    title="TODO title of nervpp",
    arxiv="0000.00000",
    claim="TODO: the central claim, in one sentence.",
    config=NervppConfig,
    build=Nervpp,
    variants=VARIANTS,
    example_input=lambda model, batch_size: (torch.randn(batch_size, model.cfg.d_input),),
    fidelity="unverified",
    experiment="archlab.papers.fields.nervpp.experiment",
)
