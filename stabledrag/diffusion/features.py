"""UNet features for the drag: the output of one block (DragDiffusion: `up_blocks.2`), captured by a
forward hook and resized bilinearly to half the image size.

The forward can be *cut*: when nothing downstream needs the noise prediction (no mask term, no
preview), the hook raises a private exception right after storing the block's output, so the
remaining up blocks and the output head are never run (nor back-propagated through). The stored
tensor keeps its autograd graph, so the features and their gradient w.r.t. the latent are exactly
those of the full forward (tests/test_diffusion_features.py checks this).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .unet import predict_noise


#: Gradient scale through an fp16 UNet during the drag (loss scaling without touching the loop): the
#: gradient entering the UNet's outputs is multiplied by it and the one leaving into the fp32 latent
#: divided by it, so small gradients do not underflow in fp16 (bf16 / fp32 need no scaling).
FP16_GRAD_SCALE = 1024.0


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by `scale` on the way back."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad * ctx.scale, None


def grad_scale_for(dtype: torch.dtype) -> float:
    """The gradient scale used through a UNet of weights `dtype` (FP16_GRAD_SCALE for fp16, else 1)."""
    return FP16_GRAD_SCALE if dtype == torch.float16 else 1.0


class _StopForward(Exception):
    """Raised inside the UNet by the feature hook to skip everything after the feature block."""


def resolve_block(unet: nn.Module, name: str) -> nn.Module:
    """The sub-module of `unet` called `name` (dotted, e.g. "up_blocks.2" or "mid_block").

    Raises ValueError listing the UNet's top-level blocks when there is no such module.
    """
    try:
        return unet.get_submodule(name)
    except AttributeError:
        blocks = [f"down_blocks.{i}" for i in range(len(getattr(unet, "down_blocks", [])))]
        blocks += ["mid_block"] + [f"up_blocks.{i}" for i in range(len(getattr(unet, "up_blocks", [])))]
        raise ValueError(f"The UNet has no block {name!r}; feature blocks are e.g. {', '.join(blocks)}") from None


def _first_tensor(output: Any) -> torch.Tensor:
    # Down blocks return (hidden, residuals); up and mid blocks return the tensor itself.
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    if hasattr(output, "sample"):
        return output.sample
    raise TypeError(f"cannot take features from a block output of type {type(output).__name__}")


class FeatureExtractor:
    """Runs the UNet and returns the features of one block, optionally with the noise prediction.

    unet: a diffusers `UNet2DConditionModel` (LoRA-wrapped or not).
    block: dotted module name whose output is the feature map (DragDiffusion: "up_blocks.2").
    out_size: `(H, W)` the features are resized to (DragDiffusion: half the image size).
    """

    def __init__(self, unet: nn.Module, block: str = "up_blocks.2", out_size: Optional[tuple[int, int]] = None) -> None:
        self.unet = unet
        self.block = block
        self.out_size = out_size
        self._module = resolve_block(unet, block)
        self._stored: Optional[torch.Tensor] = None
        self._cut = False
        #: Forward passes run, split by kind — lets tests and benchmarks see what work was done.
        self.counts = {"cut": 0, "full": 0}

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        self._stored = _first_tensor(output)
        if self._cut:
            raise _StopForward()

    def __call__(
        self, latent: torch.Tensor, t: int, emb: torch.Tensor, need_noise: bool = False
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Features of `latent` (`B x 4 x h x w`) at timestep `t` with text embedding `emb` (`1|B x 77 x D`).

        Returns `(features B x C x H x W float32 at out_size (or block size), noise prediction
        B x 4 x h x w float32 or None)`. With `need_noise=False` the forward stops after the block.
        Gradients flow to `latent` when autograd is enabled.
        """
        if emb.shape[0] != latent.shape[0]:
            emb = emb.expand(latent.shape[0], *emb.shape[1:])
        self._stored = None
        self._cut = not need_noise
        scale = grad_scale_for(self.unet.dtype) if torch.is_grad_enabled() and latent.requires_grad else 1.0
        if scale != 1.0:
            latent = _ScaleGrad.apply(latent, 1.0 / scale)  # unscale, in the latent's fp32
        handle = self._module.register_forward_hook(self._hook)
        noise: Optional[torch.Tensor] = None
        try:
            noise = predict_noise(self.unet, latent, t, emb)
            noise = noise.float()
            if scale != 1.0:  # scaled in fp32, so the gradient is large before it is cast to fp16
                noise = _ScaleGrad.apply(noise, scale)
        except _StopForward:
            pass
        finally:
            handle.remove()
            self._cut = False
        self.counts["full" if need_noise else "cut"] += 1
        feats = self._stored
        self._stored = None
        if feats is None:
            raise RuntimeError(f"block {self.block!r} did not run during the UNet forward")
        feats = feats.float()
        if scale != 1.0:
            feats = _ScaleGrad.apply(feats, scale)  # in fp32: the gradient is cast to fp16 already scaled
        if self.out_size is not None and tuple(feats.shape[-2:]) != tuple(self.out_size):
            feats = F.interpolate(feats, size=self.out_size, mode="bilinear", align_corners=False)
        return feats, noise
