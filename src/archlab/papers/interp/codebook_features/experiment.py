"""Miniature reproduction of codebook features on the paper's finite-state-machine task.

A 2-layer transformer (d = 32, more states than residual dimensions) learns random walks on a
48-state machine (``data.FSM``), with codebooks after every attention head (64 codes, k = 1)
and MLP (256 codes, k = 4), against the same transformer without codebooks; both arms are
tuned on the same lr grid by the validation accuracy.

- Accuracy: at a state boundary the model greedily writes the next state's two tokens; valid
  when that state is a successor of the current one.
- Alignment: at the last token of each state, a code's precision for a state is
  ``P(state | code active)``; a state "has a code" when some code active at least
  ``min_count`` times has precision >= ``precision``. The contrast is the un-quantised
  model's best single neuron (MLP hidden unit or residual dimension, "active" above its 90th
  percentile), counted the same way.
- Steering: at the last token of state ``s``, the last layer's MLP codebook is forced to the
  ``k`` codes most precise for another state ``s'`` (at that position and the next); the
  generated state should be a valid successor of ``s'``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from archlab.interp.hooks import capture
from archlab.lab import Lab, Recipe
from archlab.lab.plots import new_figure
from archlab.papers.interp.codebook_features.data import FSM, FSMConfig
from archlab.papers.interp.codebook_features.model import CodebookConfig, CodebookTransformer


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides (thresholds fixed before the test split was evaluated)."""

    fsm: FSMConfig
    model: CodebookConfig
    recipe: Recipe
    lrs: tuple[float, ...]
    n_val: int
    n_test: int
    n_steer: int
    min_count: int  # a code/neuron must be active this often to count
    precision: float
    acc_ratio: float  # codebook accuracy >= this x the baseline's
    min_state_frac: float  # fraction of states with a precise code, at least
    min_steer: float  # steered generations that follow s', at least
    health_margin: float  # baseline accuracy above chance, at least
    max_flattening: float


def _recipe(steps: int) -> Recipe:
    return Recipe(steps=steps, batch_size=64, lr=1e-3, optimizer="adamw", weight_decay=0.01,
                  schedule="cosine", warmup_steps=steps // 20, min_lr_ratio=0.1,
                  grad_clip=1.0, curve_points=20)  # fmt: skip


BUDGETS = {
    "smoke": Settings(
        fsm=FSMConfig(n_states=12, n_symbols=4, walk=6), model=CodebookConfig(
            vocab_size=4, max_len=12, d_model=16, n_layers=1, n_heads=2, d_hidden=32,
            mlp_codes=16, head_codes=8),
        recipe=_recipe(5), lrs=(1e-3,), n_val=32, n_test=32, n_steer=8, min_count=1,
        precision=0.8, acc_ratio=0.0, min_state_frac=0.0, min_steer=0.0, health_margin=-1.0,
        max_flattening=10.0,
    ),
    "quick": Settings(
        fsm=FSMConfig(), model=CodebookConfig(max_len=32, replace_every=100),
        recipe=_recipe(1000),
        lrs=(1e-3, 3e-3), n_val=512, n_test=2048, n_steer=500, min_count=10, precision=0.8,
        acc_ratio=0.9, min_state_frac=0.5, min_steer=0.5, health_margin=0.5,
        max_flattening=0.2,
    ),
}  # fmt: skip


def lm_loss(model, tokens: Tensor):
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)), {}


@torch.no_grad()
def generate_state(model, fsm: FSM, prefix: Tensor, forced=None) -> Tensor:
    """Greedy next state after ``prefix`` (B, L): ``digits`` tokens, decoded (-1: invalid).
    ``forced``: (codebook, ids) forced at the prefix's last position and the new ones."""
    tokens = prefix
    for _ in range(fsm.cfg.digits):
        if forced is None:
            logits = model(tokens)
        else:
            codebook, ids = forced
            with codebook.force(ids, positions=slice(prefix.shape[1] - 1, None)):
                logits = model(tokens)
        tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return fsm.decode(tokens[:, -fsm.cfg.digits :])


