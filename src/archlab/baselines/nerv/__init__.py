"""NeRV (the baseline of HNeRV and NeRV++), its decoder pieces and the quantisation of a video
network: see ``model.py``, ``blocks.py``, ``quantize.py``."""

from archlab.baselines.nerv.blocks import (
    NeRVDecoder,
    PositionalEncoding,
    RGBHead,
    Stem,
    UpBlock,
    check_decoder_geometry,
    count_params,
    decoder_widths,
    kernel_sizes,
    solve_fc_dim,
)
from archlab.baselines.nerv.model import SPEC, VARIANTS, NeRV, NeRVConfig
from archlab.baselines.nerv.quantize import (
    QuantizedTensor,
    coded_bits,
    huffman_code_lengths,
    quantize_module,
    quantize_tensor,
)

__all__ = [
    "SPEC",
    "VARIANTS",
    "NeRV",
    "NeRVConfig",
    "NeRVDecoder",
    "PositionalEncoding",
    "QuantizedTensor",
    "RGBHead",
    "Stem",
    "UpBlock",
    "check_decoder_geometry",
    "coded_bits",
    "count_params",
    "decoder_widths",
    "huffman_code_lengths",
    "kernel_sizes",
    "quantize_module",
    "quantize_tensor",
    "solve_fc_dim",
]
