"""Evaluating a fitted video network the way the NeRV-family papers do.

Two kinds of model are handled: a frame-index network (NeRV: ``model(t)``) and an embedding
network (HNeRV, NeRV++: ``model.encode(frames)`` gives the stored per-frame embeddings,
``model.decode(embeddings)`` the frames). For both:

- ``reconstruct``: the frames ``idx`` as the stored representation decodes them;
- ``interpolate``: held-out frames, from ``t`` for NeRV and, for an embedding network, from the
  embeddings of the seen frames linearly interpolated at the held-out frame's position (the
  held-out frames are never encoded);
- ``quantized``: the reconstruction after 8-bit weights and 6-bit embeddings and the bits per
  pixel of the Huffman-coded symbols (``archlab.baselines.nerv.quantize``);
- ``decode_fps``: frames per second of the decoder alone (from the stored embeddings or ``t``).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
from torch import Tensor, nn

from archlab.baselines.nerv import NeRV, coded_bits, quantize_module, quantize_tensor
from archlab.lab.inference import evaluating, predict
from archlab.lab.metrics import psnr
from archlab.papers.fields.hnerv.model import interpolate_embeddings


def has_embeddings(model: nn.Module) -> bool:
    return hasattr(model, "encode") and hasattr(model, "decode")


def model_inputs(model: nn.Module, frames: Tensor, idx: Tensor) -> Tensor:
    """What the model reads for frames ``idx`` of a ``T``-frame clip: the frames themselves
    (embedding networks) or ``t = idx / T`` (NeRV)."""
    if has_embeddings(model):
        return frames[idx]
    return NeRV.frame_times(len(frames))[idx]


def embeddings(model: nn.Module, frames: Tensor) -> Tensor:
    """The stored embeddings ``(n, d, h, w)`` of ``frames (n, 3, H, W)``."""
    return predict(model, frames, batch_size=16, fn=lambda m, x: m.encode(x))


def decode(model: nn.Module, codes: Tensor) -> Tensor:
    """Frames from stored codes: embeddings (embedding networks) or ``t`` (NeRV)."""
    if has_embeddings(model):
        return predict(model, codes, batch_size=16, fn=lambda m, z: m.decode(z))
    return predict(model, codes, batch_size=16)


def codes(model: nn.Module, frames: Tensor, idx: Tensor) -> Tensor:
    """The stored representation of frames ``idx``: embeddings or frame times."""
    if has_embeddings(model):
        return embeddings(model, frames[idx])
    return NeRV.frame_times(len(frames))[idx]


def reconstruct(model: nn.Module, frames: Tensor, idx: Tensor) -> Tensor:
    return decode(model, codes(model, frames, idx))


def interpolate(model: nn.Module, frames: Tensor, seen: Tensor, held: Tensor) -> Tensor:
    """Held-out frames ``held`` decoded without ever reading them."""
    if not has_embeddings(model):
        return decode(model, NeRV.frame_times(len(frames))[held])
    stored = embeddings(model, frames[seen])  # (n_seen, d, h, w)
    positions = np.interp(held.numpy(), seen.numpy(), np.arange(len(seen)))
    mixed = torch.stack([interpolate_embeddings(stored, float(p)) for p in positions])
    return decode(model, mixed)


def quantized(
    model: nn.Module, frames: Tensor, seen: Tensor, weight_bits: int = 8, embed_bits: int = 6
) -> dict[str, float]:
    """PSNR of the seen frames after quantisation, and the coded size.

    Returns:
        ``{"psnr", "bpp", "bpp_entropy", "bits"}``; bits per pixel over all ``T * H * W``
        pixels of the clip (held-out frames are decoded from the same bits).
    """
    decoder = model.decoder
    qdec, tensors = quantize_module(decoder, weight_bits)
    if has_embeddings(model):
        qz = quantize_tensor(embeddings(model, frames[seen]), embed_bits)
        tensors.append(qz)
        inputs = qz.dequantize()
    else:
        inputs = model.encoding(NeRV.frame_times(len(frames))[seen])
    with evaluating(qdec):
        recon = torch.cat([qdec(inputs[i : i + 16]) for i in range(0, len(inputs), 16)])
    bits = coded_bits(tensors)
    pixels = frames.shape[0] * frames.shape[2] * frames.shape[3]
    return {"psnr": psnr(recon.clamp(0, 1), frames[seen]), "bpp": bits["huffman_bits"] / pixels,
            "bpp_entropy": bits["entropy_bits"] / pixels, "bits": bits["huffman_bits"]}  # fmt: skip


def decode_fps(model: nn.Module, frames: Tensor, seen: Tensor, repeats: int = 5) -> float:
    """Frames per second of decoding the seen frames from their stored codes (batch 8;
    the median of ``repeats`` timings)."""
    stored = codes(model, frames, seen)
    decode(model, stored[:8])  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        decode(model, stored)
        times.append(time.perf_counter() - t0)
    return len(stored) / statistics.median(times)


def steps_to_reach(history: list[dict[str, float]], key: str, level: float) -> float:
    """The first evaluated step at which ``key`` reaches ``level`` (inf when it never does)."""
    for row in history:
        if row[key] >= level:
            return float(row["step"])
    return float("inf")


__all__ = [
    "codes",
    "decode",
    "decode_fps",
    "embeddings",
    "has_embeddings",
    "interpolate",
    "model_inputs",
    "quantized",
    "reconstruct",
    "steps_to_reach",
]
