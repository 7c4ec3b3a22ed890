"""Results of reproductions: budgets, checks, ``result.json``, and the markdown/HTML report."""

from __future__ import annotations

import base64
import enum
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archlab.registry import ArchlabError, close_matches_message


class Budget(str, enum.Enum):
    """How much compute a reproduction may use.

    ``smoke``: seconds, code paths only (CI runs it for every paper; the claim need not hold).
    ``quick``: at most 3 minutes on 2 CPU cores; the claim must hold for the default seed.
    ``full``: paper-scale settings, for a GPU.
    """

    smoke = "smoke"
    quick = "quick"
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

    def pick(self, smoke: Any, quick: Any, full: Any | None = None) -> Any:
        """The value for this budget (``full`` falls back to ``quick``)."""
        if self is Budget.smoke:
            return smoke
        if self is Budget.quick or full is None:
            return quick
        return full


@dataclass
class Check:
    """One comparison measured in a run."""

    name: str
    passed: bool
    detail: str = ""


@dataclass
class Result:
    """What a reproduction returns; ``reproduce`` fills provenance and writes it to disk.

    Attributes:
        figures: name -> matplotlib Figure, saved as ``<name>.png`` beside ``result.json``.
    """

    slug: str
    title: str
    claim: str
    budget: str
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    elapsed_s: float = 0.0
    git: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    device: str = "cpu"
    figures: dict[str, Any] = field(default_factory=dict, repr=False)
    plots: list[str] = field(default_factory=list)

    @property
    def holds(self) -> bool:
        """True when there is at least one check and every check passed."""
        return bool(self.checks) and all(c.passed for c in self.checks)

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        """Record a check (a comparison measured in this run) and return whether it passed."""
        self.checks.append(Check(name, bool(passed), detail))
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
                {"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks
            ],
            "holds": self.holds,
            "elapsed_s": round(self.elapsed_s, 2),
            "git": self.git,
            "versions": self.versions,
            "device": self.device,
            "plots": self.plots,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        r = cls(
            slug=data["slug"],
            title=data.get("title", ""),
            claim=data.get("claim", ""),
            budget=data["budget"],
            seed=int(data["seed"]),
            metrics=dict(data.get("metrics", {})),
            checks=[Check(**c) for c in data.get("checks", [])],
            elapsed_s=float(data.get("elapsed_s", 0.0)),
            git=data.get("git", ""),
            versions=dict(data.get("versions", {})),
            device=data.get("device", "cpu"),
            plots=list(data.get("plots", [])),
        )
        return r

    def save(self, out: Path) -> Path:
        """Write ``result.json`` and the figures' PNGs into ``out``; returns the JSON path."""
        out.mkdir(parents=True, exist_ok=True)
        for name, fig in self.figures.items():
            path = out / f"{name}.png"
            fig.savefig(path, dpi=110, bbox_inches="tight")
            if path.name not in self.plots:
                self.plots.append(path.name)
            import matplotlib.pyplot as plt

            plt.close(fig)
        self.figures = {}
        path = out / "result.json"
        from archlab.engine.checkpoint import atomic_write_text

        atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")
        return path


def _jsonable(v: Any) -> Any:
    v = float(v) if not isinstance(v, (int, str)) else v
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def format_metric(v: Any) -> str:
    if v is None:
        return "nan"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def load_results(runs: Path) -> list[Result]:
    """Every ``result.json`` under ``runs`` (sorted by slug, budget, seed)."""
    results = []
    for path in sorted(Path(runs).glob("**/result.json")):
        data = json.loads(path.read_text())
        r = Result.from_json(data)
        r.plots = [str((path.parent / p).relative_to(runs)) for p in r.plots]
        results.append(r)
    results.sort(key=lambda r: (r.slug, r.budget, r.seed))
    return results


