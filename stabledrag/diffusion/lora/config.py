"""Settings of the identity LoRA (DragDiffusion's defaults)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

DEFAULT_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")


@dataclass
class IdentityLoraConfig:
    """How to fine-tune the identity LoRA on one image (DragDiffusion: rank 16, AdamW lr 5e-4,
    batch 4, 80 steps, on every attention's to_q/to_k/to_v/to_out.0).

    rank: LoRA rank r; lora_alpha is fixed to r (scale 1, as DragDiffusion's layers had).
    lr: AdamW learning rate, constant. batch_size: noise/timestep samples per step (same image).
    steps: optimisation steps. seed: seeds the LoRA initialisation, noise and timesteps.
    target_modules: attention linear layers that get LoRA (names inside the UNet).
    weight_decay: AdamW weight decay (1e-2 like DragDiffusion / torch's default).
    resolution: long side of the training image in pixels; None = the model's native size
    (512 for SD 1.5). The image is resized with `stabledrag.diffusion.images.prepare_image`.
    """

    rank: int = 16
    lr: float = 5e-4
    batch_size: int = 4
    steps: int = 80
    seed: int = 0
    target_modules: tuple[str, ...] = field(default_factory=lambda: DEFAULT_TARGET_MODULES)
    weight_decay: float = 1e-2
    resolution: Optional[int] = None

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if not self.target_modules:
            raise ValueError("target_modules must name at least one module")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.resolution is not None and self.resolution < 8:
            raise ValueError(f"resolution must be >= 8 pixels, got {self.resolution}")

    def replace(self, **changes: Any) -> "IdentityLoraConfig":
        """A copy with `changes` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (target_modules as a list)."""
        d = dataclasses.asdict(self)
        d["target_modules"] = list(self.target_modules)
        return d
