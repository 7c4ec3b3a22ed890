"""Miniature reproduction of DrBERT / BPDec: pretrain with and without the MLM decoder, then
fine-tune only the encoder.

Two BERT encoders start from the same initial weights (one seed; the decoder is built after the
encoder) and pretrain for the same number of steps on the same masked batches (a fixed
English-like grammar corpus, ``archlab.data.text.grammar_corpus``, with a cached byte-level BPE
that ends up word-level, 15% masking with BERT's 80/10/10 rule):

- baseline: ``Bert`` with its standard MLM head on the encoder output;
- DrBERT: the same ``Bert`` plus a 2-layer decoder with Gradual Unmasking Attention and output
  randomness between the encoder and the (shared, tied) MLM head.

Then each encoder alone (``DrBert.encoder()``: the decoder is dropped) gets a fresh
``BertClassifier`` head and is fine-tuned identically on a syntactic property of single grammar
sentences with exactly one prepositional phrase: *is the PP inside the subject or the object
noun phrase?* (``the cat near a dog sees the bird`` vs ``the cat sees the bird near a dog``).
Both classes use the same words, so a bag of words cannot solve it; the model needs word order.
As GLUE numbers are usually reported, each pretrained encoder is fine-tuned with several
fine-tuning seeds (its own labelled sample, head init and batch order, shared by the arms). An
encoder with no pretraining is fine-tuned the same way for reference.

Checks: mean test accuracy (DrBERT >= baseline), no fine-tuning seed worse by more than 1.5
points, identical fine-tuning parameters and FLOPs, and latency equal within timing noise
(measured, alternately timed).
"""

from __future__ import annotations

import copy
import random
import statistics
import time
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from archlab.baselines.bert import Bert, BertConfig
from archlab.data.text import grammar_corpus, grammar_sentence, train_bpe
from archlab.engine import TrainConfig, Trainer, seed_everything
from archlab.lab.profiling import compare_latency, count_flops
from archlab.lab.result import Budget, Result
from archlab.papers.language.drbert.model import SPEC, BertClassifier, DrBert, DrBertConfig

PAD, BOS, EOS, UNK, MASK = 0, 1, 2, 3, 4
N_SPECIAL = 5
# word classes of ``archlab.data.text.grammar_sentence`` (checked by the tests)
PREPOSITIONS = frozenset({"near", "under", "behind", "with"})
VERBS = frozenset(
    {"sees", "likes", "follows", "builds", "reads", "finds", "moves"}
    | {"sleeps", "runs", "waits", "sings", "falls"}
)


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    n_pretrain_seeds: int
    n_finetune_seeds: int  # per pretrained encoder
    d_model: int
    n_layers: int
    n_decoder_layers: int
    seq_len: int
    pretrain_steps: int
    pretrain_batch: int
    pretrain_lr: float
    n_train: int  # labelled fine-tuning sentences per fine-tuning seed (balanced)
    n_test: int
    finetune_steps: int
    finetune_batch: int
    finetune_lr: float
    finetune_len: int = 16  # the sentences are at most 14 tokens with <s> and </s>
    mask_rate: float = 0.15
    n_corpus_docs: int = 4000
    vocab_size: int = 400
    latency_repeats: int = 21
    device: str = "cpu"


SMOKE = Sizes(
    1, 1, 32, 2, 2, 24, 4, 8, 1e-3, 16, 32, 4, 8, 1e-3, n_corpus_docs=300, latency_repeats=3
)
QUICK = Sizes(1, 5, 64, 2, 2, 24, 1000, 32, 2e-3, 128, 1000, 100, 32, 5e-4)
FULL = Sizes(3, 5, 128, 4, 2, 64, 20_000, 128, 1e-3, 128, 2000, 100, 32, 5e-4, device="auto")
BUDGETS = {"smoke": SMOKE, "quick": QUICK, "full": FULL}


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


