"""Transcoders (arXiv 2406.11944): sparse MLP replacements and attribution through MLPs."""

from archlab.papers.interp.transcoders.model import SPEC, input_attribution, weight_attribution

__all__ = ["SPEC", "input_attribution", "weight_attribution"]
