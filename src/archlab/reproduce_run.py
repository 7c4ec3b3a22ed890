"""Run a paper's experiment, stamp provenance, write ``result.json`` and plots."""

from __future__ import annotations

import importlib
import platform
import subprocess
import time
from pathlib import Path

import torch

from archlab.registry import ArchlabError, spec
from archlab.results import Budget, Result

REPO_ROOT = Path(__file__).resolve().parents[2]


def git_sha() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def versions() -> dict[str, str]:
    import numpy

    import archlab

    return {
        "archlab": archlab.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }


def device_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads, {platform.machine()})"


def default_out(slug: str, budget: Budget, seed: int, runs: str | Path = "runs") -> Path:
    return Path(runs) / slug / f"{budget.value}-seed{seed}"


def reproduce(slug: str, budget: str | Budget = "quick", seed: int = 0, out=None) -> Result:
    """Run ``slug``'s experiment at ``budget`` with ``seed``; write its result folder.

    Args:
        slug: a registered paper.
        budget: ``smoke`` | ``quick`` | ``full``.
        seed: the run's seed.
        out: result folder (default ``runs/<slug>/<budget>-seed<seed>``); ``False`` writes nothing.
    """
    b = Budget.parse(budget)
    s = spec(slug)
    if s.experiment is None:
        raise ArchlabError(f"{slug} is a baseline; it has no reproduction of its own")
    module = importlib.import_module(s.experiment)
    t0 = time.perf_counter()
    result: Result = module.run(b, seed)
    result.elapsed_s = time.perf_counter() - t0
    result.git = git_sha()
    result.versions = versions()
    result.device = device_name()
    if out is not False:
        folder = Path(out) if out is not None else default_out(slug, b, seed)
        result.save(folder)
    return result
