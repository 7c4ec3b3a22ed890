"""Miniature reproduction of Return of the Encoder: accuracy and efficiency at equal
parameters, and cross-architecture KD, under the fair-comparison protocol.

Task (``data.py``): keyword extraction. A document of ``S`` tokens drawn from a random Zipf
distribution over ``n_symbols`` symbols; the summary is its ``k`` most frequent tokens in order,
then EOS. Long input, short output: the paper's asymmetric setting. Splits: training documents
come from each fit's training stream, validation and test documents from the ``val-data`` and
``test-data`` streams; every choice (the lr) is made on validation, every check reads test.

Arms (``model.py``, from ``archlab.nn`` blocks), all on the same recipe (``LANGUAGE_MODEL``:
AdamW, cosine schedule with warm-up, clipping at 1):

- ``teacher``: a larger decoder-only model, trained first with CE (lr fixed);
- ``deconly``: the decoder-only baseline with the student's width, depth and parameter count
  (``matched_decoder_only``), CE;
- ``encdec_ce``: the encoder-decoder student (2/3 of the layers in the encoder: 4 + 2,
  pre-RMSNorm, GQA, RoPE, tied embeddings), CE;
- ``encdec_kd``: the same student from the same initial weights, at the CE student's lr,
  trained with the paper's loss ``0.9 KL(teacher || student) + 0.1 CE``: the student samples a
  target (temperature 0.9), the teacher reads ``[source; SEP; sampled target]`` and its logits
  at the target positions are aligned with the student's decoder logits on
  ``[BOS; sampled target]`` (official ``KDDataset`` / ``KDModel``).

``deconly`` and ``encdec_ce`` are tuned with ``lab.tune`` on the same lr grid (validation exact
match), then refit at their chosen lrs on ``n_replicates - 1`` more paired inner seeds (streams
``init/<i>``, ``train/<i>``): the accuracy claim is a paired interval over the replicates. Both
pass a health check (beat the most common summary, flattened curve) before any comparison.

Latency (``encdec_ce`` against ``deconly``, both decoding greedily with their KV cache at batch
1 on the run's device and threads, timed alternately with medians over repeats): first-token
latency (prefill + first token), per-token latency (each further token), throughput (generated
tokens per second at batch 8, prefill included) and the KV-cache size, at input lengths up to
1024. The ratios at the long input ``s_check`` are checked, and so is the growth of the
per-token latency from the shortest to the longest input: the encoder-decoder's cached
cross-attention against the decoder-only's attention over prompt + output.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import torch
from torch import Tensor, nn

from archlab.generate import generate
from archlab.lab import Lab, Recipe, predict
from archlab.lab.inference import evaluating, model_device
from archlab.lab.plots import new_figure
from archlab.lab.profiling import compare_latency
from archlab.lab.tasks import LANGUAGE_MODEL
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
    DecoderOnlyLM,
    EncoderDecoderLM,
    MuConfig,
    kd_objective,
    matched_decoder_only,
)


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides (every threshold fixed before the test split is read)."""

    task: KeywordTaskConfig
    student: MuConfig  # the encoder-decoder; the decoder-only baseline is matched to it
    teacher: MuConfig  # a larger decoder-only model
    recipe: Recipe  # every arm: teacher, baseline, CE and KD students (lr: the teacher's)
    lrs: tuple[float, ...]  # the learning-rate grid of both architectures, picked on validation
    n_replicates: int  # paired inner seeds of the accuracy claim (the tuned pair included)
    n_val: int  # validation documents (lr choice, held-out curves)
    n_test: int  # test documents (every check)
    lengths: tuple[int, ...]  # input lengths of the latency sweep
    s_check: int  # the long input length whose latency ratios are checked
    n_new: int  # tokens generated per latency measurement
    throughput_batch: int
    repeats: int  # timed repeats of each latency measurement
    kd_alpha: float = 0.9  # weight of the KD term (the paper's 0.9)
    kd_temperature: float = 1.0
    sample_temperature: float = 0.9  # the student's sampling temperature (official 0.9)
    max_param_gap: float = 0.02  # invariant: |params enc-dec - dec-only| / dec-only
    max_first_token_ratio: float = 0.9  # enc-dec / dec-only first-token latency at s_check
    max_per_token_ratio: float = 0.6  # enc-dec / dec-only per-token latency at s_check
    min_throughput_ratio: float = 1.5  # enc-dec / dec-only throughput at s_check
    em_margin: float = 0.0  # paired enc-dec - dec-only exact match: interval above this
    teacher_margin: float = 1e-9  # the teacher beats the CE student (strictly)
    kd_margin: float = 1e-9  # the KD student beats the CE student (strictly, EM and CE)
    health_margin: float = 0.5  # baselines: exact match >= the most common summary's + this
    max_flattening: float = 0.2  # baselines: loss fell <= 20% over the last quarter
    n_trivial: int = 2000  # training-distribution documents whose most common summary is trivial


