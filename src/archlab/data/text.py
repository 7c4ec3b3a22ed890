"""Text that works offline: CPython standard-library docstrings, a byte-level BPE trained on it
with Hugging Face ``tokenizers`` (cached on disk), and synthetic grammar corpora for controlled
claims.

Nothing is downloaded: the corpus is read from the installed Python's own source files with
``ast`` (nothing is imported), so it exists on every machine that runs archlab.
"""

from __future__ import annotations

import ast
import hashlib
import os
import random
import sysconfig
from functools import lru_cache
from pathlib import Path

SKIP_DIRS = frozenset(
    {
        "site-packages",
        "test",
        "tests",
        "idlelib",
        "lib2to3",
        "__pycache__",
        "ensurepip",
        "turtledemo",
    }
)
SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>", "<mask>")  # ids 0..4, BART's order


def cache_dir() -> Path:
    """``$ARCHLAB_CACHE`` or ``~/.cache/archlab``."""
    root = os.environ.get("ARCHLAB_CACHE") or Path.home() / ".cache" / "archlab"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@lru_cache(maxsize=4)
def stdlib_docstrings(min_chars: int = 40) -> tuple[str, ...]:
    """Docstrings of the Python standard library (about 6k documents, 1.6 MB), sorted by path.

    Args:
        min_chars: drop docstrings shorter than this.
    """
    root = sysconfig.get_paths()["stdlib"]
    docs: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                source = Path(dirpath, name).read_text(encoding="utf-8")
                tree = ast.parse(source)
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(
                    node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
                ):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) >= min_chars:
                        docs.append(doc)
    if not docs:
        raise RuntimeError(f"no docstrings found under {root}: is the stdlib source installed?")
    return tuple(docs)


def train_bpe(texts: list[str] | tuple[str, ...], vocab_size: int = 2000, min_frequency: int = 2):
    """A byte-level BPE tokenizer (``tokenizers.Tokenizer``) trained on ``texts``, cached on disk.

    The special tokens are ``<pad> <s> </s> <unk> <mask>`` with ids 0-4. The cache key is a hash of
    the texts and settings, so the same corpus gives the same tokenizer without retraining.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    h = hashlib.sha256()
    h.update(f"{vocab_size}:{min_frequency}:{len(texts)}".encode())
    for t in texts:
        h.update(t.encode("utf-8", "replace"))
        h.update(b"\0")
    path = cache_dir() / f"bpe-{h.hexdigest()[:16]}.json"
    if path.exists():
        return Tokenizer.from_file(str(path))
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tok.save(str(tmp))
    os.replace(tmp, path)
    return tok


def stdlib_tokenizer(vocab_size: int = 2000):
    """The BPE trained on ``stdlib_docstrings()``."""
    return train_bpe(stdlib_docstrings(), vocab_size=vocab_size)


def sentences(text: str) -> list[str]:
    """Split a document into sentences at ``. `` / ``! `` / ``? `` and blank lines (simple)."""
    out, current = [], []
    for word in text.replace("\n\n", " \n\n ").split(" "):
        if word == "\n\n":
            if current:
                out.append(" ".join(current).strip())
            current = []
            continue
        current.append(word)
        if word.endswith((".", "!", "?")) and len(current) > 2:
            out.append(" ".join(current).strip())
            current = []
    if current:
        out.append(" ".join(current).strip())
    return [s for s in out if s]


# ---------------------------------------------------------------------------- synthetic grammar
def grammar_sentence(rng: random.Random, depth: int = 0) -> str:
    """One sentence of a small English-like probabilistic context-free grammar."""
    det = ["the", "a", "every", "some"]
    adj = ["small", "red", "quick", "lazy", "old", "bright", "quiet", "strange"]
    noun = ["cat", "dog", "model", "river", "teacher", "engine", "garden", "letter", "bird"]
    verb_t = ["sees", "likes", "follows", "builds", "reads", "finds", "moves"]
    verb_i = ["sleeps", "runs", "waits", "sings", "falls"]
    prep = ["near", "under", "behind", "with"]

    def np_() -> str:
        words = [rng.choice(det)]
        if rng.random() < 0.4:
            words.append(rng.choice(adj))
        words.append(rng.choice(noun))
        if depth < 1 and rng.random() < 0.25:
            words += [rng.choice(prep), rng.choice(det), rng.choice(noun)]
        return " ".join(words)

    if rng.random() < 0.5:
        s = f"{np_()} {rng.choice(verb_t)} {np_()}"
    else:
        s = f"{np_()} {rng.choice(verb_i)}"
    if depth < 1 and rng.random() < 0.2:
        s += " and " + grammar_sentence(rng, depth + 1)
    return s


def grammar_corpus(n_docs: int, sentences_per_doc: tuple[int, int] = (3, 6), seed: int = 0):
    """``n_docs`` documents of grammar sentences (capitalised, full stops)."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        k = rng.randint(*sentences_per_doc)
        docs.append(" ".join(grammar_sentence(rng).capitalize() + "." for _ in range(k)))
    return docs
