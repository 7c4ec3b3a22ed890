"""Miniature reproduction of BART's pretraining claim (arXiv 1910.13461, sections 2.2, 4-5).

Data: documents of ``archlab.data.text.grammar_corpus`` (3-4 sentences of a small English-like
grammar), lower-cased and split into words, ``.`` as the full-stop token, and ``<s>``/``</s>``
around each document. The vocabulary is the 5 special tokens of ``archlab.data.text``
(``<pad> <s> </s> <unk> <mask>``) then the grammar's 39 words.

1. Pretraining (arms ``<scheme>/pretrain``): one tiny BART per noising scheme of the paper's
   Table 1 (``noising.py``). Each is built from the same init stream and trains on the same
   unlabelled documents for the same steps (the ``pretrain`` stream) to reconstruct the original
   document from its corrupted copy (cross-entropy).
2. Fine-tuning (arms ``<scheme>/finetune``): every pretrained model and a from-scratch model
   (same initialisation) train on a low-data seq2seq task with the same recipe, batches and lr
   sweep (``lab.tune`` over ``Settings.lrs``, picked on the validation pairs): ``n_labelled``
   pairs ``document -> the document without its
   adjectives and prepositional phrases`` (sentence compression, an extractive
   summarisation-like task).
3. Evaluation on the test pairs (streams ``train-data`` / ``val-data`` / ``test-data``):
   downstream token accuracy (teacher-forced) and exact match (greedy decoding with
   ``archlab.generate``), and each scheme's reconstruction accuracy on its own corruption
   (teacher-forced, the same ``recon-noise`` stream for every scheme).

Health: the scratch model beats the better trivial predictor (majority token, copying the
source) and its fine-tuning curve has flattened. Claim checks (the paper's Table 1): every
masking-based scheme beats sentence permutation and document rotation; text infilling is within
``best_margin`` of the best other scheme (chosen on validation); text infilling beats the tuned
scratch model by >= 10 points.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from archlab.data.text import SPECIAL_TOKENS, grammar_corpus
from archlab.lab import Lab, Recipe, evaluating
from archlab.lab.inference import model_device
from archlab.lab.plots import new_figure
from archlab.lab.tasks import LANGUAGE_MODEL
from archlab.papers.language.bart.model import Bart, BartConfig
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


def bart_recipe(steps: int, batch_size: int, lr: float) -> Recipe:
    """AdamW (weight decay 0.01), 5% warm-up, linear decay to 0.1 x lr, gradient clip 1."""
    return LANGUAGE_MODEL.recipe(
        steps=steps, batch_size=batch_size, lr=lr, schedule="linear",
        warmup_steps=max(1, steps // 20), min_lr_ratio=0.1, curve_points=30,
    )  # fmt: skip


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    schemes: tuple[str, ...]  # noising schemes to pretrain (keys of PAPER_SCHEMES)
    d_model: int
    ffn_dim: int
    n_heads: int
    n_layers: int  # encoder layers = decoder layers
    n_pretrain_docs: int
    pretrain: Recipe
    n_labelled: int
    finetune: Recipe  # the same for every arm, pretrained or not (its lr is swept)
    n_eval: int  # test pairs (and reconstruction documents)
    n_val: int  # validation pairs: the fine-tuning lr of every arm is picked on them
    lrs: tuple[float, ...]  # fine-tuning lr grid, the same for every arm (scratch included)
    min_gain: float = 0.10  # infilling's token accuracy over tuned scratch (10 points, notes)
    family_margin: float = 0.0  # masking family over rotation/permutation (the paper's direction)
    best_margin: float = 0.01  # infilling may trail the best other scheme by <= 1 point (a priori)
    health_margin: float = 0.10  # scratch beats the trivial predictor by 10 points (a priori)
    max_flattening: float = 0.2  # scratch's fine-tuning loss fell <= 20% over the last quarter


TABLE_1 = (  # the paper's Table 1 rows with a single noising function
    "token_masking",
    "token_deletion",
    "text_infilling",
    "sentence_permutation",
    "document_rotation",
)
BUDGETS = {
    "smoke": Settings(
        schemes=("text_infilling", "document_rotation"), d_model=32, ffn_dim=64, n_heads=4,
        n_layers=1, n_pretrain_docs=64, pretrain=bart_recipe(3, 8, 3e-3), n_labelled=32,
        finetune=bart_recipe(3, 8, 3e-3), n_eval=16, n_val=16, lrs=(3e-3,),
    ),
    "quick": Settings(
        schemes=TABLE_1, d_model=64, ffn_dim=256, n_heads=4, n_layers=2, n_pretrain_docs=4000,
        pretrain=bart_recipe(300, 16, 3e-3), n_labelled=300, finetune=bart_recipe(150, 16, 3e-3),
        n_eval=200, n_val=200, lrs=(3e-3, 1e-2),  # lr, 3 lr
    ),
    # larger and longer, with BART's infilling + permutation (for an accelerator)
    "full": Settings(
        schemes=(*TABLE_1, "infilling_permutation"), d_model=128, ffn_dim=512, n_heads=4,
        n_layers=2, n_pretrain_docs=50_000, pretrain=bart_recipe(1500, 32, 2e-3),
        n_labelled=300, finetune=bart_recipe(300, 16, 1e-3), n_eval=500, n_val=500,
        lrs=(3e-4, 1e-3, 3e-3),
    ),
}  # fmt: skip


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


def padded_pairs(pairs: list[tuple[Tensor, Tensor]]) -> list[dict[str, Tensor]]:
    """Labelled pairs as a map-style dataset of equal-length examples (padded to the longest
    pair), which the engine's default collation stacks into ``pair_batch`` batches."""
    batch = pair_batch(*map(list, zip(*pairs)))
    return [{k: v[i] for k, v in batch.items()} for i in range(len(pairs))]


