"""Budgets, checks and the ``Result`` of a reproduction (what ``result.json`` holds)."""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archlab.errors import ArchlabError, close_matches_message

CLAIM, INVARIANT, HEALTH = "claim", "invariant", "health"
KINDS = (CLAIM, INVARIANT, HEALTH)


class BudgetUnavailableError(ArchlabError):
    """A paper has no settings for the budget asked for (it never runs another's settings)."""


class Budget(str, enum.Enum):
    """How much compute a reproduction may use.

    ``smoke``: seconds, code paths only (CI runs it for every paper; the claim need not hold).
    ``quick``: at most 3 minutes on 2 CPU cores; the claim must hold for the default seed.
    ``standard``: optional, at most 20 minutes on 2 CPU cores, where three minutes cannot let the
    learning curves flatten.
    ``full``: paper-scale settings on the user's device (GPU), for papers that define them.

    A paper defines its settings per budget in a ``BUDGETS`` table; a budget missing from the
    table is refused with one line naming the budgets the paper has.
    """

    smoke = "smoke"
    quick = "quick"
    standard = "standard"
    full = "full"

    @classmethod
    def parse(cls, value: str | Budget) -> Budget:
        if isinstance(value, Budget):
            return value
        try:
            return cls(value)
        except ValueError:
            msg = close_matches_message("budget", str(value), [b.value for b in cls])
            raise ArchlabError(msg) from None

    def settings(self, table: Mapping[str, Any], slug: str = "this paper") -> Any:
        """The entry of ``table`` for this budget, or a one-line refusal naming the budgets."""
        if self.value not in table:
            have = ", ".join(b.value for b in Budget if b.value in table)
            raise BudgetUnavailableError(
                f"{slug} has no {self.value!r} budget (it has: {have}); "
                f"pass --budget {' or '.join(b.value for b in Budget if b.value in table)}"
            )
        return table[self.value]


@dataclass
class Check:
    """One check measured in a run.

    Attributes:
        name: what is checked, in words.
        passed: whether it held.
        detail: the measured numbers (both sides of a comparison).
        kind: ``claim`` (could go either way; decides ``holds``), ``invariant`` (true by
            construction: parameter counts, masks, initialisation; reported apart) or
            ``health`` (a baseline beats a trivial predictor and its learning curve has
            flattened; a comparison against an unhealthy baseline never passes).
    """

    name: str
    passed: bool
    detail: str = ""
    kind: str = CLAIM


@dataclass
class Result:
    """What a reproduction returns; the runner fills provenance and writes it to disk.

    Attributes:
        metrics: name -> number measured in the run (``params/<arm>``, ``train_s/<arm>``, ...).
        checks: claim checks and invariants, in order.
        curves: arm -> ``[[step, training loss], ...]`` learning curve of each trained arm.
        elapsed_s, cpu_s: wall seconds of the run, and CPU seconds of its process (the better
            measure of cost on a shared machine).
        provenance: commit, dirty flag and content hash of the code the run depends on.
        threads: torch intra-op threads the run used (recorded before the run starts).
        figures: name -> matplotlib Figure, saved as ``<name>.png`` beside ``result.json``.
    """

    slug: str
    title: str
    claim: str
    budget: str
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    curves: dict[str, list[list[float]]] = field(default_factory=dict)
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    git: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    threads: int = 0
    figures: dict[str, Any] = field(default_factory=dict, repr=False)
    plots: list[str] = field(default_factory=list)

    @property
    def claim_checks(self) -> list[Check]:
        return [c for c in self.checks if c.kind == CLAIM]

    @property
    def invariants(self) -> list[Check]:
        return [c for c in self.checks if c.kind == INVARIANT]

    @property
    def health_checks(self) -> list[Check]:
        return [c for c in self.checks if c.kind == HEALTH]

    @property
    def holds(self) -> bool:
        """True when there is at least one claim check and every check passed (an invariant
        that fails means the implementation is broken and an unhealthy baseline means the
        comparison proves nothing, so either fails the run too)."""
        return bool(self.claim_checks) and all(c.passed for c in self.checks)

    def check(self, name: str, passed: bool, detail: str = "", kind: str = CLAIM) -> bool:
        """Record a check (measured in this run) and return whether it passed."""
        if kind not in KINDS:
            raise ValueError(f"check kind must be one of {KINDS}, got {kind!r}")
        self.checks.append(Check(name, bool(passed), detail, kind))
        return bool(passed)

    def to_json(self) -> dict[str, Any]:
        return {
            "slug": self.slug,
            "title": self.title,
            "claim": self.claim,
            "budget": self.budget,
            "seed": self.seed,
            "metrics": {k: _jsonable(v) for k, v in self.metrics.items()},
            "checks": [
                {"name": c.name, "passed": c.passed, "detail": c.detail, "kind": c.kind}
                for c in self.checks
            ],
            "holds": self.holds,
            "curves": {k: [[_jsonable(x) for x in p] for p in v] for k, v in self.curves.items()},
            "elapsed_s": round(self.elapsed_s, 2),
            "cpu_s": round(self.cpu_s, 2),
            "git": self.git,
            "provenance": self.provenance,
            "versions": self.versions,
            "device": self.device,
            "threads": self.threads,
            "plots": self.plots,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        return cls(
            slug=data["slug"],
            title=data.get("title", ""),
            claim=data.get("claim", ""),
            budget=data["budget"],
            seed=int(data["seed"]),
            metrics=dict(data.get("metrics", {})),
            checks=[Check(**c) for c in data.get("checks", [])],
            curves=dict(data.get("curves", {})),
            elapsed_s=float(data.get("elapsed_s", 0.0)),
            cpu_s=float(data.get("cpu_s", 0.0)),
            git=data.get("git", ""),
            provenance=dict(data.get("provenance", {})),
            versions=dict(data.get("versions", {})),
            device=data.get("device", "cpu"),
            threads=int(data.get("threads", 0)),
            plots=list(data.get("plots", [])),
        )

    def save(self, out: Path) -> Path:
        """Write ``result.json`` and the figures' PNGs into ``out``; returns the JSON path."""
        from archlab.engine.checkpoint import atomic_write_text

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for name, fig in self.figures.items():
            path = out / f"{name}.png"
            fig.savefig(path, dpi=110, bbox_inches="tight")
            if path.name not in self.plots:
                self.plots.append(path.name)
        self.figures = {}
        path = out / "result.json"
        atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")
        return path


def _jsonable(v: Any) -> Any:
    v = float(v) if not isinstance(v, (int, str)) else v
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
