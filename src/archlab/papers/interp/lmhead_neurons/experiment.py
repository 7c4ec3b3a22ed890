"""Miniature reproduction of LM-head neuron decoding on a toy SwiGLU LM.

A Llama-layout LM (``SwiGLULM``) is trained on the concept corpus (``data.Corpus``: 40
concepts in four categories, facts tying each to three clue words, and preferences "my
favourite animal is the dog ."), then fine-tuned on the chat-template version of the
preferences.

(a) Concept neurons: every up-projection neuron of every layer is decoded through the final
    RMSNorm scale and the LM head; a concept "has a neuron" when some neuron's top-1 token is
    the concept (the one with the largest decoded probability of it is kept).
(b) Clamping: at the prompt "my favourite {category} is the", the concept neuron is clamped to
    ``scale x`` its largest activation on training text, and the concept's next-token
    probability is compared with clamping random neurons of the same layer to the same value.
    The concepts are split in two halves by the ``concepts`` stream: the scale is chosen on the
    first (validation) half, the claims are evaluated on the second.
(c) Fine-tuning: the fraction of neurons whose top-1 token is unchanged after fine-tuning,
    against the agreement of randomly paired neurons (a permutation baseline).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from torch import Tensor

from archlab.interp.hooks import capture
from archlab.lab import Lab, Recipe
from archlab.lab.plots import new_figure
from archlab.lab.protocol import paired_interval
from archlab.papers.interp.lmhead_neurons.data import Corpus
from archlab.papers.interp.lmhead_neurons.model import (
    SwiGLUConfig,
    SwiGLULM,
    clamp_neuron,
    decode_neurons,
    hidden_point,
    top1_agreement,
)


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides (thresholds fixed before the test concepts were seen)."""

    model: SwiGLUConfig
    length: int
    pretrain: Recipe
    finetune: Recipe
    scales: tuple[float, ...]  # clamp value = scale x the neuron's largest training activation
    n_random: int  # random neurons per concept (the control)
    n_activation_batches: int  # training batches that measure each neuron's largest activation
    n_selectivity_rows: int  # held-out sequences for the selectivity AUROC
    min_selectivity: float  # the labelled neurons' mean selectivity AUROC, at least
    min_rise: float  # mean probability rise from clamping a concept neuron, at least
    max_random_rise: float  # mean rise from clamping a random neuron, at most
    min_agreement: float  # top-1 agreement after fine-tuning, at least
    agreement_margin: float  # ... and at least this above the permutation baseline
    health_ratio: float  # pretraining loss at most this x the unigram entropy
    max_flattening: float


def _recipe(steps: int, lr: float) -> Recipe:
    return Recipe(steps=steps, batch_size=32, lr=lr, optimizer="adamw", weight_decay=0.01,
                  schedule="cosine", warmup_steps=steps // 20, min_lr_ratio=0.1,
                  grad_clip=1.0, curve_points=20)  # fmt: skip


BUDGETS = {
    "smoke": Settings(
        model=SwiGLUConfig(d_model=16, n_layers=1, n_heads=2, d_hidden=32, max_len=16),
        length=16, pretrain=_recipe(5, 3e-3), finetune=_recipe(3, 1e-3), scales=(5.0,),
        n_random=3, n_activation_batches=1, n_selectivity_rows=8, min_selectivity=0.0,
        min_rise=-1.0, max_random_rise=1.0,
        min_agreement=0.0, agreement_margin=-1.0, health_ratio=10.0, max_flattening=10.0,
    ),
    "quick": Settings(
        model=SwiGLUConfig(d_model=128, n_layers=4, n_heads=4, d_hidden=512, max_len=32),
        length=32, pretrain=_recipe(800, 3e-3), finetune=_recipe(150, 1e-3),
        scales=(2.0, 5.0, 10.0, 20.0, 50.0), n_random=20, n_activation_batches=8,
        n_selectivity_rows=256, min_selectivity=0.8,
        min_rise=0.3, max_random_rise=0.05, min_agreement=0.5, agreement_margin=0.3,
        health_ratio=0.6, max_flattening=0.2,
    ),
}  # fmt: skip


