"""Miniature reproduction of transcoders on a model with planted features.

The MLP sublayer of ``data.PlantedCircuit`` computes 128 sparse output features from 256 sparse
input features held in superposition in a 64-dimensional residual stream; its edges (which
input features each output feature reads) are known. Activations are streamed from the hooked
MLP (``archlab.interp.ActivationStore``): the MLP's input ``x`` and output ``y``.

(a) Fidelity at matched sparsity: a transcoder (``x -> y``) and an SAE on the MLP's output
    (``y -> y``), both with 512 latents, are trained at the same grid of L1 coefficients with
    the same steps; each arm's learning rate is tuned on the validation objective at the middle
    coefficient. On the test split, the SAE's log FVU is interpolated at each transcoder point's
    log L0 (inside the SAE's L0 range); the claim bounds the geometric-mean FVU ratio.
(b) Attribution through the MLP: the transcoder's input-independent attribution
    ``E_in,i . f_enc,j`` (upstream features' directions times its encoder) scores every
    (input feature, latent) pair; latents are identified with planted output features by their
    decoder direction (cosine >= ``match_cos``); the claim bounds the AUROC of the scores
    against the planted edges. The input-dependent attribution (activation x weight, averaged
    where the latent fires) and the SAE route (the SAE latents' gradient attribution through
    the MLP, ``f_i E_in,i . d a_j / d x``, averaged the same way) are measured beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor

from archlab.interp import ActivationStore, DictionaryConfig, SparseDictionary, dictionary_loss
from archlab.interp.dictionary import dictionary_metrics
from archlab.lab import Lab, Recipe
from archlab.lab.plots import new_figure
from archlab.papers.interp.transcoders.data import CircuitConfig, PlantedCircuit
from archlab.papers.interp.transcoders.model import weight_attribution


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides (thresholds fixed before the test split was evaluated)."""

    circuit: CircuitConfig
    d_sae: int
    l1s: tuple[float, ...]  # the L1 grid of both arms (the middle one tunes the lr)
    recipe: Recipe
    lrs: tuple[float, ...]
    resample_every: int  # dead latents (silent for this many steps) are resampled this often
    buffer_rows: int
    n_val: int
    n_test: int
    fvu_ratio: float  # transcoder FVU <= this x the SAE's at matched L0
    min_auroc: float  # weight attribution AUROC against the planted edges
    match_cos: float  # a latent is a planted output feature if its decoder cosine >= this
    health_fvu: float  # the SAE's FVU at the middle coefficient at most this
    max_flattening: float


