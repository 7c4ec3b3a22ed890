"""Invariants of mgno stated in the paper (TODO)."""

import archlab


def test_mgno_builds():
    assert archlab.build("mgno/tiny") is not None
