"""S-KAN (arXiv 2408.08338): KAN nodes that select their activation space from a pool."""

from archlab.papers.fields.s_kan.model import (
    SKAN,
    SPACES,
    SPEC,
    SKANConfig,
    SKANLayer,
    active_parameters,
    basis,
)

__all__ = ["SKAN", "SPACES", "SPEC", "SKANConfig", "SKANLayer", "active_parameters", "basis"]