def results_table(results: list[Result]) -> str:
    """A markdown summary table: one row per run."""
    lines = [
        "| paper | budget | seed | holds | checks passed | time (s) | key metrics |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        n_ok = sum(c.passed for c in r.checks)
        keys = [
            (k, v)
            for k, v in r.metrics.items()
            if "time" not in k and not k.endswith("_s") and "param" not in k
        ][:4]
        metrics = ", ".join(f"{k}={format_metric(v)}" for k, v in keys)
        lines.append(
            f"| `{r.slug}` | {r.budget} | {r.seed} | {'yes' if r.holds else '**no**'} | "
            f"{n_ok}/{len(r.checks)} | {r.elapsed_s:.0f} | {metrics} |"
        )
    return "\n".join(lines)


def markdown_report(results: list[Result], runs_rel: str = "../runs") -> str:
    """``docs/results.md``: summary table, then every run's checks and metrics."""
    parts = [
        "# archlab results",
        "",
        "Generated by `archlab report` from the run folders; do not edit by hand.",
        "Every number below was measured in the run it belongs to.",
        "",
        results_table(results),
        "",
    ]
    for r in results:
        parts += [f"## {r.slug} — {r.budget}, seed {r.seed}", "", f"*{r.title}*", ""]
        parts += [f"Claim: {r.claim}", ""]
        parts += [
            f"Holds: **{'yes' if r.holds else 'no'}** · {r.elapsed_s:.0f} s on {r.device} · "
            f"git `{r.git[:10]}`",
            "",
        ]
        parts += ["| check | passed | detail |", "|---|---|---|"]
        parts += [
            f"| {c.name} | {'yes' if c.passed else '**no**'} | {c.detail} |" for c in r.checks
        ]
        parts += ["", "| metric | value |", "|---|---|"]
        parts += [f"| {k} | {format_metric(v)} |" for k, v in r.metrics.items()]
        parts.append("")
        for p in r.plots:
            parts.append(f"![{r.slug} {Path(p).stem}]({runs_rel}/{p})")
        parts.append("")
    return "\n".join(parts)


def html_report(results: list[Result], runs: Path) -> str:
    """A self-contained HTML page: the plots of each paper's first run (lowest seed) embedded as
    base64, the other seeds' plots linked (``../runs/...``) to keep the page small."""
    esc = html.escape
    rows = []
    embedded: set[tuple[str, str]] = set()
    for r in results:
        embed = (r.slug, r.budget) not in embedded
        embedded.add((r.slug, r.budget))
        checks = "".join(
            f"<li class={'ok' if c.passed else 'bad'}>{esc(c.name)}: {esc(c.detail)}</li>"
            for c in r.checks
        )
        metrics = "".join(
            f"<tr><td>{esc(k)}</td><td>{esc(format_metric(v))}</td></tr>"
            for k, v in r.metrics.items()
        )
        imgs = ""
        for p in r.plots:
            f = Path(runs) / p
            if f.exists() and embed:
                b64 = base64.b64encode(f.read_bytes()).decode()
                imgs += f'<img src="data:image/png;base64,{b64}" alt="{esc(p)}">'
            elif f.exists():
                imgs += f'<a href="../runs/{esc(p)}">{esc(p)}</a> '
        verdict = "holds" if r.holds else "does not hold"
        rows.append(
            f"<section><h2>{esc(r.slug)} <small>{esc(r.budget)} · seed {r.seed} · "
            f"<span class={'ok' if r.holds else 'bad'}>{verdict}</span></small></h2>"
            f"<p><em>{esc(r.title)}</em></p><p>{esc(r.claim)}</p><ul>{checks}</ul>"
            f"<table>{metrics}</table><div>{imgs}</div></section>"
        )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto}"
        ".ok{color:#176d2c}.bad{color:#a11}img{max-width:520px;margin:4px}"
        "td{padding:2px 8px;border-bottom:1px solid #ddd}"
    )
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>archlab results</title>"
        f"<style>{style}</style></head><body><h1>archlab results</h1>{''.join(rows)}</body></html>"
    )
