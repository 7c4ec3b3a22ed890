"""The index of papers: slug -> package path. Sorted, one line each; imported lazily."""

INDEX: dict[str, str] = {
    "activator": "archlab.papers.vision.activator",
    "ascan": "archlab.papers.vision.ascan",
    "bart": "archlab.papers.language.bart",
    "convit": "archlab.papers.vision.convit",
    "drbert": "archlab.papers.language.drbert",
    "fit": "archlab.papers.vision.fit",
    "pointer_net": "archlab.papers.language.pointer_net",
    "return_of_encoder": "archlab.papers.language.return_of_encoder",
    "scan_snap": "archlab.papers.language.scan_snap",
    "simplenet": "archlab.papers.vision.simplenet",
}
