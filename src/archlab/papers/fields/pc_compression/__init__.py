"""TODO title of pc_compression (pc_compression): public names."""

from archlab.papers.fields.pc_compression.model import SPEC, PcCompression, PcCompressionConfig

__all__ = ["SPEC", "PcCompression", "PcCompressionConfig"]
