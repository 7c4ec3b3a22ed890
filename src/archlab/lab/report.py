"""Reading results back and reporting them: the README table, ``docs/results.md`` and
``docs/results.html``."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from archlab.errors import ArchlabError
from archlab.lab.result import Result


def _cell(text: str) -> str:
    """Text safe inside a markdown table cell (a ``|`` would end the cell)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


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
        try:
            r = Result.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise ArchlabError(
                f"{path} is not a readable result ({type(e).__name__}: {first}); "
                "rerun its reproduction or delete the folder"
            ) from None
        r.plots = [str((path.parent / p).relative_to(runs)) for p in r.plots]
        results.append(r)
    results.sort(key=lambda r: (r.slug, r.budget, r.seed))
    return results


def freshness(r: Result) -> str:
    """``current`` when the result was made from a clean tree by code that hashes as today's
    code does; otherwise ``stale`` (the code changed since), ``dirty`` (made from uncommitted
    code) or ``unknown`` (no provenance recorded)."""
    from archlab.lab.provenance import code_hash
    from archlab.registry import info

    recorded = r.provenance.get("code_hash")
    if not recorded:
        return "unknown"
    try:
        today = code_hash(info(r.slug).module)
    except ArchlabError:
        return "unknown"
    if today != recorded:
        return "stale"
    return "dirty" if r.provenance.get("dirty") else "current"


def _counts(r: Result) -> tuple[str, str, str]:
    """``(claim checks, invariants, baseline health)`` held, as ``k/n`` (``-`` when none)."""

    def frac(checks: list) -> str:
        return f"{sum(x.passed for x in checks)}/{len(checks)}" if checks else "-"

    claims = f"{sum(x.passed for x in r.claim_checks)}/{len(r.claim_checks)}"
    return claims, frac(r.invariants), frac(r.health_checks)