def _student(task: KeywordTaskConfig, d: int, n_enc: int, n_dec: int) -> MuConfig:
    return MuConfig(
        vocab_size=task.vocab_size, n_encoder_layers=n_enc, n_decoder_layers=n_dec, d_model=d,
        d_attn=d, n_heads=4, n_kv_heads=2, d_hidden=2 * d, dropout=0.0,
    )  # fmt: skip


def _recipe(steps: int, batch_size: int, eval_every: int) -> Recipe:
    return LANGUAGE_MODEL.recipe(
        steps=steps, batch_size=batch_size, lr=3e-3, warmup_steps=min(20, steps // 10),
        eval_every=eval_every,
    )  # fmt: skip


_SMOKE_TASK = KeywordTaskConfig(n_symbols=8, n_source=16, k=2)
_QUICK_TASK = KeywordTaskConfig(n_symbols=8, n_source=24, k=2, min_gap=2)
BUDGETS = {
    "smoke": Settings(
        task=_SMOKE_TASK, student=_student(_SMOKE_TASK, 16, 2, 1),
        teacher=replace(_student(_SMOKE_TASK, 32, 0, 3), d_hidden=64),
        recipe=_recipe(4, 8, eval_every=2), lrs=(3e-3,), n_replicates=2, n_val=32, n_test=32,
        lengths=(16, 32), s_check=32, n_new=4, throughput_batch=2, repeats=2, n_trivial=64,
    ),
    "quick": Settings(
        task=_QUICK_TASK, student=_student(_QUICK_TASK, 32, 4, 2),
        teacher=replace(_student(_QUICK_TASK, 64, 0, 6), d_hidden=128),
        recipe=_recipe(250, 32, eval_every=125), lrs=(3e-3, 1e-2), n_replicates=3,
        n_val=300, n_test=1000, lengths=(64, 256, 1024), s_check=1024, n_new=16,
        throughput_batch=8, repeats=7,
    ),
}  # fmt: skip


# ----------------------------------------------------------------------------- evaluation
def greedy_summaries(model: nn.Module, source: Tensor, k: int) -> Tensor:  # (B, S) -> (B, k+1)
    """Greedy decoding (KV cache) of ``k`` keywords and EOS."""
    if isinstance(model, EncoderDecoderLM):
        out = generate(model, source, max_new_tokens=k + 1, decoder_start_token_id=BOS)
        return out[:, 1:]
    prompt = torch.cat([source, torch.full_like(source[:, :1], SEP)], dim=1)
    return generate(model, prompt, max_new_tokens=k + 1)[:, prompt.shape[1] :]


def target_logits(model: nn.Module, source: Tensor, target: Tensor) -> Tensor:
    """Teacher-forced logits (B, k+1, K) that predict ``target`` (either architecture)."""
    if isinstance(model, EncoderDecoderLM):
        return model(source, decoder_input(target))
    return causal_logits_on_target(model, source, target)


def evaluate(model: nn.Module, source: Tensor, target: Tensor) -> dict[str, float]:
    """Exact match and token accuracy of greedy summaries; teacher-forced CE (one batch, on
    the model's device)."""
    S, n = source.shape[1], len(source)
    out = predict(model, source, n, fn=lambda m, x: greedy_summaries(m, x, target.shape[1] - 1))
    pairs = torch.cat([source, target], dim=1)
    logits = predict(model, pairs, n, fn=lambda m, st: target_logits(m, st[:, :S], st[:, S:]))
    ce = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), target.flatten())
    return {
        "exact_match": float((out == target).all(-1).float().mean()),
        "token_acc": float((out == target).float().mean()),
        "ce": float(ce),
    }


