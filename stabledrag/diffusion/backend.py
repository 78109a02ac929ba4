"""`DiffusionBackend`: the StableDrag-Diff engine seen through the core `stabledrag.drag.Backend`.

State: the DDIM-inverted latent `z_t` (`1 x 4 x h x w`, float32 leaf) — the only thing optimised.
Features: the UNet block output at timestep t, bilinear to half the image size (`C x H/2 x W/2`).
Mask loss (DragDiffusion): L1 sum of the one-step-denoised latent `x_{t-1}` against its step-0
value, outside the editable mask (mask resized by nearest neighbour to the latent grid).
Preview: the VAE decode of the predicted `x_0`.

The UNet forward is cut after the feature block whenever the noise prediction is not needed
(no mask): see `features.FeatureExtractor`.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np
import torch

from ..drag import BackendOutput
from ..supervision import latent_mask_loss
from ..tensors import tensor_to_uint8
from .features import FeatureExtractor
from .inversion import decode_latent, one_step
from .unet import predict_noise

log = logging.getLogger(__name__)


class DiffusionBackend:
    """Drag backend over a Stable-Diffusion UNet at a fixed timestep.

    pipe: the diffusers pipeline (its `unet` and, for previews, `vae` are used; LoRA already applied).
    scheduler: a `DDIMScheduler` with its timesteps set (for the one-step denoise).
    latent: the inverted latent `1 x 4 x h x w`; t: its timestep; emb: prompt embedding `1 x 77 x D`.
    image_size: `(W, H)` of the model-size image the points refer to (h = H/8, w = W/8).
    feature_block: dotted UNet module name of the feature map.
    mask: `H x W` (or any size) bool/float, True/1 = editable; None = everything editable.
    preview_decode: decode previews through the VAE (False: `preview` returns None).
    cut_forward: stop the UNet after the feature block when no mask needs the noise prediction
      (False: always run the whole UNet — for benchmarks; the features are the same).
    reference: a cached step-0 output for `latent` (source features, x_{t-1}); reused instead of a
      forward when the loop asks for the features of the untouched initial state. When not given,
      the first such output computed is stored here, so an editor can cache it.
    """

    def __init__(
        self,
        pipe: Any,
        scheduler: Any,
        latent: torch.Tensor,
        t: int,
        emb: torch.Tensor,
        image_size: tuple[int, int],
        feature_block: str = "up_blocks.2",
        mask: Optional[np.ndarray | torch.Tensor] = None,
        preview_decode: bool = True,
        cut_forward: bool = True,
        reference: Optional[BackendOutput] = None,
    ) -> None:
        self.pipe = pipe
        self.scheduler = scheduler
        self.latent = latent.detach().float()
        self.t = int(t)
        self.emb = emb.detach()
        self.image_size = (int(image_size[0]), int(image_size[1]))
        w, h = self.image_size
        self.extractor = FeatureExtractor(pipe.unet, feature_block, out_size=(h // 2, w // 2))
        self.keep: Optional[torch.Tensor] = None
        if mask is not None:
            editable = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).float()
            if editable.ndim != 2:
                raise ValueError(f"mask must be H x W, got shape {tuple(editable.shape)}")
            self.keep = (1.0 - (editable > 0.5).float()).to(self.latent.device)
        self.preview_decode = preview_decode
        self.cut_forward = cut_forward
        self.reference = reference
        self._initial: Optional[torch.Tensor] = None
        self._initial_version = -1
        #: True once the cached reference replaced a forward.
        self.reference_reused = False

    @property
    def needs_noise(self) -> bool:
        """Whether each drag step needs the full UNet forward (a mask term uses `x_{t-1}`)."""
        return self.keep is not None or not self.cut_forward

    # -- Backend protocol ------------------------------------------------------------------------
    def initial_state(self) -> torch.Tensor:
        """A fresh float32 leaf copy of the inverted latent, `1 x 4 x h x w`."""
        state = self.latent.clone().requires_grad_(True)
        self._initial, self._initial_version = state, state._version
        return state

    def parameters(self, state: torch.Tensor) -> list[torch.Tensor]:
        """`[state]`: the latent is the only optimised tensor."""
        return [state]

    def _untouched(self, state: torch.Tensor) -> bool:
        # The optimiser updates the leaf in place, which bumps its version counter.
        return state is self._initial and state._version == self._initial_version

    def features(self, state: torch.Tensor) -> BackendOutput:
        """Features `C x H/2 x W/2` (float32, differentiable w.r.t. `state`); extras hold the noise
        prediction "eps", the one-step-denoised latent "x_prev" and predicted "x0" when a mask needs
        them (a cut forward otherwise)."""
        if (self.reference is not None and not torch.is_grad_enabled() and self._untouched(state)
                and (not self.needs_noise or "x_prev" in self.reference.extras)):
            self.reference_reused = True
            return self.reference
        feats, eps = self.extractor(state, self.t, self.emb, need_noise=self.needs_noise)
        extras: dict[str, Any] = {}
        if eps is not None:
            x_prev, x0 = one_step(self.scheduler, eps, self.t, state)
            extras.update(eps=eps, x_prev=x_prev, x0=x0)
        out = BackendOutput(features=feats[0], extras=extras)
        if self.reference is None and not torch.is_grad_enabled() and self._untouched(state):
            self.reference = out  # the step-0 output, for callers that cache it across drags
        return out

    def mask_loss(self, state: torch.Tensor, out: BackendOutput, ref: BackendOutput) -> Optional[torch.Tensor]:
        """DragDiffusion's mask term: sum |x_{t-1} - x_{t-1}^0| outside the editable mask; None
        without a mask."""
        if self.keep is None:
            return None
        return latent_mask_loss(out.extras["x_prev"], ref.extras["x_prev"], self.keep)

    @torch.no_grad()
    def preview(self, state: torch.Tensor, out: BackendOutput) -> Optional[np.ndarray]:
        """`H x W x 3` uint8 decode of the predicted clean latent, or None when disabled."""
        if not self.preview_decode:
            return None
        x0 = out.extras.get("x0")
        if x0 is None:
            eps = predict_noise(self.pipe.unet, state, self.t, self.emb).float()
            _, x0 = one_step(self.scheduler, eps, self.t, state)
        return tensor_to_uint8(decode_latent(self.pipe.vae, x0.detach()))
