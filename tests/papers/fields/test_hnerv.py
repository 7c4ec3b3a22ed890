"""Invariants of hnerv stated in the paper (TODO)."""

import archlab


def test_hnerv_builds():
    assert archlab.build("hnerv/tiny") is not None
