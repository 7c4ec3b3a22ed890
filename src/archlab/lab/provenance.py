"""Provenance of a result: which code produced it.

``code_files(slug)`` is the paper's folder plus every ``archlab`` module it imports, followed
transitively through the source (static: parsed with ``ast``, nothing is imported), so a change
anywhere in the code a result depends on changes ``code_hash``, and a change elsewhere does not.
``archlab report`` recomputes the hash of today's code and marks results that differ as stale.
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
from functools import cache
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # src/archlab
REPO_ROOT = PACKAGE_ROOT.parents[1]
INDEX_FILES = (
    PACKAGE_ROOT / "__init__.py",
    PACKAGE_ROOT / "papers" / "__init__.py",
    PACKAGE_ROOT / "baselines" / "__init__.py",
)
"""Left out of the closure: the package's public re-exports (its version enters the hash by
value) and the registry's static indexes (metadata that grows with every paper)."""


def _module_file(module: str) -> Path | None:
    """``archlab.a.b`` -> ``src/archlab/a/b.py`` or ``src/archlab/a/b/__init__.py``."""
    parts = module.split(".")
    if parts[0] != "archlab":
        return None
    base = PACKAGE_ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE_ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@cache
def _imports(path: Path) -> tuple[str, ...]:
    """Every ``archlab`` module ``path`` imports (top level or inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.append(mod)
            found += [f"{mod}.{a.name}" for a in node.names]  # submodules imported by name
    return tuple(m for m in found if m == "archlab" or m.startswith("archlab."))


def dependency_files(roots: list[Path]) -> list[Path]:
    """``roots`` and every archlab source file they import, transitively, sorted."""
    seen: set[Path] = set()
    todo = list(roots)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imports(path):
            parts = module.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__
                f = _module_file(".".join(parts[:i]))
                if f is not None and f not in seen and f not in INDEX_FILES:
                    todo.append(f)
    return sorted(seen)


def environment_spec(pyproject_text: str) -> str:
    """The part of ``pyproject.toml`` every paper's results depend on: ``requires-python`` and
    the core ``dependencies`` (the pins, torch's included), as canonical JSON. Optional extras
    (one family's packages), tool settings and metadata are left out, so adding a paper's
    dependency does not make the other papers' results stale; the installed versions a run used
    are recorded in its ``versions``."""
    import json

    import tomllib

    project = tomllib.loads(pyproject_text).get("project", {})
    return json.dumps(
        {
            "requires-python": project.get("requires-python"),
            "dependencies": sorted(project.get("dependencies", [])),
        },
        sort_keys=True,
    )


def code_files(package: str) -> list[Path]:
    """The source a paper's results depend on: every ``.py`` file of its folder (e.g.
    ``archlab.papers.dense.maxim``) and what they import, plus ``pyproject.toml`` (of which
    only ``environment_spec`` counts)."""
    folder = PACKAGE_ROOT.joinpath(*package.split(".")[1:])
    roots = sorted(folder.glob("*.py"))
    files = dependency_files(roots)
    pyproject = REPO_ROOT / "pyproject.toml"
    return files + ([pyproject] if pyproject.is_file() else [])


def code_hash(package: str) -> str:
    """SHA-256 over the archlab version and the relative paths and contents of
    ``code_files(package)``."""
    from archlab import __version__

    h = hashlib.sha256(f"archlab {__version__}\0".encode())
    for f in code_files(package):
        rel = f.relative_to(REPO_ROOT) if f.is_relative_to(REPO_ROOT) else f.name
        content = f.read_bytes()
        if f.name == "pyproject.toml":
            content = environment_spec(content.decode()).encode()
        h.update(str(rel).encode() + b"\0" + content + b"\0")
    return h.hexdigest()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_sha() -> str:
    """The commit checked out, or ``""`` outside a git checkout."""
    out = _git("rev-parse", "HEAD")
    return out.strip() if out else ""


def git_dirty(files: list[Path]) -> bool | None:
    """Whether any of ``files`` differs from the commit (modified, staged or untracked; for
    ``pyproject.toml`` only its ``environment_spec``); ``None`` outside a git checkout."""
    rels = [str(f.relative_to(REPO_ROOT)) for f in files if f.is_relative_to(REPO_ROOT)]
    code = [r for r in rels if Path(r).name != "pyproject.toml"]
    if not rels:
        return None
    out = _git("status", "--porcelain", "--", *code) if code else ""
    if out is None:
        return None
    dirty = bool(out.strip())
    for rel in set(rels) - set(code):
        committed = _git("show", f"HEAD:{rel}")
        today = (REPO_ROOT / rel).read_text()
        dirty = dirty or committed is None or environment_spec(committed) != environment_spec(today)
    return dirty


def provenance(package: str) -> dict:
    """``{"commit", "dirty", "code_hash", "n_files"}`` of the code behind ``package``."""
    files = code_files(package)
    return {
        "commit": git_sha(),
        "dirty": git_dirty(files),
        "code_hash": code_hash(package),
        "n_files": len(files),
    }
