"""The fair-comparison protocol in the kit: splits, the same lr sweep per arm picked on
validation, baseline health checks that gate comparisons, paired-seed intervals."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from archlab.errors import NonFiniteLossError
from archlab.lab import Lab
from archlab.lab.protocol import paired_interval, split_indices, t_quantile_975
from archlab.lab.report import summary_table
from archlab.lab.tasks import CLASSIFY
from archlab.registry import spec

RECIPE = CLASSIFY.recipe(steps=16, batch_size=16, lr=1e-2, curve_points=4)


def make_lab() -> Lab:
    return Lab(spec("maxim"), "smoke", 0, {"smoke": {}})


def data(batch_size: int, g: torch.Generator):
    x = torch.randn(batch_size, 4, generator=g)
    return x, (x.sum(-1) > 0).long()


def test_split_indices_are_disjoint_cover_everything_and_refuse_empty_training():
    tr, va, te = split_indices(50, 10, 15, torch.Generator().manual_seed(0))
    assert (len(tr), len(va), len(te)) == (25, 10, 15)
    assert sorted(torch.cat([tr, va, te]).tolist()) == list(range(50))
    with pytest.raises(ValueError, match="n_val"):
        split_indices(10, 5, 5, torch.Generator())


def test_paired_interval_matches_the_t_formula_and_refuses_bad_input():
    mean, lo, hi = paired_interval([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    half = 4.303 * 1.0 / math.sqrt(3)  # sd of (1, 2, 3) is 1
    assert mean == 2.0 and lo == pytest.approx(2 - half) and hi == pytest.approx(2 + half)
    assert t_quantile_975(100) == 1.96
    with pytest.raises(ValueError, match="at least 2"):
        paired_interval([1.0], [0.0])
    with pytest.raises(ValueError, match="equal lengths"):
        paired_interval([1.0, 2.0], [0.0])
    with pytest.raises(ValueError, match="finite"):
        paired_interval([1.0, math.nan], [0.0, 0.0])


def test_paired_holds_only_when_the_interval_clears_the_margin():
    lab = make_lab()
    assert lab.paired("consistent", ("a", [1.1, 1.2, 1.15]), ("b", [1.0, 1.0, 1.0]))
    assert not lab.paired("noisy", ("a", [1.5, 0.6, 1.2]), ("b", [1.0, 1.0, 1.0]))
    assert not lab.paired("margin", ("a", [1.1, 1.2, 1.15]), ("b", [1.0, 1.0, 1.0]), margin=0.2)
    assert lab.paired(
        "lower is better", ("a", [0.5, 0.6, 0.55]), ("b", [1.0, 1.0, 1.0]), higher_is_better=False
    )
    c = lab.result.checks[0]
    assert "95% interval" in c.detail and "3 paired seeds" in c.detail
    assert lab.metrics["paired/a-b/mean"] == pytest.approx(-0.45)  # the last pair recorded


def test_tune_sweeps_the_same_grid_from_the_same_init_and_keeps_the_best_on_validation():
    lab = make_lab()
    x_val, y_val = data(256, torch.Generator().manual_seed(99))
    chosen: list[nn.Module] = []

    def score(model: nn.Module) -> float:
        chosen.append(model)
        with torch.no_grad():
            return (model(x_val).argmax(-1) == y_val).float().mean().item()

    lrs = (1e-6, 3e-2)
    model = lab.tune(
        "lin",
        lambda: nn.Linear(4, 2),
        CLASSIFY.loss,
        data,
        RECIPE,
        lrs=lrs,
        score=score,
        extend=0,
    )
    vals = [lab.metrics[f"val/lin@lr={lr:g}"] for lr in lrs]
    assert vals[1] > vals[0]  # a learning rate that barely moves loses on validation
    assert lab.metrics["lr/lin"] == 3e-2 and lab.metrics["val/lin"] == vals[1]
    assert model is chosen[1]
    assert lab.metrics["tune_s/lin"] >= lab.metrics["train_s/lin"]
    assert lab.result.curves["lin"] == lab.fits["lin"].curve
    # the same init stream: a fresh build equals the first candidate before training
    with pytest.raises(ValueError, match="at least one"):
        lab.tune("x", lambda: nn.Linear(4, 2), CLASSIFY.loss, data, RECIPE, lrs=(), score=score)


def test_tune_ignores_a_diverged_candidate():
    lab = make_lab()
    scores = iter([math.nan, 0.3])
    lab.tune(
        "lin", lambda: nn.Linear(4, 2), CLASSIFY.loss, data, RECIPE,
        lrs=(1e-2, 2e-2), score=lambda m: next(scores), extend=0,
    )  # fmt: skip
    assert lab.metrics["lr/lin"] == 2e-2


@pytest.mark.parametrize(
    "scores,lr,tried,edge",
    [([0.1, 0.3, 0.2], 2e-2, 4e-2, 0.0),  # the top wins, one step beyond loses: bracketed
     ([0.3, 0.1, 0.5], 5e-3, 5e-3, 1.0),  # the bottom wins, one step below wins too: an edge
     ([0.1, 0.3, 0.2, 0.9], 2e-2, 4e-2, 0.0)],  # extend=2 stops once bracketed
)  # fmt: skip
def test_tune_extends_the_grid_until_the_choice_is_bracketed(scores, lr, tried, edge):
    lab = make_lab()
    it = iter(scores)
    lab.tune("lin", lambda: nn.Linear(4, 2), CLASSIFY.loss, data, RECIPE, lrs=(1e-2, 2e-2),
             score=lambda m: next(it), extend=len(scores) - 2)  # fmt: skip
    assert lab.metrics["lr/lin"] == pytest.approx(lr)
    assert f"val/lin@lr={tried:g}" in lab.metrics
    assert lab.metrics["lr_edge/lin"] == edge


def test_tune_survives_a_diverging_learning_rate():
    """A candidate whose loss turns non-finite is recorded as NaN and cannot win; a sweep in
    which every candidate diverges is an error."""
    lab = make_lab()

    def loss(model, batch):
        value, metrics = CLASSIFY.loss(model, batch)
        return value * (math.nan if model.explode else 1.0), metrics

    def arm(explodes):
        flags = iter(explodes)

        def make():
            model = nn.Linear(4, 2)
            model.explode = next(flags)
            return model

        return make

    lab.tune("lin", arm([False, True, True]), loss, data, RECIPE, lrs=(1e-2, 2e-2),
             score=lambda m: 0.5)  # fmt: skip
    assert math.isnan(lab.metrics["val/lin@lr=0.02"]) and lab.metrics["lr/lin"] == 1e-2
    assert math.isnan(lab.metrics["val/lin@lr=0.005"])  # the extension below diverged too
    with pytest.raises(NonFiniteLossError, match="every learning rate"):
        lab.tune("x", arm([True, True]), loss, data, RECIPE, lrs=(1e-2, 2e-2),
                 score=lambda m: 0.5)  # fmt: skip


def test_an_unhealthy_baseline_turns_a_winning_comparison_into_a_fail():
    lab = make_lab()
    lab.measure("acc/model", 0.9)
    lab.measure("acc/weak", 0.52)
    assert not lab.health("weak", "acc", ("chance", 0.5), margin=0.1)
    assert not lab.compare("beats the baseline", "acc", "model", "weak")
    detail = lab.result.checks[-1].detail
    assert "NOT A PASS" in detail and "weak failed its health check" in detail
    assert not lab.paired("paired", ("model", [0.9, 0.91]), ("weak", [0.5, 0.52]), arms=("weak",))
    assert not lab.result.holds
    health = lab.result.health_checks
    assert len(health) == 1 and health[0].kind == "health" and "chance 0.5" in health[0].detail
    assert "0/1" in summary_table([lab.result])
    lab.measure("acc/two", 0.9)
    assert lab.health("two", "acc", ("chance", 0.5), margin=0.1)
    assert not lab.health("two", "acc", ("chance", 0.5), margin=0.5)
    assert lab.health("two", "acc", ("chance", 0.5), margin=0.1)  # a later pass clears nothing
    assert not lab.compare("vs two", "acc", "model", "two", margin=-1.0)


def test_health_needs_a_flattened_curve_when_asked():
    lab = make_lab()
    model = lab.build("lin", lambda: nn.Linear(4, 2))
    lab.fit("lin", model, CLASSIFY.loss, data, RECIPE)
    lab.measure("acc/lin", 0.95)
    flat = lab.fits["lin"].flattening()
    assert math.isfinite(flat)
    assert lab.health("lin", "acc", ("chance", 0.5), margin=0.1, max_flattening=flat + 1e-6)
    assert not lab.health("lin", "acc", ("chance", 0.5), margin=0.1, max_flattening=flat - 1e-3)
    assert "last quarter" in lab.result.checks[-1].detail
    assert lab.metrics["flattening/lin"] == flat


def test_flattening_is_the_last_quarters_share_of_the_loss_drop():
    from archlab.lab import Fit

    converged = Fit("a", 0.0, [[i, 2.0 * 0.7**i + 0.01] for i in range(24)])
    assert converged.flattening() < 0.01  # still falling relatively, but done
    linear = Fit("a", 0.0, [[i, 10.0 - 0.25 * i] for i in range(24)])
    assert linear.flattening() == pytest.approx(1.25 / 5.625, rel=1e-6)  # still learning
    spiky = [[i, 2.0 - i / 20] for i in range(12)] + [[i, 1.4] for i in range(12, 24)]
    spiky[-1][1] = 0.4  # one lucky batch at the end moves the end third's mean only
    assert Fit("a", 0.0, spiky).flattening() == pytest.approx(0.5 / 1.1)
    assert math.isnan(Fit("a", 0.0, [[i, 1.0] for i in range(24)]).flattening())  # never fell
    assert math.isnan(Fit("a", 0.0, [[0, 1.0]]).flattening())


def test_health_aspects_are_named_apart_and_bound_is_gated_by_the_arms_it_reads():
    lab = make_lab()
    lab.measure("acc/weak", 0.9)
    lab.measure("worst/weak", 0.0)
    assert lab.health("weak", "acc", ("chance", 0.5), margin=0.1)
    assert not lab.health("weak", "worst", ("background", 0.0), margin=0.1, aspect="every class")
    names = [c.name for c in lab.result.health_checks]
    assert names == ["weak is a healthy baseline", "weak is a healthy baseline (every class)"]
    assert lab.bound("ungated", "ratio", 2.0, at_least=1.0)
    assert not lab.bound("gated", "ratio", 2.0, at_least=1.0, arms=("weak",))
    assert "NOT A PASS: weak failed its health check" in lab.result.checks[-1].detail


def test_replicate_refits_a_tuned_arm_at_its_lr_on_the_inner_seed_streams():
    lab = make_lab()
    make = lambda: nn.Linear(4, 2)  # noqa: E731
    with pytest.raises(ValueError, match="tuned first"):
        lab.replicate("lin", make, CLASSIFY.loss, data, RECIPE, 1)
    lab.tune("lin", make, CLASSIFY.loss, data, RECIPE, lrs=(1e-2, 3e-2), score=lambda m: 0.0)
    with pytest.raises(ValueError, match=">= 1"):
        lab.replicate("lin", make, CLASSIFY.loss, data, RECIPE, 0)
    one = lab.replicate("lin", make, CLASSIFY.loss, data, RECIPE, 1)
    again = make_lab()
    again.metrics["lr/lin"] = lab.metrics["lr/lin"]
    same = again.replicate("lin", make, CLASSIFY.loss, data, RECIPE, 1)
    torch.testing.assert_close(one.weight, same.weight)  # streams init/1 and train/1
    assert "train_s/lin/1" in lab.metrics and "lin/1" in lab.result.curves
    two = lab.replicate("lin", make, CLASSIFY.loss, data, RECIPE, 2)
    assert not torch.allclose(one.weight, two.weight)


def test_fit_keeps_every_evaluation():
    lab = make_lab()
    model = lab.build("lin", lambda: nn.Linear(4, 2))
    calls = iter(range(100))
    fit = lab.fit("lin", model, CLASSIFY.loss, data, RECIPE.replace(eval_every=4),
                  eval_fn=lambda m: {"n": float(next(calls))})  # fmt: skip
    assert [row["step"] for row in fit.eval_history] == [4, 8, 12, 16]
    assert fit.eval_metrics == {"n": 3.0}
