"""Invariants of nervpp stated in the paper (TODO)."""

import archlab


def test_nervpp_builds():
    assert archlab.build("nervpp/tiny") is not None
