"""Training throughput of archlab's ViT and ConViT against timm's, on copied weights.

For each pair, the timm model is built with the given config, its weights are copied into
archlab's model (``from_timm``), outputs are checked equal, and one forward + backward step
(cross-entropy) of each is timed alternately (``archlab.measure.compare_latency``); the medians
give images/s and the ratio archlab / timm (>= 1: archlab is at least as fast).

    python benchmarks/vision_vs_timm.py                    # CIFAR-sized ViT-Ti / ConViT-Ti
    python benchmarks/vision_vs_timm.py --size ti --batch-size 8   # 224 x 224 ViT-Ti / ConViT-Ti
    python benchmarks/vision_vs_timm.py --device cuda
"""

from __future__ import annotations

import argparse
import platform

import torch

from archlab.baselines.vit import from_timm as vit_from_timm
from archlab.lab.profiling import compare_latency, training_step
from archlab.papers.vision.convit import from_timm as convit_from_timm

SIZES = {
    # name: (img_size, patch_size, heads, width per head, depth, local_up_to_layer)
    "small": (32, 4, 3, 64, 6, 4),  # 64 patches, ViT-Ti width (192)
    "ti": (224, 16, 3, 64, 12, 10),  # ViT-Ti / DeiT-Ti; ConViT-Ti uses 4 heads x 48
}


def build_pairs(size: str, n_classes: int = 10):
    from timm.models.convit import ConVit
    from timm.models.vision_transformer import VisionTransformer

    img, patch, heads, d_head, depth, local = SIZES[size]
    vit = VisionTransformer(
        img_size=img,
        patch_size=patch,
        embed_dim=heads * d_head,
        depth=depth,
        num_heads=heads,
        num_classes=n_classes,
    )
    convit_heads = 4  # ConViT-Ti: 4 heads x 48 = 192
    convit = ConVit(
        img_size=img,
        patch_size=patch,
        embed_dim=heads * d_head // convit_heads,
        depth=depth,
        num_heads=convit_heads,
        local_up_to_layer=local,
        num_classes=n_classes,
    )
    return {"ViT": (vit_from_timm(vit), vit), "ConViT": (convit_from_timm(convit), convit)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    img = SIZES[args.size][0]
    x = torch.randn(args.batch_size, 3, img, img, device=device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(
        f"device {device} ({where}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, size {args.size}, batch {args.batch_size}"
    )
    for name, (ours, ref) in build_pairs(args.size).items():
        ours, ref = ours.to(device).train(), ref.to(device).train()
        with torch.no_grad():
            diff = (ours.eval()(x) - ref.eval()(x)).abs().max().item()
        ours.train(), ref.train()
        r = compare_latency(
            training_step(ours, x, y), training_step(ref, x, y), repeats=args.repeats, warmup=2
        )
        b = args.batch_size
        print(
            f"{name:7s} archlab {b / r.a_s:8.1f} img/s   timm {b / r.b_s:8.1f} img/s   "
            f"archlab/timm {r.ratio:.3f}x   (max |diff| {diff:.1e})"
        )


if __name__ == "__main__":
    main()
