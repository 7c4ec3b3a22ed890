"""Miniature reproduction of Return of the Encoder: efficiency at equal parameters, and KD.

Task (``data.py``): keyword extraction. A document of ``S`` tokens drawn from a random Zipf
distribution over ``n_symbols`` symbols; the summary is its ``k`` most frequent tokens in order,
then EOS. Long input, short output: the paper's asymmetric setting.

Models (``model.py``, from ``archlab.nn`` blocks): the encoder-decoder student (2/3 of the
layers in the encoder: 4 + 2, pre-RMSNorm, GQA, RoPE, tied embeddings) and a decoder-only model
of the same width, depth and parameter count (``matched_decoder_only``); a larger decoder-only
teacher.

Measured (``run``), all in one process:

(a) Efficiency at equal parameters. The encoder-decoder (trained with CE) against the
    decoder-only baseline (trained with CE on the same data stream for the same steps), both
    decoding greedily with their KV cache at batch 1 on one CPU thread, the two models timed
    alternately, medians over repeats: first-token latency (prefill + first token), per-token
    decoding latency (each further token), throughput (generated tokens per second at batch 8,
    prefill included), and the KV-cache size after decoding, at input lengths up to 512. The
    ratios at ``S_check`` are checked; accuracy (exact match of the greedy summary on a held-out
    set) must be comparable.
(b) Cross-architecture distillation. A larger decoder-only teacher is trained first. The
    encoder-decoder student is then trained twice from the same initial weights on the same
    batches: with CE only, and with the paper's loss ``0.9 KL(teacher || student) + 0.1 CE``,
    where the student samples a target (temperature 0.9), the teacher reads ``[source; SEP;
    sampled target]`` and its logits at the target positions are aligned with the student's
    decoder logits on ``[BOS; sampled target]`` (official ``KDDataset`` / ``KDModel``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import Tensor

from archlab.engine import TrainConfig, Trainer, seed_everything
from archlab.generate import generate
from archlab.lab.result import Budget, Result
from archlab.nn import DecoderCache
from archlab.papers.language.return_of_encoder.data import (
    BOS,
    EOS,
    SEP,
    KeywordTask,
    KeywordTaskConfig,
    causal_logits_on_target,
    causal_loss,
    decoder_input,
    seq2seq_loss,
)
from archlab.papers.language.return_of_encoder.model import (
    SPEC,
    DecoderOnlyLM,
    EncoderDecoderLM,
    MuConfig,
    count_parameters,
    kd_objective,
    matched_decoder_only,
)


@dataclass(frozen=True)
class Sizes:
    """Everything the budget decides."""

    task: KeywordTaskConfig
    student: MuConfig  # the encoder-decoder; the decoder-only baseline is matched to it
    teacher: MuConfig  # a larger decoder-only model
    steps: int  # student and baseline steps
    teacher_steps: int
    batch_size: int
    lr: float
    teacher_lr: float
    n_eval: int
    eval_every: int
    lengths: tuple[int, ...]  # input lengths of the latency sweep
    s_check: int  # the input length whose latency ratios are checked
    n_new: int  # tokens generated per latency measurement
    throughput_batch: int
    repeats: int
    kd_alpha: float = 0.9
    kd_temperature: float = 1.0
    sample_temperature: float = 0.9


def _student(task: KeywordTaskConfig, d: int, n_enc: int, n_dec: int) -> MuConfig:
    return MuConfig(
        vocab_size=task.vocab_size,
        n_encoder_layers=n_enc,
        n_decoder_layers=n_dec,
        d_model=d,
        d_attn=d,
        n_heads=4,
        n_kv_heads=2,
        d_hidden=2 * d,
        dropout=0.0,
    )


_SMOKE_TASK = KeywordTaskConfig(n_symbols=8, n_source=16, k=2)
_QUICK_TASK = KeywordTaskConfig(n_symbols=8, n_source=24, k=2, min_gap=2)

SMOKE = Sizes(
    task=_SMOKE_TASK,
    student=_student(_SMOKE_TASK, 16, 2, 1),
    teacher=replace(_student(_SMOKE_TASK, 32, 0, 3), d_hidden=64),
    steps=4,
    teacher_steps=4,
    batch_size=8,
    lr=3e-3,
    teacher_lr=3e-3,
    n_eval=32,
    eval_every=2,
    lengths=(16, 32),
    s_check=32,
    n_new=4,
    throughput_batch=2,
    repeats=2,
)
QUICK = Sizes(
    task=_QUICK_TASK,
    student=_student(_QUICK_TASK, 32, 4, 2),
    teacher=replace(_student(_QUICK_TASK, 64, 0, 6), d_hidden=128),
    steps=300,
    teacher_steps=300,
    batch_size=32,
    lr=3e-3,
    teacher_lr=3e-3,
    n_eval=1000,
    eval_every=50,
    lengths=(64, 128, 256, 512),
    s_check=512,
    n_new=16,
    throughput_batch=8,
    repeats=15,
)


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def greedy_summaries(model, source: Tensor, k: int) -> Tensor:  # (B, S) -> (B, k + 1)
    """Greedy decoding (KV cache) of ``k`` keywords and EOS."""
    if isinstance(model, EncoderDecoderLM):
        out = generate(model, source, max_new_tokens=k + 1, decoder_start_token_id=BOS)
        return out[:, 1:]
    prompt = torch.cat([source, torch.full_like(source[:, :1], SEP)], dim=1)
    return generate(model, prompt, max_new_tokens=k + 1)[:, prompt.shape[1] :]


@torch.no_grad()
def evaluate(model, source: Tensor, target: Tensor) -> dict[str, float]:
    """Exact match and token accuracy of greedy summaries; teacher-forced CE."""
    k = target.shape[1] - 1
    out = greedy_summaries(model, source, k)
    if isinstance(model, EncoderDecoderLM):
        logits = model(source, decoder_input(target))
    else:
        logits = causal_logits_on_target(model, source, target)
    ce = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten())
    return {
        "exact_match": float((out == target).all(-1).float().mean()),
        "token_acc": float((out == target).float().mean()),
        "ce": float(ce),
    }


# ----------------------------------------------------------------------------- training
def _train_cfg(sizes: Sizes, steps: int, lr: float, seed: int) -> TrainConfig:
    return TrainConfig(
        steps=steps,
        batch_size=sizes.batch_size,
        lr=lr,
        weight_decay=0.01,
        schedule="cosine",
        warmup_steps=min(20, steps // 10),
        grad_clip=1.0,
        eval_every=sizes.eval_every,
        log_every=sizes.eval_every,
        seed=seed,
        device="cpu",
        progress=False,
    )


def train(
    model: torch.nn.Module,
    loss_fn: Callable,
    task: KeywordTask,
    sizes: Sizes,
    steps: int,
    lr: float,
    seed: int,
    eval_set: tuple[Tensor, Tensor],
) -> tuple[list[dict[str, float]], float]:
    """Train on the task stream (the same batches for the same seed); return the evaluation
    curve (step 0 included) and the training time in seconds."""
    curve: list[dict[str, float]] = []
    source, target = eval_set

    def eval_fn(m: torch.nn.Module) -> dict[str, float]:
        row = evaluate(m, source, target)
        curve.append({"step": len(curve) * sizes.eval_every, **row})
        return row

    model.eval()
    eval_fn(model)
    trainer = Trainer(model, loss_fn, _train_cfg(sizes, steps, lr, seed), eval_fn=eval_fn)
    fit = trainer.fit(task.sampler())
    if steps % sizes.eval_every:  # the final evaluation is off the grid
        curve[-1]["step"] = steps
    model.eval()
    return curve, fit.elapsed_s


@torch.no_grad()
def sample_targets(
    model: EncoderDecoderLM,
    memory: Tensor,
    n_tokens: int,
    temperature: float,
    generator: torch.Generator,
) -> Tensor:  # (B, S, D) -> (B, n_tokens)
    """Sample ``n_tokens`` decoder tokens from the student (KV cache; ``memory`` is reused)."""
    cache = model.new_cache()
    tok = torch.full((memory.shape[0], 1), BOS, dtype=torch.long, device=memory.device)
    out = []
    for _ in range(n_tokens):
        logits, _ = model.decode_step(tok, memory, None, cache)  # (B, K)
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        tok = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
        out.append(tok)
    return torch.cat(out, dim=1)


def make_kd_loss(teacher: DecoderOnlyLM, sizes: Sizes, seed: int) -> Callable:
    """The paper's cross-architecture KD step for an ``EncoderDecoderLM`` student.

    The student samples a target (temperature ``sample_temperature``, official 0.9); the
    decoder-only teacher reads ``[source; SEP; sampled]`` and its logits at the positions that
    predict the sampled tokens (SEP onwards) are aligned with the student's decoder logits on
    ``[BOS; sampled]``. Loss ``alpha * KL(teacher || student) + (1 - alpha) * CE`` with CE on
    the ground-truth target; the encoder runs once for sampling and both decoder passes. The KL
    counts the sampled tokens up to the first EOS.
    """
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    generator = torch.Generator().manual_seed(50_000 + seed)
    k = sizes.task.k

    def loss_fn(model: EncoderDecoderLM, batch) -> tuple[Tensor, dict[str, Tensor]]:
        source, target = batch
        memory = model.encode(source)  # (B, S, D)
        sampled = sample_targets(
            model, memory.detach(), k + 1, sizes.sample_temperature, generator
        )  # (B, k + 1)
        with torch.no_grad():
            t_logits = causal_logits_on_target(teacher, source, sampled)  # (B, k + 1, K)
        is_eos = (sampled == EOS).long()
        kd_mask = (is_eos.cumsum(-1) - is_eos) == 0  # tokens up to the first EOS
        s_logits_kd = model.decode(decoder_input(sampled), memory)  # (B, k + 1, K)
        s_logits_ce = model.decode(decoder_input(target), memory)
        loss, kd, ce = kd_objective(
            s_logits_kd,
            t_logits,
            s_logits_ce,
            target,
            alpha=sizes.kd_alpha,
            kd_mask=kd_mask,
            temperature=sizes.kd_temperature,
        )
        acc = (s_logits_ce.argmax(-1) == target).float().mean()
        return loss, {"kd": kd.detach(), "ce": ce.detach(), "token_acc": acc.detach()}

    return loss_fn


# ----------------------------------------------------------------------------- latency
@torch.no_grad()
def _prefill(model, source: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor], DecoderCache]:
    """Run the input and the first decoding step; return the first token, a one-token step
    function and the cache."""
    cache = model.new_cache()
    if isinstance(model, EncoderDecoderLM):
        memory = model.encode(source)
        start = torch.full_like(source[:, :1], BOS)
        logits, _ = model.decode_step(start, memory, None, cache)

        def step(tok: Tensor) -> Tensor:
            return model.decode_step(tok, memory, None, cache)[0]

    else:
        prompt = torch.cat([source, torch.full_like(source[:, :1], SEP)], dim=1)
        B, P = prompt.shape
        positions = torch.arange(P).expand(B, -1)
        logits, _ = model.forward_step(prompt, None, positions, cache)

        def step(tok: Tensor) -> Tensor:
            pos = torch.full_like(tok, cache.length)
            return model.forward_step(tok, None, pos, cache)[0]

    return logits.argmax(-1, keepdim=True), step, cache


def first_token_seconds(model, source: Tensor) -> float:
    """Seconds from the input ids to the first generated token (encoder or prompt + 1 step)."""
    t0 = time.perf_counter()
    _prefill(model, source)
    return time.perf_counter() - t0


@torch.no_grad()
def per_token_seconds(model, source: Tensor, n_new: int) -> float:
    """Mean seconds per generated token after the first (greedy, KV cache)."""
    tok, step, _ = _prefill(model, source)
    t0 = time.perf_counter()
    for _ in range(n_new - 1):
        tok = step(tok).argmax(-1, keepdim=True)
    return (time.perf_counter() - t0) / (n_new - 1)


@torch.no_grad()
def generation_seconds(model, source: Tensor, n_new: int) -> float:
    """Seconds for ``archlab.generate.generate`` to produce ``n_new`` tokens per row."""
    t0 = time.perf_counter()
    if isinstance(model, EncoderDecoderLM):
        generate(model, source, max_new_tokens=n_new, decoder_start_token_id=BOS)
    else:
        prompt = torch.cat([source, torch.full_like(source[:, :1], SEP)], dim=1)
        generate(model, prompt, max_new_tokens=n_new)
    return time.perf_counter() - t0


@torch.no_grad()
def cache_elements(model, source: Tensor, n_new: int) -> int:
    """Number of cached key/value entries (all layers) after decoding ``n_new`` tokens."""
    tok, step, cache = _prefill(model, source)
    for _ in range(n_new - 1):
        tok = step(tok).argmax(-1, keepdim=True)
    total = 0
    for c in cache.self_attn + cache.cross_attn:
        if c.k is not None:
            total += c.k.numel() + c.v.numel()
    return total


def alternate(
    fa: Callable[[], float], fb: Callable[[], float], repeats: int
) -> tuple[float, float]:
    """Median of ``repeats`` measurements of each, taken alternately (a b, b a, a b, ...) after
    one warm-up each, so that both models see the same machine load."""
    fa(), fb()
    ta, tb = [], []
    for i in range(repeats):
        if i % 2 == 0:
            ta.append(fa())
            tb.append(fb())
        else:
            tb.append(fb())
            ta.append(fa())
    return statistics.median(ta), statistics.median(tb)


def latency_sweep(
    encdec: EncoderDecoderLM, deconly: DecoderOnlyLM, sizes: Sizes, seed: int
) -> dict[int, dict[str, float]]:
    """Latency, throughput and cache size of both models at every input length."""
    g = torch.Generator().manual_seed(20_000 + seed)
    lo, hi = SEP + 1, sizes.task.vocab_size
    out = {}
    for S in sizes.lengths:
        one = torch.randint(lo, hi, (1, S), generator=g)
        batch = torch.randint(lo, hi, (sizes.throughput_batch, S), generator=g)
        ft_e, ft_d = alternate(
            partial(first_token_seconds, encdec, one),
            partial(first_token_seconds, deconly, one),
            sizes.repeats,
        )
        pt_e, pt_d = alternate(
            partial(per_token_seconds, encdec, one, sizes.n_new),
            partial(per_token_seconds, deconly, one, sizes.n_new),
            sizes.repeats,
        )
        gen_e, gen_d = alternate(
            partial(generation_seconds, encdec, batch, sizes.n_new),
            partial(generation_seconds, deconly, batch, sizes.n_new),
            max(1, sizes.repeats // 2),
        )
        n_tokens = sizes.throughput_batch * sizes.n_new
        out[S] = {
            "first_token_ms_encdec": 1e3 * ft_e,
            "first_token_ms_deconly": 1e3 * ft_d,
            "per_token_ms_encdec": 1e3 * pt_e,
            "per_token_ms_deconly": 1e3 * pt_d,
            "throughput_tok_s_encdec": n_tokens / gen_e,
            "throughput_tok_s_deconly": n_tokens / gen_d,
            "cache_elems_encdec": cache_elements(encdec, one, sizes.n_new),
            "cache_elems_deconly": cache_elements(deconly, one, sizes.n_new),
        }
    return out


# ----------------------------------------------------------------------------- run
def _figures(sweep: dict, curves: dict[str, list[dict]], teacher_eval: dict) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = sorted(sweep)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    panels = [
        ("first_token_ms", "first-token latency (ms)"),
        ("per_token_ms", "per-token latency (ms)"),
        ("throughput_tok_s", "throughput (tokens/s, batch 8)"),
    ]
    for ax, (key, label) in zip(axes, panels):
        ax.plot(lengths, [sweep[s][f"{key}_encdec"] for s in lengths], "o-", label="enc-dec")
        ax.plot(lengths, [sweep[s][f"{key}_deconly"] for s in lengths], "s--", label="dec-only")
        ax.set(xlabel="input length (tokens)", ylabel=label, xscale="log")
        ax.minorticks_off()
        ax.set_xticks(lengths, [str(s) for s in lengths])
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Equal parameters, KV cache, batch 1 (throughput: batch 8), one CPU thread")
    fig.tight_layout()
    figures = {"latency_vs_input_length": fig}

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    styles = {"enc-dec KD": "o-", "enc-dec CE": "s-", "dec-only CE": "^--"}
    for name, curve in curves.items():
        steps = [r["step"] for r in curve]
        axes[0].plot(steps, [r["ce"] for r in curve], styles[name], label=name)
        axes[1].plot(steps, [r["exact_match"] for r in curve], styles[name], label=name)
    axes[0].axhline(teacher_eval["ce"], color="gray", ls=":", label="teacher (final)")
    axes[1].axhline(teacher_eval["exact_match"], color="gray", ls=":", label="teacher (final)")
    axes[0].set(xlabel="step", ylabel="held-out CE (teacher-forced)")
    axes[1].set(xlabel="step", ylabel="held-out exact match (greedy)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend()
    fig.tight_layout()
    figures["distillation_curves"] = fig
    return figures


BUDGETS = {"smoke": SMOKE, "quick": QUICK}


def run(budget: Budget, seed: int) -> Result:
    """Train teacher, decoder-only baseline, CE and KD students; time the two architectures."""
    sizes = Budget.parse(budget).settings(BUDGETS)
    result = Result(
        slug=SPEC.slug, title=SPEC.title, claim=SPEC.claim, budget=budget.value, seed=seed
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only add overhead; latency at one thread
    try:
        _run(sizes, seed, result)
    finally:
        torch.set_num_threads(threads)
    return result


def _run(sizes: Sizes, seed: int, result: Result) -> None:
    t_start, cpu_start = time.perf_counter(), time.process_time()
    task = KeywordTask(sizes.task)
    eval_set = task.sample(sizes.n_eval, torch.Generator().manual_seed(10_000 + seed))
    m = result.metrics

    seed_everything(seed)
    teacher = DecoderOnlyLM(sizes.teacher)
    _, t_teacher = train(
        teacher, causal_loss, task, sizes, sizes.teacher_steps, sizes.teacher_lr, seed, eval_set
    )
    teacher_eval = evaluate(teacher, *eval_set)
    n_teacher = count_parameters(teacher)

    seed_everything(seed + 1)
    deconly = DecoderOnlyLM(matched_decoder_only(sizes.student))
    curve_dec, t_dec = train(
        deconly, causal_loss, task, sizes, sizes.steps, sizes.lr, seed, eval_set
    )

    seed_everything(seed + 2)
    student_ce = EncoderDecoderLM(sizes.student)
    init = {k: v.clone() for k, v in student_ce.state_dict().items()}
    curve_ce, t_ce = train(
        student_ce, seq2seq_loss, task, sizes, sizes.steps, sizes.lr, seed, eval_set
    )

    student_kd = EncoderDecoderLM(sizes.student)
    student_kd.load_state_dict(init)  # same initial weights, same batches
    kd_loss = make_kd_loss(teacher, sizes, seed)
    curve_kd, t_kd = train(student_kd, kd_loss, task, sizes, sizes.steps, sizes.lr, seed, eval_set)

    ev_dec, ev_ce, ev_kd = curve_dec[-1], curve_ce[-1], curve_kd[-1]
    n_ed, n_do = count_parameters(student_ce), count_parameters(deconly)
    m.update(
        {
            "params_encdec": n_ed,
            "params_deconly": n_do,
            "params_teacher": n_teacher,
            "em_teacher": teacher_eval["exact_match"],
            "em_deconly": ev_dec["exact_match"],
            "em_encdec_ce": ev_ce["exact_match"],
            "em_encdec_kd": ev_kd["exact_match"],
            "ce_teacher": teacher_eval["ce"],
            "ce_deconly": ev_dec["ce"],
            "ce_encdec_ce": ev_ce["ce"],
            "ce_encdec_kd": ev_kd["ce"],
            "train_s_teacher": t_teacher,
            "train_s_deconly": t_dec,
            "train_s_encdec_ce": t_ce,
            "train_s_encdec_kd": t_kd,
        }
    )

    t0 = time.perf_counter()
    sweep = latency_sweep(student_ce, deconly, sizes, seed)
    m["latency_s"] = time.perf_counter() - t0
    for S, row in sweep.items():
        for key, value in row.items():
            m[f"{key}@{S}"] = value
    r = sweep[sizes.s_check]
    ft = r["first_token_ms_encdec"] / r["first_token_ms_deconly"]
    pt = r["per_token_ms_encdec"] / r["per_token_ms_deconly"]
    tp = r["throughput_tok_s_encdec"] / r["throughput_tok_s_deconly"]
    mem = r["cache_elems_encdec"] / r["cache_elems_deconly"]
    m.update(
        {
            "first_token_ratio": ft,
            "per_token_ratio": pt,
            "throughput_ratio": tp,
            "cache_ratio": mem,
        }
    )

    S = sizes.s_check
    gap = abs(n_ed - n_do) / n_do
    result.check(
        "equal parameters (within 2%)",
        gap <= 0.02,
        f"enc-dec {n_ed:,} vs dec-only {n_do:,} ({100 * gap:.2f}%)",
    )
    result.check(
        f"enc-dec first-token latency <= 0.9x dec-only at S={S}",
        ft <= 0.9,
        f"{r['first_token_ms_encdec']:.2f} ms vs {r['first_token_ms_deconly']:.2f} ms ({ft:.2f}x)",
    )
    result.check(
        f"enc-dec per-token latency <= 0.6x dec-only at S={S}",
        pt <= 0.6,
        f"{r['per_token_ms_encdec']:.2f} ms vs {r['per_token_ms_deconly']:.2f} ms ({pt:.2f}x)",
    )
    result.check(
        f"enc-dec throughput >= 1.5x dec-only at S={S}",
        tp >= 1.5,
        f"{r['throughput_tok_s_encdec']:.0f} vs {r['throughput_tok_s_deconly']:.0f} tokens/s "
        f"({tp:.2f}x)",
    )
    result.check(
        "enc-dec exact match >= dec-only - 5 points (same steps and data)",
        ev_ce["exact_match"] >= ev_dec["exact_match"] - 0.05,
        f"{ev_ce['exact_match']:.3f} vs {ev_dec['exact_match']:.3f}",
    )
    result.check(
        "teacher beats the CE student (something to distil)",
        teacher_eval["exact_match"] > ev_ce["exact_match"],
        f"teacher {teacher_eval['exact_match']:.3f} vs student {ev_ce['exact_match']:.3f}",
    )
    result.check(
        "KD student beats CE-only student (same init, batches, steps)",
        ev_kd["exact_match"] > ev_ce["exact_match"] and ev_kd["ce"] < ev_ce["ce"],
        f"exact match {ev_kd['exact_match']:.3f} vs {ev_ce['exact_match']:.3f}; held-out CE "
        f"{ev_kd['ce']:.3f} vs {ev_ce['ce']:.3f}",
    )
    m["experiment_s"] = time.perf_counter() - t_start
    m["experiment_cpu_s"] = time.process_time() - cpu_start
    curves = {"enc-dec KD": curve_kd, "enc-dec CE": curve_ce, "dec-only CE": curve_dec}
    result.figures = _figures(sweep, curves, teacher_eval)
