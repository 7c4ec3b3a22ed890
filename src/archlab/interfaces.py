"""What shared code may assume a model can do: ``typing.Protocol`` interfaces, checked with
``isinstance`` (runtime-checkable), instead of ``hasattr`` probes or free-form capability tags.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor


@runtime_checkable
class MultiScaleOutput(Protocol):
    """A dense model supervised at several scales: ``forward_scales(x)`` returns one output per
    scale, full resolution last (e.g. MAXIM)."""

    def forward_scales(self, x: Tensor) -> list[Tensor]: ...


@runtime_checkable
class Seq2Seq(Protocol):
    """An encoder-decoder ``archlab.generate`` can decode: encode once, then one decoder step
    at a time with a cache (``Cached``)."""

    def encode(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor: ...

    def decode_step(
        self,
        decoder_input_ids: Tensor,
        memory: Tensor,
        memory_mask: Tensor | None,
        cache: Any,
    ) -> tuple[Tensor, Any]: ...


@runtime_checkable
class CausalLM(Protocol):
    """A decoder-only language model ``archlab.generate`` can decode one step at a time."""

    def forward_step(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        position_ids: Tensor,
        cache: Any,
    ) -> tuple[Tensor, Any]: ...


@runtime_checkable
class Cached(Protocol):
    """A sequence model with a key/value cache for incremental decoding."""

    def new_cache(self) -> Any: ...
