"""The experiment kit: named streams, arms built and trained alike, checks, budgets,
provenance, and the process state it leaves alone."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from archlab.errors import ArchlabError
from archlab.lab import Budget, Check, Lab, Result, derive_seed
from archlab.lab.provenance import code_files, code_hash
from archlab.lab.result import BudgetUnavailableError
from archlab.lab.tasks import CLASSIFY
from archlab.registry import spec

SPEC = spec("maxim")
RECIPE = CLASSIFY.recipe(steps=12, batch_size=8, lr=1e-2, curve_points=4)
BUDGETS = {"smoke": {"recipe": RECIPE, "margin": 0.1}, "quick": {"recipe": RECIPE, "margin": 0.0}}


def make_lab(budget="smoke", seed=0) -> Lab:
    return Lab(SPEC, budget, seed, BUDGETS)


def data(batch_size: int, g: torch.Generator):
    x = torch.randn(batch_size, 4, generator=g)
    return x, (x.sum(-1) > 0).long()


def test_named_streams_are_stable_distinct_and_independent_of_order():
    assert derive_seed(0, "train") == derive_seed(0, "train")
    assert len({derive_seed(s, p) for s in range(3) for p in ("train", "test", "init")}) == 9
    lab = make_lab()
    a = torch.rand(3, generator=lab.rng("test"))
    lab.rng("train")  # another stream in between changes nothing
    assert torch.equal(a, torch.rand(3, generator=lab.rng("test")))
    assert 0 <= lab.seed_for("x") < 2**63


def test_arms_share_init_and_data_streams_and_the_caller_rng_is_untouched():
    lab = make_lab()
    torch.manual_seed(123)
    random.seed(5)
    np.random.seed(7)
    state = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    a = lab.build("a", lambda: nn.Linear(4, 2))
    b = lab.build("b", lambda: nn.Linear(4, 2))
    assert torch.equal(a.weight, b.weight)  # the same init stream
    fa = lab.fit("a", a, CLASSIFY.loss, data, RECIPE)
    lab.fit("b", b, CLASSIFY.loss, data, RECIPE)
    assert torch.equal(a.weight, b.weight)  # the same batches, the same recipe
    assert torch.equal(torch.get_rng_state(), state[0])
    assert random.getstate() == state[1] and np.array_equal(np.random.get_state()[1], state[2])
    assert lab.metrics["params/a"] == 10 and lab.metrics["train_s/a"] > 0
    assert len(fa.curve) == 4 and [p[0] for p in fa.curve] == [3, 6, 9, 12]
    assert lab.result.curves["a"] == fa.curve


def test_compare_gives_both_numbers_and_honours_margin_and_direction():
    lab = make_lab()
    lab.measure("acc/x", 0.80)
    lab.measure("acc/y", 0.75)
    assert lab.compare("x beats y by 0.05", "acc", "x", "y", margin=0.05)
    assert not lab.compare("x beats y by 0.06", "acc", "x", "y", margin=0.06)
    assert lab.compare("y not worse than x - 0.1", "acc", "y", "x", margin=-0.1)
    assert not lab.compare("x lower", "acc", "x", "y", higher_is_better=False)
    detail = lab.result.checks[0].detail
    assert "x 0.8" in detail and "y 0.75" in detail and "+0.05" in detail
    lab.measure("acc/nan", float("nan"))
    assert not lab.compare("nan never passes", "acc", "nan", "y", margin=-1)


def test_invariants_are_reported_apart_and_do_not_make_a_claim_hold():
    r = Result("s", "t", "c", "smoke", 0)
    r.check("params equal", True, "", kind="invariant")
    assert not r.holds  # no claim check: nothing was claimed
    r.check("claim", True, "")
    assert r.holds and len(r.invariants) == 1 and len(r.claim_checks) == 1
    r.check("broken invariant", False, "", kind="invariant")
    assert not r.holds
    back = Result.from_json(r.to_json())
    assert [c.kind for c in back.checks] == ["invariant", "claim", "invariant"]


def test_bound_checks_fixed_limits():
    lab = make_lab()
    assert lab.bound("rate <= 5%", "rate", 0.03, at_most=0.05)
    assert not lab.bound("rate <= 5%", "rate", 0.07, at_most=0.05)
    assert "needs <= 0.05" in lab.result.checks[-1].detail


def test_a_budget_the_table_lacks_is_refused_with_the_budgets_it_has():
    with pytest.raises(BudgetUnavailableError, match=r"no 'full' budget \(it has: smoke, quick\)"):
        make_lab("full")
    assert make_lab("quick").settings["margin"] == 0.0
    with pytest.raises(ArchlabError, match="did you mean 'quick'"):
        Budget.parse("quik")


@pytest.mark.parametrize(
    "field,value",
    [("lr", float("nan")), ("lr", float("inf")), ("lr", 0.0), ("steps", -1), ("batch_size", 0),
     ("grad_clip", float("nan")), ("optimizer", "lion"), ("schedule", "step")],
)  # fmt: skip
def test_recipe_refuses_bad_values(field, value):
    with pytest.raises(ArchlabError, match=field):
        RECIPE.replace(**{field: value})


def test_recipe_maps_onto_the_engine_config():
    cfg = RECIPE.replace(warmup_steps=2).train_config(seed=3)
    assert (cfg.steps, cfg.batch_size, cfg.lr, cfg.warmup_steps, cfg.seed) == (12, 8, 1e-2, 2, 3)
    assert cfg.optimizer == "adamw" and cfg.schedule == "cosine" and cfg.grad_clip == 1.0
    assert cfg.log_every == 3 and not cfg.progress and cfg.device == "cpu"


def test_provenance_covers_the_code_a_paper_imports_and_nothing_else():
    files = {str(f).split("src/archlab/")[-1] for f in code_files("archlab.papers.dense.maxim")}
    for needed in ("papers/dense/maxim/experiment.py", "papers/dense/maxim/model.py",
                   "lab/run.py", "engine/trainer.py", "baselines/unet/model.py",
                   "data/restoration.py", "nn/conv.py", "registry.py"):  # fmt: skip
        assert needed in files, needed
    assert not [f for f in files if f.startswith("papers/") and "/maxim/" not in f
                and f != "papers/__init__.py" and not f.endswith("dense/__init__.py")]  # fmt: skip
    assert "papers/__init__.py" not in files  # the static index grows with every paper
    assert "__init__.py" not in files  # the public re-exports; the version enters by value
    assert code_hash("archlab.papers.dense.maxim") == code_hash("archlab.papers.dense.maxim")
    assert code_hash("archlab.papers.dense.maxim") != code_hash("archlab.papers.dense.ffnet")


def test_runner_marks_results_stale_when_code_changes(tmp_path, monkeypatch):
    from archlab.lab import report

    r = Result("maxim", "t", "c", "smoke", 0)
    r.provenance = {"code_hash": code_hash("archlab.papers.dense.maxim"), "dirty": False}
    assert report.freshness(r) == "current"
    r.provenance["dirty"] = True
    assert report.freshness(r) == "dirty"
    r.provenance = {"code_hash": "0" * 64, "dirty": False}
    assert report.freshness(r) == "stale"
    assert report.freshness(Result("maxim", "t", "c", "smoke", 0)) == "unknown"


def test_strict_comparisons_fail_on_a_tie():
    lab = make_lab()
    lab.measure("acc/x", 0.5)
    lab.measure("acc/y", 0.5)
    assert lab.compare("tie passes >=", "acc", "x", "y")
    assert not lab.compare("tie fails >", "acc", "x", "y", strict=True)
    assert "needs > +0" in lab.result.checks[-1].detail
    assert not lab.compare("tie fails <", "acc", "x", "y", strict=True, higher_is_better=False)


def test_cards_get_one_generated_block_per_budget(tmp_path, monkeypatch):
    import archlab.lab.provenance as provenance
    from archlab.lab.report import update_cards

    card = tmp_path / "papers" / "dense" / "maxim" / "README.md"
    card.parent.mkdir(parents=True)
    card.write_text(
        "a\n<!-- results:start -->\nold quick\n<!-- results:end -->\n"
        "b\n<!-- results:standard:start -->\nold standard\n<!-- results:standard:end -->\nc\n"
    )
    monkeypatch.setattr(provenance, "PACKAGE_ROOT", tmp_path)
    results = []
    for budget, holds in (("quick", True), ("standard", False), ("full", True)):
        r = Result("maxim", "t", "c", budget, 0, metrics={})
        r.checks.append(Check(f"{budget} check", holds, "measured"))
        results.append(r)
    assert update_cards(results, tmp_path / "runs") == [card]
    text = card.read_text()
    assert (
        "old quick" not in text
        and "old standard" not in text
        and text.startswith("a\n")
        and text.endswith("c\n")
    )
    quick, standard = text.split("<!-- results:standard:start -->")
    assert "quick check" in quick and "standard check" not in quick
    assert "standard check" in standard and "**no**" in standard
    assert "full check" not in text  # this card has no block for the full budget


def test_only_the_core_environment_of_pyproject_enters_the_code_hash():
    from archlab.lab.provenance import environment_spec

    base = (
        '[project]\nname = "x"\nrequires-python = ">=3.11"\n'
        'dependencies = ["torch==2.14.1", "numpy"]\n'
    )
    extras = (
        base
        + '[project.optional-dependencies]\nfields = ["pykan"]\n[tool.ruff]\nline-length = 100\n'
    )
    assert environment_spec(base) == environment_spec(extras)  # a new extra stales nothing
    reordered = base.replace('"torch==2.14.1", "numpy"', '"numpy", "torch==2.14.1"')
    assert environment_spec(reordered) == environment_spec(base)
    assert environment_spec(base.replace("2.14.1", "2.15.0")) != environment_spec(base)
    assert environment_spec(base.replace(">=3.11", ">=3.12")) != environment_spec(base)
