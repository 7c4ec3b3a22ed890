"""Miniature reproduction of SNNK: kernel estimation, closed-form regression, adapters.

(a) Kernel estimation: for every random-feature map (``ACTIVATIONS``), the relative error of
    ``Phi(x)^T Psi(w, b)`` against the exact ``f(w^T x + b)`` over ``m``; the log-log slope is
    fitted per repetition (fresh ``Omega``) and given with a 95% t interval over repetitions.
(b) Closed-form regression on ``make_friedman1``: the fully bundled SNNK network (exp features,
    ``closed_form_weights``; feature scale and ridge chosen on validation) against a backprop
    MLP tuned with ``lab.tune`` on the same validation split.
(c) Adapters: a tiny pre-norm transformer encoder is pretrained on task A (which of tokens 0-3
    is most frequent), frozen, and adapted to task B (which of tokens 4-7 is most frequent) with
    Houlsby bottleneck adapters or SNNK adapters (official ReLU-SNNK, ``m = 8``) after every
    attention output and feed-forward output; the head is trained in both arms (and alone, as a
    reference). Both adapter arms are tuned on the same lr grid; the match is a paired interval
    over inner seeds. A stress task (XOR of two count comparisons, which needs a new learned
    nonlinearity) is measured and reported, not checked.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from archlab.lab import Lab, Recipe, evaluate_accuracy, predict
from archlab.lab.plots import new_figure
from archlab.lab.protocol import paired_interval
from archlab.lab.tasks import CLASSIFY
from archlab.nn.transformer import Encoder, EncoderLayer
from archlab.papers.fields.snnk.model import (
    ACTIVATIONS,
    BottleneckAdapter,
    FeatureMap,
    SNNKAdapter,
    adapter_parameters,
    closed_form_weights,
    feature_width,
)


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides (thresholds fixed before any test split was evaluated)."""

    # (a) kernel estimation
    d_kernel: int
    n_inputs: int
    n_neurons: int
    ms: tuple[int, ...]
    n_reps: int
    slope_band: tuple[float, float]  # the slope's 95% interval must lie inside this band
    max_rel_error: float  # exp map: relative error at the largest m at most this
    # (b) closed-form regression
    n_train: int
    n_val: int
    n_test: int
    m_regression: int
    scales: tuple[float, ...]  # input scales of the feature map (chosen on validation)
    ridges: tuple[float, ...]  # ridge weights (chosen on validation)
    mlp_width: int
    mlp_recipe: Recipe
    mlp_lrs: tuple[float, ...]
    mse_ratio: float  # closed-form test MSE <= this x the MLP's
    mlp_health: float  # MLP test MSE <= this x the mean predictor's
    # (c) adapters
    n_vocab: int
    n_tokens: int
    d_model: int
    n_layers: int
    n_heads: int
    n_train_a: int
    n_train_b: int
    n_eval: int
    pretrain: Recipe
    adapt: Recipe
    adapter_lrs: tuple[float, ...]
    bottleneck: int  # Houlsby r
    m_adapter: int  # SNNK adapter random features
    n_pairs: int  # seeds of the paired adapter comparison (tuned run + replicates)
    match_points: float  # SNNK accuracy >= bottleneck's - this (points), paired interval
    param_ratio: float  # SNNK trainable <= this x bottleneck's
    adapters_matter: float  # bottleneck beats the head alone by this many points
    health_margin: float  # accuracy above the majority class (points)
    max_flattening: float
    stress: bool  # measure the XOR stress task


def _recipe(steps: int, batch: int, lr: float = 1e-2) -> Recipe:
    return CLASSIFY.recipe(steps=steps, batch_size=batch, lr=lr, warmup_steps=steps // 20,
                           weight_decay=0.0, grad_clip=None, curve_points=20)  # fmt: skip


def _mlp_recipe(steps: int) -> Recipe:
    return Recipe(steps=steps, batch_size=128, lr=3e-3, optimizer="adam", schedule="cosine",
                  curve_points=30)  # fmt: skip


