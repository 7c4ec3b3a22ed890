"""Miniature reproduction of DrBERT / BPDec: pretrain with and without the MLM decoder, then
fine-tune only the encoder.

Two BERT encoders are built from the same init stream (the decoder is built after the encoder,
so both encoders start from the same weights) and pretrain with the same recipe on the same
masked batches (the same training stream; a fixed English-like grammar corpus,
``archlab.data.text.grammar_corpus``, with a cached byte-level BPE that ends up word-level, 15%
masking with BERT's 80/10/10 rule):

- baseline: ``Bert`` with its standard MLM head on the encoder output;
- DrBERT: the same ``Bert`` plus a 2-layer decoder with Gradual Unmasking Attention and output
  randomness between the encoder and the (shared, tied) MLM head.

Then each encoder alone (``DrBert.encoder()``: the decoder is dropped) gets a fresh
``BertClassifier`` head and is fine-tuned identically on a syntactic property of single grammar
sentences with exactly one prepositional phrase: *is the PP inside the subject or the object
noun phrase?* (``the cat near a dog sees the bird`` vs ``the cat sees the bird near a dog``).
Both classes use the same words, so a bag of words cannot solve it; the model needs word order.
As GLUE numbers are usually reported, each pretrained encoder is fine-tuned with several
fine-tuning seeds (streams ``train/p/f``, ``head/p/f`` and ``finetune/p/f``: its own labelled
sample, head init and batch order, shared by the arms). An encoder with no pretraining is
fine-tuned the same way for reference. Splits: labelled validation and test sentences come from
their own streams (``val-data``, ``test-data``). Every arm gets the same fine-tuning lr sweep
(``lab.tune`` on the first fine-tuning seed, kept by validation accuracy; the other seeds reuse
the chosen lr).

Health of the standard-MLM baseline (before the comparisons; a comparison with an unhealthy
baseline is not a pass): its held-out MLM loss is below the unigram predictor's by a margin and
its pretraining curve has flattened; its mean fine-tuned accuracy beats the majority class.

Claims: mean test accuracy (DrBERT >= baseline) and no fine-tuning seed worse by more than 1.5
points. Invariant (one architecture compared with itself, the decoder being pretraining-only):
identical fine-tuning parameters and FLOPs. Latency is recorded as a metric (alternately timed),
not checked: its ratio is timing noise.
"""

from __future__ import annotations

import copy
import random
import statistics
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from archlab.baselines.bert import Bert, BertConfig
from archlab.data.text import grammar_corpus, grammar_sentence, train_bpe
from archlab.lab import Lab, Recipe, evaluating, predict
from archlab.lab.inference import model_device
from archlab.lab.plots import new_figure
from archlab.lab.profiling import compare_latency, forward_flops
from archlab.papers.language.drbert.model import BertClassifier, DrBert, DrBertConfig

PAD, BOS, EOS, UNK, MASK = 0, 1, 2, 3, 4
N_SPECIAL = 5
# word classes of ``archlab.data.text.grammar_sentence`` (checked by the tests)
PREPOSITIONS = frozenset({"near", "under", "behind", "with"})
VERBS = frozenset(
    {"sees", "likes", "follows", "builds", "reads", "finds", "moves"}
    | {"sleeps", "runs", "waits", "sings", "falls"}
)
ARMS = ("bert", "drbert", "scratch")  # standard MLM, MLM through the decoder, no pretraining


