"""The index of papers: slug -> package path. Sorted, one line each; imported lazily."""

INDEX: dict[str, str] = {
    "pointer_net": "archlab.papers.language.pointer_net",
    "scan_snap": "archlab.papers.language.scan_snap",
}
