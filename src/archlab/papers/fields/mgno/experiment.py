"""Miniature reproduction of mgno: the paper's model against its baseline.

Both arms are built from the same init stream and trained on the same data stream with the same
recipe (``archlab.lab``); thresholds live in ``BUDGETS`` and were fixed on the validation split
before the test split was evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from archlab.lab import Lab, Recipe, evaluate_accuracy
from archlab.lab.tasks import CLASSIFY
from archlab.papers.fields.mgno.model import Mgno, MgnoConfig


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    recipe: Recipe
    n_train: int
    n_test: int
    margin: float  # the paper's model must beat the baseline by this much (accuracy)


BUDGETS = {
    "smoke": Settings(CLASSIFY.recipe(steps=5, batch_size=32, lr=1e-3), 256, 256, 0.0),
    "quick": Settings(CLASSIFY.recipe(steps=300, batch_size=32, lr=1e-3), 4096, 2000, 0.0),
}


def make_data(n: int, d: int, w: torch.Tensor, g: torch.Generator):
    """A nonlinear rule (the sign of a quadratic form) that a linear model cannot learn."""
    x = torch.randn(n, d, generator=g)
    return x, ((x @ w) * x[:, 0] > 0).long()


def run(lab: Lab) -> None:
    s: Settings = lab.settings
    cfg = MgnoConfig()
    w = torch.randn(cfg.d_input, generator=lab.rng("task"))
    x_train, y_train = make_data(s.n_train, cfg.d_input, w, lab.rng("train-data"))
    x_test, y_test = make_data(s.n_test, cfg.d_input, w, lab.rng("test"))
    data = torch.utils.data.TensorDataset(x_train, y_train)
    arms = {
        "mgno": lambda: Mgno(cfg),
        "linear": lambda: nn.Linear(cfg.d_input, cfg.n_outputs),
    }
    for arm, make in arms.items():
        model = lab.build(arm, make)
        lab.fit(arm, model, CLASSIFY.loss, data, s.recipe)
        lab.measure(f"acc/{arm}", evaluate_accuracy(model, x_test, y_test))
    lab.compare(
        "TODO: the paper's claim against its baseline", "acc", "mgno", "linear",
        margin=s.margin,
    )  # fmt: skip