def bert_recipe(steps: int, batch_size: int, lr: float, curve_points: int = 40) -> Recipe:
    """AdamW (weight decay 0.01), 10% warm-up, linear decay to 0, gradient clip 1."""
    return Recipe(
        steps=steps, batch_size=batch_size, lr=lr, optimizer="adamw", weight_decay=0.01,
        schedule="linear", warmup_steps=max(1, steps // 10), grad_clip=1.0,
        curve_points=curve_points,
    )  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    n_pretrain_seeds: int
    n_finetune_seeds: int  # per pretrained encoder
    d_model: int
    n_layers: int
    n_decoder_layers: int
    seq_len: int
    pretrain: Recipe  # both arms
    n_train: int  # labelled fine-tuning sentences per fine-tuning seed (balanced)
    n_test: int
    finetune: Recipe  # every arm (its lr: the middle of ``lrs``)
    lrs: tuple[float, ...]  # the fine-tuning lr grid of every arm, picked on validation
    n_val: int  # labelled validation sentences (lr choice)
    finetune_len: int = 16  # the sentences are at most 14 tokens with <s> and </s>
    mask_rate: float = 0.15
    n_corpus_docs: int = 4000
    vocab_size: int = 400
    latency_repeats: int = 21
    acc_margin: float = 0.0  # mean accuracy: DrBERT >= BERT + this
    max_seed_loss: float = 0.015  # no fine-tuning seed worse than BERT by more than this
    health_acc_margin: float = 0.1  # BERT: mean test accuracy >= majority class + this
    health_mlm_margin: float = 0.2  # BERT: held-out MLM loss <= the unigram predictor's - this
    max_flattening: float = 0.2  # BERT: pretraining loss fell <= 20% over its last quarter


_LRS = (1.7e-4, 5e-4, 1.5e-3, 4.5e-3)  # fine-tuning lr grid: 5e-4 x 3^k, k = -1 .. 2
BUDGETS = {
    "smoke": Settings(
        n_pretrain_seeds=1, n_finetune_seeds=1, d_model=32, n_layers=2, n_decoder_layers=2,
        seq_len=24, pretrain=bert_recipe(4, 8, 1e-3, curve_points=50), n_train=16, n_test=32,
        finetune=bert_recipe(4, 8, 1e-3), lrs=(1e-3,), n_val=32, n_corpus_docs=300,
        latency_repeats=3,
    ),
    "quick": Settings(
        n_pretrain_seeds=1, n_finetune_seeds=5, d_model=64, n_layers=2, n_decoder_layers=2,
        seq_len=24, pretrain=bert_recipe(1000, 32, 2e-3, curve_points=50), n_train=128,
        n_test=1000, finetune=bert_recipe(100, 32, 5e-4), lrs=_LRS, n_val=500,
    ),
    # 3 x 5 seeds, a 4 x 128 encoder, 64-token windows, 20k steps (for an accelerator)
    "full": Settings(
        n_pretrain_seeds=3, n_finetune_seeds=5, d_model=128, n_layers=4, n_decoder_layers=2,
        seq_len=64, pretrain=bert_recipe(20_000, 128, 1e-3, curve_points=50), n_train=128,
        n_test=2000, finetune=bert_recipe(100, 32, 5e-4), lrs=_LRS, n_val=1000,
    ),
}  # fmt: skip


# ------------------------------------------------------------------------------------------ data
def pp_attachment_sentences(n: int, seed: int) -> tuple[list[str], list[int]]:
    """``n`` balanced grammar sentences with one prepositional phrase and their labels.

    Label 1: the PP modifies the subject (it precedes the verb); 0: the object. Sentences with a
    conjunction or with zero or two PPs are skipped.
    """
    rng = random.Random(seed)
    texts: list[str] = []
    labels: list[int] = []
    want = [n // 2, n - n // 2]
    while len(texts) < n:
        s = grammar_sentence(rng)
        words = s.split()
        if "and" in words:
            continue
        preps = [i for i, w in enumerate(words) if w in PREPOSITIONS]
        verbs = [i for i, w in enumerate(words) if w in VERBS]
        if len(preps) != 1 or len(verbs) != 1:
            continue
        label = int(preps[0] < verbs[0])
        if want[label] == 0:
            continue
        want[label] -= 1
        texts.append(s.capitalize() + ".")
        labels.append(label)
    return texts, labels


def encode_padded(tokenizer, texts: list[str], max_len: int) -> tuple[Tensor, Tensor]:
    """``<s> text </s>`` ids padded with ``<pad>`` (n, max_len) and the attention mask."""
    ids = torch.full((len(texts), max_len), PAD, dtype=torch.long)
    for i, e in enumerate(tokenizer.encode_batch(texts)):
        row = [BOS, *e.ids[: max_len - 2], EOS]
        ids[i, : len(row)] = torch.tensor(row)
    return ids, (ids != PAD).long()


class MaskedWindows:
    """Random windows ``<s> x_1 .. x_{T-1}`` of a token stream, masked as BERT's MLM.

    Called as ``(batch_size, generator) -> (input_ids, labels)``: 15% of the non-special
    positions are selected, 80% of those become ``<mask>``, 10% a random token, 10% stay;
    ``labels`` holds the original ids at the selected positions and -100 elsewhere.
    """

    def __init__(self, stream: Tensor, seq_len: int, vocab_size: int, p: float = 0.15):
        self.stream = stream
        self.seq_len = seq_len
        self.vocab_size = vocab_size
        self.p = p

    def __call__(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        n = self.seq_len - 1
        start = torch.randint(0, len(self.stream) - n, (batch_size,), generator=generator)
        x = self.stream[start[:, None] + torch.arange(n)]  # (B, T-1)
        x = torch.cat([torch.full((batch_size, 1), BOS), x], 1)  # (B, T)
        r = torch.rand(x.shape, generator=generator)
        selected = (r < self.p) & (x >= N_SPECIAL)
        labels = torch.where(selected, x, torch.full_like(x, -100))
        action = torch.rand(x.shape, generator=generator)
        random_ids = torch.randint(N_SPECIAL, self.vocab_size, x.shape, generator=generator)
        x = torch.where(selected & (action < 0.8), torch.full_like(x, MASK), x)
        x = torch.where(selected & (action >= 0.8) & (action < 0.9), random_ids, x)
        return x, labels


def _stream(tokenizer, docs: list[str]) -> Tensor:
    """The documents' ids, each followed by ``</s>``, as one stream."""
    return torch.tensor([t for e in tokenizer.encode_batch(docs) for t in (*e.ids, EOS)])


# ------------------------------------------------------------------------------------- training
def mlm_loss(model: Bert | DrBert, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict]:
    """Cross-entropy at the selected positions only (the MLM head runs on those rows)."""
    x, labels = batch
    bert = model.bert if isinstance(model, DrBert) else model
    h = model.mlm_hidden(x).hidden if isinstance(model, DrBert) else model.encode(x)  # (B,T,D)
    sel = labels != -100
    logits = bert.mlm_head(h[sel], bert.word_embeddings.weight)  # (n_sel, K)
    loss = F.cross_entropy(logits, labels[sel])
    return loss, {"mlm_acc": (logits.argmax(-1) == labels[sel]).float().mean()}


def classification_loss(model: BertClassifier, batch) -> tuple[Tensor, dict]:
    ids, mask, y = batch
    logits = model(ids, mask)
    return F.cross_entropy(logits, y), {"acc": (logits.argmax(-1) == y).float().mean()}


def heldout_mlm_loss(model: Bert | DrBert, batch: tuple[Tensor, Tensor]) -> float:
    device = model_device(model)
    with evaluating(model):
        return float(mlm_loss(model, tuple(t.to(device) for t in batch))[0])


def test_accuracy(model: BertClassifier, ids: Tensor, mask: Tensor, y: Tensor) -> float:
    """Accuracy on the test sentences (ids and mask travel together as (n, 2, L))."""
    pred = predict(model, torch.stack([ids, mask], 1), 256, fn=lambda m, x: m(x[:, 0], x[:, 1]))
    return (pred.argmax(-1) == y).sum().item() / len(y)


def bert_config(s: Settings, vocab_size: int) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=s.d_model,
        num_hidden_layers=s.n_layers,
        num_attention_heads=4,
        intermediate_size=4 * s.d_model,
        max_position_embeddings=s.seq_len,
    )


# ------------------------------------------------------------------------------------------- run
def unigram_mlm_loss(stream: Tensor, vocab_size: int, batch: tuple[Tensor, Tensor]) -> float:
    """The trivial MLM predictor: cross-entropy at the selected positions of ``batch`` of the
    pretraining stream's unigram distribution over the non-special tokens (add-one smoothed)."""
    counts = torch.bincount(stream, minlength=vocab_size).double() + 1.0
    counts[:N_SPECIAL] = 0.0
    _, labels = batch
    target = labels[labels != -100]
    return float(-(counts[target] / counts.sum()).log().mean())


def make_data(lab: Lab):
    """The tokenizer (a cached BPE of the fixed pretraining corpus), the masked-window stream,
    one held-out masked batch, and the labelled validation and test sentences (their own
    streams ``val-data`` and ``test-data``); records the unigram predictor's held-out MLM
    loss."""
    s: Settings = lab.settings
    docs = grammar_corpus(s.n_corpus_docs, seed=0)  # the fixed corpus the cached BPE is fit on
    tokenizer = train_bpe(docs, vocab_size=s.vocab_size)
    vocab = tokenizer.get_vocab_size()
    data = MaskedWindows(_stream(tokenizer, docs), s.seq_len, vocab, s.mask_rate)
    heldout_docs = grammar_corpus(200, seed=lab.seed_for("heldout-docs"))
    heldout = MaskedWindows(_stream(tokenizer, heldout_docs), s.seq_len, vocab, s.mask_rate)
    val = labelled(tokenizer, s.n_val, lab.seed_for("val-data"), s.finetune_len)
    test = labelled(tokenizer, s.n_test, lab.seed_for("test-data"), s.finetune_len)
    heldout_batch = heldout(256, lab.rng("heldout-mask"))
    lab.measure("heldout_mlm/unigram", unigram_mlm_loss(data.stream, vocab, heldout_batch))
    return tokenizer, data, heldout_batch, val, test


def labelled(tokenizer, n: int, seed: int, max_len: int) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` PP-attachment sentences: ids, attention mask (n, max_len) and labels (n,)."""
    texts, labels = pp_attachment_sentences(n, seed)
    return (*encode_padded(tokenizer, texts, max_len), torch.tensor(labels))


def pretrain_arms(lab: Lab, cfg: DrBertConfig, data, heldout, p: int) -> dict[str, Bert]:
    """Pretraining seed ``p``: both arms from one init stream on the same batches; records the
    held-out MLM losses and returns the encoders (``scratch``: the same init, no pretraining)."""
    bert = lab.build(f"bert/p{p}", lambda: Bert(cfg.bert), stream=f"init/{p}")
    drbert = lab.build(f"drbert/p{p}", lambda: DrBert(cfg), stream=f"init/{p}")
    scratch = lab.build(f"scratch/p{p}", lambda: Bert(cfg.bert), stream=f"init/{p}")
    for arm, model in (("bert", bert), ("drbert", drbert)):
        lab.fit(f"{arm}/p{p}/pretrain", model, mlm_loss, data, lab.settings.pretrain,
                stream=f"pretrain/{p}")  # fmt: skip
    # DrBERT's MLM head also read straight off its encoder output (the decoder skipped)
    for arm, model in (("bert", bert), ("drbert", drbert), ("drbert_encoder", drbert.encoder())):
        lab.measure(f"heldout_mlm/{arm}/p{p}/pretrain", heldout_mlm_loss(model, heldout))
    return {"bert": bert, "drbert": drbert.encoder(), "scratch": scratch}


def finetune(lab: Lab, arm: str, encoder: Bert, train, val, test, p: int, f: int) -> BertClassifier:
    """Fine-tune a copy of ``encoder`` under a fresh classifier head (the same head init,
    batches and recipe for every arm of ``(p, f)``); record ``acc/<arm>/p<p>/f<f>``.

    The first fine-tuning seed of a pretraining seed (``f == 0``) sweeps the lr grid
    (``lab.tune``: every candidate from the same head init and batches, kept by validation
    accuracy, recorded as ``lr/<arm>/p<p>``); the other seeds fine-tune at that lr. The
    optimizer gets every parameter: the unused MLM head has no gradient, so AdamW leaves it
    alone (the same as passing ``finetune_parameters()``)."""
    name = f"{arm}/p{p}/f{f}"

    def make() -> BertClassifier:
        return BertClassifier(copy.deepcopy(encoder), 2)

    data = torch.utils.data.TensorDataset(*train)
    s: Settings = lab.settings
    if f == 0:
        clf = lab.tune(name, make, classification_loss, data, s.finetune, lrs=s.lrs,
                       score=lambda m: test_accuracy(m, *val),
                       init_stream=f"head/{p}/{f}")  # fmt: skip
        lab.measure(f"lr/{arm}/p{p}", lab.value("lr", name))
    else:
        clf = lab.build(name, make, stream=f"head/{p}/{f}")
        recipe = s.finetune.replace(lr=lab.value("lr", f"{arm}/p{p}"))
        lab.fit(name, clf, classification_loss, data, recipe, stream=f"finetune/{p}/{f}")
    lab.measure(f"acc/{name}", test_accuracy(clf, *test))
    return clf


def health_checks(lab: Lab, tokenizer, test) -> tuple[str, ...]:
    """The standard-MLM baseline's health: its pretraining left the unigram plateau and
    flattened (per pretraining seed), and its fine-tuned encoder beats the majority class.
    Returns the arms a comparison with the baseline depends on."""
    s: Settings = lab.settings
    unigram = lab.value("heldout_mlm/unigram")
    pretrain = tuple(f"bert/p{p}/pretrain" for p in range(s.n_pretrain_seeds))
    for arm in pretrain:
        lab.health(arm, "heldout_mlm", ("the unigram predictor", unigram), unit=" nats",
                   margin=s.health_mlm_margin, higher_is_better=False,
                   max_flattening=s.max_flattening)  # fmt: skip
    y = test[2]
    majority = float((y == y.mode().values).float().mean())
    lab.measure("acc/majority_class", majority)
    lab.health("bert", "acc", ("the majority class", majority), margin=s.health_acc_margin)
    return ("drbert", "bert", *pretrain)


def run(lab: Lab) -> None:
    """Pretrain both arms, fine-tune the encoders on PP attachment (lr picked on validation),
    check the baseline's health, compare; measure the cost."""
    s: Settings = lab.settings
    tokenizer, data, heldout, val, test = make_data(lab)
    cfg = DrBertConfig(
        bert=bert_config(s, tokenizer.get_vocab_size()), n_decoder_layers=s.n_decoder_layers
    )
    for p in range(s.n_pretrain_seeds):
        encoders = pretrain_arms(lab, cfg, data, heldout, p)
        for f in range(s.n_finetune_seeds):
            train = labelled(tokenizer, s.n_train, lab.seed_for(f"train/{p}/{f}"), s.finetune_len)
            clfs = {
                arm: finetune(lab, arm, e, train, val, test, p, f) for arm, e in encoders.items()
            }
    pretrain_seeds = [f"p{p}" for p in range(s.n_pretrain_seeds)]
    seeds = [f"{p}/f{f}" for p in pretrain_seeds for f in range(s.n_finetune_seeds)]
    acc = {arm: [lab.value("acc", f"{arm}/{seed}") for seed in seeds] for arm in ARMS}
    for arm in ARMS:
        lab.measure(f"acc/{arm}", statistics.mean(acc[arm]))
    for arm in ("bert", "drbert", "drbert_encoder"):
        values = [lab.value("heldout_mlm", f"{arm}/{p}/pretrain") for p in pretrain_seeds]
        lab.measure(f"heldout_mlm/{arm}", statistics.mean(values))
    gains = [d - b for b, d in zip(acc["bert"], acc["drbert"])]
    lab.measure("gain", lab.value("acc/drbert") - lab.value("acc/bert"))
    lab.measure("worst_seed_gain", min(gains))
    lab.measure("pretraining_gain/bert", lab.value("acc/bert") - lab.value("acc/scratch"))
    gated = health_checks(lab, tokenizer, test)

    pairs = ", ".join(f"{100 * b:.1f} -> {100 * d:.1f}" for b, d in zip(acc["bert"], acc["drbert"]))
    lrs = "; lr " + ", ".join(
        f"{arm} {lab.value('lr', f'{arm}/{p}'):g}" for arm in ARMS for p in pretrain_seeds
    )
    lab.compare_values(
        f"mean downstream accuracy ({s.n_pretrain_seeds} pretraining x {s.n_finetune_seeds} "
        "fine-tuning seeds): DrBERT >= standard MLM",
        ("drbert", lab.value("acc/drbert")), ("bert", lab.value("acc/bert")),
        margin=s.acc_margin, arms=gated,
        note=f"per seed {pairs}; no pretraining {lab.value('acc/scratch'):.3f}{lrs}",
    )  # fmt: skip
    lab.compare_values(
        f"no seed worse than the standard-MLM baseline by more than {100 * s.max_seed_loss:g} "
        "points", ("worst seed gain", min(gains)), ("allowed loss", -s.max_seed_loss),
        arms=gated, note="gains (pts) " + ", ".join(f"{100 * g:+.1f}" for g in gains),
    )  # fmt: skip
    inference_cost(lab, clfs["bert"], clfs["drbert"], test[0][:16], test[1][:16])
    lab.figure("downstream_accuracy", plot_accuracy(lab, seeds))
    lab.figure("learning_curves", plot_curves(lab))


def inference_cost(lab: Lab, base: BertClassifier, ours: BertClassifier, ids, mask) -> None:
    """Fine-tune-time parameters, FLOPs and latency of the fine-tuned BERT vs DrBERT classifiers.

    They are one architecture (the decoder is pretraining-only): equal parameters and FLOPs
    are an invariant; the latency is recorded as a metric only (its ratio is timing noise)."""
    s: Settings = lab.settings
    ids, mask = ids.to(model_device(base)), mask.to(model_device(base))
    n = {arm: sum(q.numel() for _, q in m.finetune_parameters())
         for arm, m in (("bert", base), ("drbert", ours))}  # fmt: skip
    flops = {"bert": forward_flops(base, ids, mask), "drbert": forward_flops(ours, ids, mask)}
    for arm in ("bert", "drbert"):
        lab.measure(f"finetune_params/{arm}", n[arm])
        lab.measure(f"finetune_flops/{arm}", flops[arm])
    with evaluating(base), evaluating(ours):
        lat = compare_latency(lambda: base(ids, mask), lambda: ours(ids, mask),
                              repeats=s.latency_repeats, calls_per_repeat=5)  # fmt: skip
    # each repeat times the two back to back, so the ratio within a repeat cancels load drifts
    paired = statistics.median(b / a for a, b in zip(lat.times_a, lat.times_b))
    lab.measure("latency_ms/bert", lat.a_s * 1e3)
    lab.measure("latency_ms/drbert", lat.b_s * 1e3)
    lab.measure("latency_ratio", lat.ratio)
    lab.measure("latency_ratio_paired", paired)
    lab.invariant(
        "fine-tuning parameters and FLOPs identical (decoder discarded)",
        n["bert"] == n["drbert"] and flops["bert"] == flops["drbert"],
        f"params {n['bert']} vs {n['drbert']}; forward FLOPs (batch {len(ids)}) "
        f"{flops['bert']} vs {flops['drbert']}",
    )


# --------------------------------------------------------------------------------------- figures
def plot_accuracy(lab: Lab, seeds: list[str]):
    """Per-seed test accuracy of the three arms."""
    fig = new_figure(figsize=(max(6, 1.2 * len(seeds)), 4))
    ax = fig.subplots()
    w, lo = 0.27, 100.0
    for k, (arm, label, color) in enumerate((
        ("scratch", "no pretraining", "0.7"),
        ("bert", "BERT (standard MLM)", "tab:blue"),
        ("drbert", "DrBERT (decoder discarded)", "tab:orange"),
    )):  # fmt: skip
        vals = [100 * lab.value("acc", f"{arm}/{seed}") for seed in seeds]
        lo = min(lo, *vals)
        ax.bar([i + (k - 1) * w for i in range(len(seeds))], vals, w, label=label, color=color)
    ax.set_ylim(max(0, lo - 5), 100)
    ax.set_xticks(list(range(len(seeds))), seeds)
    ax.set(
        xlabel="pretraining seed / fine-tuning seed",
        ylabel="test accuracy (%)",
        title="PP attachment after fine-tuning the encoder",
    )
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    fig.tight_layout()
    return fig


def plot_curves(lab: Lab):
    """MLM pretraining loss of both arms, and every fine-tuning run's loss."""
    fig = new_figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    colors = {"bert": "tab:blue", "drbert": "tab:orange", "scratch": "0.6"}
    labels = {
        "bert": "BERT (MLM head on the encoder)",
        "drbert": "DrBERT (MLM head on the mixed decoder output)",
        "scratch": "no pretraining",
    }
    seen: set[tuple[int, str]] = set()
    for name, fit in lab.fits.items():
        arm = name.split("/")[0]
        panel = 0 if name.endswith("/pretrain") else 1
        label = labels[arm] if (panel, arm) not in seen else None
        seen.add((panel, arm))
        axes[panel].plot(*zip(*fit.curve), color=colors[arm], alpha=0.8, lw=1, label=label)
    axes[0].set(xlabel="pretraining step", ylabel="MLM training loss", title="Pretraining")
    axes[1].set(xlabel="fine-tuning step", ylabel="cross-entropy", title="Fine-tuning (every seed)")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
