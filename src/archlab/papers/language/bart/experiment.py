"""Miniature reproduction of BART's pretraining claim (arXiv 1910.13461, sections 2.2, 4-5).

Data: documents of ``archlab.data.text.grammar_corpus`` (3-4 sentences of a small English-like
grammar), lower-cased and split into words, ``.`` as the full-stop token, and ``<s>``/``</s>``
around each document. The vocabulary is the 5 special tokens of ``archlab.data.text``
(``<pad> <s> </s> <unk> <mask>``) then the grammar's 39 words.

1. Pretraining: one tiny BART per noising scheme of the paper's Table 1 (``noising.py``). Each
   starts from the same initialisation and trains on the same unlabelled documents for the same
   steps, to reconstruct the original document from its corrupted copy (cross-entropy).
2. Fine-tuning: every pretrained model and a from-scratch model (same initialisation) train on
   a low-data seq2seq task with the same steps, batch and learning rate: ``n_labelled`` pairs
   ``document -> the document without its adjectives and prepositional phrases`` (sentence
   compression, an extractive summarisation-like task).
3. Evaluation on held-out documents: downstream token accuracy (teacher-forced) and exact match
   (greedy decoding with ``archlab.generate``), and each scheme's reconstruction accuracy on its
   own corruption (teacher-forced).

Checks: text infilling pretraining beats scratch by >= 10 points of downstream token accuracy,
and text infilling ranks at least as high as document rotation.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from archlab.data.text import SPECIAL_TOKENS, grammar_corpus
from archlab.engine import TrainConfig, Trainer, seed_everything
from archlab.lab.result import Budget, Result
from archlab.papers.language.bart.model import SPEC, Bart, BartConfig
from archlab.papers.language.bart.noising import Noiser, paper_noiser

PAD, BOS, EOS, UNK, MASK = range(len(SPECIAL_TOKENS))
IGNORE = -100
SCHEME_LABELS = {
    "scratch": "no pretraining",
    "token_masking": "token masking",
    "token_deletion": "token deletion",
    "text_infilling": "text infilling",
    "sentence_permutation": "sentence permutation",
    "document_rotation": "document rotation",
    "infilling_permutation": "infilling + permutation",
}


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    schemes: tuple[str, ...]  # noising schemes to pretrain (keys of PAPER_SCHEMES)
    d_model: int
    ffn_dim: int
    n_heads: int
    n_layers: int  # encoder layers = decoder layers
    n_pretrain_docs: int
    pretrain_steps: int
    pretrain_batch: int
    pretrain_lr: float
    n_labelled: int
    finetune_steps: int
    finetune_batch: int
    finetune_lr: float
    n_eval: int


TABLE_1 = (  # the paper's Table 1 rows with a single noising function
    "token_masking",
    "token_deletion",
    "text_infilling",
    "sentence_permutation",
    "document_rotation",
)
SMOKE = Sizes(
    schemes=("text_infilling", "document_rotation"),
    d_model=32,
    ffn_dim=64,
    n_heads=4,
    n_layers=1,
    n_pretrain_docs=64,
    pretrain_steps=3,
    pretrain_batch=8,
    pretrain_lr=3e-3,
    n_labelled=32,
    finetune_steps=3,
    finetune_batch=8,
    finetune_lr=3e-3,
    n_eval=16,
)
QUICK = Sizes(  # about 140 s of CPU time on one core (README.md)
    schemes=TABLE_1,
    d_model=64,
    ffn_dim=256,
    n_heads=4,
    n_layers=2,
    n_pretrain_docs=4000,
    pretrain_steps=300,
    pretrain_batch=16,
    pretrain_lr=3e-3,
    n_labelled=300,
    finetune_steps=150,
    finetune_batch=16,
    finetune_lr=3e-3,
    n_eval=200,
)
FULL = Sizes(  # larger and longer, with BART's infilling + permutation (not run on CPU)
    schemes=(*TABLE_1, "infilling_permutation"),
    d_model=128,
    ffn_dim=512,
    n_heads=4,
    n_layers=2,
    n_pretrain_docs=50_000,
    pretrain_steps=1500,
    pretrain_batch=32,
    pretrain_lr=2e-3,
    n_labelled=300,
    finetune_steps=300,
    finetune_batch=16,
    finetune_lr=1e-3,
    n_eval=500,
)
BUDGETS = {"smoke": SMOKE, "quick": QUICK, "full": FULL}


# ---------------------------------------------------------------------------- data
@lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    """The special tokens then the grammar's words, sorted (the grammar is fixed)."""
    words = {w for doc in grammar_corpus(2000, seed=12345) for w in _words(doc)}
    missing = (ADJECTIVES | PREPOSITIONS) - words
    if missing:
        raise RuntimeError(f"the grammar of archlab.data.text has no words {sorted(missing)}")
    return tuple(SPECIAL_TOKENS) + tuple(sorted(words))


