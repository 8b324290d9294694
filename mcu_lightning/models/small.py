"""Small networks for the offline classification studies (MU-Bench style), with BatchNorm.

Each records its constructor arguments in ``init_args`` so ``save_model`` can write a folder that
``load_model`` rebuilds without the config that created it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class SmallConvNet(nn.Module):
    """Two conv blocks (conv-BN-ReLU, max-pool) and a linear head; sized for 8x8 to 32x32 images."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16, image_size: int = 8) -> None:
        super().__init__()
        self.init_args = {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "width": width,
            "image_size": image_size,
        }
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        pooled = image_size // 2
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * pooled * pooled, num_classes))

    def forward(self, inputs: Tensor) -> Tensor:
        return self.head(self.features(inputs))


class MLP(nn.Module):
    """A multilayer perceptron with BatchNorm between layers; flattens its input."""

    def __init__(self, in_features: int = 64, num_classes: int = 10, hidden: int = 64, depth: int = 2) -> None:
        super().__init__()
        self.init_args = {"in_features": in_features, "num_classes": num_classes, "hidden": hidden, "depth": depth}
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.net(inputs.flatten(1) if inputs.dim() > 2 else inputs)


def seeded(module_factory, seed: int):  # pragma: no cover - tiny convenience for notebooks
    """Build a module under a fixed seed without touching the caller's global RNG state."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return module_factory()
