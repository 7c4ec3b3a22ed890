"""What the registry knows about a paper without importing it: ``PaperInfo``, the families and
fidelities. The static indexes (``archlab.papers.INDEX``, ``archlab.baselines.INDEX``) are
written with these, so listing papers imports neither torch nor any paper; a test keeps every
entry equal to its paper's ``SPEC`` and ``BUDGETS``.
"""

from __future__ import annotations

from dataclasses import dataclass

FAMILIES = (
    "language",
    "vision",
    "dense",
    "fields",
    "signals",
    "interp",
    "training",
    "search",
    "neuro",
    "multimodal",
    "graphs",
)
FIDELITIES = ("faithful", "simplified", "unverified")
EXTRAS = ("language", "vision", "dense")
"""Families with an optional-dependency group of the same name in pyproject.toml."""


@dataclass(frozen=True)
class PaperInfo:
    """A registered model, as ``list_papers`` returns it (static: nothing is imported).

    Attributes:
        slug: permanent identifier (``PAPERS.md``).
        module: the package of the paper or baseline (``archlab.papers.vision.convit``).
        family: folder under ``archlab/papers/``.
        title: paper title.
        arxiv: arXiv identifier.
        fidelity: ``faithful`` | ``simplified`` | ``unverified``.
        variants: named configs.
        budgets: budgets of its reproduction (empty for baselines).
        is_baseline: a model papers compare against, without a reproduction of its own.
    """

    slug: str
    module: str
    family: str
    title: str
    arxiv: str
    fidelity: str
    variants: tuple[str, ...]
    budgets: tuple[str, ...] = ()
    is_baseline: bool = False

    @property
    def extra(self) -> str | None:
        """The pip extra that installs this paper's optional dependencies."""
        return self.family if self.family in EXTRAS else None


def render_index(entries: list[PaperInfo], doc: str) -> str:
    """The source of an index module holding ``entries`` sorted by slug (``archlab new`` and
    the index test write and compare it)."""
    lines = [f'"""{doc}"""', "", "from archlab.catalog import PaperInfo", ""]
    lines.append("INDEX: dict[str, PaperInfo] = {")
    for e in sorted(entries, key=lambda e: e.slug):
        lines.append(f"    {e.slug!r}: PaperInfo(".replace("'", '"'))
        lines.append(f"        slug={_q(e.slug)},")
        lines.append(f"        module={_q(e.module)},")
        lines.append(f"        family={_q(e.family)},")
        lines += _wrapped("title", e.title)
        lines.append(f"        arxiv={_q(e.arxiv)},")
        lines.append(f"        fidelity={_q(e.fidelity)},")
        lines += _wrapped_tuple("variants", e.variants)
        if e.budgets:
            lines += _wrapped_tuple("budgets", e.budgets)
        if e.is_baseline:
            lines.append("        is_baseline=True,")
        lines.append("    ),")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _wrapped(name: str, text: str) -> list[str]:
    one = f"        {name}={_q(text)},"
    if len(one) <= 100:
        return [one]
    words, chunks, cur = text.split(" "), [], ""
    for w in words:
        if cur and len(cur) + len(w) + 1 > 76:
            chunks.append(cur + " ")
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    chunks.append(cur)
    return [f"        {name}=("] + [f"            {_q(c)}" for c in chunks] + ["        ),"]


def _wrapped_tuple(name: str, items: tuple[str, ...]) -> list[str]:
    body = ", ".join(_q(i) for i in items) + ("," if len(items) == 1 else "")
    one = f"        {name}=({body}),"
    if len(one) <= 100:
        return [one]
    return [f"        {name}=("] + [f"            {_q(i)}," for i in items] + ["        ),"]


PAPERS_DOC = (
    "The index of papers: slug -> static metadata. Sorted; written by ``archlab new`` and kept\n"
    "equal to each paper's ``SPEC`` and ``BUDGETS`` by a test, so listing imports no paper."
)
BASELINES_DOC = (
    "The index of baselines (models papers compare against): slug -> static metadata. Sorted;\n"
    "kept equal to each baseline's ``SPEC`` by a test."
)
