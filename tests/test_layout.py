"""The layout rules of DESIGN.md, enforced: the import direction between layers, and what
library code must not do to the process (threads, matplotlib backend, global seeds)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "archlab"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


@pytest.mark.parametrize("layer", ["engine", "nn", "data"])
def test_low_layers_import_neither_registry_nor_papers_nor_lab(layer):
    """``engine``, ``nn`` and ``data`` are the foundation: they may import ``errors``, each
    other downwards and torch, never the registry (which can import every paper), a paper,
    a baseline, the kit or the CLI."""
    banned = (
        "archlab.registry",
        "archlab.papers",
        "archlab.baselines",
        "archlab.lab",
        "archlab.cli",
    )
    offenders = []
    for f in sorted((PACKAGE / layer).rglob("*.py")):
        for mod in _imports(f):
            if mod.startswith(banned):
                offenders.append(f"{f.relative_to(PACKAGE)} imports {mod}")
    assert not offenders, offenders


def test_errors_module_imports_nothing_of_archlab():
    assert not [m for m in _imports(PACKAGE / "errors.py") if m.startswith("archlab")]


def test_lab_imports_no_paper():
    offenders = [
        f"{f.name} imports {m}"
        for f in sorted((PACKAGE / "lab").rglob("*.py"))
        for m in _imports(f)
        if m.startswith(("archlab.papers.", "archlab.baselines.", "archlab.cli"))
    ]
    assert not offenders, offenders


FORBIDDEN_CALLS = {
    "set_num_threads": "the thread policy belongs to the CLI (--threads)",
    "use": "matplotlib.use switches a notebook user's backend",
    "seed_everything": "experiments use named streams (lab.seed_for / lab.rng / lab.build)",
    "manual_seed": "experiments use named streams (lab.rng)",
}


def _library_files():
    for f in sorted(PACKAGE.rglob("*.py")):
        rel = f.relative_to(PACKAGE)
        if rel.parts[0] == "cli" or rel == Path("engine/seed.py"):  # policy / the seeding helper
            continue
        yield f


def test_library_code_leaves_process_state_alone():
    offenders = []
    for f in _library_files():
        rel = f.relative_to(PACKAGE)
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "matplotlib.pyplot":
                offenders.append(f"{rel}: imports matplotlib.pyplot (build Figure objects)")
            if isinstance(node, ast.Import) and any(
                a.name == "matplotlib.pyplot" for a in node.names
            ):
                offenders.append(f"{rel}: imports matplotlib.pyplot (build Figure objects)")
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            name, owner = node.func.attr, node.func.value
            owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            if name == "set_num_threads":
                offenders.append(f"{rel}:{node.lineno} {FORBIDDEN_CALLS[name]}")
            if name == "use" and owner_name == "matplotlib":
                offenders.append(f"{rel}:{node.lineno} {FORBIDDEN_CALLS[name]}")
            if name == "manual_seed" and owner_name == "torch":
                offenders.append(f"{rel}:{node.lineno} torch.manual_seed reseeds the global RNG")
    assert not offenders, offenders


def test_experiments_use_named_streams():
    """No global seeding and no numeric seed offsets in an experiment."""
    offenders = []
    for f in sorted((PACKAGE / "papers").rglob("experiment.py")):
        text = f.read_text()
        for needle in ("seed_everything(", "torch.manual_seed(", "fit_steps(", "Trainer("):
            if needle in text:
                offenders.append(f"{f.relative_to(PACKAGE)} calls {needle}")
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
                sides = (node.left, node.right)
                if any(isinstance(s, ast.Name) and s.id == "seed" for s in sides) and any(
                    isinstance(s, ast.Constant) for s in sides
                ):
                    offenders.append(f"{f.relative_to(PACKAGE)}:{node.lineno} seed offset")
    assert not offenders, offenders