BUDGETS = {
    "smoke": Settings(
        d_kernel=8, n_inputs=16, n_neurons=8, ms=(8, 32), n_reps=2, slope_band=(-10.0, 10.0),
        max_rel_error=10.0, n_train=128, n_val=64, n_test=64, m_regression=32, scales=(0.5,),
        ridges=(1e-3,), mlp_width=8, mlp_recipe=_mlp_recipe(10), mlp_lrs=(3e-3,), mse_ratio=100.0,
        mlp_health=10.0, n_vocab=16, n_tokens=8, d_model=16, n_layers=1, n_heads=2,
        n_train_a=128, n_train_b=128, n_eval=64, pretrain=_recipe(5, 16), adapt=_recipe(5, 16),
        adapter_lrs=(1e-2,), bottleneck=4, m_adapter=2, n_pairs=2, match_points=100.0,
        param_ratio=1.0, adapters_matter=-100.0, health_margin=-100.0, max_flattening=10.0,
        stress=False,
    ),
    "quick": Settings(
        d_kernel=16, n_inputs=128, n_neurons=32, ms=(64, 128, 256, 512, 1024, 2048, 4096),
        n_reps=8, slope_band=(-0.6, -0.4), max_rel_error=0.05, n_train=2000, n_val=1000,
        n_test=2000, m_regression=1024, scales=(0.25, 0.5, 1.0, 1.5),
        ridges=(1e-5, 1e-4, 1e-3, 1e-2, 1e-1), mlp_width=64, mlp_recipe=_mlp_recipe(3000),
        mlp_lrs=(1e-3, 3e-3, 1e-2), mse_ratio=1.2, mlp_health=0.2, n_vocab=16, n_tokens=16,
        d_model=32, n_layers=2, n_heads=2, n_train_a=8000, n_train_b=4000, n_eval=2000,
        pretrain=_recipe(600, 64, 3e-3), adapt=_recipe(1000, 64), adapter_lrs=(1e-2, 3e-2, 1e-1),
        bottleneck=16, m_adapter=8, n_pairs=4, match_points=2.0, param_ratio=1 / 3,
        adapters_matter=10.0, health_margin=30.0, max_flattening=0.2, stress=True,
    ),
}  # fmt: skip


# ---------------------------------------------------------------------- (a) kernel estimation
def kernel_errors(s: Settings, act: str, g: torch.Generator) -> list[list[float]]:
    """Relative RMS error ``|est - exact| / |exact|`` (over inputs x neurons) per repetition
    and ``m``; inputs and weights ``~ N(0, I / (2 d))`` (norms about 0.7), biases ``N(0, 0.3^2)``
    (none for the arc-cosine map)."""
    d = s.d_kernel
    x = torch.randn(s.n_inputs, d, generator=g, dtype=torch.double) / math.sqrt(2 * d)
    w = torch.randn(s.n_neurons, d, generator=g, dtype=torch.double) / math.sqrt(2 * d)
    b = None if act == "relu" else 0.3 * torch.randn(s.n_neurons, generator=g, dtype=torch.double)
    out = []
    for _ in range(s.n_reps):
        row = []
        for m in s.ms:
            fmap = FeatureMap(d, m, act, g).double()
            exact = fmap.exact(x, w, b)
            row.append(float((fmap.estimate(x, w, b) - exact).norm() / exact.norm()))
        out.append(row)
    return out


