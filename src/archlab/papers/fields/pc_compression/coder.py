"""Lossless image coding with an HCLT and an entropy coder (``constriction``'s range coder).

Stream layout (little-endian)::

    header  22 bytes: magic b"PCC1", V (u16), H (u16), W (u16), n images (u32),
                      chunk (u32), CRC32 of the decoded images (u32)
    payload the range coder's 32-bit words

Images are coded in chunks of ``chunk`` images; within a chunk the symbols go variable-major
(all images' pixel 0, then pixel 1, ...) in raster order, each with its exact conditional
``p(x_k | x_<k)`` from the circuit (the cached evaluation ``HCLT.next_conditional``: after
each pixel only its ancestors are re-evaluated, the paper's reuse of unchanged node values),
cast to float32 and quantised by
``constriction.stream.model.Categorical(perfect=False)`` (24-bit precision; every symbol keeps a
nonzero mass). The range coder is a queue, so encoder and decoder both run forward; the decoder
computes each chunk's conditionals from the pixels decoded so far. Encoder and decoder perform
the same operations on the same inputs in the same batch shapes, so their probability tables are
bit-identical on one machine and library build.

A corrupt stream never decodes silently to a wrong image: a bad magic or header, a payload that
is not whole words, a decoder that has not consumed its data, or a CRC32 mismatch raise
``CorruptStreamError`` with one line.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import torch
from torch import Tensor

from archlab.errors import ArchlabError
from archlab.papers.fields.pc_compression.model import HCLT

MAGIC = b"PCC1"
HEADER = struct.Struct("<4sHHHIII")
HEADER_BITS = 8 * HEADER.size
"""Bits of the header of every stream (176)."""
CODER_SLACK_BITS = 64
"""The range coder flushes its 64-bit state: a payload may exceed the summed code lengths of its
(quantised) symbols by up to this many bits."""


class CorruptStreamError(ArchlabError, ValueError):
    """A compressed stream that does not decode to the images it was written from."""


def _crc(x: Tensor, n_cats: int) -> int:  # (n, D) -> CRC32 of the pixels in raster order
    dtype = np.uint8 if n_cats <= 256 else np.uint16
    return zlib.crc32(np.ascontiguousarray(x.numpy().astype(dtype)).tobytes())


def _family():
    import constriction

    return constriction.stream.model.Categorical(perfect=False)


def encode(model: HCLT, images: Tensor | np.ndarray, chunk: int = 512) -> bytes:
    """Compress integer images (n, H, W) (or (n, D)) with values in ``0 .. V-1``.

    Raises:
        CompressionInputError: wrong shape, dtype or values outside the alphabet.
    """
    return encode_with_sizes(model, images, chunk)[0]


def encode_with_sizes(model: HCLT, images: Tensor | np.ndarray, chunk: int = 512,
                      per_image: bool = False) -> tuple[bytes, Tensor | None]:  # fmt: skip
    """``encode``, and with ``per_image`` also the bits (n,) each image takes when coded alone
    in its own stream (its own header and coder flush), from the same conditionals."""
    import constriction

    x = model.check_images(images)  # (n, D)
    n, d = x.shape
    h, w = model.cfg.shape
    v = model.cfg.n_cats
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    coder = constriction.stream.queue.RangeEncoder()
    alone = [constriction.stream.queue.RangeEncoder() for _ in range(n)] if per_image else []
    family = _family()
    for s in range(0, n, chunk):
        xc = x[s : s + chunk]
        state = model.start_coding(len(xc))
        for k in range(d):
            probs = model.next_conditional(state, k).numpy().astype(np.float32)  # (b, V)
            symbols = xc[:, k].numpy().astype(np.int32)
            coder.encode(symbols, family, probs)
            for i, one in enumerate(alone[s : s + chunk]):
                one.encode(symbols[i : i + 1], family, probs[i : i + 1])
            model.observe(state, k, xc[:, k])
    words = coder.get_compressed().astype("<u4")
    header = HEADER.pack(MAGIC, v, h, w, n, chunk, _crc(x, v))
    sizes = torch.tensor([HEADER_BITS + c.num_bits() for c in alone]) if per_image else None
    return header + words.tobytes(), sizes


def decode(model: HCLT, data: bytes) -> Tensor:
    """Decompress a stream written by ``encode`` with the same model: (n, H, W) int64.

    Raises:
        CorruptStreamError: the stream is not one this model wrote, or it was corrupted.
    """
    import constriction

    h, w = model.cfg.shape
    v = model.cfg.n_cats
    want = f"a pc_compression stream of {h}x{w} images with {v} levels"
    if len(data) < HEADER.size:
        raise CorruptStreamError(f"corrupt stream: {len(data)} bytes is shorter than the "
                                 f"{HEADER.size}-byte header of {want}")  # fmt: skip
    magic, sv, sh, sw, n, chunk, crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptStreamError(f"corrupt stream: magic {magic!r}, expected {MAGIC!r} ({want})")
    if (sv, sh, sw) != (v, h, w) or chunk < 1:
        raise CorruptStreamError(f"corrupt stream: header says {sh}x{sw} images with {sv} levels "
                                 f"(chunk {chunk}), expected {want}")  # fmt: skip
    payload = data[HEADER.size :]
    if len(payload) % 4:
        raise CorruptStreamError(f"corrupt stream: payload of {len(payload)} bytes is not whole "
                                 "32-bit words")  # fmt: skip
    try:
        words = np.frombuffer(payload, "<u4").astype(np.uint32)
        coder = constriction.stream.queue.RangeDecoder(words)
    except Exception as e:  # constriction rejects some malformed words  # noqa: BLE001
        raise CorruptStreamError(f"corrupt stream: the entropy coder rejected it ({e})") from e
    family = _family()
    d = h * w
    out = torch.zeros(n, d, dtype=torch.long)
    for s in range(0, n, chunk):
        xc = out[s : s + chunk]  # a view: decoded pixels land in ``out``
        state = model.start_coding(len(xc))
        for k in range(d):
            probs = model.next_conditional(state, k).numpy().astype(np.float32)  # (b, V)
            try:
                xc[:, k] = torch.from_numpy(coder.decode(family, probs).astype(np.int64))
            except Exception as e:  # noqa: BLE001
                raise CorruptStreamError(f"corrupt stream: decoding failed at pixel {k} ({e})"
                                         ) from e  # fmt: skip
            model.observe(state, k, xc[:, k])
    if not coder.maybe_exhausted():
        raise CorruptStreamError(f"corrupt stream: data left after decoding {n} images")
    got = _crc(out, v)
    if got != crc:
        raise CorruptStreamError(f"corrupt stream: CRC32 of the decoded images {got:#010x} != "
                                 f"{crc:#010x} in the header")  # fmt: skip
    return out.view(n, h, w)


def ideal_bits(model: HCLT, images: Tensor | np.ndarray) -> Tensor:
    """The model's code length ``-log2 p(x)`` per image (n,): what an ideal coder would write."""
    with torch.no_grad():
        return -model.log_marginal(images) / np.log(2.0)