def results_table(results: list[Result]) -> str:
    """A markdown table with one row per run: verdict, claim checks and invariants held, time,
    whether the code that made it is today's, and the claim checks that failed."""
    lines = [
        "| paper | budget | seed | holds | claim checks | baseline health | invariants | "
        "time (s) | code | failing checks |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        claims, invariants, health = _counts(r)
        fresh = freshness(r)
        fresh = fresh if fresh == "current" else f"**{fresh}**"
        failing = _cell("; ".join(c.name for c in r.checks if not c.passed) or "-")
        lines.append(
            f"| `{r.slug}` | {r.budget} | {r.seed} | {'yes' if r.holds else '**no**'} | "
            f"{claims} | {health} | {invariants} | {r.elapsed_s:.0f} | {fresh} | {failing} |"
        )
    return "\n".join(lines)


def summary_table(results: list[Result]) -> str:
    """The README's table: one row per paper and budget, with the claim checks held at each
    committed seed, the baselines' health checks, the invariants, and whether every run was
    made by today's code."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.slug, r.budget), []).append(r)
    lines = [
        "| paper | budget | seeds holding | claim checks held per seed | healthy baselines per "
        "seed | invariants per seed | time per run (s) | code |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (slug, budget), runs in groups.items():
        runs.sort(key=lambda r: r.seed)
        held = sum(r.holds for r in runs)
        per_seed = ", ".join(f"s{r.seed} {_counts(r)[0]}" for r in runs)
        inv = ", ".join(f"s{r.seed} {_counts(r)[1]}" for r in runs)
        health = ", ".join(f"s{r.seed} {_counts(r)[2]}" for r in runs)
        times = [r.elapsed_s for r in runs]
        fresh = {freshness(r) for r in runs}
        code = "current" if fresh == {"current"} else "**" + "/".join(sorted(fresh)) + "**"
        lines.append(
            f"| `{slug}` | {budget} | {held}/{len(runs)} | {per_seed} | {health} | {inv} | "
            f"{min(times):.0f}–{max(times):.0f} | {code} |"
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
            f"git `{r.git[:10]}`{' (dirty)' if r.provenance.get('dirty') else ''} · "
            f"code `{r.provenance.get('code_hash', '')[:12]}` ({freshness(r)})",
            "",
        ]
        parts += ["| check | kind | passed | detail |", "|---|---|---|---|"]
        parts += [
            f"| {_cell(c.name)} | {c.kind} | {'yes' if c.passed else '**no**'} | "
            f"{_cell(c.detail)} |"
            for c in r.checks
        ]
        parts += ["", "| metric | value |", "|---|---|"]
        parts += [f"| {k} | {format_metric(v)} |" for k, v in r.metrics.items()]
        parts.append("")
        for p in r.plots:
            parts.append(f"![{r.slug} {Path(p).stem}]({runs_rel}/{p})")
        parts.append("")
    return "\n".join(parts)


def html_report(results: list[Result], runs: Path) -> str:
    """A self-contained HTML page a reader can scan: an overview (one row per paper and budget:
    family, seeds holding, claim checks and invariants per seed, code freshness, time), then per
    paper the claim, every check per seed with both numbers, the first seed's learning curves and
    figures embedded (other seeds' linked), and the raw metrics folded away."""
    from archlab.registry import info

    esc = html.escape
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.slug, r.budget), []).append(r)
    overview, sections = [], []
    for (slug, budget), rs in groups.items():
        rs.sort(key=lambda r: r.seed)
        try:
            family = info(slug).family
        except ArchlabError:
            family = "?"
        anchor = f"{slug}-{budget}"
        held = sum(r.holds for r in rs)
        fresh = sorted({freshness(r) for r in rs})
        ok_code = fresh == ["current"]
        overview.append(
            f"<tr><td><a href='#{anchor}'>{esc(slug)}</a></td><td>{esc(family)}</td>"
            f"<td>{esc(budget)}</td><td class={'ok' if held == len(rs) else 'bad'}>"
            f"{held}/{len(rs)}</td><td>{', '.join(f's{r.seed} {_counts(r)[0]}' for r in rs)}"
            f"</td><td>{', '.join(f's{r.seed} {_counts(r)[2]}' for r in rs)}</td>"
            f"<td>{', '.join(f's{r.seed} {_counts(r)[1]}' for r in rs)}</td>"
            f"<td class={'ok' if ok_code else 'bad'}>{esc('/'.join(fresh))}</td>"
            f"<td>{min(r.elapsed_s for r in rs):.0f}–{max(r.elapsed_s for r in rs):.0f}</td></tr>"
        )
        names = list(dict.fromkeys(c.name for r in rs for c in r.checks))
        head = "".join(f"<th>seed {r.seed}</th>" for r in rs)
        rows = []
        for name in names:
            kind = next(c.kind for r in rs for c in r.checks if c.name == name)
            cells = ""
            for r in rs:
                c = next((c for c in r.checks if c.name == name), None)
                if c is None:
                    cells += "<td>-</td>"
                    continue
                mark = "&#10003;" if c.passed else "&#10007;"
                cells += f"<td class={'ok' if c.passed else 'bad'}>{mark} {esc(c.detail)}</td>"
            rows.append(f"<tr><td>{esc(name)} <small>({kind})</small></td>{cells}</tr>")
        first = rs[0]
        plots = sorted(first.plots, key=lambda p: "learning_curves" not in p)
        imgs = ""
        for p in plots:
            f = Path(runs) / p
            if f.exists():
                b64 = base64.b64encode(f.read_bytes()).decode()
                imgs += f'<img src="data:image/png;base64,{b64}" alt="{esc(p)}">'
        links = " ".join(
            f'<a href="../runs/{esc(p)}">{esc(p)}</a>' for r in rs[1:] for p in r.plots
        )
        raw = "".join(
            f"<details><summary>seed {r.seed}: {len(r.metrics)} metrics · {esc(r.device)} · "
            f"{r.threads} thread(s) · commit {esc(r.git[:10])} · code "
            f"{esc(r.provenance.get('code_hash', '')[:12])} ({freshness(r)})</summary><table>"
            + "".join(
                f"<tr><td>{esc(k)}</td><td>{esc(format_metric(v))}</td></tr>"
                for k, v in r.metrics.items()
            )
            + "</table></details>"
            for r in rs
        )
        sections.append(
            f"<section id='{anchor}'><h2>{esc(slug)} <small>{esc(budget)} · holds at "
            f"{held}/{len(rs)} seeds</small></h2><p><em>{esc(first.title)}</em></p>"
            f"<p><b>Claim.</b> {esc(first.claim)}</p><table class=checks><tr><th>check</th>"
            f"{head}</tr>{''.join(rows)}</table><div>{imgs}</div>"
            f"<p><small>other seeds: {links or '-'}</small></p>{raw}</section>"
        )
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 1em}"
        ".ok{color:#176d2c}.bad{color:#a11}img{max-width:540px;margin:4px;vertical-align:top}"
        "td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}"
        "table.checks td{font-size:85%}section{margin-top:2.5em}"
    )
    return (
        "<!doctype html><html><head><meta charset=utf-8><title>archlab results</title>"
        f"<style>{style}</style></head><body><h1>archlab results</h1>"
        "<p>Generated by <code>archlab report</code> from the committed run folders. A paper "
        "<b>holds</b> at a seed when every claim check passes (invariants, true by construction, "
        "are counted apart and must pass too; a baseline that fails its <b>health</b> check "
        "&mdash; beating a trivial predictor, a flattened learning curve &mdash; turns every "
        "comparison against it into a fail); <b>code</b> is <i>current</i> when the code "
        "hash recorded by the run equals today's code's.</p>"
        "<table><tr><th>paper</th><th>family</th><th>budget</th><th>seeds holding</th>"
        "<th>claim checks per seed</th><th>healthy baselines per seed</th>"
        "<th>invariants per seed</th><th>code</th>"
        f"<th>time (s)</th></tr>{''.join(overview)}</table>{''.join(sections)}</body></html>"
    )