def held_out_curve(
    source: Tensor, target: Tensor, recipe: Recipe
) -> tuple[list[dict[str, float]], Callable[[nn.Module], dict[str, float]]]:
    """An ``eval_fn`` for ``lab.fit`` / ``lab.tune`` (on the validation split) and the list of
    its rows (``step`` and ``evaluate``'s numbers). Under ``lab.tune`` the candidates append
    their rows one after the other, ``ceil(steps / eval_every)`` rows each (``chosen_rows``)."""
    rows: list[dict[str, float]] = []
    per_fit = math.ceil(recipe.steps / recipe.eval_every)

    def eval_fn(model: nn.Module) -> dict[str, float]:
        row = evaluate(model, source, target)
        step = min((len(rows) % per_fit + 1) * recipe.eval_every, recipe.steps)
        rows.append({"step": step, **row})
        return row

    return rows, eval_fn


def chosen_rows(rows: list[dict[str, float]], lrs: tuple[float, ...], lr: float):
    """The held-out curve of the candidate ``lab.tune`` kept (the one trained at ``lr``)."""
    per_fit = len(rows) // len(lrs)
    i = list(lrs).index(lr)
    return rows[i * per_fit : (i + 1) * per_fit]


def most_common_summary_match(task: KeywordTask, g: torch.Generator, n: int, target: Tensor):
    """The trivial predictor: exact match on ``target`` of always emitting the most common
    summary of ``n`` training-distribution documents drawn from ``g``."""
    _, summaries = task.sample(n, g)
    values, counts = torch.unique(summaries, dim=0, return_counts=True)
    best = values[counts.argmax()]
    return float((target == best).all(-1).float().mean())


# ----------------------------------------------------------------------------- distillation
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


def make_kd_loss(teacher: DecoderOnlyLM, s: Settings, seed: int) -> Callable:
    """The paper's cross-architecture KD step for an ``EncoderDecoderLM`` student.

    The student samples a target (temperature ``sample_temperature``, official 0.9) from a
    generator seeded with ``seed`` (on the student's device); the decoder-only teacher reads
    ``[source; SEP; sampled]`` and its logits at the positions that predict the sampled tokens
    (SEP onwards) are aligned with the student's decoder logits on ``[BOS; sampled]``. Loss
    ``alpha * KL(teacher || student) + (1 - alpha) * CE`` with CE on the ground-truth target;
    the encoder runs once for sampling and both decoder passes. The KL counts the sampled tokens
    up to the first EOS.
    """
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    generators: dict[torch.device, torch.Generator] = {}

    def loss_fn(model: EncoderDecoderLM, batch) -> tuple[Tensor, dict[str, Tensor]]:
        source, target = batch
        if source.device not in generators:
            generators[source.device] = torch.Generator(device=source.device).manual_seed(seed)
        memory = model.encode(source)  # (B, S, D)
        sampled = sample_targets(
            model, memory.detach(), s.task.k + 1, s.sample_temperature, generators[source.device]
        )  # (B, k + 1)
        with torch.no_grad():
            t_logits = causal_logits_on_target(teacher, source, sampled)  # (B, k + 1, K)
        is_eos = (sampled == EOS).long()
        kd_mask = (is_eos.cumsum(-1) - is_eos) == 0  # tokens up to the first EOS
        s_logits_kd = model.decode(decoder_input(sampled), memory)  # (B, k + 1, K)
        s_logits_ce = model.decode(decoder_input(target), memory)
        loss, kd, ce = kd_objective(
            s_logits_kd, t_logits, s_logits_ce, target, alpha=s.kd_alpha, kd_mask=kd_mask,
            temperature=s.kd_temperature,
        )  # fmt: skip
        acc = (s_logits_ce.argmax(-1) == target).float().mean()
        return loss, {"kd": kd.detach(), "ce": ce.detach(), "token_acc": acc.detach()}

    return loss_fn


