"""The experiment kit: what every reproduction is written with.

- ``Lab`` (``lab.run``): one run of one paper at one budget and seed; owns the ``Result``; named
  random streams; arms built and trained through the engine with a ``Recipe``; measurements;
  claim checks as comparisons between arms with margins from the budget table; invariants
  reported apart; figures.
- ``Recipe`` (``lab.recipe``): steps, batch, optimiser, lr, schedule, warm-up, clipping.
- ``tasks``: shared losses and recipes of tasks several papers share (classify, segment,
  restore, count, language-model).
- ``result``/``report``/``runner``/``provenance``: budgets, ``result.json``, the report, the
  runner that stamps which code produced a result.
- ``metrics``, ``losses``, ``inference``, ``profiling``, ``plots``: named metric functions,
  losses, batched prediction on the model's device, FLOPs/latency, figures without pyplot.
"""

from archlab.lab.inference import evaluate_accuracy, evaluating, predict, predict_labels
from archlab.lab.recipe import Recipe
from archlab.lab.result import Budget, Check, Result
from archlab.lab.run import Fit, Lab, derive_seed

__all__ = [
    "Budget",
    "Check",
    "Fit",
    "Lab",
    "Recipe",
    "Result",
    "derive_seed",
    "evaluate_accuracy",
    "evaluating",
    "predict",
    "predict_labels",
]