def _words(doc: str) -> list[str]:
    return doc.lower().replace(".", " .").split()


@lru_cache(maxsize=1)
def _index() -> dict[str, int]:
    return {w: i for i, w in enumerate(vocabulary())}


def encode(doc: str) -> Tensor:
    """A document -> ``<s> w1 w2 ... </s>`` ids (T,)."""
    index = _index()
    return torch.tensor([BOS, *(index.get(w, UNK) for w in _words(doc)), EOS])


def decode(ids: list[int]) -> str:
    vocab = vocabulary()
    return " ".join(vocab[i] for i in ids)


# The grammar's modifiers (``archlab.data.text.grammar_sentence``): ``vocabulary()`` checks that
# they are words of the corpus, so a change of the grammar fails loudly instead of silently.
ADJECTIVES = frozenset({"small", "red", "quick", "lazy", "old", "bright", "quiet", "strange"})
PREPOSITIONS = frozenset({"near", "under", "behind", "with"})


def compress(doc: str) -> list[str]:
    """The downstream target: the document without its adjectives and prepositional phrases
    (``prep det noun``), a sentence-compression task (extractive, like BART's summaries).

    ``"A quiet garden near some cat moves the cat."`` -> ``a garden moves the cat .``
    """
    words, out, i = _words(doc), [], 0
    while i < len(words):
        if words[i] in PREPOSITIONS:
            i += 3  # prep det noun
            continue
        if words[i] not in ADJECTIVES:
            out.append(words[i])
        i += 1
    return out


def downstream_target(doc: str) -> Tensor:
    """``<s> compressed document </s>`` ids."""
    index = _index()
    return torch.tensor([BOS, *(index[w] for w in compress(doc)), EOS])


