"""Image encoder: a CNN cut before pooling, giving a grid of annotation vectors a_1..a_P (paper §3.1.1)."""

from __future__ import annotations

import os
import shutil

import torch
import torch.nn as nn
import torchvision

from .config import ModelConfig
from .files import atomic_path

# torchvision builder and weights enum for each supported backbone
BACKBONES = {
    "resnet18": ("resnet18", "ResNet18_Weights"),
    "resnet50": ("resnet50", "ResNet50_Weights"),
    "resnet101": ("resnet101", "ResNet101_Weights"),
    "resnet152": ("resnet152", "ResNet152_Weights"),
    "mobilenet_v2": ("mobilenet_v2", "MobileNet_V2_Weights"),
}


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights are not in torch's hub cache and cannot be downloaded here."""


def weights_file(weights) -> str:
    """Where torchvision's weights API looks for a weights enum's file."""
    name = os.path.basename(weights.url)
    return os.path.join(torch.hub.get_dir(), "checkpoints", name)


def install_weights(file: str | os.PathLike) -> str:
    """Copy a torchvision weights file (e.g. mobilenet_v2-b0353104.pth) to where the weights API looks."""
    target = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(file))
    if not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with atomic_path(target) as tmp:
            shutil.copyfile(file, tmp)
    return target


def load_backbone(name: str, pretrained: bool) -> nn.Module:
    """Build a torchvision backbone; pretrained=True uses ImageNet weights from the hub cache, else downloads them."""
    if name not in BACKBONES:
        raise ValueError(f"encoder: unknown backbone {name!r}; choose from {sorted(BACKBONES)} or 'shapes_cnn'")
    builder_name, enum_name = BACKBONES[name]
    builder = getattr(torchvision.models, builder_name)
    if not pretrained:
        return builder(weights=None)
    enum = getattr(torchvision.models, enum_name)
    candidates = [enum.DEFAULT] + [w for w in enum if w is not enum.DEFAULT]  # e.g. IMAGENET1K_V2, then _V1
    for weights in candidates:
        if os.path.exists(weights_file(weights)):
            return builder(weights=weights)
    try:  # torchvision's own download: works where there is internet (a Kaggle kernel), fails fast here
        return builder(weights=enum.DEFAULT)
    except Exception as error:  # URLError, OSError, hash mismatch...: explain what to do instead
        path = weights_file(enum.DEFAULT)
        others = ", ".join(os.path.basename(weights_file(w)) for w in candidates[1:])
        raise WeightsNotFoundError(
            f"{name}: pretrained weights not found at {path} and the download failed ({str(error).splitlines()[0]}); "
            f"copy {os.path.basename(path)} (from {enum.DEFAULT.url}){' or ' + others if others else ''} "
            f"into {os.path.dirname(path)} (set TORCH_HOME to move that folder), or use pretrained=False."
        ) from None


def conv_stages(backbone: nn.Module, name: str) -> nn.Sequential:
    """The backbone's convolutional blocks, without global pooling and classifier."""
    if name.startswith("resnet"):
        stem = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool)
        return nn.Sequential(stem, backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4)
    return nn.Sequential(*backbone.features)  # mobilenet_v2: 19 blocks, last one outputs 1280 channels


def out_channels(name: str) -> int:
    """D, the size of one annotation vector, for each backbone."""
    return {"resnet18": 512, "mobilenet_v2": 1280}.get(name, 2048)


def shapes_cnn(channels: int) -> nn.Sequential:
    """A small CNN trained from scratch on the shapes world: 64 px -> 8x8 grid of `channels`."""

    def block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))

    return nn.Sequential(
        block(3, 32, 2),  # 32 px
        block(32, 64, 2),  # 16 px
        block(64, 64, 1),
        block(64, channels, 2),  # 8 px: one cell per 8x8 pixels
        block(channels, channels, 1),
    )


def coordinate_grid(rows: int, cols: int) -> torch.Tensor:
    """(2, rows, cols): x and y of every position, from -1 (left, top) to 1 (right, bottom)."""
    y, x = torch.meshgrid(torch.linspace(-1, 1, rows), torch.linspace(-1, 1, cols), indexing="ij")  # (rows, cols) each
    return torch.stack([x, y])  # (2, rows, cols)


class Encoder(nn.Module):
    """Images (B, 3, S, S) -> annotations (B, P, D) with P = grid_size**2."""

    def __init__(self, cfg: ModelConfig, load_weights: bool = True):
        """load_weights=False leaves a pretrained backbone's weights unset, for weights that come from a checkpoint."""
        super().__init__()
        self.name = cfg.encoder
        if cfg.encoder == "shapes_cnn":
            self.stages = nn.Sequential(*shapes_cnn(cfg.encoder_channels))
            self.dim = cfg.encoder_channels
            self.trainable = len(self.stages)  # trained from scratch: every block learns
        else:
            self.stages = conv_stages(load_backbone(cfg.encoder, cfg.pretrained and load_weights), cfg.encoder)
            self.dim = out_channels(cfg.encoder)
            self.trainable = cfg.fine_tune_blocks if cfg.pretrained else len(self.stages)
        self.pool = nn.AdaptiveAvgPool2d((cfg.grid_size, cfg.grid_size))
        if cfg.cell_positions:  # where each annotation lies, appended to what it holds; a buffer, so in the cache key
            self.register_buffer("cell_xy", coordinate_grid(cfg.grid_size, cfg.grid_size).flatten(1).T)  # (P, 2)
            self.dim += 2
        else:
            self.cell_xy = None
        for i, stage in enumerate(self.stages):
            stage.requires_grad_(self.is_trainable(i))

    def is_trainable(self, index: int) -> bool:
        """Only the last `trainable` blocks receive gradients."""
        return index >= len(self.stages) - self.trainable

    @property
    def frozen(self) -> bool:
        """True when no block is trained (features can then be cached)."""
        return self.trainable == 0

    def train(self, mode: bool = True) -> "Encoder":
        """Like nn.Module.train, but frozen blocks stay in eval mode so BatchNorm statistics never drift."""
        super().train(mode)
        for i, stage in enumerate(self.stages):
            if not self.is_trainable(i):
                stage.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.stages(images)  # (B, D, H', W')
        features = self.pool(features)  # (B, D, G, G)
        annotations = features.flatten(2).transpose(1, 2)  # (B, P, D), cell p = row * G + col
        if self.cell_xy is not None:
            xy = self.cell_xy.to(annotations.dtype).expand(annotations.size(0), -1, -1)  # (B, P, 2)
            annotations = torch.cat([annotations, xy], dim=2)  # (B, P, D + 2)
        return annotations
