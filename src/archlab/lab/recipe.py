"""``Recipe``: how an arm is trained (steps, batch, optimiser, schedule), as one frozen value.

A paper's budget table nests one recipe per budget; every arm of a comparison is trained with the
same recipe unless the table says otherwise, so "same budget" is a fact of the data structure.
Recipes are built by keyword and changed with ``recipe.replace(lr=...)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from archlab.errors import ArchlabError


@dataclass(frozen=True)
class Recipe:
    """Training settings of one arm.

    Attributes:
        steps: optimizer steps.
        batch_size: examples per step.
        lr: peak learning rate.
        optimizer: ``adamw`` | ``adam`` | ``sgd``.
        weight_decay: decoupled for AdamW, L2 for Adam/SGD.
        betas: Adam betas.
        momentum: SGD momentum.
        schedule: ``constant`` | ``cosine`` | ``linear`` after ``warmup_steps`` linear warm-up.
        warmup_steps: linear warm-up steps.
        min_lr_ratio: final learning rate as a fraction of ``lr`` (cosine/linear).
        grad_clip: max global gradient norm, or None.
        eval_every: steps between evaluations (0: only at the end).
        curve_points: points of the learning curve recorded per arm (the loss is averaged over
            the steps between two points).
    """

    steps: int
    batch_size: int
    lr: float
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.9
    schedule: Literal["constant", "cosine", "linear"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None
    eval_every: int = 0
    curve_points: int = 40

    def __post_init__(self) -> None:
        """Validated by the engine's ``TrainConfig`` (one set of rules), plus ``curve_points``."""
        if (
            isinstance(self.curve_points, bool)
            or not isinstance(self.curve_points, int)
            or (self.curve_points < 0)
        ):
            raise ArchlabError(f"recipe curve_points must be an integer >= 0, got "
                               f"{self.curve_points!r}")  # fmt: skip
        try:
            self.train_config(seed=0)
        except ValueError as e:
            raise ArchlabError(f"recipe {e}") from None

    def replace(self, **changes) -> Recipe:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @property
    def log_every(self) -> int:
        """Steps between two points of the learning curve."""
        return max(1, self.steps // max(1, self.curve_points))

    def train_config(self, *, seed: int, device: str = "cpu", amp: bool = False):
        """The engine's ``TrainConfig`` for this recipe (quiet: no progress bar, no folder)."""
        from archlab.engine.trainer import TrainConfig

        return TrainConfig(
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer=self.optimizer,
            weight_decay=self.weight_decay,
            betas=self.betas,
            momentum=self.momentum,
            schedule=self.schedule,
            warmup_steps=self.warmup_steps,
            min_lr_ratio=self.min_lr_ratio,
            grad_clip=self.grad_clip,
            eval_every=self.eval_every,
            log_every=self.log_every,
            seed=seed,
            device=device,
            amp=amp,
            progress=False,
        )
