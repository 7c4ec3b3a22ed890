"""The index of papers: slug -> static metadata. Sorted; written by ``archlab new`` and kept
equal to each paper's ``SPEC`` and ``BUDGETS`` by a test, so listing imports no paper."""

from archlab.catalog import PaperInfo

INDEX: dict[str, PaperInfo] = {
    "activator": PaperInfo(
        slug="activator",
        module="archlab.papers.vision.activator",
        family="vision",
        title="Activator: GLU Activations as The Core Functions of a Vision Transformer",
        arxiv="2405.15953",
        fidelity="simplified",
        variants=(
            "tiny",
            "base",
            "glu",
            "swiglu",
            "reglu",
            "with_mlp",
            "channels",
            "channels_with_mlp",
            "cifar100",
        ),
        budgets=("smoke", "quick"),
    ),
    "ascan": PaperInfo(
        slug="ascan",
        module="archlab.papers.vision.ascan",
        family="vision",
        title=(
            "AsCAN: Asymmetric Convolution-Attention Networks for Efficient Recognition "
            "and Generation"
        ),
        arxiv="2411.04967",
        fidelity="simplified",
        variants=("tiny", "mini", "mini_symmetric", "mini_reversed", "mini_conv", "base"),
        budgets=("smoke", "quick", "standard"),
    ),
    "bart": PaperInfo(
        slug="bart",
        module="archlab.papers.language.bart",
        family="language",
        title=(
            "BART: Denoising Sequence-to-Sequence Pre-training for Natural Language "
            "Generation, Translation, and Comprehension"
        ),
        arxiv="1910.13461",
        fidelity="faithful",
        variants=("tiny", "base", "large"),
        budgets=("smoke", "quick", "full"),
    ),
    "convit": PaperInfo(
        slug="convit",
        module="archlab.papers.vision.convit",
        family="vision",
        title="ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases",
        arxiv="2103.10697",
        fidelity="faithful",
        variants=("tiny", "ti", "s", "b"),
        budgets=("smoke", "quick"),
    ),
    "drbert": PaperInfo(
        slug="drbert",
        module="archlab.papers.language.drbert",
        family="language",
        title=(
            "DrBERT: Unveiling the Potential of Masked Language Modeling Decoder in BERT "
            "pretraining"
        ),
        arxiv="2401.15861",
        fidelity="simplified",
        variants=("tiny", "small", "base"),
        budgets=("smoke", "quick", "full"),
    ),
    "ffnet": PaperInfo(
        slug="ffnet",
        module="archlab.papers.dense.ffnet",
        family="dense",
        title="Simple and Efficient Architectures for Semantic Segmentation",
        arxiv="2206.08236",
        fidelity="faithful",
        variants=(
            "base",
            "resnet34_AAC",
            "resnet18_BBB",
            "resnet50_AAA",
            "mini",
            "mini_bottleneck",
            "tiny",
        ),
        budgets=("smoke", "quick"),
    ),
    "fit": PaperInfo(
        slug="fit",
        module="archlab.papers.vision.fit",
        family="vision",
        title="FIT: Far-reaching Interleaved Transformers",
        arxiv="2305.12689",
        fidelity="simplified",
        variants=("tiny", "long_range", "base"),
        budgets=("smoke", "quick"),
    ),
    "guided_attention_seg": PaperInfo(
        slug="guided_attention_seg",
        module="archlab.papers.dense.guided_attention_seg",
        family="dense",
        title="Multi-scale self-guided attention for medical image segmentation",
        arxiv="1906.02849",
        fidelity="faithful",
        variants=("tiny", "resnet18", "base"),
        budgets=("smoke", "quick", "standard"),
    ),
    "hnerv": PaperInfo(
        slug="hnerv",
        module="archlab.papers.fields.hnerv",
        family="fields",
        title="HNeRV: A Hybrid Neural Representation for Videos",
        arxiv="2304.02633",
        fidelity="faithful",
        variants=("tiny", "base", "bunny"),
        budgets=("smoke", "quick", "standard"),
    ),
    "hybridgnet": PaperInfo(
        slug="hybridgnet",
        module="archlab.papers.dense.hybridgnet",
        family="dense",
        title=(
            "Improving anatomical plausibility in medical image segmentation via hybrid "
            "graph neural networks: applications to chest x-ray analysis"
        ),
        arxiv="2203.10977",
        fidelity="faithful",
        variants=("tiny", "mini", "mini_no_igsc", "jsrt512", "paper", "paper_no_igsc"),
        budgets=("smoke", "quick", "standard"),
    ),
    "m_sfanet": PaperInfo(
        slug="m_sfanet",
        module="archlab.papers.dense.m_sfanet",
        family="dense",
        title=(
            "Encoder-Decoder Based Convolutional Neural Networks with Multi-Scale-Aware "
            "Modules for Crowd Counting"
        ),
        arxiv="2003.05586",
        fidelity="faithful",
        variants=("base", "m_sfanet", "sfanet", "m_segnet", "tiny", "tiny_sfanet", "tiny_m_segnet"),
        budgets=("smoke", "quick"),
    ),
    "maxim": PaperInfo(
        slug="maxim",
        module="archlab.papers.dense.maxim",
        family="dense",
        title="MAXIM: Multi-Axis MLP for Image Processing",
        arxiv="2201.02973",
        fidelity="faithful",
        variants=("tiny", "mini", "mini-local", "s1", "m1"),
        budgets=("smoke", "quick", "standard"),
    ),
    "medfe": PaperInfo(
        slug="medfe",
        module="archlab.papers.dense.medfe",
        family="dense",
        title="Rethinking Image Inpainting via a Mutual Encoder-Decoder with Feature Equalizations",
        arxiv="2007.06929",
        fidelity="faithful",
        variants=("tiny", "mini", "mini-no-bpa", "base"),
        budgets=("smoke", "quick", "standard"),
    ),
    "medusa_med": PaperInfo(
        slug="medusa_med",
        module="archlab.papers.dense.medusa_med",
        family="dense",
        title=(
            "MEDUSA: Multi-scale Encoder-Decoder Self-Attention Deep Neural Network "
            "Architecture for Medical Image Analysis"
        ),
        arxiv="2110.06063",
        fidelity="simplified",
        variants=("tiny", "mini", "base"),
        budgets=("smoke", "quick"),
    ),
    "mgno": PaperInfo(
        slug="mgno",
        module="archlab.papers.fields.mgno",
        family="fields",
        title="MgNO: Efficient Parameterization of Linear Operators via Multigrid",
        arxiv="2310.19809",
        fidelity="faithful",
        variants=("tiny", "mini", "darcy"),
        budgets=("smoke", "quick", "standard"),
    ),
    "nervpp": PaperInfo(
        slug="nervpp",
        module="archlab.papers.fields.nervpp",
        family="fields",
        title="NeRV++: An Enhanced Implicit Neural Video Representation",
        arxiv="2402.18305",
        fidelity="simplified",
        variants=("tiny", "base", "no_skip", "no_scrb"),
        budgets=("smoke", "quick", "standard"),
    ),
    "paratranscnn": PaperInfo(
        slug="paratranscnn",
        module="archlab.papers.dense.paratranscnn",
        family="dense",
        title="ParaTransCNN: Parallelized TransCNN Encoder for Medical Image Segmentation",
        arxiv="2401.15307",
        fidelity="faithful",
        variants=("tiny", "small", "base"),
        budgets=("smoke", "quick"),
    ),
    "pc_compression": PaperInfo(
        slug="pc_compression",
        module="archlab.papers.fields.pc_compression",
        family="fields",
        title="Lossless Compression with Probabilistic Circuits",
        arxiv="2111.11632",
        fidelity="simplified",
        variants=("tiny", "base", "digits_binary", "mnist_8bit"),
        budgets=("smoke", "quick"),
    ),
    "pls_net": PaperInfo(
        slug="pls_net",
        module="archlab.papers.dense.pls_net",
        family="dense",
        title=(
            "Fast meningioma segmentation in T1-weighted MRI volumes using a lightweight "
            "3D deep learning architecture"
        ),
        arxiv="2010.07002",
        fidelity="faithful",
        variants=("tiny", "mini", "base"),
        budgets=("smoke", "quick", "standard"),
    ),
    "pointer_net": PaperInfo(
        slug="pointer_net",
        module="archlab.papers.language.pointer_net",
        family="language",
        title="Pointer Networks",
        arxiv="1506.03134",
        fidelity="faithful",
        variants=("tiny", "base", "sort", "hull"),
        budgets=("smoke", "quick", "standard"),
    ),
    "return_of_encoder": PaperInfo(
        slug="return_of_encoder",
        module="archlab.papers.language.return_of_encoder",
        family="language",
        title="Return of the Encoder: Maximizing Parameter Efficiency for SLMs",
        arxiv="2501.16273",
        fidelity="simplified",
        variants=("tiny", "tiny_decoder_only", "base", "base_decoder_only"),
        budgets=("smoke", "quick"),
    ),
    "s_kan": PaperInfo(
        slug="s_kan",
        module="archlab.papers.fields.s_kan",
        family="fields",
        title="Activation Space Selectable Kolmogorov-Arnold Networks",
        arxiv="2408.08338",
        fidelity="simplified",
        variants=("tiny", "base", "bspline", "chebyshev", "fourier", "rbf", "wavelet"),
        budgets=("smoke", "quick"),
    ),
    "scan_snap": PaperInfo(
        slug="scan_snap",
        module="archlab.papers.language.scan_snap",
        family="language",
        title=(
            "Scan and Snap: Understanding Training Dynamics and Token Composition in "
            "1-layer Transformer"
        ),
        arxiv="2305.16380",
        fidelity="faithful",
        variants=("tiny", "base", "transformer"),
        budgets=("smoke", "quick"),
    ),
    "simplenet": PaperInfo(
        slug="simplenet",
        module="archlab.papers.vision.simplenet",
        family="vision",
        title=(
            "Lets keep it simple, Using simple architectures to outperform deeper and "
            "more complex architectures"
        ),
        arxiv="1608.06037",
        fidelity="faithful",
        variants=("tiny", "cifar_310k", "cifar_460k", "cifar_5m"),
        budgets=("smoke", "quick"),
    ),
    "snnk": PaperInfo(
        slug="snnk",
        module="archlab.papers.fields.snnk",
        family="fields",
        title="Scalable Neural Network Kernels",
        arxiv="2310.13225",
        fidelity="simplified",
        variants=("tiny", "base", "cos"),
        budgets=("smoke", "quick"),
    ),
}