# ----------------------------------------------------------------------------- latency
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
        positions = torch.arange(P, device=prompt.device).expand(B, -1)
        logits, _ = model.forward_step(prompt, None, positions, cache)

        def step(tok: Tensor) -> Tensor:
            pos = torch.full_like(tok, cache.length)
            return model.forward_step(tok, None, pos, cache)[0]

    return logits.argmax(-1, keepdim=True), step, cache


@torch.no_grad()
def per_token_seconds(model, source: Tensor, n_new: int) -> float:
    """Mean seconds per generated token after the first (greedy, KV cache; the prefill is not
    timed)."""
    tok, step, _ = _prefill(model, source)
    _sync(source.device)
    t0 = time.perf_counter()
    for _ in range(n_new - 1):
        tok = step(tok).argmax(-1, keepdim=True)
    _sync(source.device)
    return (time.perf_counter() - t0) / (n_new - 1)


@torch.no_grad()
def generate_tokens(model, source: Tensor, n_new: int) -> Tensor:
    """``archlab.generate.generate`` of ``n_new`` greedy tokens per row (prefill included)."""
    if isinstance(model, EncoderDecoderLM):
        return generate(model, source, max_new_tokens=n_new, decoder_start_token_id=BOS)
    prompt = torch.cat([source, torch.full_like(source[:, :1], SEP)], dim=1)
    return generate(model, prompt, max_new_tokens=n_new)


@torch.no_grad()
def cache_elements(model, source: Tensor, n_new: int) -> int:
    """Number of cached key/value entries (all layers) after decoding ``n_new`` tokens."""
    tok, step, cache = _prefill(model, source)
    for _ in range(n_new - 1):
        tok = step(tok).argmax(-1, keepdim=True)
    return sum(
        c.k.numel() + c.v.numel() for c in cache.self_attn + cache.cross_attn if c.k is not None
    )


