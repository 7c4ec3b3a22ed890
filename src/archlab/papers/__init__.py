"""The index of papers: slug -> package path. Sorted, one line each; imported lazily."""

INDEX: dict[str, str] = {
    "activator": "archlab.papers.vision.activator",
    "ascan": "archlab.papers.vision.ascan",
    "bart": "archlab.papers.language.bart",
    "convit": "archlab.papers.vision.convit",
    "drbert": "archlab.papers.language.drbert",
    "ffnet": "archlab.papers.dense.ffnet",
    "fit": "archlab.papers.vision.fit",
    "guided_attention_seg": "archlab.papers.dense.guided_attention_seg",
    "hybridgnet": "archlab.papers.dense.hybridgnet",
    "m_sfanet": "archlab.papers.dense.m_sfanet",
    "maxim": "archlab.papers.dense.maxim",
    "medfe": "archlab.papers.dense.medfe",
    "medusa_med": "archlab.papers.dense.medusa_med",
    "paratranscnn": "archlab.papers.dense.paratranscnn",
    "pls_net": "archlab.papers.dense.pls_net",
    "pointer_net": "archlab.papers.language.pointer_net",
    "return_of_encoder": "archlab.papers.language.return_of_encoder",
    "scan_snap": "archlab.papers.language.scan_snap",
    "simplenet": "archlab.papers.vision.simplenet",
}