def lm_loss(model, tokens: Tensor):
    logits = model(tokens[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    return loss, {}


def sampler(corpus: Corpus, instruct: bool = False):
    def batches(batch_size: int, g: torch.Generator) -> Tensor:
        return corpus.sample(batch_size, g, instruct)

    return batches


def run(lab: Lab) -> None:
    """(a) concept neurons, (b) clamping against random neurons, (c) fine-tuning agreement."""
    s: Settings = lab.settings
    corpus = Corpus(s.length)
    cfg = SwiGLUConfig(**{**s.model.__dict__, "vocab_size": len(corpus.vocab)})
    model = lab.build("lm", lambda: SwiGLULM(cfg))
    lab.fit("lm", model, lm_loss, sampler(corpus), s.pretrain)
    model.eval()
    held_out = corpus.sample(256, lab.rng("test-text"))
    with torch.no_grad():
        lab.measure("loss/lm", float(lm_loss(model, held_out)[0]))
    unigram = unigram_entropy(held_out, len(corpus.vocab))
    lab.measure("loss/unigram", unigram)
    lab.health("lm", "loss", ("the unigram entropy", unigram), margin=(1 - s.health_ratio)
               * unigram, higher_is_better=False, max_flattening=s.max_flattening)  # fmt: skip
    neurons = find_concept_neurons(lab, model, corpus)
    found = [c for c in neurons if neurons[c] is not None]
    lab.measure("concepts_found", len(found))
    untrained = lab.build("untrained", lambda: SwiGLULM(cfg)).eval()  # the same init, untrained
    baseline = find_concept_neurons(lab, untrained, corpus, record=False)
    lab.measure("concepts_found/untrained", sum(v is not None for v in baseline.values()))
    run_selectivity(lab, s, model, corpus, neurons, found)
    run_clamping(lab, s, model, corpus, neurons, found)
    run_finetuning(lab, s, model, corpus)


def unigram_entropy(tokens: Tensor, vocab: int) -> float:
    """The cross-entropy of the best context-free predictor (the token frequencies), nats."""
    p = torch.bincount(tokens[:, 1:].flatten(), minlength=vocab).float()
    p = p / p.sum()
    return float(-(p[p > 0] * p[p > 0].log()).sum())


def find_concept_neurons(lab: Lab, model, corpus: Corpus, record: bool = True) -> dict:
    """concept -> (layer, neuron, decoded probability) or None."""
    probs = [decode_neurons(model, layer) for layer in range(model.cfg.n_layers)]
    out = {}
    for cat, c in corpus.concepts:
        tok = corpus.index[c]
        best = None
        for layer, p in enumerate(probs):
            top1 = p.argmax(-1) == tok
            if top1.any():
                i = int(torch.where(top1, p[:, tok], torch.tensor(-1.0)).argmax())
                if best is None or float(p[i, tok]) > best[2]:
                    best = (layer, i, float(p[i, tok]))
        out[(cat, c)] = best
    if record:
        tops = torch.cat([p.argmax(-1) for p in probs])
        lab.measure("distinct_top1_tokens", int(tops.unique().numel()))
    return out


@torch.no_grad()
def run_selectivity(lab: Lab, s: Settings, model, corpus: Corpus, neurons, found) -> None:
    """(a) Does the label mean something? AUROC of the labelled neuron's activation for
    "the next token is the concept" on held-out text, against random neurons of its layer."""
    tokens = corpus.sample(s.n_selectivity_rows, lab.rng("test-selectivity"))
    names = [hidden_point(model, layer) for layer in range(model.cfg.n_layers)]
    with capture(model, names) as cache:
        model(tokens[:, :-1])
    g = lab.rng("random-neurons/selectivity")
    ours, randoms = [], []
    for cat, c in found:
        layer, i, _ = neurons[(cat, c)]
        acts = cache[names[layer]].flatten(0, -2)  # (positions, n)
        label = (tokens[:, 1:] == corpus.index[c]).flatten()
        ours.append(auroc(acts[:, i], label))
        others = [j for j in torch.randperm(acts.shape[1], generator=g).tolist() if j != i]
        randoms.append(sum(auroc(acts[:, j], label) for j in others[: s.n_random]) / s.n_random)
    pairs = [(a, b) for a, b in zip(ours, randoms, strict=True) if math.isfinite(a + b)]
    ours, randoms = [a for a, _ in pairs], [b for _, b in pairs]  # concepts the text contains
    if not ours:
        lab.check("(a) the neuron decoded as a concept fires when the model is about to emit it",
                  False, "no concept with a neuron occurs in the held-out text")  # fmt: skip
        return
    mean = sum(ours) / len(ours)
    lab.measure("selectivity_auroc/concept", mean)
    lab.measure("selectivity_auroc/random", sum(randoms) / len(randoms))
    lab.bound(
        f"(a) the neuron decoded as a concept fires when the model is about to emit it (AUROC "
        f"of its activation for 'next token = concept' >= {s.min_selectivity}, mean over the "
        f"concepts with a neuron)", "mean AUROC", mean,
        at_least=s.min_selectivity, arms=("lm",),
        note=(f"random neurons of the same layer {lab.value('selectivity_auroc/random'):.3f}; "
              f"over {len(ours)} concepts; concepts with a neuron: {len(found)} of "
              f"{len(corpus.concepts)} (untrained "
              f"model: {lab.value('concepts_found/untrained')})"),
    )  # fmt: skip
    if len(ours) >= 2:
        diff, lo, hi = paired_interval(ours, randoms)
        lab.check("(a) ... above random neurons of the same layer (paired over concepts, 95% "
                  "interval above 0)", lo > 0,
                  f"mean difference {diff:+.3f}, interval [{lo:+.3f}, {hi:+.3f}]")  # fmt: skip


def auroc(scores: Tensor, labels: Tensor) -> float:
    """ROC AUC of ``scores`` for boolean ``labels`` (nan without both classes)."""
    if labels.all() or not labels.any():
        return math.nan
    return float(roc_auc_score(labels.numpy(), scores.double().numpy()))


@torch.no_grad()
def max_activations(model, corpus: Corpus, n_batches: int, g: torch.Generator) -> list[Tensor]:
    """Each layer's largest hidden activation per neuron on training text: list of (n,)."""
    names = [hidden_point(model, layer) for layer in range(model.cfg.n_layers)]
    best = [torch.full((model.cfg.d_hidden,), -math.inf) for _ in names]
    for _ in range(n_batches):
        with capture(model, names) as cache:
            model(corpus.sample(32, g))
        for i, name in enumerate(names):
            best[i] = torch.maximum(best[i], cache[name].flatten(0, -2).max(0).values)
    return best


@torch.no_grad()
def prob(model, prompt: Tensor, token: int) -> float:
    return float(model(prompt)[0, -1].softmax(-1)[token])


def clamp_effects(model, corpus, concepts, neurons, peaks, scale, n_random, g):
    """Per concept: (rise from its neuron, mean rise from random neurons of the same layer)."""
    rises, randoms = [], []
    for cat, c in concepts:
        layer, i, _ = neurons[(cat, c)]
        prompt, tok = corpus.prompt(cat), corpus.index[c]
        clean = prob(model, prompt, tok)
        value = scale * float(peaks[layer][i])
        with clamp_neuron(model, layer, i, value):
            rises.append(prob(model, prompt, tok) - clean)
        n = model.cfg.d_hidden
        others = [j for j in torch.randperm(n, generator=g).tolist() if j != i][:n_random]
        rand = []
        for j in others:
            with clamp_neuron(model, layer, j, scale * float(peaks[layer][j])):
                rand.append(prob(model, prompt, tok) - clean)
        randoms.append(sum(rand) / len(rand))
    return rises, randoms


def run_clamping(lab: Lab, s: Settings, model, corpus, neurons, found) -> None:
    if len(found) < 2:
        lab.check("(b) clamping concept neurons raises their token's probability", False,
                  f"only {len(found)} concept neurons found: nothing to split")  # fmt: skip
        return
    order = torch.randperm(len(found), generator=lab.rng("concepts")).tolist()
    val = [found[i] for i in order[: len(found) // 2]]
    test = [found[i] for i in order[len(found) // 2 :]]
    peaks = max_activations(model, corpus, s.n_activation_batches, lab.rng("activations"))
    best = None
    for scale in s.scales:
        rises, randoms = clamp_effects(model, corpus, val, neurons, peaks, scale, s.n_random,
                                       lab.rng(f"random-neurons/val/{scale:g}"))  # fmt: skip
        gap = sum(r - q for r, q in zip(rises, randoms, strict=True)) / len(val)
        lab.measure(f"val/clamp_gap@scale={scale:g}", gap)
        if best is None or gap > best[0]:
            best = (gap, scale)
    scale = best[1]
    lab.measure("clamp_scale", scale)
    rises, randoms = clamp_effects(model, corpus, test, neurons, peaks, scale, s.n_random,
                                   lab.rng("random-neurons/test"))  # fmt: skip
    lab.measure("n_test_concepts", len(test))
    mean_rise, mean_random = sum(rises) / len(rises), sum(randoms) / len(randoms)
    lab.measure("rise/concept", mean_rise)
    lab.measure("rise/random", mean_random)
    names = ", ".join(f"{c} {r:+.2f}" for (_, c), r in zip(test, rises, strict=True))
    lab.bound(
        f"(b) clamping a concept neuron raises its token's probability at the preference "
        f"prompt by >= {s.min_rise} on average (held-out concepts)", "mean rise", mean_rise,
        at_least=s.min_rise, arms=("lm",), note=f"scale {scale:g} (validation); {names}",
    )  # fmt: skip
    lab.bound(
        f"(b) clamping a random neuron of the same layer to the same value raises it by <= "
        f"{s.max_random_rise}", "mean rise", mean_random, at_most=s.max_random_rise,
        arms=("lm",), note=f"{s.n_random} random neurons per concept",
    )  # fmt: skip
    if len(test) >= 2:
        mean, lo, hi = paired_interval(rises, randoms)
        lab.measure("paired/concept-random/lo", lo)
        lab.check(
            "(b) the concept neuron's rise exceeds the random neurons' (paired over held-out "
            "concepts, 95% interval above 0)", lo > 0,
            f"mean difference {mean:+.3f}, interval [{lo:+.3f}, {hi:+.3f}] over {len(test)}",
        )  # fmt: skip
    lab.figure("clamping", plot_clamping(test, rises, randoms))


def run_finetuning(lab: Lab, s: Settings, model, corpus: Corpus) -> None:
    tuned = copy.deepcopy(model).train()
    lab.fit("instruct", tuned, lm_loss, sampler(corpus, instruct=True), s.finetune)
    tuned.eval()
    held_out = corpus.sample(256, lab.rng("test-instruct"), instruct=True)
    with torch.no_grad():
        before = float(lm_loss(model, held_out)[0])
        lab.measure("loss/instruct", float(lm_loss(tuned, held_out)[0]))
    lab.measure("loss/instruct_before", before)
    lab.health(
        "instruct",
        "loss",
        ("the pretrained model before fine-tuning", before),
        margin=0.2 * before,
        higher_is_better=False,
        max_flattening=s.max_flattening,
    )
    n_layers = model.cfg.n_layers
    agreement = sum(top1_agreement(model, tuned, layer) for layer in range(n_layers)) / n_layers
    g = lab.rng("permutation")
    perm = []
    for layer in range(n_layers):
        a = decode_neurons(model, layer).argmax(-1)
        b = decode_neurons(tuned, layer).argmax(-1)
        perm += [float((a == b[torch.randperm(len(b), generator=g)]).float().mean())
                 for _ in range(20)]  # fmt: skip
    baseline = sum(perm) / len(perm)
    lab.measure("agreement", agreement)
    lab.measure("agreement/permuted", baseline)
    lab.bound(
        f"(c) most neurons keep their top-1 token after fine-tuning (>= {s.min_agreement})",
        "top-1 agreement", agreement, at_least=s.min_agreement, arms=("instruct",),
        note=f"permutation baseline {baseline:.3f}",
    )  # fmt: skip
    lab.bound(
        f"(c) ... far above randomly paired neurons (>= baseline + {s.agreement_margin})",
        "agreement - permutation baseline", agreement - baseline, at_least=s.agreement_margin,
    )  # fmt: skip


def plot_clamping(test, rises, randoms):
    fig = new_figure(figsize=(6.0, 3.4))
    ax = fig.subplots()
    xs = range(len(test))
    ax.bar([x - 0.2 for x in xs], rises, 0.4, label="its concept neuron")
    ax.bar([x + 0.2 for x in xs], randoms, 0.4, label="random neurons (mean)")
    ax.set_xticks(list(xs), [c for _, c in test], rotation=60, fontsize=7)
    ax.set(ylabel="rise of P(concept) at the prompt", title="clamping (held-out concepts)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