def alternate(
    fa: Callable[[], float], fb: Callable[[], float], repeats: int
) -> tuple[float, float]:
    """Medians of ``repeats`` self-timed measurements (each call returns its own seconds) of
    each, taken alternately (a b, b a, a b, ...) after one warm-up each, so that both models see
    the same machine load (``compare_latency`` for callables that time only part of a call)."""
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
    encdec: EncoderDecoderLM, deconly: DecoderOnlyLM, s: Settings, g: torch.Generator
) -> dict[int, dict[str, float]]:
    """Latency, throughput and cache size of both models at every input length (inputs drawn
    from ``g``, on the models' device)."""
    device = model_device(encdec)
    lo, hi = SEP + 1, s.task.vocab_size
    out = {}
    with evaluating(encdec), evaluating(deconly):
        for S in s.lengths:
            one = torch.randint(lo, hi, (1, S), generator=g).to(device)
            batch = torch.randint(lo, hi, (s.throughput_batch, S), generator=g).to(device)
            first = compare_latency(partial(_prefill, encdec, one), partial(_prefill, deconly, one),
                                    repeats=s.repeats, warmup=1)  # fmt: skip
            pt_e, pt_d = alternate(
                partial(per_token_seconds, encdec, one, s.n_new),
                partial(per_token_seconds, deconly, one, s.n_new),
                s.repeats,
            )
            gen = compare_latency(
                partial(generate_tokens, encdec, batch, s.n_new),
                partial(generate_tokens, deconly, batch, s.n_new),
                repeats=max(1, s.repeats // 2), warmup=1,
            )  # fmt: skip
            n_tokens = s.throughput_batch * s.n_new
            out[S] = {
                "first_token_ms/encdec_ce": 1e3 * first.a_s,
                "first_token_ms/deconly": 1e3 * first.b_s,
                "per_token_ms/encdec_ce": 1e3 * pt_e,
                "per_token_ms/deconly": 1e3 * pt_d,
                "throughput_tok_s/encdec_ce": n_tokens / gen.a_s,
                "throughput_tok_s/deconly": n_tokens / gen.b_s,
                "cache_elems/encdec_ce": cache_elements(encdec, one, s.n_new),
                "cache_elems/deconly": cache_elements(deconly, one, s.n_new),
            }
    return out


# ----------------------------------------------------------------------------- run
def arms(s: Settings) -> dict[str, tuple[Callable[[], nn.Module], Callable]]:
    """The two architectures under comparison: arm -> (make, CE loss)."""
    return {
        "deconly": (lambda: DecoderOnlyLM(matched_decoder_only(s.student)), causal_loss),
        "encdec_ce": (lambda: EncoderDecoderLM(s.student), seq2seq_loss),
    }


def tune_architectures(lab: Lab, s: Settings, data, val) -> tuple[dict[str, nn.Module], dict]:
    """Both architectures on the same lr grid (the same init stream and batches per candidate),
    each kept at the lr with the best validation exact match; returns the models and their
    held-out (validation) curves."""
    models, curves = {}, {}
    for arm, (make, loss) in arms(s).items():
        rows, eval_fn = held_out_curve(*val, s.recipe)
        models[arm] = lab.tune(
            arm, make, loss, data, s.recipe, lrs=s.lrs, eval_fn=eval_fn,
            score=lambda m: evaluate(m, *val)["exact_match"],
        )  # fmt: skip
        curves[arm] = chosen_rows(rows, s.lrs, lab.value("lr", arm))
    n_ed, n_do = lab.value("params", "encdec_ce"), lab.value("params", "deconly")
    lab.invariant(
        f"equal parameters (within {s.max_param_gap:.0%}; matched_decoder_only)",
        abs(n_ed - n_do) / n_do <= s.max_param_gap,
        f"enc-dec {n_ed:,.0f} vs dec-only {n_do:,.0f} ({100 * abs(n_ed - n_do) / n_do:.2f}%)",
    )  # fmt: skip
    return models, curves


def replicate_accuracy(lab: Lab, s: Settings, data, test) -> dict[str, list[float]]:
    """Test exact match of both architectures over ``n_replicates`` paired inner seeds: the
    tuned pair (replicate 0) and pairs refit at the chosen lrs from streams ``init/<i>`` (the
    same init for both arms) on batches of stream ``train/<i>`` (the same for both arms)."""
    values = {arm: [lab.value("exact_match", arm)] for arm in arms(s)}
    for i in range(1, s.n_replicates):
        for arm, (make, loss) in arms(s).items():
            model = lab.replicate(arm, make, loss, data, s.recipe.replace(eval_every=0), i)
            values[arm].append(
                lab.measure(f"exact_match/{arm}/{i}", evaluate(model, *test)["exact_match"])
            )
    return values


def measure_latency(lab: Lab, s: Settings, encdec: nn.Module, deconly: nn.Module) -> dict:
    """The latency sweep, recorded as ``<metric>@<S>/<arm>``, and the enc-dec / dec-only
    ratios at ``s_check`` (``<metric>_ratio``). Returns the sweep."""
    t0 = time.perf_counter()
    sweep = latency_sweep(encdec, deconly, s, lab.rng("latency-inputs"))
    lab.measure("latency_sweep_s", time.perf_counter() - t0)
    for S, row in sweep.items():
        for key, value in row.items():
            metric, arm = key.split("/")
            lab.measure(f"{metric}@{S}/{arm}", value)
    r = sweep[s.s_check]
    for metric, name in (("first_token_ms", "first_token_ratio"),
                         ("per_token_ms", "per_token_ratio"),
                         ("throughput_tok_s", "throughput_ratio"),
                         ("cache_elems", "cache_ratio")):  # fmt: skip
        lab.measure(name, r[f"{metric}/encdec_ce"] / r[f"{metric}/deconly"])
    return sweep


def run(lab: Lab) -> None:
    """Train the teacher; tune both architectures on validation; distil; check on test; time."""
    s: Settings = lab.settings
    task = KeywordTask(s.task)
    val = task.sample(s.n_val, lab.rng("val-data"))
    test = task.sample(s.n_test, lab.rng("test-data"))
    data = task.sampler()  # training documents: drawn from each fit's own training stream

    teacher = lab.build("teacher", lambda: DecoderOnlyLM(s.teacher))
    lab.fit("teacher", teacher, causal_loss, data, s.recipe.replace(eval_every=0))
    for key, value in evaluate(teacher, *test).items():
        lab.measure(f"{key}/teacher", value)
    lab.measure("val_exact_match/teacher", evaluate(teacher, *val)["exact_match"])

    models, curves = tune_architectures(lab, s, data, val)
    # the KD student: the CE student's init, batches and (validation-chosen) lr, the KD loss
    kd = lab.build("encdec_kd", lambda: EncoderDecoderLM(s.student))
    ce0 = lab.build("encdec_ce", lambda: EncoderDecoderLM(s.student)).state_dict()
    lab.invariant(
        "KD and CE students start from the same weights (same init stream)",
        all(torch.equal(ce0[k], v) for k, v in kd.state_dict().items()),
        f"{lab.value('params', 'encdec_kd'):,.0f} parameters each",
    )  # fmt: skip
    curves["encdec_kd"], eval_fn = held_out_curve(*val, s.recipe)
    kd_loss = make_kd_loss(teacher, s, lab.seed_for("kd-samples"))
    lab.fit("encdec_kd", kd, kd_loss, data, s.recipe.replace(lr=lab.value("lr", "encdec_ce")),
            eval_fn=eval_fn)  # fmt: skip
    models["encdec_kd"] = kd
    for arm, model in models.items():
        for key, value in evaluate(model, *test).items():
            lab.measure(f"{key}/{arm}", value)
    em = replicate_accuracy(lab, s, data, test)

    trivial = most_common_summary_match(task, lab.rng("trivial-data"), s.n_trivial, test[1])
    lab.measure("exact_match/most_common_summary", trivial)
    for arm in ("deconly", "encdec_ce"):
        lab.health(arm, "exact_match", ("the most common summary", trivial),
                   margin=s.health_margin, max_flattening=s.max_flattening)  # fmt: skip

    sweep = measure_latency(lab, s, models["encdec_ce"], models["deconly"])
    S, S0 = s.s_check, min(s.lengths)

    def ms(metric: str, unit: str = " ms") -> str:
        e, d = lab.value(f"{metric}@{S}", "encdec_ce"), lab.value(f"{metric}@{S}", "deconly")
        return f"enc-dec {e:.4g}{unit} vs dec-only {d:.4g}{unit}"

    growth = {arm: lab.value(f"per_token_ms@{S}", arm) - lab.value(f"per_token_ms@{S0}", arm)
              for arm in ("encdec_ce", "deconly")}  # fmt: skip
    for arm, value in growth.items():
        lab.measure(f"per_token_growth_ms/{arm}", value)
    # fmt: off
    lab.paired(f"enc-dec exact match above dec-only at equal parameters (paper: +2-4 points; "
               f"{s.n_replicates} paired inner seeds, lr picked on validation)",
               ("encdec_ce", em["encdec_ce"]), ("deconly", em["deconly"]),
               margin=s.em_margin, arms=("encdec_ce", "deconly"))
    lab.bound(f"enc-dec first-token latency <= {s.max_first_token_ratio:g}x dec-only at S={S}",
              "enc-dec / dec-only", lab.value("first_token_ratio"),
              at_most=s.max_first_token_ratio, unit="x", note=ms("first_token_ms"))
    lab.bound(f"enc-dec per-token latency <= {s.max_per_token_ratio:g}x dec-only at S={S}",
              "enc-dec / dec-only", lab.value("per_token_ratio"),
              at_most=s.max_per_token_ratio, unit="x", note=ms("per_token_ms"))
    lab.compare_values(f"enc-dec per-token latency grows less than dec-only's from S={S0} to "
                       f"S={S} (cached cross-attention vs attention over prompt + output)",
                       ("enc-dec growth", growth["encdec_ce"]),
                       ("dec-only growth", growth["deconly"]), higher_is_better=False,
                       unit=" ms", strict=True)
    lab.bound(f"enc-dec throughput >= {s.min_throughput_ratio:g}x dec-only at S={S}",
              "enc-dec / dec-only", lab.value("throughput_ratio"),
              at_least=s.min_throughput_ratio, unit="x", note=ms("throughput_tok_s", " tok/s"))
    lab.compare("teacher beats the CE student (something to distil)", "exact_match", "teacher",
                "encdec_ce", margin=s.teacher_margin)
    lab.compare("KD student beats CE-only student in exact match (same init, batches, lr)",
                "exact_match", "encdec_kd", "encdec_ce", margin=s.kd_margin)
    lab.compare("KD student beats CE-only student in held-out CE (same init, batches, lr)",
                "ce", "encdec_kd", "encdec_ce", margin=s.kd_margin, higher_is_better=False)
    # fmt: on
    lab.figure("latency_vs_input_length", latency_figure(sweep, s))
    lab.figure("distillation_curves", distillation_figure(curves, lab))


# ----------------------------------------------------------------------------- figures
def latency_figure(sweep: dict[int, dict[str, float]], s: Settings):
    """First-token latency, per-token latency and throughput against the input length."""
    lengths = sorted(sweep)
    fig = new_figure((14, 3.8))
    axes = fig.subplots(1, 3)
    panels = [
        ("first_token_ms", "first-token latency (ms)"),
        ("per_token_ms", "per-token latency (ms)"),
        ("throughput_tok_s", f"throughput (tokens/s, batch {s.throughput_batch})"),
    ]
    for ax, (key, label) in zip(axes, panels):
        ax.plot(lengths, [sweep[n][f"{key}/encdec_ce"] for n in lengths], "o-", label="enc-dec")
        ax.plot(lengths, [sweep[n][f"{key}/deconly"] for n in lengths], "s--", label="dec-only")
        ax.set(xlabel="input length (tokens)", ylabel=label, xscale="log")
        ax.minorticks_off()
        ax.set_xticks(lengths, [str(n) for n in lengths])
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"Equal parameters, KV cache, batch 1 (throughput: batch {s.throughput_batch})")
    fig.tight_layout()
    return fig


def distillation_figure(curves: dict[str, list[dict[str, float]]], lab: Lab):
    """Validation CE and exact match over training of the students and the baseline (each at
    its chosen lr)."""
    fig = new_figure((10, 3.8))
    axes = fig.subplots(1, 2)
    styles = {"encdec_kd": ("enc-dec KD", "o-"), "encdec_ce": ("enc-dec CE", "s-"),
              "deconly": ("dec-only CE", "^--")}  # fmt: skip
    for arm, (name, style) in styles.items():
        steps = [row["step"] for row in curves[arm]]
        axes[0].plot(steps, [row["ce"] for row in curves[arm]], style, label=name)
        axes[1].plot(steps, [row["exact_match"] for row in curves[arm]], style, label=name)
    for ax, key in zip(axes, ("ce", "exact_match")):
        teacher = lab.value("val_exact_match/teacher") if key == "exact_match" else None
        if teacher is not None:
            ax.axhline(teacher, color="gray", ls=":", label="teacher (final)")
        ax.grid(alpha=0.3)
    axes[0].set(xlabel="step", ylabel="validation CE (teacher-forced)")
    axes[1].set(xlabel="step", ylabel="validation exact match (greedy)")
    axes[1].legend()
    fig.tight_layout()
    return fig
