"""Run a paper's experiment: build its ``Lab``, call ``run(lab)``, stamp provenance, write
``result.json`` with its figures and learning curves (``learning_curves.png`` from the arms'
curves, unless the experiment attached its own figure of that name).

The runner never changes process state: the thread count is whatever the caller set (the CLI's
``--threads``) and is recorded before the run starts.
"""

from __future__ import annotations

import importlib
import platform
import time
from pathlib import Path

import torch

from archlab.errors import ArchlabError
from archlab.lab.provenance import git_sha, provenance
from archlab.lab.result import Budget, Result
from archlab.lab.run import Lab
from archlab.registry import info, missing_dependency, spec

__all__ = ["default_out", "device_name", "git_sha", "import_experiment", "reproduce", "versions"]


def versions() -> dict[str, str]:
    import numpy

    import archlab

    return {
        "archlab": archlab.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        # CPU kernels (and so the last bits of a CPU run) depend on the instruction set
        "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device | None = None) -> str:
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads, {platform.machine()})"


def default_out(slug: str, budget: Budget, seed: int, runs: str | Path = "runs") -> Path:
    return Path(runs) / slug / f"{Budget.parse(budget).value}-seed{seed}"


def import_experiment(slug: str):
    """The paper's experiment module; a missing optional dependency is one line naming the
    extra that installs it."""
    s = spec(slug)
    if s.experiment is None:
        raise ArchlabError(f"{slug} is a baseline; it has no reproduction of its own")
    try:
        return importlib.import_module(s.experiment)
    except ModuleNotFoundError as e:
        if not e.name or e.name.split(".")[0] == "archlab":
            raise
        raise missing_dependency(slug, e.name, info(slug).extra) from None


def reproduce(
    slug: str,
    budget: str | Budget = "quick",
    seed: int = 0,
    out=None,
    device: str = "cpu",
) -> Result:
    """Run ``slug``'s experiment at ``budget`` with ``seed``; write its result folder.

    Args:
        slug: a registered paper.
        budget: ``smoke`` | ``quick`` | ``standard`` | ``full`` (one the paper defines).
        seed: the run's seed.
        out: result folder (default ``runs/<slug>/<budget>-seed<seed>``); ``False`` writes nothing.
        device: ``cpu`` | ``cuda`` | ``auto``.
    """
    b = Budget.parse(budget)
    s = spec(slug)
    module = import_experiment(slug)
    lab = Lab(s, b, seed, module.BUDGETS, device=device)
    lab.result.threads = torch.get_num_threads()
    lab.result.device = device_name(lab.device)
    package = s.experiment.rpartition(".")[0]
    before = provenance(package)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        module.run(lab)
    except ModuleNotFoundError as e:  # an optional dependency imported where it is used
        if not e.name or e.name.split(".")[0] == "archlab":
            raise
        raise missing_dependency(slug, e.name, info(slug).extra) from None
    result = lab.result
    result.elapsed_s = time.perf_counter() - t0
    result.cpu_s = time.process_time() - c0  # all threads of this process: load-independent
    after = provenance(package)
    if after["code_hash"] != before["code_hash"]:
        after["dirty"] = True  # the code changed while it ran
    result.provenance = after
    result.git = after["commit"]
    result.versions = versions()
    if result.curves and "learning_curves" not in result.figures:
        from archlab.lab.plots import learning_curves

        result.figures["learning_curves"] = learning_curves(
            result.curves, title=f"{slug}: training loss per arm ({b.value}, seed {seed})"
        )
    if out is not False:
        folder = Path(out) if out is not None else default_out(slug, b, seed)
        result.save(folder)
    return result