def seq2seq_loss(model: Bart, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
    """Cross-entropy on the target tokens and the token accuracy."""
    out = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
    return out.loss, {"token_acc": _token_accuracy(out.logits, batch["labels"])}


def _token_accuracy(logits: Tensor, labels: Tensor) -> Tensor:  # (B, T, K), (B, T) -> ()
    real = labels != IGNORE
    return (logits.argmax(-1) == labels)[real].float().mean()


def denoising_data(noiser: Noiser, docs: list[Tensor]):
    """The pretraining stream: random documents, corrupted by ``noiser``, to reconstruct."""

    def data(batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        idx = torch.randint(len(docs), (batch_size,), generator=generator).tolist()
        originals = [docs[i] for i in idx]
        return pair_batch([noiser(d, generator) for d in originals], originals)

    return data


# ---------------------------------------------------------------------------- model
def model_config(s: Settings) -> BartConfig:
    return BartConfig(
        vocab_size=len(vocabulary()),
        d_model=s.d_model,
        encoder_layers=s.n_layers,
        decoder_layers=s.n_layers,
        encoder_attention_heads=s.n_heads,
        decoder_attention_heads=s.n_heads,
        encoder_ffn_dim=s.ffn_dim,
        decoder_ffn_dim=s.ffn_dim,
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


# ---------------------------------------------------------------------------- evaluation
def evaluate_downstream(model: Bart, pairs: list[tuple[Tensor, Tensor]]) -> dict[str, float]:
    """Teacher-forced token accuracy and greedy exact match on held-out pairs."""
    sources, targets = map(list, zip(*pairs))
    batch = {k: v.to(model_device(model)) for k, v in pair_batch(sources, targets).items()}
    with evaluating(model):
        out = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
        max_new = max(len(t) for t in targets) + 2
        generated = model.generate(batch["input_ids"], batch["attention_mask"], max_new)
    exact = 0
    for row, target in zip(generated[:, 1:].tolist(), targets):  # (B, 1 + n): drop the start
        row = row[: row.index(EOS) + 1] if EOS in row else row
        exact += row == target.tolist()
    return {
        "token_acc": float(_token_accuracy(out.logits, batch["labels"])),
        "exact_match": exact / len(pairs),
    }


def evaluate_reconstruction(
    model: Bart, noiser: Noiser, docs: list[Tensor], g: torch.Generator
) -> dict[str, float]:
    """Teacher-forced reconstruction: token accuracy and loss on held-out corrupted documents."""
    batch = pair_batch([noiser(d, g) for d in docs], docs)
    batch = {k: v.to(model_device(model)) for k, v in batch.items()}
    with evaluating(model):
        out = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
    return {
        "recon_acc": float(_token_accuracy(out.logits, batch["labels"])),
        "recon_loss": float(out.loss),
    }


def token_accuracy(model: Bart, pairs: list[tuple[Tensor, Tensor]]) -> float:
    """Teacher-forced downstream token accuracy on ``pairs`` (the validation score)."""
    batch = {k: v.to(model_device(model)) for k, v in pair_batch(*map(list, zip(*pairs))).items()}
    with evaluating(model):
        out = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"])
    return float(_token_accuracy(out.logits, batch["labels"]))


def trivial_token_accuracy(
    train: list[tuple[Tensor, Tensor]], test: list[tuple[Tensor, Tensor]]
) -> dict[str, float]:
    """Teacher-forced token accuracy of two trivial predictors on ``test``: the most frequent
    target token of ``train`` at every position, and copying the source token at the same
    position (the task deletes words, so the source is a strong guess early in a document)."""
    counts = torch.bincount(torch.cat([t for _, t in train]), minlength=len(vocabulary()))
    majority = int(counts.argmax())
    n = hits_major = hits_copy = 0
    for source, target in test:
        n += len(target)
        hits_major += int((target == majority).sum())
        k = min(len(source), len(target))
        hits_copy += int((source[:k] == target[:k]).sum())
    return {"majority": hits_major / n, "copy": hits_copy / n}


MASKING_FAMILY = ("token_masking", "token_deletion", "text_infilling")
REORDERING = ("sentence_permutation", "document_rotation")


# ---------------------------------------------------------------------------- run
def run(lab: Lab) -> None:
    """Pretrain one model per noising scheme; fine-tune each and a scratch model with the same
    lr sweep (picked on validation); check the paper's Table 1 ranking on the test split."""
    s: Settings = lab.settings
    full_stop = vocabulary().index(".")
    docs = [encode(d) for d in grammar_corpus(s.n_pretrain_docs, (3, 4), lab.seed_for("docs"))]

    def labelled(n: int, stream: str) -> list[tuple[Tensor, Tensor]]:
        return [(encode(d), downstream_target(d)) for d in
                grammar_corpus(n, (3, 4), lab.seed_for(stream))]  # fmt: skip

    train_pairs = labelled(s.n_labelled, "train-data")
    val, test = labelled(s.n_val, "val-data"), labelled(s.n_eval, "test-data")
    train = padded_pairs(train_pairs)
    recon_docs = [encode(d) for d in grammar_corpus(s.n_eval, (3, 4), lab.seed_for("recon"))]
    cfg = model_config(s)
    for scheme in ("scratch", *s.schemes):
        model = lab.build(scheme, lambda: Bart(cfg))  # the same initial weights for every arm
        if scheme != "scratch":
            noiser = paper_noiser(scheme, mask_id=MASK, full_stop_id=full_stop)
            lab.fit(f"{scheme}/pretrain", model, seq2seq_loss, denoising_data(noiser, docs),
                    s.pretrain, stream="pretrain")  # fmt: skip
            recon = evaluate_reconstruction(model, noiser, recon_docs, lab.rng("recon-noise"))
            for key, value in recon.items():
                lab.measure(f"{key}/{scheme}", value)
        start = {k: v.detach().clone() for k, v in model.state_dict().items()}

        def make(start=start):  # every candidate of the sweep starts from the same weights
            m = Bart(cfg)
            m.load_state_dict(start)
            return m

        model = lab.tune(f"{scheme}/finetune", make, seq2seq_loss, train, s.finetune,
                         lrs=s.lrs, score=lambda m: token_accuracy(m, val))  # fmt: skip
        for key, value in evaluate_downstream(model, test).items():
            lab.measure(f"{key}/{scheme}", value)

    arms = ("scratch", *s.schemes)
    ranking = sorted(arms, key=lambda a: -lab.value("token_acc", a))
    for rank, arm in enumerate(ranking, 1):
        lab.measure(f"rank/{arm}", rank)
    em = {arm: lab.value("exact_match", arm) for arm in arms}
    order = "ranking: " + " > ".join(f"{a} {lab.value('token_acc', a):.3f}" for a in ranking)

    # the scratch baseline's health: it beats the better trivial predictor, its curve flattened
    for name, value in trivial_token_accuracy(train_pairs, test).items():
        lab.measure(f"token_acc/trivial_{name}", value)
    trivial = max(("majority", "copy"), key=lambda k: lab.value("token_acc", f"trivial_{k}"))
    lab.metrics["token_acc/scratch/finetune"] = lab.value("token_acc", "scratch")
    lab.health("scratch/finetune", "token_acc",
               (f"trivial ({trivial})", lab.value("token_acc", f"trivial_{trivial}")),
               margin=s.health_margin, max_flattening=s.max_flattening)  # fmt: skip

    # 1. Table 1: the masking-based schemes succeed, rotation and permutation alone do poorly
    family = [a for a in MASKING_FAMILY if a in s.schemes]
    reorder = [a for a in REORDERING if a in s.schemes]
    if family and reorder:
        worst = min(family, key=lambda a: lab.value("token_acc", a))
        best = max(reorder, key=lambda a: lab.value("token_acc", a))
        lab.compare(
            "every masking-based scheme (token masking, token deletion, text infilling) beats "
            "sentence permutation and document rotation (the worst of the first vs the best of "
            "the second, downstream token accuracy)",
            "token_acc", worst, best, margin=s.family_margin, note=order,
        )  # fmt: skip
    # 2. text infilling is as strong as the best other scheme (the comparator chosen on val)
    others = [a for a in s.schemes if a != "text_infilling"]
    if "text_infilling" in s.schemes and others:
        rival = max(others, key=lambda a: lab.value("val", f"{a}/finetune"))
        lab.compare(
            f"text infilling is within {100 * s.best_margin:g} point of the best other scheme "
            "(chosen on validation) in downstream token accuracy",
            "token_acc", "text_infilling", rival, margin=-s.best_margin,
            note=f"{rival} was the best other scheme on validation "
            f"({lab.value('val', f'{rival}/finetune'):.3f}); exact match "
            f"{em['text_infilling']:.3f} vs {em[rival]:.3f}",
        )  # fmt: skip
    # 3. pretraining helps in the low-data regime (the notes' criterion), against tuned scratch
    for scheme in ("text_infilling", "infilling_permutation"):
        if scheme in s.schemes:
            lab.compare_values(
                f"{SCHEME_LABELS[scheme]} pretraining beats a tuned scratch model by >= "
                f"{100 * s.min_gain:g} points of downstream token accuracy",
                (scheme, lab.value("token_acc", scheme)),
                ("scratch", lab.value("token_acc", "scratch")),
                margin=s.min_gain, arms=("scratch/finetune",),
                note=f"exact match {em[scheme]:.3f} vs {em['scratch']:.3f}",
            )  # fmt: skip
    lab.figure("downstream_accuracy", plot_downstream(lab, arms))
    lab.figure("learning_curves", plot_curves(lab, arms, s))


# ---------------------------------------------------------------------------- figures
def plot_downstream(lab: Lab, arms: tuple[str, ...]):
    """Held-out token accuracy and exact match per arm."""
    fig = new_figure(figsize=(9, 4))
    ax = fig.subplots()
    x = torch.arange(len(arms)).float()
    for metric, label, dx in (("token_acc", "token accuracy", -0.2), ("exact_match",
                              "exact match", 0.2)):  # fmt: skip
        ax.bar(x + dx, [lab.value(metric, a) for a in arms], 0.4, label=label)
    ax.set_xticks(x.tolist(), [SCHEME_LABELS.get(a, a) for a in arms], rotation=25, ha="right")
    ax.set(
        ylabel="held-out downstream score", ylim=(0, 1), title="Fine-tuned on sentence compression"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_curves(lab: Lab, arms: tuple[str, ...], s: Settings):
    """Pretraining loss per scheme (with its reconstruction accuracy) and fine-tuning loss."""
    fig = new_figure(figsize=(11, 4))
    axes = fig.subplots(1, 2)
    for arm in arms:
        label = SCHEME_LABELS.get(arm, arm)
        for ax, phase in zip(axes, ("pretrain", "finetune")):
            fit = lab.fits.get(f"{arm}/{phase}")
            if fit is None:
                continue
            text = label
            if phase == "pretrain":
                text += f" (recon acc {lab.value('recon_acc', arm):.2f})"
            ax.plot(*zip(*fit.curve), label=text)
    axes[0].set(xlabel="step", ylabel="reconstruction loss", title="Denoising pretraining")
    axes[1].set(xlabel="step", ylabel="loss", title=f"Fine-tuning ({s.n_labelled} labelled pairs)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


__all__ = ["BUDGETS", "Settings", "compress", "run", "vocabulary"]
