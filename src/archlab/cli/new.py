"""``archlab new FAMILY/SLUG``: copy the paper template and register the slug in ``INDEX``."""

from __future__ import annotations

import re
from pathlib import Path

from archlab.catalog import FAMILIES, PAPERS_DOC, PaperInfo, render_index
from archlab.errors import ArchlabError, UnknownNameError, close_matches_message

PACKAGE = Path(__file__).resolve().parents[1]
TEMPLATE = PACKAGE / "papers" / "_template"
SLUG_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def _render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def add_to_index(index_file: Path, entry: PaperInfo) -> None:
    """Rewrite the sorted ``INDEX`` module ``index_file`` with ``entry`` added."""
    import runpy

    entries = list(runpy.run_path(str(index_file))["INDEX"].values()) + [entry]
    index_file.write_text(render_index(entries, PAPERS_DOC))


def new_paper(name: str, root: Path | None = None, title: str | None = None) -> list[Path]:
    """Create ``papers/<family>/<slug>/`` and its test file from the template; returns paths.

    Args:
        name: ``"family/slug"``.
        root: the repository root (default: the checkout this package lives in).
        title: the paper title (default: a TODO placeholder).
    """
    family, _, slug = name.partition("/")
    if not slug:
        raise ArchlabError(f"expected FAMILY/SLUG (e.g. vision/convit), got {name!r}")
    if family not in FAMILIES:
        raise UnknownNameError(close_matches_message("family", family, FAMILIES))
    if not SLUG_RE.match(slug):
        raise ArchlabError(f"slug {slug!r} must be lowercase letters, digits and underscores")
    root = Path(root) if root is not None else PACKAGE.parents[1]
    pkg = root / "src" / "archlab"
    from archlab.registry import all_slugs

    if slug in all_slugs():
        raise ArchlabError(f"{slug!r} is already registered")
    folder = pkg / "papers" / family / slug
    if folder.exists():
        raise ArchlabError(f"{folder} already exists")
    values = {
        "slug": slug,
        "family": family,
        "Name": "".join(part.capitalize() for part in slug.split("_")),
        "title": title or f"TODO title of {slug}",
    }
    created = []
    folder.mkdir(parents=True)
    family_init = folder.parent / "__init__.py"
    if not family_init.exists():
        family_init.write_text("")
    for tmpl in sorted(TEMPLATE.glob("*.tmpl")):
        target = folder / tmpl.name.removesuffix(".tmpl")
        target.write_text(_render(tmpl.read_text(), values))
        created.append(target)
    test_dir = root / "tests" / "papers" / family
    test_dir.mkdir(parents=True, exist_ok=True)
    test = test_dir / f"test_{slug}.py"
    test.write_text(
        f'"""Invariants of {slug} stated in the paper (TODO)."""\n\n'
        "import archlab\n\n\n"
        f"def test_{slug}_builds():\n"
        f'    assert archlab.build("{slug}/tiny") is not None\n'
    )
    created.append(test)
    entry = PaperInfo(
        slug=slug,
        module=f"archlab.papers.{family}.{slug}",
        family=family,
        title=values["title"],
        arxiv="0000.00000",
        fidelity="unverified",
        variants=("tiny", "base"),
        budgets=("smoke", "quick"),
    )
    add_to_index(pkg / "papers" / "__init__.py", entry)
    return created
