"""Config overrides: typed coercion, close-match errors, round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from archlab.config import (
    ConfigError,
    apply_overrides,
    from_dict,
    parse_overrides,
    replace_fields,
    to_dict,
)
from archlab.errors import UnknownNameError


@dataclass(frozen=True)
class Inner:
    d_model: int = 8
    dropout: float = 0.1


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    name: str = "x"
    use_bias: bool = True
    dims: tuple[int, ...] = (1, 2)
    pair: tuple[float, float] = (0.9, 0.99)
    clip: float | None = 1.0
    kind: Literal["a", "b"] = "a"

    def __post_init__(self):
        if self.inner.d_model % 2:
            raise ValueError("inner.d_model must be even")


def test_overrides_are_coerced_to_field_types():
    cfg = apply_overrides(
        Outer(),
        [
            "inner.d_model=16",
            "inner.dropout=0",
            "use_bias=false",
            "dims=3,4,5",
            "pair=[0.8, 0.95]",
            "clip=none",
            "kind=b",
            "name=7",
        ],
    )
    assert cfg.inner == Inner(16, 0.0) and isinstance(cfg.inner.dropout, float)
    assert cfg.use_bias is False and cfg.dims == (3, 4, 5) and cfg.pair == (0.8, 0.95)
    assert cfg.clip is None and cfg.kind == "b" and cfg.name == "7"


def test_unknown_key_lists_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean 'd_model'"):
        replace_fields(Outer(), {"inner.d_modle": 4})
    with pytest.raises(UnknownNameError, match="use_bias"):
        apply_overrides(Outer(), ["use_bais=1"])


@pytest.mark.parametrize(
    "item,msg",
    [
        ("inner.d_model=abc", "expected an int"),
        ("inner.d_model=2.5", "expected an int"),
        ("use_bias=maybe", "expected a bool"),
        ("kind=c", "expected one of"),
        ("pair=1,2,3", "expected 2 values"),
        ("inner.d_model=3", "must be even"),
    ],
)
def test_bad_values_are_one_line_errors(item, msg):
    with pytest.raises((ConfigError, UnknownNameError), match=msg) as info:
        apply_overrides(Outer(), [item])
    assert "\n" not in str(info.value)


def test_override_syntax():
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["novalue"])
    assert parse_overrides(["a=3e-4"]) == {"a": 3e-4}


def test_round_trip():
    cfg = apply_overrides(Outer(), ["inner.d_model=4", "dims=7"])
    assert from_dict(Outer, to_dict(cfg)) == cfg