def _recipe(steps: int, batch: int) -> Recipe:
    return Recipe(steps=steps, batch_size=batch, lr=1e-3, optimizer="adam", schedule="cosine",
                  warmup_steps=steps // 20, min_lr_ratio=0.1, curve_points=20)  # fmt: skip


BUDGETS = {
    "smoke": Settings(
        circuit=CircuitConfig(n_in=32, n_out=16, d=16), d_sae=32, l1s=(1e-3, 3e-3, 1e-2),
        recipe=_recipe(10, 64), lrs=(1e-3,), resample_every=5, buffer_rows=512, n_val=256,
        n_test=256, fvu_ratio=100.0, min_auroc=0.0, match_cos=0.5, health_fvu=10.0,
        max_flattening=10.0,
    ),
    "quick": Settings(
        circuit=CircuitConfig(), d_sae=512, l1s=(3e-3, 1e-2, 3e-2, 1e-1, 3e-1),
        recipe=_recipe(1000, 512), lrs=(1e-2, 3e-2), resample_every=250, buffer_rows=65536,
        n_val=8192, n_test=16384, fvu_ratio=1.25, min_auroc=0.8, match_cos=0.9, health_fvu=0.3,
        max_flattening=0.2,
    ),
}  # fmt: skip

ARMS = {"transcoder": True, "sae": False}  # arm -> reads the MLP's input (else its output)


def _pairs(circuit: PlantedCircuit, n: int, g: torch.Generator):
    f, x = circuit.sample(n, g)
    return f, x, circuit.mlp(x)


def run(lab: Lab) -> None:
    """(a) fidelity at matched sparsity, (b) attribution through the MLP."""
    s: Settings = lab.settings
    circuit = PlantedCircuit(s.circuit, lab.rng("circuit"))
    g_stream = lab.rng("activations")
    store = ActivationStore(circuit.mlp, "0:input", lambda: circuit.sample(4096, g_stream)[1],
                            buffer_rows=s.buffer_rows, target="2")  # fmt: skip
    val = _pairs(circuit, s.n_val, lab.rng("val-data"))
    test = _pairs(circuit, s.n_test, lab.rng("test-data"))
    models = {arm: run_fidelity(lab, s, arm, reads_input, store, val, test)
              for arm, reads_input in ARMS.items()}  # fmt: skip
    check_fidelity(lab, s)
    run_attribution(lab, s, circuit, models, test)
    lab.figure("pareto", plot_pareto(lab, s))


# ---------------------------------------------------------------------- (a) fidelity
def run_fidelity(lab, s, arm, reads_input, store, val, test) -> SparseDictionary:
    """Train ``arm`` at every L1 coefficient; return the middle one's model."""
    d = s.circuit.d

    def data(batch_size, g):
        x, y = store(batch_size, g)
        return (x, y) if reads_input else y

    def make(l1: float):
        cfg = DictionaryConfig(d_in=d, d_sae=s.d_sae, d_out=d if reads_input else None,
                               l1_coefficient=l1, dead_after=s.resample_every,
                               resample_every=s.resample_every)  # fmt: skip
        return lambda: SparseDictionary(cfg)

    def inputs(split):
        return (split[1], split[2]) if reads_input else (split[2], None)

    def objective(model):  # the validation objective (MSE + L1) tunes the lr
        with torch.no_grad():
            return float(model.training_loss(*inputs(val))[0])

    mid = len(s.l1s) // 2
    model = lab.tune(f"{arm}@l1={s.l1s[mid]:g}", make(s.l1s[mid]), dictionary_loss, data,
                     s.recipe, lrs=s.lrs, score=objective, higher_is_better=False)  # fmt: skip
    lr = lab.value("lr", f"{arm}@l1={s.l1s[mid]:g}")
    lab.measure(f"lr/{arm}", lr)
    chosen = model
    for i, l1 in enumerate(s.l1s):
        name = f"{arm}@l1={l1:g}"
        if i != mid:
            model = lab.build(name, make(l1))
            lab.fit(name, model, dictionary_loss, data, s.recipe.replace(lr=lr))
        else:
            model = chosen
        for split_name, split in (("val", val), ("test", test)):
            m = dictionary_metrics(model, *inputs(split))
            for key in ("l0", "fvu", "dead_fraction"):
                lab.measure(f"{split_name}_{key}/{name}", m[key])
    return chosen


def interpolate_log(x: float, xs: list[float], ys: list[float]) -> float | None:
    """``exp`` of the linear interpolation of ``log y`` against ``log x``; None outside."""
    pts = sorted(zip(xs, ys, strict=True))
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1 and x1 > x0:
            t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return math.exp((1 - t) * math.log(y0) + t * math.log(y1))
    return None


def check_fidelity(lab: Lab, s: Settings) -> None:
    def curve(arm: str, metric: str) -> list[float]:
        return [lab.value(f"test_{metric}", f"{arm}@l1={l1:g}") for l1 in s.l1s]

    sae_l0, sae_fvu = curve("sae", "l0"), curve("sae", "fvu")
    ratios = []
    for l0, fvu in zip(curve("transcoder", "l0"), curve("transcoder", "fvu"), strict=True):
        ref = interpolate_log(l0, sae_l0, sae_fvu)
        if ref is not None:
            ratios.append(fvu / ref)
    lab.measure("matched_points", len(ratios))
    mid = f"sae@l1={s.l1s[len(s.l1s) // 2]:g}"
    lab.health(mid, "test_fvu", ("the mean predictor (FVU 1)", 1.0), margin=1.0 - s.health_fvu,
               higher_is_better=False, max_flattening=s.max_flattening)  # fmt: skip
    if not ratios:
        lab.check(f"(a) the transcoder's FVU is <= {s.fvu_ratio}x the SAE's at matched L0",
                  False, f"no transcoder point inside the SAE's L0 range "
                  f"[{min(sae_l0):.1f}, {max(sae_l0):.1f}]")  # fmt: skip
        return
    ratio = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    lab.measure("fvu_ratio/transcoder-sae", ratio)
    lab.bound(
        f"(a) the transcoder reconstructs the MLP's output as faithfully as an SAE at matched "
        f"sparsity (FVU <= {s.fvu_ratio}x the SAE's, interpolated at the same L0)",
        "geometric-mean FVU ratio", ratio, at_most=s.fvu_ratio, unit="x", arms=(mid,),
        note=f"over {len(ratios)} matched points; per point "
        + ", ".join(f"{r:.2f}" for r in ratios),
    )  # fmt: skip


# ---------------------------------------------------------------------- (b) attribution
def match_latents(model: SparseDictionary, E_out: Tensor, min_cos: float):
    """For every latent: the planted output feature whose direction its decoder row is closest
    to, and whether the cosine reaches ``min_cos``."""
    rows = model.decoder().detach()
    cos = (rows / rows.norm(dim=1, keepdim=True)) @ E_out.T  # (d_sae, n_out)
    best, feature = cos.max(1)
    return feature, best >= min_cos


def auroc(scores: Tensor, labels: Tensor) -> float:
    """ROC AUC of ``scores`` against boolean ``labels`` (nan without both classes)."""
    labels = labels.flatten()
    if labels.all() or not labels.any():
        return math.nan
    return float(roc_auc_score(labels.numpy(), scores.flatten().numpy()))


def firing_mean(values: Tensor, acts: Tensor) -> Tensor:
    """Mean of ``values`` (N, n_in, K) over the inputs where each latent (acts (N, K)) fires."""
    fires = (acts > 0).float()  # (N, K)
    return (values * fires[:, None, :]).sum(0) / fires.sum(0).clamp_min(1)


def run_attribution(lab: Lab, s: Settings, circuit: PlantedCircuit, models, split) -> None:
    f, x, y = split
    tc, sae = models["transcoder"], models["sae"]
    feature, ok = match_latents(tc, circuit.E_out, s.match_cos)
    lab.measure("matched_latents/transcoder", int(ok.sum()))
    lab.measure("recovered_features/transcoder", int(feature[ok].unique().numel()))
    labels = circuit.edges[feature[ok]].T  # (n_in, K) planted edge i -> latent's feature
    with torch.no_grad():
        w = weight_attribution(circuit.E_in, tc)[:, ok]  # (n_in, K)
        acts = tc.encode(x)[:, ok]  # (N, K)
        dep = firing_mean(f[:, :, None] * w, acts)
    lab.measure("auroc/transcoder_weight", auroc(w, labels))
    lab.measure("auroc/transcoder_input", auroc(dep, labels))
    # the SAE route: gradient attribution of SAE latents (on the MLP's output) through the MLP
    s_feature, s_ok = match_latents(sae, circuit.E_out, s.match_cos)
    lab.measure("matched_latents/sae", int(s_ok.sum()))
    for arm, model in models.items():  # how well each planted output feature is found
        rows = model.decoder().detach()
        cos = (rows / rows.norm(dim=1, keepdim=True)) @ circuit.E_out.T  # (d_sae, n_out)
        lab.measure(f"feature_cos_median/{arm}", float(cos.max(0).values.median()))
    s_labels = circuit.edges[s_feature[s_ok]].T
    idx = s_ok.nonzero().flatten()
    lab.measure("auroc/sae_gradient", sae_gradient_auroc(sae, circuit, idx, s_labels, f, x, y)
                if len(idx) else math.nan)  # fmt: skip
    lab.bound(
        f"(b) the transcoder's input-independent attribution recovers the planted "
        f"feature-to-feature edges through the MLP (AUROC >= {s.min_auroc})",
        "AUROC", lab.value("auroc/transcoder_weight"), at_least=s.min_auroc,
        note=(f"{int(ok.sum())} latents matched to {lab.value('recovered_features/transcoder')}"
              f" of {s.circuit.n_out} output features; input-dependent "
              f"{lab.value('auroc/transcoder_input'):.3f}, SAE gradient route "
              f"{lab.value('auroc/sae_gradient'):.3f}"),
    )  # fmt: skip


def sae_gradient_auroc(sae, circuit, idx, labels, f, x, y, n: int = 1024) -> float:
    """AUROC of the SAE route: latents ``idx`` of the SAE on the MLP's output, attributed to
    the input features by ``f_i E_in,i . d a_j / d x`` (through the MLP), averaged where the
    latent fires."""

    def latent_acts(xi: Tensor) -> Tensor:
        return sae.encode(circuit.mlp(xi))[idx]

    n = min(len(x), n)
    jac = torch.func.vmap(torch.func.jacrev(latent_acts))(x[:n])  # (n, K, d)
    attr = f[:n, :, None] * torch.einsum("id,nkd->nik", circuit.E_in, jac)
    with torch.no_grad():
        acts = sae.encode(y[:n])[:, idx]
    return auroc(firing_mean(attr.detach(), acts), labels)


def plot_pareto(lab: Lab, s: Settings):
    fig = new_figure(figsize=(5.0, 3.8))
    ax = fig.subplots()
    for arm, color in (("transcoder", "C0"), ("sae", "C1")):
        l0 = [lab.value("test_l0", f"{arm}@l1={l1:g}") for l1 in s.l1s]
        fvu = [lab.value("test_fvu", f"{arm}@l1={l1:g}") for l1 in s.l1s]
        ax.plot(l0, fvu, "o-", color=color, label=arm)
        for l1, a, b in zip(s.l1s, l0, fvu, strict=True):
            ax.annotate(f"{l1:g}", (a, b), fontsize=6)
    ax.set(xscale="log", yscale="log", xlabel="L0 (test)", ylabel="FVU of the MLP output (test)",
           title="sparsity-fidelity trade-off")  # fmt: skip
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