def pretrain(model: Bert | DrBert, data: MaskedWindows, sizes: Sizes, seed: int) -> list[dict]:
    cfg = TrainConfig(
        steps=sizes.pretrain_steps,
        batch_size=sizes.pretrain_batch,
        lr=sizes.pretrain_lr,
        weight_decay=0.01,
        schedule="linear",
        warmup_steps=max(1, sizes.pretrain_steps // 10),
        log_every=max(1, sizes.pretrain_steps // 50),
        seed=seed,
        device=sizes.device,
        progress=False,
    )
    return Trainer(model, mlm_loss, cfg).fit(data).history


@torch.no_grad()
def heldout_mlm_loss(model: Bert | DrBert, batch: tuple[Tensor, Tensor]) -> float:
    device = next(model.parameters()).device
    model.eval()
    loss = float(mlm_loss(model, tuple(t.to(device) for t in batch))[0])
    model.train()
    return loss


def _classification_loss(model: BertClassifier, batch) -> tuple[Tensor, dict]:
    ids, mask, y = batch
    logits = model(ids, mask)
    return F.cross_entropy(logits, y), {"acc": (logits.argmax(-1) == y).float().mean()}


@torch.no_grad()
def test_accuracy(model: BertClassifier, ids: Tensor, mask: Tensor, y: Tensor) -> float:
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    ids, mask, y = ids.to(device), mask.to(device), y.to(device)
    correct = sum(
        int((model(ids[i : i + 256], mask[i : i + 256]).argmax(-1) == y[i : i + 256]).sum())
        for i in range(0, len(ids), 256)
    )
    model.train(was)
    return correct / len(ids)


def finetune(
    encoder: Bert,
    train: tuple[Tensor, Tensor, Tensor],
    test: tuple[Tensor, Tensor, Tensor],
    sizes: Sizes,
    seed: int,
    n_classes: int = 2,
) -> float:
    """Fine-tune ``encoder`` in place under a fresh classifier head; the test accuracy.

    Every encoder gets the same recipe for a given ``seed``: head init, batch order, steps.
    """
    seed_everything(seed)  # the same head init for every encoder
    clf = BertClassifier(encoder, n_classes)
    cfg = TrainConfig(
        steps=sizes.finetune_steps,
        batch_size=sizes.finetune_batch,
        lr=sizes.finetune_lr,
        weight_decay=0.01,
        schedule="linear",
        warmup_steps=max(1, sizes.finetune_steps // 10),
        log_every=sizes.finetune_steps,
        seed=seed,
        device=sizes.device,
        progress=False,
    )
    params = [p for _, p in clf.finetune_parameters()]
    dataset = torch.utils.data.TensorDataset(*train)
    Trainer(clf, _classification_loss, cfg, params=params).fit(dataset)
    return test_accuracy(clf, *test)


# ------------------------------------------------------------------------------------------- run
def _bert_config(sizes: Sizes, vocab_size: int) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=sizes.d_model,
        num_hidden_layers=sizes.n_layers,
        num_attention_heads=4,
        intermediate_size=4 * sizes.d_model,
        max_position_embeddings=sizes.seq_len,
    )


@dataclass
class Pretrained:
    """One pretraining seed: both arms' loss curves, held-out MLM losses, fine-tuning results."""

    seed: int
    curve_bert: list[tuple[int, float]]
    curve_drbert: list[tuple[int, float]]
    heldout_bert: float
    heldout_drbert: float
    heldout_drbert_encoder: float
    acc_bert: list[float]  # one per fine-tuning seed
    acc_drbert: list[float]
    acc_scratch: list[float]


def _curve(history: list[dict]) -> list[tuple[int, float]]:
    return [(row["step"], row["loss"]) for row in history]


def _stream(tokenizer, docs: list[str]) -> Tensor:
    """The documents' ids, each followed by ``</s>``, as one stream."""
    return torch.tensor([t for e in tokenizer.encode_batch(docs) for t in (*e.ids, EOS)])


def run_pretraining_seed(
    sizes: Sizes, cfg: DrBertConfig, tokenizer, data, heldout, test, seed: int
) -> Pretrained:
    """Pretrain both arms from one init on the same batches; fine-tune each encoder n times."""
    seed_everything(seed)
    bert = Bert(cfg.bert)
    seed_everything(seed)
    drbert = DrBert(cfg)  # its encoder starts from exactly the baseline's weights
    seed_everything(seed)
    scratch = Bert(cfg.bert)
    h_bert = pretrain(bert, data, sizes, seed)
    h_dr = pretrain(drbert, data, sizes, seed)
    # held-out MLM loss; for DrBERT also with the MLM head read straight off the encoder output
    enc_only = DrBert(replace(cfg, n_decoder_layers=0, gua_visible=()))
    enc_only.bert = drbert.encoder()
    heldout_losses = [heldout_mlm_loss(m, heldout) for m in (bert, drbert, enc_only)]
    accs: dict[str, list[float]] = {"bert": [], "drbert": [], "scratch": []}
    for f in range(sizes.n_finetune_seeds):
        fseed = 100 * seed + f
        texts, labels = pp_attachment_sentences(sizes.n_train, seed=2 * fseed + 1)
        train = (*encode_padded(tokenizer, texts, sizes.finetune_len), torch.tensor(labels))
        for name, encoder in (("bert", bert), ("drbert", drbert.encoder()), ("scratch", scratch)):
            accs[name].append(finetune(copy.deepcopy(encoder), train, test, sizes, fseed))
    return Pretrained(
        seed,
        _curve(h_bert),
        _curve(h_dr),
        *heldout_losses,
        accs["bert"],
        accs["drbert"],
        accs["scratch"],
    )


def inference_cost(cfg: BertConfig, pretrained: DrBert, ids: Tensor, mask: Tensor, repeats: int):
    """Fine-tune-time parameters, FLOPs and latency of the baseline vs the DrBERT classifier."""
    seed_everything(0)
    base = BertClassifier(Bert(cfg), 2).eval()
    seed_everything(0)
    ours = BertClassifier(pretrained.encoder(), 2).eval()
    n_base = sum(p.numel() for _, p in base.finetune_parameters())
    n_ours = sum(p.numel() for _, p in ours.finetune_parameters())
    with torch.no_grad():
        f_base, f_ours = count_flops(base, ids, mask), count_flops(ours, ids, mask)
        lat = compare_latency(
            lambda: base(ids, mask), lambda: ours(ids, mask), repeats=repeats, calls_per_repeat=5
        )
    # each repeat times the two back to back, so the ratio within a repeat cancels load drifts
    paired = statistics.median(b / a for a, b in zip(lat.times_a, lat.times_b))
    return n_base, n_ours, f_base, f_ours, lat, paired


def run(budget: Budget, seed: int) -> Result:
    """Pretrain both arms, fine-tune the encoders on PP attachment, compare; measure the cost."""
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(SPEC.slug, SPEC.title, SPEC.claim, budget.value, seed)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    threads = torch.get_num_threads()
    if sizes.device == "cpu":
        torch.set_num_threads(1)  # a tiny model: extra intra-op threads only add overhead
    try:
        docs = grammar_corpus(sizes.n_corpus_docs, seed=0)
        tokenizer = train_bpe(docs, vocab_size=sizes.vocab_size)
        vocab = tokenizer.get_vocab_size()
        data = MaskedWindows(_stream(tokenizer, docs), sizes.seq_len, vocab, sizes.mask_rate)
        heldout = MaskedWindows(
            _stream(tokenizer, grammar_corpus(200, seed=999)), sizes.seq_len, vocab, 0.15
        )(256, torch.Generator().manual_seed(0))
        texts, labels = pp_attachment_sentences(sizes.n_test, seed=1_000_000 + seed)
        test = (*encode_padded(tokenizer, texts, sizes.finetune_len), torch.tensor(labels))
        cfg = DrBertConfig(bert=_bert_config(sizes, vocab), n_decoder_layers=sizes.n_decoder_layers)
        runs = [
            run_pretraining_seed(sizes, cfg, tokenizer, data, heldout, test, seed * 1000 + p)
            for p in range(sizes.n_pretrain_seeds)
        ]
        last = DrBert(cfg)
        cost = inference_cost(cfg.bert, last, test[0][:16], test[1][:16], sizes.latency_repeats)
    finally:
        torch.set_num_threads(threads)

    m = result.metrics
    pairs = []  # (pretraining seed, fine-tuning index, bert, drbert, scratch)
    for r in runs:
        for f, (b, d, s) in enumerate(zip(r.acc_bert, r.acc_drbert, r.acc_scratch)):
            pairs.append((r.seed, f, b, d, s))
            m[f"p{r.seed}/f{f}/acc_bert"] = b
            m[f"p{r.seed}/f{f}/acc_drbert"] = d
            m[f"p{r.seed}/f{f}/acc_scratch"] = s
    acc_b = statistics.mean(p[2] for p in pairs)
    acc_d = statistics.mean(p[3] for p in pairs)
    acc_s = statistics.mean(p[4] for p in pairs)
    gains = [p[3] - p[2] for p in pairs]
    m.update(
        acc_bert=acc_b,
        acc_drbert=acc_d,
        acc_scratch=acc_s,
        gain=acc_d - acc_b,
        worst_seed_gain=min(gains),
        heldout_mlm_bert=statistics.mean(r.heldout_bert for r in runs),
        heldout_mlm_drbert=statistics.mean(r.heldout_drbert for r in runs),
        heldout_mlm_drbert_encoder_only=statistics.mean(r.heldout_drbert_encoder for r in runs),
    )
    n_base, n_ours, f_base, f_ours, lat, paired = cost
    m.update(
        finetune_params_bert=n_base,
        finetune_params_drbert=n_ours,
        pretrain_params_drbert=sum(p.numel() for p in last.parameters()),
        finetune_flops_bert=f_base,
        finetune_flops_drbert=f_ours,
        latency_ms_bert=lat.a_s * 1e3,
        latency_ms_drbert=lat.b_s * 1e3,
        latency_ratio=lat.ratio,
        latency_ratio_paired=paired,
    )
    per_seed = ", ".join(f"{100 * p[2]:.1f} -> {100 * p[3]:.1f}" for p in pairs)
    result.check(
        f"mean downstream accuracy ({len(runs)} pretraining x {sizes.n_finetune_seeds} "
        "fine-tuning seeds): DrBERT >= standard MLM",
        acc_d >= acc_b,
        f"{100 * acc_b:.2f}% -> {100 * acc_d:.2f}% (gain {100 * (acc_d - acc_b):+.2f} pts; "
        f"per seed {per_seed}; no pretraining {100 * acc_s:.1f}%)",
    )
    result.check(
        "no seed worse than the standard-MLM baseline by more than 1.5 points",
        min(gains) >= -0.015,
        ", ".join(f"{100 * g:+.1f}" for g in gains),
    )
    result.check(
        "fine-tuning parameters and FLOPs identical (decoder discarded)",
        n_base == n_ours and f_base == f_ours,
        f"params {n_base} vs {n_ours}; forward FLOPs (batch 16) {f_base} vs {f_ours}",
    )
    result.check(
        "inference latency equal within 15% (median of back-to-back paired timings)",
        abs(paired - 1.0) <= 0.15,
        f"{lat}; paired DrBERT/BERT ratio {paired:.3f}",
    )
    m["time/wall_s"] = time.perf_counter() - t_start
    m["time/cpu_s"] = time.process_time() - cpu_start
    result.figures = _figures(runs)
    return result


def _figures(runs: list[Pretrained]) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"p{r.seed}/f{f}" for r in runs for f in range(len(r.acc_bert))]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels)), 4))
    x = range(len(labels))
    w = 0.27
    arms = [
        ("no pretraining", "acc_scratch", "0.7"),
        ("BERT (standard MLM)", "acc_bert", "tab:blue"),
        ("DrBERT (decoder discarded)", "acc_drbert", "tab:orange"),
    ]
    lo = 100.0
    for k, (name, key, color) in enumerate(arms):
        vals = [100 * a for r in runs for a in getattr(r, key)]
        lo = min(lo, *vals)
        ax.bar([i + (k - 1) * w for i in x], vals, w, label=name, color=color)
    ax.set_ylim(max(0, lo - 5), 100)
    ax.set_xticks(list(x), labels)
    ax.set(
        xlabel="pretraining seed / fine-tuning seed",
        ylabel="test accuracy (%)",
        title="PP attachment after fine-tuning the encoder",
    )
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    fig.tight_layout()
    figures = {"downstream_accuracy": fig}

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, r in enumerate(runs):
        label_b = "BERT (MLM head on the encoder)" if i == 0 else None
        label_d = "DrBERT (MLM head on the mixed decoder output)" if i == 0 else None
        ax.plot(*zip(*r.curve_bert), color="tab:blue", alpha=0.8, lw=1, label=label_b)
        ax.plot(*zip(*r.curve_drbert), color="tab:orange", alpha=0.8, lw=1, label=label_d)
    ax.set(xlabel="pretraining step", ylabel="MLM training loss", title="Pretraining")
    ax.legend(fontsize=8)
    fig.tight_layout()
    figures["pretraining_loss"] = fig
    return figures
