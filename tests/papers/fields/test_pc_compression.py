"""Invariants of pc_compression stated in the paper (TODO)."""

import archlab


def test_pc_compression_builds():
    assert archlab.build("pc_compression/tiny") is not None
