"""Invariants of snnk stated in the paper (TODO)."""

import archlab


def test_snnk_builds():
    assert archlab.build("snnk/tiny") is not None
