"""The fair-comparison protocol's pieces that are plain functions: splits, paired intervals.

- **Splits.** Every experiment has a train, a validation and a test split. Calibration
  (learning rate, steps, thresholds) uses the validation split only; thresholds live in the
  budget table, so they are fixed before the test split is evaluated. ``split_indices`` cuts a
  finite dataset into the three disjoint parts from a named stream; generated data draws each
  split from its own stream (``lab.seed_for("train-data")``, ``"val-data"``, ``"test-data"``).
- **Paired seeds.** An effect smaller than seed noise is measured as paired differences
  ``a_i - b_i`` over several inner seeds inside one run; ``paired_interval`` gives the mean and a
  Student-t confidence interval, and the claim holds when the interval lies on the paper's side
  of the margin (``Lab.paired``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# Two-sided 95% Student-t quantiles t_{0.975, df} for df = 1..30 (beyond: the normal's 1.96).
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t_quantile_975(df: int) -> float:
    """The two-sided 95% Student-t quantile for ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"a t interval needs at least 2 paired values (df >= 1), got df={df}")
    return _T975[df - 1] if df <= len(_T975) else 1.96


def paired_interval(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float]:
    """Mean of the paired differences ``a_i - b_i`` and its 95% t interval ``(mean, lo, hi)``.

    Raises:
        ValueError: the sequences differ in length, have fewer than two pairs, or hold a
            non-finite value.
    """
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise ValueError(f"a paired interval needs at least 2 pairs, got {len(a)}")
    diffs = [float(x) - float(y) for x, y in zip(a, b)]
    if not all(math.isfinite(d) for d in diffs):
        raise ValueError(f"paired differences must be finite, got {diffs}")
    n = len(diffs)
    mean = sum(diffs) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def split_indices(
    n: int, n_val: int, n_test: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Disjoint ``(train, val, test)`` index tensors covering ``range(n)`` in a random order.

    Raises:
        ValueError: the validation and test parts leave no training examples.
    """
    if n_val < 1 or n_test < 1 or n_val + n_test >= n:
        raise ValueError(
            f"split of {n} examples needs n_val >= 1, n_test >= 1 and n_val + n_test < {n}; "
            f"got n_val={n_val}, n_test={n_test}"
        )
    order = torch.randperm(n, generator=generator)
    return order[n_val + n_test :], order[:n_val], order[n_val : n_val + n_test]
