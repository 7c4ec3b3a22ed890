"""The registry: a static, sorted index of papers and baselines, each module exposing a ``SPEC``.

Nothing here imports a paper at import time. ``spec(slug)`` imports one module on demand.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from archlab.catalog import FAMILIES, FIDELITIES, PaperInfo
from archlab.errors import (
    ArchlabError,
    MissingDependencyError,
    UnknownNameError,
    close_matches_message,
)


@dataclass(frozen=True)
class Task:
    """What ``archlab train`` needs to train a model of a paper with the shared engine.

    Attributes:
        data: a map-style dataset (``__len__`` + ``__getitem__``) or a callable
            ``(batch_size, generator) -> batch`` producing one global batch.
        loss_fn: ``(model, batch) -> (loss, metrics)``.
        eval_fn: optional ``(model) -> metrics``, called every ``eval_every`` steps and at the end.
        collate: optional collate function for map-style datasets.
        param_groups: optional ``(model, lr) -> list of optimizer param groups`` for papers whose
            parts train at different learning rates (e.g. a decoder faster than attention).
    """

    data: Any
    loss_fn: Callable
    eval_fn: Callable | None = None
    collate: Callable | None = None
    param_groups: Callable | None = None


@dataclass(frozen=True)
class PaperSpec:
    """Everything the library knows about one paper (or baseline) without running it.

    Attributes:
        slug: permanent identifier (``PAPERS.md``).
        family: folder under ``archlab/papers/`` (``FAMILIES``).
        title: paper title.
        arxiv: arXiv identifier (``"1506.03134"``).
        claim: the central claim the experiment checks, in one sentence.
        config: the config dataclass (frozen); ``config()`` is the default ("base") config.
        build: ``config -> nn.Module``.
        variants: named configs; ``"tiny"`` is mandatory (CPU forward well under a second).
        example_input: ``(model, batch_size) -> tuple`` of positional forward arguments.
        task: optional ``(config, seed) -> Task`` used by ``archlab train``.
        train_defaults: overrides of ``TrainConfig`` fields for ``archlab train``.
        capabilities: free-form tags (``"seq2seq"``, ``"pretrained"``, ...).
        fidelity: ``faithful`` | ``simplified`` | ``unverified``.
        batch_independent: whether outputs of one example do not depend on the others.
        experiment: module path of ``run(budget, seed) -> Result``, or None (baselines).
        from_pretrained: optional ``(directory) -> nn.Module`` for Hugging Face-format weights.
    """

    slug: str
    family: str
    title: str
    arxiv: str
    claim: str
    config: type
    build: Callable[[Any], Any]
    variants: Mapping[str, Any]
    example_input: Callable[[Any, int], tuple]
    task: Callable[[Any, int], Task] | None = None
    train_defaults: Mapping[str, Any] = field(default_factory=dict)
    capabilities: frozenset[str] = frozenset()
    fidelity: str = "faithful"
    batch_independent: bool = True
    experiment: str | None = None
    from_pretrained: Callable[[str], Any] | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"{self.slug}: family {self.family!r} not in {FAMILIES}")
        if self.fidelity not in FIDELITIES:
            raise ValueError(f"{self.slug}: fidelity {self.fidelity!r} not in {FIDELITIES}")
        if "tiny" not in self.variants:
            raise ValueError(f"{self.slug}: a 'tiny' variant is mandatory")
        if not dataclasses.is_dataclass(self.config):
            raise ValueError(f"{self.slug}: config must be a dataclass type")

    def variant(self, name: str | None) -> Any:
        """The config of a named variant (``None`` or ``"base"`` -> the default config)."""
        if name in (None, "", "base") and "base" not in self.variants:
            return self.config()
        if name in (None, ""):
            name = "base"
        if name not in self.variants:
            raise UnknownNameError(
                close_matches_message(f"variant of {self.slug}", name, list(self.variants))
            )
        return self.variants[name]


def _paper_index() -> dict[str, PaperInfo]:
    from archlab.papers import INDEX

    return INDEX


def _baseline_index() -> dict[str, PaperInfo]:
    from archlab.baselines import INDEX

    return INDEX


def all_slugs() -> list[str]:
    """Every buildable slug: papers, then baselines."""
    return list(_paper_index()) + list(_baseline_index())


def info(slug: str) -> PaperInfo:
    """The static index entry of a paper or baseline (imports nothing)."""
    papers, baselines = _paper_index(), _baseline_index()
    if slug in papers:
        return papers[slug]
    if slug in baselines:
        return baselines[slug]
    raise UnknownNameError(close_matches_message("model", slug, all_slugs()))


def spec(slug: str) -> PaperSpec:
    """The ``SPEC`` of a paper or baseline (imports its module).

    A missing optional dependency is one line naming the pip extra that installs it.
    """
    entry = info(slug)
    try:
        module = importlib.import_module(f"{entry.module}.model")
    except ModuleNotFoundError as e:
        if not e.name or e.name.split(".")[0] == "archlab":
            raise
        raise missing_dependency(slug, e.name, entry.extra) from None
    return module.SPEC


def missing_dependency(slug: str, module: str, extra: str | None) -> MissingDependencyError:
    top = module.split(".")[0]
    hint = f"pip install 'archlab[{extra}]'" if extra else f"pip install {top}"
    return MissingDependencyError(f"{slug} needs {top!r}, which is not installed ({hint})")


def split_name(name: str) -> tuple[str, str | None]:
    """``"convit/tiny"`` -> ``("convit", "tiny")``; ``"convit"`` -> ``("convit", None)``."""
    slug, _, variant = name.partition("/")
    return slug, (variant or None)


def resolve_config(name: str, overrides: Mapping[str, Any] | None = None) -> tuple[PaperSpec, Any]:
    """Spec and config of ``slug[/variant]`` with field overrides applied (validated)."""
    from archlab.config import replace_fields

    slug, variant = split_name(name)
    s = spec(slug)
    cfg = s.variant(variant)
    if overrides:
        cfg = replace_fields(cfg, dict(overrides))
    return s, cfg


def build(name: str, pretrained: str | None = None, **overrides: Any):
    """Build ``slug[/variant]`` with config field overrides; optionally load local weights.

    Args:
        name: ``"slug"`` or ``"slug/variant"``.
        pretrained: a local Hugging Face-format directory, for papers that support it.
        **overrides: config fields to replace; an unknown field is an error listing the valid ones.
    """
    slug, _ = split_name(name)
    if pretrained is not None:
        s = spec(slug)
        if s.from_pretrained is None:
            raise ArchlabError(
                f"{slug} has no pretrained loader (it has no Hugging Face counterpart)"
            )
        if overrides:
            raise ArchlabError("pretrained=... takes its config from the directory; drop overrides")
        return s.from_pretrained(pretrained)
    s, cfg = resolve_config(name, overrides)
    return s.build(cfg)


def list_papers(family: str | None = None) -> list[PaperInfo]:
    """Registered papers (not baselines), sorted by slug; optionally of one family.

    Read from the static index: no paper (and not torch) is imported.
    """
    if family is not None and family not in FAMILIES:
        raise UnknownNameError(close_matches_message("family", family, FAMILIES))
    return [e for e in _paper_index().values() if family is None or e.family == family]


def list_models() -> list[str]:
    """Everything buildable: ``slug`` and ``slug/variant`` of papers and baselines."""
    out = []
    for slug in all_slugs():
        out.append(slug)
        out.extend(f"{slug}/{v}" for v in info(slug).variants)
    return out


def entry_from_spec(module: str, is_baseline: bool = False) -> PaperInfo:
    """The index entry a paper's or baseline's ``SPEC`` (and experiment ``BUDGETS``) imply."""
    s = importlib.import_module(f"{module}.model").SPEC
    budgets: tuple[str, ...] = ()
    if s.experiment is not None:
        from archlab.lab.result import Budget

        table = importlib.import_module(s.experiment).BUDGETS
        budgets = tuple(b.value for b in Budget if b.value in table)
    return PaperInfo(
        slug=s.slug,
        module=module,
        family=s.family,
        title=s.title,
        arxiv=s.arxiv,
        fidelity=s.fidelity,
        variants=tuple(s.variants),
        budgets=budgets,
        is_baseline=is_baseline,
    )


def regenerate_indexes() -> None:
    """Rewrite ``archlab/papers/__init__.py`` and ``archlab/baselines/__init__.py`` from every
    registered ``SPEC`` and ``BUDGETS`` (``python -c "import archlab.registry as r;
    r.regenerate_indexes()"`` after changing a paper's title, variants or budgets)."""
    from pathlib import Path

    from archlab.catalog import BASELINES_DOC, PAPERS_DOC, render_index

    root = Path(__file__).resolve().parent
    for index, doc, folder, is_baseline in (
        (_paper_index(), PAPERS_DOC, "papers", False),
        (_baseline_index(), BASELINES_DOC, "baselines", True),
    ):
        entries = [entry_from_spec(e.module, is_baseline) for e in index.values()]
        (root / folder / "__init__.py").write_text(render_index(entries, doc))
