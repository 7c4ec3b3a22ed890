"""Registry and public API: sorted index, lazy import, build errors, list functions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import archlab
from archlab.baselines import INDEX as BASELINES
from archlab.errors import UnknownNameError
from archlab.papers import INDEX
from archlab.registry import FAMILIES, spec

SHARED = Path(__file__).resolve().parents[2] / "shared" / "PAPERS.md"


def test_index_sorted_and_consistent():
    for index in (INDEX, BASELINES):
        assert list(index) == sorted(index)
    for slug, entry in INDEX.items():
        family = entry.family
        assert family in FAMILIES and entry.module == f"archlab.papers.{family}.{slug}"
        s = spec(slug)
        assert s.slug == slug and s.family == family and s.experiment
        card = Path(archlab.__file__).parent / "papers" / family / slug / "README.md"
        assert card.exists(), f"{slug} has no paper card"
    for slug, entry in BASELINES.items():
        assert entry.module == f"archlab.baselines.{slug}" and spec(slug).slug == slug
        assert entry.is_baseline


def test_static_index_equals_every_spec_and_budget_table():
    """``list_papers`` reads the static index; it must say what the SPECs and BUDGETS say."""
    from archlab.catalog import BASELINES_DOC, PAPERS_DOC, render_index
    from archlab.registry import entry_from_spec

    for index, doc, is_baseline, name in (
        (INDEX, PAPERS_DOC, False, "papers"),
        (BASELINES, BASELINES_DOC, True, "baselines"),
    ):
        for slug, entry in index.items():
            assert entry == entry_from_spec(entry.module, is_baseline), (
                f"{slug}: the static index differs from its SPEC/BUDGETS; "
                "run archlab.registry.regenerate_indexes()"
            )
        source = Path(archlab.__file__).parent / name / "__init__.py"
        assert source.read_text() == render_index(list(index.values()), doc)


def test_list_is_fast_and_imports_no_paper():
    code = (
        "import time, sys; t = time.perf_counter(); import archlab; ps = archlab.list_papers();"
        "ms = archlab.list_models(); dt = time.perf_counter() - t;"
        "bad = [m for m in sys.modules if m.startswith(('archlab.papers.', 'archlab.baselines.'))];"
        "assert not bad, bad; assert 'torch' not in sys.modules; assert len(ps) >= 19; print(dt)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) < 0.5


@pytest.mark.skipif(not SHARED.exists(), reason="shared/PAPERS.md not beside the checkout")
def test_slugs_and_families_match_papers_md():
    rows = {}
    for line in SHARED.read_text().splitlines():
        parts = [p.strip().strip("`") for p in line.split("|")]
        if len(parts) > 4 and parts[1].isdigit():
            rows[parts[2]] = parts[3]
    for slug in INDEX:
        assert slug in rows, f"{slug} is not a slug of PAPERS.md"
        assert spec(slug).family == rows[slug]


def test_import_is_light_and_imports_no_paper():
    code = (
        "import time, sys; t = time.perf_counter(); import archlab; dt = time.perf_counter() - t;"
        "bad = [m for m in sys.modules if m.startswith(('archlab.papers.', 'archlab.baselines.'))];"
        "assert not bad, bad; assert 'torch' not in sys.modules; print(dt)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) < 0.5


def test_list_papers_and_models():
    papers = archlab.list_papers()
    assert [p.slug for p in papers] == sorted(INDEX)
    assert all("tiny" in p.variants for p in papers)
    models = archlab.list_models()
    for slug in list(INDEX) + list(BASELINES):
        assert slug in models and f"{slug}/tiny" in models
    with pytest.raises(UnknownNameError, match="did you mean 'vision'"):
        archlab.list_papers("visoin")


def test_build_errors_name_close_matches():
    slug = next(iter(INDEX))
    with pytest.raises(UnknownNameError, match=f"did you mean '{slug}'"):
        archlab.build(slug[:-1] + "x")
    with pytest.raises(UnknownNameError, match="tiny"):
        archlab.build(f"{slug}/tinyy")
    with pytest.raises(UnknownNameError, match="field of"):
        archlab.build(f"{slug}/tiny", not_a_field=3)