def accuracy(model, fsm: FSM, states: Tensor) -> float:
    """Fraction of valid greedy continuations at four boundaries of every walk."""
    tokens = fsm.tokens(states)
    d, walk = fsm.cfg.digits, fsm.cfg.walk
    ok, n = 0, 0
    for t in sorted({walk // 4, walk // 2, 3 * walk // 4, walk - 1}):
        pred = generate_state(model.eval(), fsm, tokens[:, : t * d])
        prev = states[:, t - 1]
        ok += int((fsm.valid[prev, pred.clamp_min(0)] & (pred >= 0)).sum())
        n += len(prev)
    return ok / n


def run(lab: Lab) -> None:
    """Accuracy against the un-quantised model, code-state alignment, steering."""
    s: Settings = lab.settings
    fsm = FSM(s.fsm, lab.rng("fsm"))
    val, test = fsm.walks(s.n_val, lab.rng("val-data")), fsm.walks(s.n_test, lab.rng("test-data"))

    def data(batch_size: int, g: torch.Generator) -> Tensor:
        return fsm.tokens(fsm.walks(batch_size, g))

    cfgs = {"codebook": s.model, "baseline": replace(s.model, mlp_codes=0, head_codes=0)}
    models = {}
    for arm, cfg in cfgs.items():
        models[arm] = lab.tune(
            arm,
            lambda cfg=cfg: CodebookTransformer(cfg),
            lm_loss,
            data,
            s.recipe,
            lrs=s.lrs,
            score=lambda m: accuracy(m, fsm, val),
        )
        lab.measure(f"acc/{arm}", accuracy(models[arm], fsm, test))
    chance = s.fsm.n_successors / s.fsm.n_states
    lab.measure("acc/chance", chance)
    lab.health("baseline", "acc", ("chance", chance), margin=s.health_margin,
               max_flattening=s.max_flattening)  # fmt: skip
    ratio = lab.value("acc/codebook") / lab.value("acc/baseline")
    lab.measure("acc_ratio/codebook-baseline", ratio)
    lab.bound(
        f"accuracy with codebooks is near the un-quantised model's (>= {s.acc_ratio}x)",
        "accuracy ratio", ratio, at_least=s.acc_ratio, unit="x", arms=("baseline",),
        note=f"{lab.value('acc/codebook'):.3f} vs {lab.value('acc/baseline'):.3f} "
        f"(chance {chance:.3f})",
    )  # fmt: skip
    fracs = run_alignment(lab, s, fsm, models, test)
    run_steering(lab, s, fsm, models["codebook"], test, fracs)


# ---------------------------------------------------------------------- alignment
def state_positions(fsm: FSM, states: Tensor) -> tuple[Tensor, Tensor]:
    """The input positions of every state's last token (inputs are tokens[:, :-1]) and the
    state there, for the states before the last."""
    d = fsm.cfg.digits
    pos = torch.arange(fsm.cfg.walk - 1) * d + d - 1
    return pos, states[:, : fsm.cfg.walk - 1]


def precise_units(active: Tensor, labels: Tensor, n_states: int, min_count: int) -> Tensor:
    """For binary activity (N, U) and state labels (N,): per unit, its precision for its
    most frequent state and that state: (U,), (U,) (units active < min_count times: 0)."""
    counts = active.float().T @ F.one_hot(labels, n_states).float()  # (U, S)
    total = counts.sum(1)
    prec, state = (counts / total.clamp_min(1)[:, None]).max(1)
    return torch.where(total >= min_count, prec, torch.zeros_like(prec)), state


def states_covered(prec: Tensor, state: Tensor, threshold: float, n_states: int) -> Tensor:
    """Bool (S,): states with a unit of precision >= threshold."""
    covered = torch.zeros(n_states, dtype=torch.bool)
    covered[state[prec >= threshold]] = True
    return covered


@torch.no_grad()
def run_alignment(lab: Lab, s: Settings, fsm: FSM, models: dict, test: Tensor) -> dict:
    tokens = fsm.tokens(test)[:, :-1]
    pos, labels = state_positions(fsm, test)
    labels = labels.flatten()
    S = s.fsm.n_states
    model = models["codebook"]
    books = model.codebooks()
    names = [f"{name}:input" for name, _ in books]
    with capture(model, names) as cache:
        model(tokens)
    covered = torch.zeros(S, dtype=torch.bool)
    best = {}
    for (name, book), key in zip(books, names, strict=True):
        ids = book.codes_of(cache[key][:, pos])  # (N, P, k)
        active = F.one_hot(ids, book.codes.shape[0]).amax(-2).flatten(0, 1)  # (N P, codes)
        prec, state = precise_units(active, labels, S, s.min_count)
        best[name] = (prec, state)
        cov = states_covered(prec, state, s.precision, S)
        lab.measure(f"states_with_code/{name}", int(cov.sum()))
        covered |= cov
    frac = float(covered.float().mean())
    lab.measure("state_frac/codes", frac)
    # the contrast: the un-quantised model's single neurons (MLP hidden units, residual dims)
    base = models["baseline"]
    points = [f"decoder.layers.{i}.ffn.fc2:input" for i in range(s.model.n_layers)] + [
        f"decoder.layers.{i}" for i in range(s.model.n_layers)
    ]
    with capture(base, points) as cache:
        base(tokens)
    n_cov = torch.zeros(S, dtype=torch.bool)
    for key in points:
        acts = cache[key][:, pos].flatten(0, 1)  # (N P, U)
        active = acts > acts.quantile(0.9, dim=0)
        prec, state = precise_units(active, labels, S, s.min_count)
        n_cov |= states_covered(prec, state, s.precision, S)
    n_frac = float(n_cov.float().mean())
    lab.measure("state_frac/neurons", n_frac)
    lab.bound(
        f"codes align with states: >= {s.min_state_frac:.0%} of states have a code of "
        f"precision >= {s.precision}", "fraction of states", frac, at_least=s.min_state_frac,
        arms=("baseline",), note=f"best single neurons of the un-quantised model: {n_frac:.2f}",
    )  # fmt: skip
    lab.compare_values(
        "codes align with states better than single neurons (fraction of states covered)",
        ("codes", frac), ("neurons", n_frac), margin=0.0, strict=True,
    )  # fmt: skip
    return best


# ---------------------------------------------------------------------- steering
@torch.no_grad()
def run_steering(lab: Lab, s: Settings, fsm: FSM, model, test: Tensor, best: dict) -> None:
    name, book = model.codebooks()[-1]  # the last layer's MLP codebook
    prec, state = best[name]
    S, k = s.fsm.n_states, book.k
    codes_for = {}
    for target in range(S):
        mine = ((state == target) & (prec >= s.precision)).nonzero().flatten()
        if len(mine):
            order = prec[mine].argsort(descending=True)
            codes_for[target] = mine[order][:k]
    lab.measure("steerable_states", len(codes_for))
    if not codes_for:
        lab.check("forcing a state's codes makes the model continue from that state", False,
                  f"no state has a code of precision >= {s.precision} in {name}")  # fmt: skip
        return
    g = lab.rng("steering")
    d = s.fsm.digits
    targets_all = torch.tensor(sorted(codes_for))
    n = min(s.n_steer, len(test))
    t = fsm.cfg.walk // 2
    prefix = fsm.tokens(test[:n])[:, : t * d]
    current = test[:n, t - 1]
    follows_target = follows_current = 0
    for i in range(n):
        choices = targets_all[targets_all != current[i]]
        target = int(choices[torch.randint(0, len(choices), (1,), generator=g)])
        pred = generate_state(model, fsm, prefix[i : i + 1], forced=(book, codes_for[target]))
        p = int(pred[0])
        follows_target += int(p >= 0 and bool(fsm.valid[target, p]))
        follows_current += int(p >= 0 and bool(fsm.valid[int(current[i]), p]))
    rate = follows_target / n
    lab.measure("steer/follows_target", rate)
    lab.measure("steer/follows_current", follows_current / n)
    chance = s.fsm.n_successors / S
    lab.bound(
        f"forcing state s''s codes (last MLP codebook) makes the model continue with a valid "
        f"successor of s' (>= {s.min_steer:.0%} of trials; chance {chance:.0%})",
        "rate", rate, at_least=s.min_steer, arms=("baseline",),
        note=f"{n} trials; still a successor of the true state: {follows_current / n:.2f}",
    )  # fmt: skip
    lab.figure("alignment", plot_alignment(lab, s, model))


def plot_alignment(lab: Lab, s: Settings, model):
    fig = new_figure(figsize=(6.0, 3.2))
    ax = fig.subplots()
    names = [n for n, _ in model.codebooks()]
    vals = [lab.value("states_with_code", n) for n in names]
    ax.barh(range(len(names)), vals)
    ax.set_yticks(range(len(names)), [n.replace("decoder.layers.", "L") for n in names],
                  fontsize=6)  # fmt: skip
    ax.axvline(s.fsm.n_states * lab.value("state_frac/neurons"), color="k", ls=":",
               label="states covered by single neurons (un-quantised)")  # fmt: skip
    ax.set(xlabel=f"states with a code of precision >= {s.precision}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
