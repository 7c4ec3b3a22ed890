"""Contract tests over every registered paper and baseline: no opt-in, no exception lists.

For each model's ``tiny`` variant: build, forward, finite output, every trainable parameter gets a
gradient, eval determinism, batch independence (unless the SPEC declares otherwise), config round
trip, forward time; for each paper the ``smoke`` reproduction runs and writes its result folder.
"""

from __future__ import annotations

import json
import time

import pytest
import torch

from archlab.config import from_dict, to_dict
from archlab.engine import seed_everything
from archlab.lab.result import Budget, Result
from archlab.papers import INDEX
from archlab.registry import all_slugs, spec

ALL = all_slugs()


def first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        for o in out:
            t = first_tensor(o)
            if t is not None:
                return t
    if hasattr(out, "logits"):
        return out.logits
    return None


def build_tiny(slug: str):
    s = spec(slug)
    seed_everything(0)
    return s, s.build(s.variants["tiny"])


def slice_example(args, i: int, batch: int):
    def one(a):
        if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == batch:
            return a[i : i + 1]
        if isinstance(a, (list, tuple)):
            return type(a)(one(x) for x in a)
        if isinstance(a, dict):
            return {k: one(v) for k, v in a.items()}
        return a

    return one(args)


@pytest.mark.parametrize("slug", ALL)
def test_forward_backward(slug):
    s, model = build_tiny(slug)
    model.train()
    args = s.example_input(model, 2)
    t0 = time.perf_counter()
    out = first_tensor(model(*args))
    assert out is not None, "forward returned no tensor"
    assert torch.isfinite(out).all(), "non-finite output"
    out.float().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:8]}"
    model.eval()
    times = []
    with torch.no_grad():
        for _ in range(3):
            t0 = time.perf_counter()
            model(*args)
            times.append(time.perf_counter() - t0)
    assert min(times) < 1.0, f"tiny forward took {min(times):.2f} s (should be well under 1 s)"


@pytest.mark.parametrize("slug", ALL)
def test_eval_determinism_and_batch_independence(slug):
    s, model = build_tiny(slug)
    model.eval()
    batch = 3
    args = s.example_input(model, batch)
    with torch.no_grad():
        a = first_tensor(model(*args))
        b = first_tensor(model(*args))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        if s.batch_independent:
            for i in range(batch):
                single = first_tensor(model(*slice_example(args, i, batch)))
                torch.testing.assert_close(single[0], a[i], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("slug", ALL)
def test_config_round_trip(slug):
    s = spec(slug)
    for name, cfg in s.variants.items():
        data = json.loads(json.dumps(to_dict(cfg)))
        assert from_dict(s.config, data) == cfg, f"variant {name} does not round-trip"


@pytest.mark.parametrize("slug", list(INDEX))
def test_smoke_reproduction(slug, tmp_path):
    import archlab

    t0 = time.perf_counter()
    r = archlab.reproduce(slug, budget="smoke", seed=0, out=tmp_path)
    assert isinstance(r, Result) and r.checks, "a reproduction states its claim as checks"
    assert time.perf_counter() - t0 < 60
    data = json.loads((tmp_path / "result.json").read_text())
    for key in (
        "slug",
        "title",
        "claim",
        "budget",
        "seed",
        "metrics",
        "checks",
        "holds",
        "elapsed_s",
        "git",
        "versions",
        "device",
    ):
        assert key in data
    assert data["budget"] == Budget.smoke.value and data["slug"] == slug
    assert list(tmp_path.glob("*.png")), "a reproduction writes at least one plot"
