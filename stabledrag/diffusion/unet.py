"""The one place that calls a diffusers `UNet2DConditionModel`: noise (or v / sample) prediction.

Inversion, denoising, the drag backend's one-step latent, the feature extractor and the
identity-LoRA trainer (`stabledrag.diffusion.lora.train`) all go through `predict_noise`, so input casting and
prompt-embedding batching are written once.
"""

from __future__ import annotations

from typing import Any, Optional

import torch


def predict_noise(unet: Any, latent: torch.Tensor, t: int | torch.Tensor, emb: torch.Tensor,
                  dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """The UNet's prediction for `latent` (`B x 4 x h x w`) at timestep `t` (an int or a `B` tensor)
    conditioned on prompt embeddings `emb` (`1 or B x L x D`, expanded to the batch).

    Inputs are cast to `dtype` (default: the UNet's weights' dtype; the LoRA trainer passes its
    autocast dtype). Returns `B x 4 x h x w` in that dtype (what the model predicts: epsilon,
    v or sample, per its scheduler's `prediction_type`). Gradients flow when autograd is enabled.
    """
    dtype = dtype or unet.dtype
    if emb.shape[0] != latent.shape[0]:
        emb = emb.expand(latent.shape[0], *emb.shape[1:])
    return unet(latent.to(dtype), t, encoder_hidden_states=emb.to(dtype)).sample
