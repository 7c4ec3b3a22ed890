"""archlab: seventy neural-architecture papers as tested PyTorch implementations.

Public API (stable)::

    archlab.list_papers(family=None)            # registered papers
    archlab.list_models()                       # every buildable slug and slug/variant
    archlab.build("pointer_net/tiny", **overrides)
    archlab.reproduce("pointer_net", budget="quick", seed=0, out=None, device="cpu")

Nothing heavy is imported here: papers are imported on demand.
"""

from archlab.errors import ArchlabError
from archlab.registry import PaperInfo, PaperSpec, Task, build, list_models, list_papers

__version__ = "0.1.0"


def reproduce(slug: str, budget: str = "quick", seed: int = 0, out=None, device: str = "cpu"):
    """Run a paper's miniature reproduction; see ``archlab.lab.runner.reproduce``."""
    from archlab.lab.runner import reproduce as _reproduce

    return _reproduce(slug, budget=budget, seed=seed, out=out, device=device)


__all__ = [
    "ArchlabError",
    "PaperInfo",
    "PaperSpec",
    "Task",
    "__version__",
    "build",
    "list_models",
    "list_papers",
    "reproduce",
]
