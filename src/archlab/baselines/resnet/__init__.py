"""Small basic-block ResNet family (CIFAR and ImageNet stems): see ``model.py``."""

from archlab.baselines.resnet.model import SPEC, VARIANTS, BasicBlock, ResNet, ResNetConfig

__all__ = ["SPEC", "VARIANTS", "BasicBlock", "ResNet", "ResNetConfig"]