def loglog_slope(ms: tuple[int, ...], errors: list[float]) -> float:
    """Least-squares slope of ``log(error)`` against ``log(m)``."""
    lx = torch.tensor([math.log(m) for m in ms], dtype=torch.double)
    ly = torch.tensor([math.log(e) for e in errors], dtype=torch.double)
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float((lx * ly).sum() / (lx * lx).sum())


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t interval of ``values``."""
    mean, lo, hi = paired_interval(values, [0.0] * len(values))
    return mean, lo, hi


def run_kernels(lab: Lab, s: Settings) -> dict[str, list[list[float]]]:
    errors = {}
    for act in ACTIVATIONS:
        errs = kernel_errors(s, act, lab.rng(f"kernel/{act}"))
        errors[act] = errs
        slopes = [loglog_slope(s.ms, row) for row in errs]
        mean, lo, hi = t_interval(slopes)
        lab.measure(f"kernel/{act}/slope", mean)
        lab.measure(f"kernel/{act}/slope_lo", lo)
        lab.measure(f"kernel/{act}/slope_hi", hi)
        final = sum(row[-1] for row in errs) / len(errs)
        lab.measure(f"kernel/{act}/rel_error@m={s.ms[-1]}", final)
        target = "the arc-cosine kernel" if act == "relu" else f"{act}(w^T x + b)"
        lab.check(
            f"(a) {act}: the error of Phi(x)^T Psi(w, b) against {target} falls like 1/sqrt(m) "
            f"(log-log slope's 95% interval inside [{s.slope_band[0]}, {s.slope_band[1]}])",
            s.slope_band[0] <= lo and hi <= s.slope_band[1],
            f"slope {mean:+.3f}, 95% interval [{lo:+.3f}, {hi:+.3f}] over {s.n_reps} draws of "
            f"Omega, m = {s.ms[0]}..{s.ms[-1]}; relative error at m = {s.ms[-1]}: {final:.4f}",
        )
    lab.bound(
        f"(a) exp: relative error at m = {s.ms[-1]} is small", "mean relative error",
        lab.value(f"kernel/exp/rel_error@m={s.ms[-1]}"), at_most=s.max_rel_error,
    )  # fmt: skip
    return errors


# ---------------------------------------------------------------------- (b) regression
def friedman(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``sklearn.datasets.make_friedman1`` (10 features, 5 informative, noise 1)."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(n_samples=n, n_features=10, noise=1.0, random_state=seed % 2**31)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)[:, None]


def bundled_features(fmap: FeatureMap, scale: float, x: Tensor) -> Tensor:  # (N, 10) -> (N, F+1)
    """The fully bundled network's input features: ``Phi(scale (x - 1/2))`` and a constant."""
    return torch.cat([fmap.phi(scale * (x - 0.5)), torch.ones(len(x), 1)], dim=1)


def mse_loss(model: nn.Module, batch: tuple[Tensor, Tensor]):
    x, y = batch
    return F.mse_loss(model(x), y), {}


