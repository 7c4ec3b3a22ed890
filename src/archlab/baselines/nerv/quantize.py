"""Post-training quantisation and bit counting of a NeRV-family video (official ``quant_tensor``).

A tensor is quantised to ``bits``-bit symbols with an affine map ``t ~ t_min + scale * q``,
``q`` in ``0..2^bits - 1``; the statistics are taken over the whole tensor or along one axis
(only axes long enough that the per-axis statistics are under 2% of the tensor's size, stored
in float16), and the candidate with the smallest mean absolute error is kept. Model weights use
8 bits and embeddings 6 (the official defaults). The stored size is the Huffman code length of
all symbols pooled (weights and embeddings together, as the official code codes them) plus 16
bits per stored minimum and scale; bits per pixel divide it by ``T * H * W``.
"""

from __future__ import annotations

import copy
import heapq
from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class QuantizedTensor:
    """``bits``-bit symbols and the affine map back: ``t_min + scale * symbols``.

    Attributes:
        symbols: integer symbols, the tensor's shape (uint8 for bits <= 8).
        t_min: minimum, broadcastable to the symbols (a scalar or one value per slice).
        scale: step, same shape as ``t_min``.
        bits: symbol width.
    """

    symbols: Tensor
    t_min: Tensor
    scale: Tensor
    bits: int

    def dequantize(self) -> Tensor:
        return self.t_min.float() + self.scale.float() * self.symbols.float()

    @property
    def n_stats(self) -> int:
        """Stored float16 statistics (minima and scales)."""
        return self.t_min.numel() + self.scale.numel()


def quantize_tensor(t: Tensor, bits: int) -> QuantizedTensor:
    """Quantise ``t`` per tensor or per axis, whichever reconstructs it best (mean |error|).

    The worst-case error is half a step: ``|t - dequantize| <= scale / 2`` (plus float16
    rounding of the per-axis statistics). A constant tensor is reconstructed exactly.
    """
    if not 1 <= bits <= 16:
        raise ValueError(f"bits must be in 1..16, got {bits}")
    t = t.detach().float()
    levels = 2**bits - 1
    candidates = [(t.min(), (t.max() - t.min()) / levels)]
    for axis in range(t.dim()):
        lo, hi = t.amin(axis, keepdim=True), t.amax(axis, keepdim=True)
        if lo.numel() / t.numel() < 0.02:
            candidates.append((lo.half(), ((hi - lo) / levels).half()))
    best = None
    for t_min, scale in candidates:
        m, s = t_min.float(), scale.float()
        q = ((t - m) / torch.where(s > 0, s, torch.ones_like(s))).round().clamp(0, levels)
        err = float((t - (m + s * q)).abs().mean())
        if best is None or err < best[0]:
            best = (err, q, t_min, scale)
    _, q, t_min, scale = best
    dtype = torch.uint8 if bits <= 8 else torch.int32
    return QuantizedTensor(q.to(dtype), t_min, scale, bits)


def quantize_module(module: nn.Module, bits: int) -> tuple[nn.Module, list[QuantizedTensor]]:
    """A copy of ``module`` whose floating-point parameters and buffers are replaced by their
    ``bits``-bit reconstructions, and the quantised tensors (for counting bits)."""
    out = copy.deepcopy(module)
    state = out.state_dict()
    quantized = []
    for name, value in state.items():
        if value.is_floating_point():
            qt = quantize_tensor(value, bits)
            state[name] = qt.dequantize().to(value.dtype)
            quantized.append(qt)
    out.load_state_dict(state)
    return out, quantized


def huffman_code_lengths(counts: dict[int, int]) -> dict[int, int]:
    """Code length in bits of each symbol of a Huffman code for the symbol ``counts``."""
    if len(counts) == 1:
        return {next(iter(counts)): 1}
    heap = [(n, i, (sym,)) for i, (sym, n) in enumerate(sorted(counts.items()))]
    heapq.heapify(heap)
    lengths = dict.fromkeys(counts, 0)
    tie = len(heap)
    while len(heap) > 1:
        n1, _, a = heapq.heappop(heap)
        n2, _, b = heapq.heappop(heap)
        for sym in a + b:
            lengths[sym] += 1
        heapq.heappush(heap, (n1 + n2, tie, a + b))
        tie += 1
    return lengths


def coded_bits(quantized: list[QuantizedTensor], stat_bits: int = 16) -> dict[str, float]:
    """Bits to store the quantised tensors: Huffman code of all symbols pooled, and the
    empirical entropy bound, each plus ``stat_bits`` per stored statistic.

    Returns:
        ``{"huffman_bits", "entropy_bits", "n_symbols"}``.
    """
    counts = Counter()
    n_stats = 0
    for qt in quantized:
        values, n = torch.unique(qt.symbols.flatten(), return_counts=True)
        counts.update(dict(zip(values.tolist(), n.tolist())))
        n_stats += qt.n_stats
    total = sum(counts.values())
    lengths = huffman_code_lengths(dict(counts))
    huffman = sum(n * lengths[s] for s, n in counts.items())
    probs = torch.tensor(list(counts.values()), dtype=torch.float64) / total
    entropy = float(-(probs * probs.log2()).sum()) * total
    overhead = n_stats * stat_bits
    return {"huffman_bits": huffman + overhead, "entropy_bits": entropy + overhead,
            "n_symbols": total}  # fmt: skip


__all__ = [
    "QuantizedTensor",
    "coded_bits",
    "huffman_code_lengths",
    "quantize_module",
    "quantize_tensor",
]