def _pad(seqs: list[Tensor], value: int) -> Tensor:  # list of (T_i,) -> (B, max T_i)
    out = torch.full((len(seqs), max(len(s) for s in seqs)), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def pair_batch(sources: list[Tensor], targets: list[Tensor]) -> dict[str, Tensor]:
    """Padded ``input_ids``/``attention_mask`` (B, S) and ``labels`` (B, T), -100 on padding."""
    input_ids = _pad(sources, PAD)
    return {
        "input_ids": input_ids,
        "attention_mask": (input_ids != PAD).long(),
        "labels": _pad(targets, IGNORE),
    }


def seq2seq_loss(model: Bart, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Cross-entropy on the target tokens and the token accuracy."""
    out = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
    return out.loss, {"token_acc": _token_accuracy(out.logits, batch["labels"])}


def _token_accuracy(logits: Tensor, labels: Tensor) -> float:  # (B, T, K), (B, T)
    real = labels != IGNORE
    return float((logits.argmax(-1) == labels)[real].float().mean())


# ---------------------------------------------------------------------------- model
def model_config(sizes: Sizes) -> BartConfig:
    return BartConfig(
        vocab_size=len(vocabulary()),
        d_model=sizes.d_model,
        encoder_layers=sizes.n_layers,
        decoder_layers=sizes.n_layers,
        encoder_attention_heads=sizes.n_heads,
        decoder_attention_heads=sizes.n_heads,
        encoder_ffn_dim=sizes.ffn_dim,
        decoder_ffn_dim=sizes.ffn_dim,
        max_position_embeddings=128,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        init_std=0.1,  # near 1/sqrt(d_model); bart-base's 0.02 is sized for d_model = 768
        pad_token_id=PAD,
        bos_token_id=BOS,
        eos_token_id=EOS,
        decoder_start_token_id=EOS,  # BART's decoder starts with </s>
        forced_eos_token_id=EOS,
    )


def _train_config(steps: int, batch: int, lr: float, seed: int) -> TrainConfig:
    return TrainConfig(
        steps=steps,
        batch_size=batch,
        lr=lr,
        optimizer="adamw",
        weight_decay=0.01,
        schedule="linear",
        warmup_steps=max(1, steps // 20),
        min_lr_ratio=0.1,
        grad_clip=1.0,
        log_every=max(1, steps // 30),
        seed=seed,
        device="cpu",
        progress=False,
    )


def pretrain(
    model: Bart, noiser: Noiser, docs: list[Tensor], sizes: Sizes, seed: int
) -> list[dict[str, float]]:
    """Denoising pretraining: corrupt with ``noiser``, reconstruct the original document."""

    def data(batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        idx = torch.randint(len(docs), (batch_size,), generator=generator).tolist()
        originals = [docs[i] for i in idx]
        return pair_batch([noiser(d, generator) for d in originals], originals)

    cfg = _train_config(sizes.pretrain_steps, sizes.pretrain_batch, sizes.pretrain_lr, seed)
    return Trainer(model, seq2seq_loss, cfg).fit(data).history


def finetune(
    model: Bart, pairs: list[tuple[Tensor, Tensor]], sizes: Sizes, seed: int
) -> list[dict[str, float]]:
    """Fine-tune every parameter on the labelled pairs (a map-style dataset)."""
    cfg = _train_config(sizes.finetune_steps, sizes.finetune_batch, sizes.finetune_lr, seed)
    trainer = Trainer(model, seq2seq_loss, cfg, collate=lambda b: pair_batch(*map(list, zip(*b))))
    return trainer.fit(pairs).history


@torch.no_grad()
def evaluate_downstream(model: Bart, pairs: list[tuple[Tensor, Tensor]]) -> dict[str, float]:
    """Teacher-forced token accuracy and greedy exact match on held-out pairs."""
    model.eval()
    sources, targets = map(list, zip(*pairs))
    batch = pair_batch(sources, targets)
    logits = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).logits
    token_acc = _token_accuracy(logits, batch["labels"])
    max_new = max(len(t) for t in targets) + 2
    generated = model.generate(batch["input_ids"], batch["attention_mask"], max_new)  # (B, 1+n)
    exact = 0
    for row, target in zip(generated[:, 1:].tolist(), targets):
        out = row[: row.index(EOS) + 1] if EOS in row else row
        exact += out == target.tolist()
    return {"token_acc": token_acc, "exact_match": exact / len(pairs)}


@torch.no_grad()
def evaluate_reconstruction(
    model: Bart, noiser: Noiser, docs: list[Tensor], seed: int
) -> dict[str, float]:
    """Teacher-forced reconstruction: token accuracy and loss on held-out corrupted documents."""
    model.eval()
    g = torch.Generator().manual_seed(20_000 + seed)
    batch = pair_batch([noiser(d, g) for d in docs], docs)
    out = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
    return {
        "recon_acc": _token_accuracy(out.logits, batch["labels"]),
        "recon_loss": float(out.loss),
    }


# ---------------------------------------------------------------------------- run
def run(budget: Budget, seed: int) -> Result:
    """Pretrain one model per noising scheme, fine-tune each and a scratch model, compare."""
    sizes: Sizes = budget.settings(BUDGETS)
    result = Result(SPEC.slug, SPEC.title, SPEC.claim, budget.value, seed)
    t_start, c_start = time.perf_counter(), time.process_time()
    vocab = vocabulary()
    full_stop = vocab.index(".")
    rng = random.Random(seed)
    pretrain_docs = [encode(d) for d in grammar_corpus(sizes.n_pretrain_docs, (3, 4), 1 + seed)]
    labelled_docs = grammar_corpus(sizes.n_labelled + sizes.n_eval, (3, 4), 100_000 + seed)
    rng.shuffle(labelled_docs)
    pairs = [(encode(d), downstream_target(d)) for d in labelled_docs]
    train_pairs, eval_pairs = pairs[: sizes.n_labelled], pairs[sizes.n_labelled :]
    eval_docs = [encode(d) for d in grammar_corpus(sizes.n_eval, (3, 4), 200_000 + seed)]
    cfg = model_config(sizes)
    seed_everything(seed)
    init = Bart(cfg).state_dict()  # every model starts from these weights

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: intra-op threads only add overhead
    curves: dict[str, dict[str, list[dict[str, float]]]] = {}
    downstream: dict[str, dict[str, float]] = {}
    recon: dict[str, dict[str, float]] = {}
    m = result.metrics
    try:
        for name in ("scratch", *sizes.schemes):
            t0 = time.perf_counter()
            model = Bart(cfg)
            model.load_state_dict(init)
            curves[name] = {}
            if name != "scratch":
                noiser = paper_noiser(name, mask_id=MASK, full_stop_id=full_stop)
                curves[name]["pretrain"] = pretrain(model, noiser, pretrain_docs, sizes, seed)
                recon[name] = evaluate_reconstruction(model, noiser, eval_docs, seed)
                model.train()
            curves[name]["finetune"] = finetune(model, train_pairs, sizes, seed)
            downstream[name] = evaluate_downstream(model, eval_pairs)
            m[f"{name}/time_s"] = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)

    for name, d in downstream.items():
        m[f"{name}/token_acc"] = d["token_acc"]
        m[f"{name}/exact_match"] = d["exact_match"]
        if name in recon:
            m[f"{name}/recon_acc"] = recon[name]["recon_acc"]
            m[f"{name}/recon_loss"] = recon[name]["recon_loss"]
    m["time/wall_s"] = time.perf_counter() - t_start
    m["time/cpu_s"] = time.process_time() - c_start

    # ---------------------------------------------------------------- checks
    def acc(name: str) -> float:
        return downstream[name]["token_acc"]

    def em(name: str) -> float:
        return downstream[name]["exact_match"]

    for name in ("text_infilling", "infilling_permutation"):
        if name in downstream:
            result.check(
                f"{SCHEME_LABELS[name]} pretraining beats scratch by >= 10 points of downstream "
                "token accuracy (same fine-tuning steps)",
                acc(name) >= acc("scratch") + 0.10,
                f"{acc(name):.3f} vs scratch {acc('scratch'):.3f} (exact match {em(name):.3f} "
                f"vs {em('scratch'):.3f})",
            )
    ranking = sorted(downstream, key=lambda k: -acc(k))
    result.check(
        "text infilling ranks at least as high as document rotation (downstream token accuracy)",
        acc("text_infilling") >= acc("document_rotation"),
        f"{acc('text_infilling'):.3f} vs {acc('document_rotation'):.3f}; ranking: "
        + " > ".join(f"{k} {acc(k):.3f}" for k in ranking),
    )
    m["rank/text_infilling"] = ranking.index("text_infilling") + 1
    m["rank/document_rotation"] = ranking.index("document_rotation") + 1
    result.figures = _figures(downstream, recon, curves, sizes)
    return result


def _figures(downstream: dict, recon: dict, curves: dict, sizes: Sizes) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(downstream)
    labels = [SCHEME_LABELS.get(n, n) for n in names]
    fig, ax = plt.subplots(figsize=(9, 4))
    x = torch.arange(len(names)).float()
    ax.bar(x - 0.2, [downstream[n]["token_acc"] for n in names], 0.4, label="token accuracy")
    ax.bar(x + 0.2, [downstream[n]["exact_match"] for n in names], 0.4, label="exact match")
    ax.set_xticks(x.tolist(), labels, rotation=25, ha="right")
    ax.set(
        ylabel="held-out downstream score", ylim=(0, 1), title="Fine-tuned on sentence compression"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    figures = {"downstream_accuracy": fig}

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for n in names:
        for ax, phase in zip(axes, ("pretrain", "finetune")):
            rows = curves[n].get(phase)
            if rows:
                label = SCHEME_LABELS.get(n, n)
                if phase == "pretrain" and n in recon:
                    label += f" (recon acc {recon[n]['recon_acc']:.2f})"
                ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=label)
    axes[0].set(xlabel="step", ylabel="reconstruction loss", title="Denoising pretraining")
    axes[1].set(
        xlabel="step", ylabel="loss", title=f"Fine-tuning ({sizes.n_labelled} labelled pairs)"
    )
    axes[1].set_yscale("log")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    figures["loss_curves"] = fig
    return figures


__all__ = ["FULL", "QUICK", "SMOKE", "Sizes", "compress", "run", "vocabulary"]