def run_regression(lab: Lab, s: Settings) -> None:
    train, val, test = (friedman(n, lab.seed_for(f"{split}-data")) for n, split in
                        ((s.n_train, "train"), (s.n_val, "val"), (s.n_test, "test")))  # fmt: skip
    mu, sd = train[1].mean(), train[1].std()
    norm = lambda y: (y - mu) / sd  # noqa: E731
    mse = lambda pred, y: float(((pred * sd + mu - y) ** 2).mean())  # noqa: E731  original units
    # the fully bundled SNNK network: closed form, scale and ridge chosen on validation
    fmap = FeatureMap(10, s.m_regression, "exp", lab.rng("init/bundled"), orthogonal=True)
    best = None
    for scale in s.scales:
        phi_tr, phi_va = (
            bundled_features(fmap, scale, train[0]),
            bundled_features(fmap, scale, val[0]),
        )
        for ridge in s.ridges:
            P = closed_form_weights(phi_tr, norm(train[1]), ridge)
            v = lab.measure(
                f"val/bundled@scale={scale:g},ridge={ridge:g}", mse(phi_va @ P.T, val[1])
            )
            if best is None or v < best[0]:
                best = (v, scale, ridge, P)
    v, scale, ridge, P = best
    lab.measure("val/bundled", v)
    lab.measure("scale/bundled", scale)
    lab.measure("ridge/bundled", ridge)
    lab.measure(
        "scale_edge/bundled", float(scale in (min(s.scales), max(s.scales)) and len(s.scales) > 1)
    )
    lab.measure("params/bundled", P.numel())
    lab.measure("mse/bundled", mse(bundled_features(fmap, scale, test[0]) @ P.T, test[1]))
    # optimality of the closed form (gradient of the ridge objective vanishes)
    phi = bundled_features(fmap, scale, train[0]).double()
    t = norm(train[1]).double()
    grad = phi.T @ (phi @ P.T.double() - t) + ridge * P.T.double()
    ref = (phi.T @ t).norm()
    lab.invariant(
        "(b) the closed-form weights are a stationary point of the ridge MSE (no backprop)",
        float(grad.norm() / ref) < 1e-3, f"|grad| / |Phi^T y| = {float(grad.norm() / ref):.2e}",
    )  # fmt: skip
    # the backprop MLP: lr tuned on the same validation split
    width = s.mlp_width
    make = lambda: nn.Sequential(nn.Linear(10, width), nn.ReLU(), nn.Linear(width, width),  # noqa: E731
                                 nn.ReLU(), nn.Linear(width, 1))  # fmt: skip
    xtr, ytr = train[0], norm(train[1])

    def batches(batch_size: int, g: torch.Generator):
        idx = torch.randint(0, len(xtr), (batch_size,), generator=g)
        return xtr[idx], ytr[idx]

    score = lambda m: mse(predict(m, val[0]), val[1])  # noqa: E731
    mlp = lab.tune("mlp", make, mse_loss, batches, s.mlp_recipe, lrs=s.mlp_lrs, score=score,
                   higher_is_better=False)  # fmt: skip
    lab.measure("mse/mlp", mse(predict(mlp, test[0]), test[1]))
    lab.measure("mse/mean", float(((test[1] - train[1].mean()) ** 2).mean()))
    mean = lab.value("mse/mean")
    lab.health("mlp", "mse", ("the train-mean predictor", mean), margin=(1 - s.mlp_health) * mean,
               higher_is_better=False, max_flattening=s.max_flattening)  # fmt: skip
    ratio = lab.value("mse/bundled") / lab.value("mse/mlp")
    lab.measure("mse_ratio/bundled-mlp", ratio)
    lab.bound(
        f"(b) the fully bundled SNNK network fitted in closed form reaches test MSE <= "
        f"{s.mse_ratio}x the backprop MLP's (make_friedman1)",
        "MSE ratio", ratio, at_most=s.mse_ratio, unit="x", arms=("mlp",),
        note=f"bundled {lab.value('mse/bundled'):.3f} vs MLP {lab.value('mse/mlp'):.3f}",
    )  # fmt: skip


