"""Greedy decoding and a training step: archlab against transformers on copied weights.

Identical configs, weights copied from the transformers model (``save_pretrained`` then
``archlab ... from_pretrained``), the same inputs; the generated tokens must be identical
(asserted) before anything is timed. Cases (issue 3):

- BART: d_model 256, 4 + 4 layers, 4 heads, FFN 1024; source of 128 tokens, 64 new tokens.
- GPT-2: 6 layers, d 384, 6 heads; prompt of 32 tokens, 128 new tokens.
- each at batch 1 and batch 8; greedy search, no end-of-sequence token (every run makes all
  its tokens), KV cache on both sides.
- one BART training step (forward with labels + backward) on a batch of 8, same batch.

Runs alternate (archlab, transformers, transformers, archlab, ...) and the medians are compared;
the ratio is transformers' time / archlab's time, so > 1 means archlab is faster (wall clock,
and in brackets the process CPU time, which other load on a shared machine disturbs less).
Targets: decoding >= 1.5x at batch 1 and >= 1.0x at batch 8; the training step >= 1.0x. Other
processes on the machine add noise: compare ratios from one run, not across runs. One thread by
default: several threads on a busy machine mostly measure the contention.

Both sides are called as their users call them: ``model.generate`` (archlab's runs under
``torch.inference_mode``, transformers' under ``torch.no_grad``).

    python benchmarks/generate_vs_hf.py [--rounds 5] [--vocab 8192] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import transformers

from archlab.baselines.gpt2 import GPT2
from archlab.papers.language.bart import Bart

TARGETS = {1: 1.5, 8: 1.0}


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def compare(ours: Callable[[], object], theirs: Callable[[], object], rounds: int):
    """Median (wall, CPU) seconds of each, alternating the order every round (after one warm-up
    each): ``((wall_ours, cpu_ours), (wall_theirs, cpu_theirs))``."""
    ours(), theirs()
    t_ours, t_theirs = [], []
    for r in range(rounds):
        if r % 2 == 0:
            t_ours.append(_timed(ours))
            t_theirs.append(_timed(theirs))
        else:
            t_theirs.append(_timed(theirs))
            t_ours.append(_timed(ours))

    def med(ts):
        return statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts)

    return med(t_ours), med(t_theirs)


def copy_to_archlab(hf_model, cls):
    with tempfile.TemporaryDirectory() as d:
        hf_model.save_pretrained(d)
        return cls.from_pretrained(d).eval()


def bart_models(vocab: int):
    torch.manual_seed(0)
    config = transformers.BartConfig(
        vocab_size=vocab,
        d_model=256,
        encoder_layers=4,
        decoder_layers=4,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=1024,
        decoder_ffn_dim=1024,
        max_position_embeddings=256,
        init_std=0.1,  # peaked logits: no near ties between tokens
        forced_eos_token_id=None,
    )
    hf = transformers.BartForConditionalGeneration(config).eval()
    return hf, copy_to_archlab(hf, Bart)


def gpt2_models(vocab: int):
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=vocab,
        n_positions=256,
        n_embd=384,
        n_layer=6,
        n_head=6,
        initializer_range=0.1,
        bos_token_id=0,
        eos_token_id=0,
    )
    hf = transformers.GPT2LMHeadModel(config).eval()
    return hf, copy_to_archlab(hf, GPT2)


def row(name: str, ours, hf, n_tokens: int | None, target: float) -> dict:
    """Print one case: wall-clock speeds, the wall-clock ratio and the CPU-time ratio."""
    (w_ours, c_ours), (w_hf, c_hf) = ours, hf
    ratio, cpu_ratio = w_hf / w_ours, c_hf / c_ours
    ok = "ok" if ratio >= target else "BELOW TARGET"
    if n_tokens is None:
        speed = f"archlab {w_ours * 1e3:8.1f} ms     transformers {w_hf * 1e3:8.1f} ms   "
    else:
        speed = f"archlab {n_tokens / w_ours:8.1f} tok/s  transformers {n_tokens / w_hf:8.1f} tok/s"
    print(
        f"{name:26s} {speed}  ratio {ratio:4.2f}x (CPU time {cpu_ratio:4.2f}x)  "
        f"target >= {target}x: {ok}"
    )
    return {"case": name, "ratio": ratio, "cpu_ratio": cpu_ratio, "target": target}


@torch.no_grad()
def bench_generate(kind: str, hf, ours, batch: int, rounds: int, vocab: int) -> dict:
    g = torch.Generator().manual_seed(batch)
    if kind == "bart":
        src_len, new = 128, 64
        ids = torch.randint(3, vocab, (batch, src_len), generator=g)
        mask = torch.ones_like(ids)
        kw = dict(max_new_tokens=new, num_beams=1, eos_token_id=None, pad_token_id=1)

        def run_ours():
            return ours.generate(ids, mask, decoder_start_token_id=2, **kw)

        def run_hf():
            return hf.generate(ids, attention_mask=mask, do_sample=False, **kw)
    else:
        prompt, new = 32, 128
        ids = torch.randint(1, vocab, (batch, prompt), generator=g)
        mask = torch.ones_like(ids)
        kw = dict(max_new_tokens=new, num_beams=1, eos_token_id=None, pad_token_id=0)

        def run_ours():
            return ours.generate(ids, mask, **kw)

        def run_hf():
            return hf.generate(ids, attention_mask=mask, do_sample=False, **kw)

    a, b = run_ours(), run_hf()
    assert a.shape == b.shape and torch.equal(a, b), f"{kind} batch {batch}: tokens differ"
    assert a.shape[1] - (1 if kind == "bart" else ids.shape[1]) == new
    t_ours, t_hf = compare(run_ours, run_hf, rounds)
    return row(f"{kind} greedy batch {batch}", t_ours, t_hf, batch * new, TARGETS[batch])


def bench_train_step(hf, ours, rounds: int, vocab: int, batch: int = 8) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (batch, 128), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 100:] = 0
    labels = torch.randint(3, vocab, (batch, 64), generator=g)
    hf.train()
    ours.train()

    def step(model, call):
        model.zero_grad(set_to_none=True)
        loss = call()
        loss.backward()

    def run_ours():
        step(ours, lambda: ours(ids, mask, labels=labels).loss)

    def run_hf():
        step(hf, lambda: hf(input_ids=ids, attention_mask=mask, labels=labels).loss)

    t_ours, t_hf = compare(run_ours, run_hf, rounds)
    hf.eval()
    ours.eval()
    return row(f"bart train step batch {batch}", t_ours, t_hf, None, 1.0)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed runs of each (median)")
    parser.add_argument("--vocab", type=int, default=8192, help="vocabulary size of both models")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads (default 1: least disturbed by other load; 0 = torch's)",
    )
    parser.add_argument("--only", choices=["bart", "gpt2", "train"], default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{torch.get_num_threads()} threads, vocab {args.vocab}, {args.rounds} rounds"
    )
    rows = []
    if args.only in (None, "bart", "train"):
        hf, ours = bart_models(args.vocab)
        if args.only in (None, "bart"):
            for batch in (1, 8):
                rows.append(bench_generate("bart", hf, ours, batch, args.rounds, args.vocab))
        if args.only in (None, "train"):
            rows.append(bench_train_step(hf, ours, args.rounds, args.vocab))
    if args.only in (None, "gpt2"):
        hf, ours = gpt2_models(args.vocab)
        for batch in (1, 8):
            rows.append(bench_generate("gpt2", hf, ours, batch, args.rounds, args.vocab))
    below = [r["case"] for r in rows if r["ratio"] < r["target"]]
    print("all targets met" if not below else f"below target: {', '.join(below)}")
    return rows


if __name__ == "__main__":
    main()
