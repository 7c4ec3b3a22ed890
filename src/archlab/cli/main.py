"""The ``archlab`` command line: list, show, train, reproduce, report, new.

Exit codes: 0 success (every claim holds), 1 a claim failed or training diverged, 2 usage error.
User errors print one line, never a traceback. Heavy modules are imported inside commands.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from archlab.errors import ArchlabError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(
            EXIT_USAGE, f"archlab: error: {message} (see `archlab {self.prog.split()[-1]} -h`)\n"
        )


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


# ---------------------------------------------------------------------------------------- list
def cmd_list(args) -> int:
    from archlab.registry import list_papers

    papers = list_papers(args.family)
    if args.json:
        print(json.dumps([p.__dict__ for p in papers], indent=2))
        return EXIT_OK
    if args.markdown:
        print(papers_markdown(papers))
        return EXIT_OK
    from rich.table import Table

    table = Table("slug", "family", "arXiv", "fidelity", "budgets", "variants", "title")
    for p in papers:
        table.add_row(
            p.slug, p.family, p.arxiv, p.fidelity, ", ".join(p.budgets), ", ".join(p.variants),
            p.title,
        )  # fmt: skip
    _console().print(table)
    return EXIT_OK


def papers_markdown(papers) -> str:
    lines = [
        "| paper | family | arXiv | fidelity | budgets | variants | title |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in papers:
        card = f"src/archlab/papers/{p.family}/{p.slug}/README.md"
        lines.append(
            f"| [`{p.slug}`]({card}) | {p.family} | [{p.arxiv}](https://arxiv.org/abs/{p.arxiv}) "
            f"| {p.fidelity} | {', '.join(p.budgets)} | {', '.join(p.variants)} | {p.title} |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- show
def cmd_show(args) -> int:
    import dataclasses

    from archlab.config import to_dict
    from archlab.registry import spec

    s = spec(args.slug)
    console = _console()
    console.print(f"[bold]{s.slug}[/bold] ({s.family}) — {s.title}  arXiv:{s.arxiv}")
    console.print(f"fidelity: {s.fidelity}")
    console.print(f"claim: {s.claim}")
    console.print(f"variants: {', '.join(s.variants)}")
    console.print("config fields (default):")
    default = s.variant(None)
    for f in dataclasses.fields(default):
        console.print(f"  model.{f.name} = {json.dumps(to_dict(default)[f.name])}")
    if s.experiment is None:
        console.print("baseline: no reproduction of its own")
    else:
        from archlab.registry import info

        budgets = info(s.slug).budgets
        console.print(f"budgets: {', '.join(budgets)}")
        console.print(f"reproduce: archlab reproduce {s.slug} --budget {budgets[1]}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------- train
def cmd_train(args) -> int:
    from archlab.cli.train import train

    if args.threads is not None:
        set_thread_policy(args.threads)
    result = train(
        args.name,
        overrides=args.set or [],
        steps=args.steps,
        out=args.out,
        resume=args.resume,
        seed=args.seed,
    )
    _console(stderr=True).print(
        f"trained {args.name} to step {result.step}"
        + (f" (resumed from {result.resumed_from})" if result.resumed_from else "")
        + f"; eval {result.eval_metrics}" * bool(result.eval_metrics)
        + f"; weights in {Path(args.out) / 'model.safetensors'}"
    )
    return EXIT_OK


# ---------------------------------------------------------------------------------------- reproduce
def cmd_reproduce(args) -> int:
    from archlab.lab.result import Budget
    from archlab.registry import _paper_index, info

    budget = Budget.parse(args.budget)
    if args.all and args.slugs:
        raise ArchlabError("give slugs or --all, not both")
    slugs = list(_paper_index()) if args.all else args.slugs
    if not slugs:
        raise ArchlabError("name at least one paper (or --all); see `archlab list`")
    for slug in slugs:  # validate every name and budget before running anything
        entry = info(slug)
        if entry.is_baseline:
            raise ArchlabError(f"{slug} is a baseline; it has no reproduction of its own")
        budget.settings(dict.fromkeys(entry.budgets), slug)
    threads = set_thread_policy(args.threads)
    import torch

    from archlab.engine.distributed import resolve_device
    from archlab.lab.runner import default_out, reproduce

    device = resolve_device(args.device)
    _console(stderr=True).print(
        f"policy: {threads} torch thread(s), device {device}"
        + (", bf16 autocast" if device.type == "cuda" else ""),
        style="dim",
    )
    results = []
    for slug in slugs:
        out = default_out(slug, budget, args.seed, runs=args.out)
        torch.set_num_threads(threads)
        r = reproduce(slug, budget=budget, seed=args.seed, out=out, device=str(device))
        results.append(r)
        if not args.json:
            print_claim_table(r, out)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
    return EXIT_OK if all(r.holds for r in results) else EXIT_FAILED


def set_thread_policy(threads: int | None) -> int:
    """The run's torch intra-op thread count, set once by the CLI (default 1: on small models
    and shared cores extra threads mostly wait at barriers) and returned for the record."""
    import torch

    n = 1 if threads is None else threads
    if n < 1:
        raise ArchlabError(f"--threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    return n


def print_claim_table(r, out: Path) -> None:
    from rich.table import Table

    from archlab.lab.report import format_metric

    console = _console()
    verdict = "[green]HOLDS[/green]" if r.holds else "[red]DOES NOT HOLD[/red]"
    console.print(
        f"\n[bold]{r.slug}[/bold] ({r.budget}, seed {r.seed}): {verdict} in {r.elapsed_s:.0f} s"
    )
    console.print(f"claim: {r.claim}")
    table = Table("check", "kind", "passed", "measured")
    for c in r.checks:
        ok = "[green]yes[/green]" if c.passed else "[red]no[/red]"
        table.add_row(c.name, c.kind, ok, c.detail)
    console.print(table)
    metrics = ", ".join(f"{k}={format_metric(v)}" for k, v in r.metrics.items())
    console.print(f"metrics: {metrics}")
    console.print(f"written: {out / 'result.json'}" + "".join(f", {out / p}" for p in r.plots))


# ---------------------------------------------------------------------------------------- report
def cmd_report(args) -> int:
    from archlab.engine.checkpoint import atomic_write_text
    from archlab.lab.report import html_report, load_results, markdown_report, summary_table

    runs = Path(args.runs)
    results = load_results(runs)
    if not results:
        raise ArchlabError(f"no result.json under {runs}; run `archlab reproduce SLUG` first")
    docs = Path(args.docs)
    atomic_write_text(docs / "results.md", markdown_report(results, runs_rel=_rel(runs, docs)))
    atomic_write_text(docs / "results.html", html_report(results, runs))
    if args.cards:
        from archlab.lab.report import update_cards

        update_cards(results, runs)
    if args.readme:
        from archlab.registry import list_papers

        update_readme(Path(args.readme), "papers", papers_markdown(list_papers()))
        update_readme(Path(args.readme), "results", summary_table(results))
    _console(stderr=True).print(
        f"wrote {docs / 'results.md'} and {docs / 'results.html'} from {len(results)} runs"
    )
    return EXIT_OK


def _rel(target: Path, start: Path) -> str:
    import os

    return os.path.relpath(target.resolve(), start.resolve())


def update_readme(path: Path, section: str, body: str) -> None:
    """Replace the text between ``<!-- section:start -->`` and ``<!-- section:end -->``."""
    from archlab.engine.checkpoint import atomic_write_text

    text = path.read_text()
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    if start not in text or end not in text:
        raise ArchlabError(f"{path} has no {start} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    atomic_write_text(path, f"{head}{start}\n{body}\n{end}{tail}")


# ---------------------------------------------------------------------------------------- new
def cmd_new(args) -> int:
    from archlab.cli.new import new_paper

    created = new_paper(args.name)
    for p in created:
        print(p)
    return EXIT_OK


# ---------------------------------------------------------------------------------------- main
def make_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="archlab", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    q = sub.add_parser("list", help="registered papers")
    q.add_argument("--family")
    q.add_argument("--markdown", action="store_true", help="the README table")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_list)

    q = sub.add_parser("show", help="one paper: claim, variants, config fields")
    q.add_argument("slug")
    q.set_defaults(func=cmd_show)

    q = sub.add_parser("train", help="train SLUG[/VARIANT] with the engine")
    q.add_argument("name", metavar="SLUG[/VARIANT]")
    q.add_argument("--set", action="append", metavar="KEY=VALUE", help="model.x=.. or train.x=..")
    q.add_argument("--steps", type=int)
    q.add_argument("--out", required=True)
    q.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    q.add_argument("--seed", type=int, help="default 0 (or the recorded seed with --resume)")
    q.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    q.set_defaults(func=cmd_train)

    q = sub.add_parser("reproduce", help="run reproductions and check their claims")
    q.add_argument("slugs", nargs="*", metavar="SLUG")
    q.add_argument("--all", action="store_true")
    q.add_argument("--budget", default="quick", help="smoke | quick | standard | full")
    q.add_argument("--device", default="cpu", help="cpu | cuda | auto (default: cpu)")
    q.add_argument("--threads", type=int, help="torch intra-op threads (default: 1)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", default="runs", help="runs folder (default: runs)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_reproduce)

    q = sub.add_parser("report", help="docs/results.md and results.html from run folders")
    q.add_argument("--runs", default="runs")
    q.add_argument("--docs", default="docs")
    q.add_argument("--readme", help="also refresh the papers and results tables of this README")
    q.add_argument(
        "--cards", action="store_true", help="also refresh the results block of each paper card"
    )
    q.set_defaults(func=cmd_report)

    q = sub.add_parser("new", help="start a paper folder from the template")
    q.add_argument("name", metavar="FAMILY/SLUG")
    q.set_defaults(func=cmd_new)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"archlab: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import warnings

    args = make_parser().parse_args(argv)
    saved = warnings.showwarning
    warnings.showwarning = _show_warning  # the CLI's policy: warnings on one line
    try:
        return args.func(args)
    except ArchlabError as e:
        code = getattr(e, "exit_code", EXIT_USAGE)
        label = "error" if code == EXIT_USAGE else "failed"
        print(f"archlab: {label}: {e}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("archlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `archlab list | head`: the reader left; not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    finally:
        warnings.showwarning = saved


if __name__ == "__main__":
    sys.exit(main())