# ---------------------------------------------------------------------- (c) adapters
def token_task(n: int, task: str, s: Settings, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Uniform token sequences (B, T) and labels: ``"A"`` which of tokens 0-3 is most frequent,
    ``"B"`` which of tokens 4-7 (first on ties), ``"xor"`` ``[#4 > #5] xor [#6 > #7]``."""
    x = torch.randint(0, s.n_vocab, (n, s.n_tokens), generator=g)
    counts = F.one_hot(x, s.n_vocab).sum(1)  # (B, V)
    if task == "A":
        return x, counts[:, :4].argmax(1)
    if task == "B":
        return x, counts[:, 4:8].argmax(1)
    return x, (counts[:, 4] > counts[:, 5]).long() ^ (counts[:, 6] > counts[:, 7]).long()


class TinyEncoder(nn.Module):
    """Token + learned position embeddings, a pre-norm ``archlab.nn`` encoder, mean pooling and
    a linear head."""

    def __init__(self, s: Settings, n_classes: int):
        super().__init__()
        D = s.d_model
        self.embed = nn.Embedding(s.n_vocab, D)
        self.pos = nn.Parameter(0.02 * torch.randn(s.n_tokens, D))
        layers = [EncoderLayer(D, s.n_heads, 4 * D, norm_first=True) for _ in range(s.n_layers)]
        self.encoder = Encoder(layers, nn.LayerNorm(D))
        self.head = nn.Linear(D, n_classes)

    def forward(self, x: Tensor) -> Tensor:  # (B, T) -> (B, K)
        h = self.encoder(self.embed(x) + self.pos)  # (B, T, D)
        return self.head(h.mean(1))


def adapted(base: TinyEncoder, kind: str, s: Settings, n_classes: int) -> TinyEncoder:
    """A frozen copy of ``base`` with a new head and, unless ``kind == "head"``, an adapter after
    every attention output projection and feed-forward output (Houlsby's two positions)."""
    model = copy.deepcopy(base)
    model.requires_grad_(False)
    model.head = nn.Linear(s.d_model, n_classes)
    if kind != "head":
        for layer in model.encoder.layers:
            for parent, name in ((layer.self_attn, "out_proj"), (layer.ffn, "fc2")):
                adapter = (BottleneckAdapter(s.d_model, s.bottleneck) if kind == "bottleneck"
                           else SNNKAdapter(s.d_model, s.m_adapter, "relu"))  # fmt: skip
                setattr(parent, name, nn.Sequential(getattr(parent, name), adapter))
    return model


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def sampler(x: Tensor, y: Tensor):
    def batches(batch_size: int, g: torch.Generator):
        idx = torch.randint(0, len(x), (batch_size,), generator=g)
        return x[idx], y[idx]

    return batches


def run_adapters(lab: Lab, s: Settings) -> None:
    xa, ya = token_task(s.n_train_a, "A", s, lab.rng("train-data/A"))
    xa_te, ya_te = token_task(s.n_eval, "A", s, lab.rng("test-data/A"))
    base = lab.build("pretrain", lambda: TinyEncoder(s, 4))
    lab.fit("pretrain", base, CLASSIFY.loss, sampler(xa, ya), s.pretrain)
    lab.measure("acc/pretrain", evaluate_accuracy(base, xa_te, ya_te))
    lab.health("pretrain", "acc", ("the majority class", _majority(ya_te)),
               margin=s.health_margin / 100, max_flattening=s.max_flattening)  # fmt: skip
    tasks = ("B", "xor") if s.stress else ("B",)
    for task in tasks:
        train = token_task(s.n_train_b, task, s, lab.rng(f"train-data/{task}"))
        val = token_task(s.n_eval, task, s, lab.rng(f"val-data/{task}"))
        test = token_task(s.n_eval, task, s, lab.rng(f"test-data/{task}"))
        k = int(train[1].max()) + 1
        lab.measure(f"acc/{task}/majority", _majority(test[1]))
        makes = {kind: (lambda kind=kind, k=k: adapted(base, kind, s, k))
                 for kind in ("head", "bottleneck", "snnk")}  # fmt: skip
        for kind, make in makes.items():
            arm = f"{task}/{kind}"
            score = lambda m, val=val: evaluate_accuracy(m, *val)  # noqa: E731
            model = lab.tune(arm, make, CLASSIFY.loss, sampler(*train), s.adapt,
                             lrs=s.adapter_lrs, score=score)  # fmt: skip
            lab.measure(f"trainable/{arm}", trainable(model))
            lab.measure(f"acc/{arm}", 100 * evaluate_accuracy(model, *test))
        if task != "B":
            continue
        majority = 100 * lab.value("acc/B/majority")
        lab.health("B/bottleneck", "acc", ("the majority class", majority), margin=s.health_margin,
                   max_flattening=s.max_flattening, unit=" points")  # fmt: skip
        lab.compare(
            f"(c) the miniature needs adaptation: bottleneck adapters beat the frozen encoder's "
            f"head alone by >= {s.adapters_matter} points on task B",
            "acc", "B/bottleneck", "B/head", margin=s.adapters_matter, unit=" points",
        )  # fmt: skip
        paired = {kind: [lab.value("acc", f"B/{kind}")] for kind in ("bottleneck", "snnk")}
        for i in range(1, s.n_pairs):
            for kind in paired:
                model = lab.replicate(f"B/{kind}", makes[kind], CLASSIFY.loss, sampler(*train),
                                      s.adapt, i)  # fmt: skip
                paired[kind].append(lab.measure(f"acc/B/{kind}/{i}",
                                                100 * evaluate_accuracy(model, *test)))  # fmt: skip
        lab.paired(
            f"(c) SNNK adapters match bottleneck adapters on the frozen encoder (test accuracy "
            f"within {s.match_points} points, paired over {s.n_pairs} seeds)",
            ("snnk", paired["snnk"]), ("bottleneck", paired["bottleneck"]),
            margin=-s.match_points, unit=" points", arms=("B/bottleneck",),
        )  # fmt: skip
    n_snnk, n_bott = lab.value("trainable/B/snnk"), lab.value("trainable/B/bottleneck")
    per = 2 * s.n_layers  # adapters per model
    head = s.d_model * 4 + 4
    fmap_width = feature_width("relu", s.m_adapter)
    expected = (
        per * adapter_parameters("snnk", s.d_model, s.m_adapter, fmap_width) + head,
        per * adapter_parameters("bottleneck", s.d_model, s.bottleneck) + head,
    )
    lab.measure("param_ratio/snnk-bottleneck", n_snnk / n_bott)
    lab.invariant(
        f"(c) SNNK adapters (with the head) train <= {s.param_ratio:.3g}x the bottleneck "
        "adapters' parameters, as the formulas D F + D and 2 D r + r + D give",
        n_snnk / n_bott <= s.param_ratio and (n_snnk, n_bott) == expected,
        f"SNNK {int(n_snnk):,} vs bottleneck {int(n_bott):,} trainable "
        f"(ratio {n_snnk / n_bott:.3f}; formulas {expected[0]:,} and {expected[1]:,})",
    )  # fmt: skip


def _majority(y: Tensor) -> float:
    return float(torch.bincount(y).max()) / len(y)


# ---------------------------------------------------------------------- run and figures
def run(lab: Lab) -> None:
    """(a) kernel estimation, (b) closed-form regression, (c) adapters."""
    s: Settings = lab.settings
    errors = run_kernels(lab, s)
    run_regression(lab, s)
    run_adapters(lab, s)
    lab.figure("kernel_error", plot_kernel_errors(s, errors))
    lab.figure("comparisons", plot_comparisons(lab, s))


def plot_kernel_errors(s: Settings, errors: dict[str, list[list[float]]]):
    """Relative error against m (log-log), mean over draws, with each map's fitted line."""
    fig = new_figure(figsize=(5.6, 4.0))
    ax = fig.subplots()
    for act, errs in errors.items():
        mean = [sum(r[i] for r in errs) / len(errs) for i in range(len(s.ms))]
        slope = sum(loglog_slope(s.ms, r) for r in errs) / len(errs)
        (line,) = ax.plot(s.ms, mean, "o", label=f"{act} (slope {slope:+.2f})")
        logc = sum(math.log(e) - slope * math.log(m) for e, m in zip(mean, s.ms)) / len(s.ms)
        ax.plot(s.ms, [math.exp(logc) * m**slope for m in s.ms], "-", color=line.get_color())
    ax.plot(s.ms, [0.5 * (s.ms[0] / m) ** 0.5 for m in s.ms], "k:", label="1/sqrt(m)")
    ax.set(xscale="log", yscale="log", xlabel="random features m", ylabel="relative error")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_comparisons(lab: Lab, s: Settings):
    """(b) test MSE of the closed-form network and the MLP; (c) task-B accuracy per arm."""
    fig = new_figure(figsize=(8.0, 3.4))
    ax1, ax2 = fig.subplots(1, 2)
    names = ("bundled", "mlp", "mean")
    ax1.bar(names, [lab.value("mse", n) for n in names], color=["C0", "C1", "C7"])
    ax1.set(ylabel="test MSE (friedman1)", yscale="log", title="(b) closed form vs backprop")
    kinds = ("head", "bottleneck", "snnk")
    tasks = [t for t in ("B", "xor") if f"acc/{t}/head" in lab.metrics]
    for j, task in enumerate(tasks):
        xs = [i + 0.4 * j for i in range(len(kinds))]
        ax2.bar(xs, [lab.value("acc", f"{task}/{k}") for k in kinds], 0.4, label=f"task {task}")
    labels = [f"{k}\n{int(lab.value('trainable', f'B/{k}')):,} params" for k in kinds]
    ax2.set_xticks([i + 0.2 * (len(tasks) - 1) for i in range(len(kinds))], labels)
    ax2.set(ylabel="test accuracy (%)", title="(c) adapters on a frozen encoder")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    return fig