def card_table(rs: list[Result], runs_rel: str) -> str:
    """The generated block of a paper card: every check at every committed seed, with both
    numbers, and the first seed's learning curves."""
    rs = sorted(rs, key=lambda r: r.seed)
    head = " | ".join(f"seed {r.seed}" for r in rs)
    lines = [
        f"Generated by `archlab report` from `runs/{rs[0].slug}/{rs[0].budget}-seed*/result.json`"
        f" ({rs[0].budget} budget; holds at {sum(r.holds for r in rs)}/{len(rs)} seeds; code "
        f"{'/'.join(sorted({freshness(r) for r in rs}))}; "
        + ", ".join(f"seed {r.seed} {r.elapsed_s:.0f} s on {r.device}" for r in rs)
        + ").",
        "",
        f"| check | kind | {head} |",
        "|---|---|" + "---|" * len(rs),
    ]
    names = list(dict.fromkeys(c.name for r in rs for c in r.checks))
    for name in names:
        kind = next(c.kind for r in rs for c in r.checks if c.name == name)
        cells = []
        for r in rs:
            c = next((c for c in r.checks if c.name == name), None)
            cells.append("-" if c is None else f"{'yes' if c.passed else '**no**'}: {c.detail}")
        lines.append(
            f"| {name} | {kind} | " + " | ".join(x.replace("|", "/") for x in cells) + " |"
        )
    first = rs[0]
    for p in first.plots:
        if "learning_curves" in p:
            lines += ["", f"![learning curves, seed {first.seed}]({runs_rel}/{p})"]
    return "\n".join(lines)


def update_cards(results: list[Result], runs: Path) -> list[Path]:
    """Rewrite the ``<!-- results:start -->`` ... ``<!-- results:end -->`` block (quick budget)
    and the ``<!-- results:<budget>:start -->`` ... ``<!-- results:<budget>:end -->`` block of
    any other budget of each paper card that has one with ``card_table`` of its committed runs;
    returns the cards written."""
    import os

    from archlab.engine.checkpoint import atomic_write_text
    from archlab.lab.provenance import PACKAGE_ROOT
    from archlab.registry import info

    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.slug, r.budget), []).append(r)
    written = []
    for (slug, budget), rs in groups.items():
        try:
            card = PACKAGE_ROOT.joinpath(*info(slug).module.split(".")[1:], "README.md")
        except ArchlabError:
            continue
        tag = "results" if budget == "quick" else f"results:{budget}"
        start, end = f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"
        if not card.is_file() or start not in (text := card.read_text()) or end not in text:
            continue
        rel = os.path.relpath(Path(runs).resolve(), card.parent.resolve())
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        atomic_write_text(card, f"{head}{start}\n{card_table(rs, rel)}\n{end}{tail}")
        if card not in written:
            written.append(card)
    return written
