"""`GanBackend`: the drag loop's `Backend` on a StyleGAN2 generator (DragGAN's setting).

- State: W+ (`1 x num_ws x w_dim`). Only the first `n_opt` (default 6) vectors are optimised, the
  rest stay at their starting values (DragGAN: layers up to the first 32x32 conv). In W mode a
  single `w` is optimised and repeated for those `n_opt` vectors.
- Features: the output of one synthesis block (b128 on >= 256 px models, see
  `GeneratorConfig.default_feature_res`), resized bilinearly to the image size: `C x H x W`, so
  feature pixels are image pixels. The forward pass stops at that block; the rest of the image
  is only rendered for previews, continuing from the stored block output.
- Mask loss (DragGAN's form): `mean((F - F0) * fixed)` over all `C x H x W` elements, where
  `fixed = ~mask` and `mask` (`H x W` bool) is True where the image may change. Skipped when
  the mask does not contain both regions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..drag import BackendOutput
from .networks import Generator, to_uint8

DEFAULT_OPT_WS = 6


@dataclass
class GanDragState:
    """The drag state of `GanBackend`: the optimised latent (the web app's per-tab `webapp.state.GanState` is
    another thing: what one user's GAN tab holds).

    w_opt: leaf `1 x K x w_dim` (K = n_opt in W+ mode, 1 in W mode), requires grad.
    w_fixed: `1 x (num_ws - n_opt) x w_dim`, constant.
    n_opt: how many leading ws `w_opt` drives.
    """

    w_opt: torch.Tensor
    w_fixed: torch.Tensor
    n_opt: int

    def ws(self) -> torch.Tensor:
        """The full W+ `1 x num_ws x w_dim` (differentiable w.r.t. `w_opt`)."""
        head = self.w_opt if self.w_opt.shape[1] == self.n_opt else self.w_opt.expand(-1, self.n_opt, -1)
        return torch.cat([head, self.w_fixed], dim=1)


def mask_tensor(mask: Any, size: tuple[int, int], device: torch.device) -> Optional[torch.Tensor]:
    """`H x W` editable-region mask (bool array/tensor, True = may change) -> bool tensor on
    `device`, or None. Raises ValueError when its shape is not `size = (W, H)`."""
    if mask is None:
        return None
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    if m.ndim == 3:  # H x W x C image: any channel set
        m = m.amax(dim=-1)
    w, h = size
    if tuple(m.shape) != (h, w):
        raise ValueError(f"the mask is {tuple(m.shape[::-1])} (W x H) but the image is {w} x {h}")
    return (m != 0).to(device)


class GanBackend:
    """The drag `Backend` for a StyleGAN2 generator, starting from the W+ latent `w_start`.

    generator: a `Generator` (its device is used throughout).
    w_start: `1 x num_ws x w_dim` (or `num_ws x w_dim`) starting latent.
    mask: optional `H x W` bool, True = editable; the loss keeps `~mask` fixed.
    w_plus: optimise W+ (True) or a single w (False). n_opt: leading ws optimised (<= num_ws).
    feature_res: block resolution used for features (None = the generator's default).
    noise_mode: "const" (default, as DragGAN), "none" or "random".
    """

    def __init__(self, generator: Generator, w_start: torch.Tensor, mask: Any = None, w_plus: bool = True,
                 n_opt: int = DEFAULT_OPT_WS, feature_res: Optional[int] = None, noise_mode: str = "const") -> None:
        self.G = generator
        self.device = generator.device
        res = generator.img_resolution
        self.image_size = (res, res)
        ws = w_start.detach().to(self.device, torch.float32)
        if ws.ndim == 2:
            ws = ws[None]
        if tuple(ws.shape) != (1, generator.num_ws, generator.w_dim):
            raise ValueError(f"w_start must be 1 x {generator.num_ws} x {generator.w_dim}, got {tuple(w_start.shape)}")
        self.w_start = ws
        self.w_plus = w_plus
        self.n_opt = max(1, min(int(n_opt), generator.num_ws))
        self.feature_res = feature_res if feature_res is not None else generator.config.drag_feature_res
        if self.feature_res not in generator.synthesis.block_resolutions:
            raise ValueError(f"feature_res must be one of {generator.synthesis.block_resolutions}")
        self.noise_mode = noise_mode
        mask_t = mask_tensor(mask, self.image_size, self.device)
        # DragGAN applies the mask term only when the mask has both editable and fixed pixels.
        if mask_t is not None and (bool(mask_t.all()) or not bool(mask_t.any())):
            mask_t = None
        self.fixed = None if mask_t is None else (~mask_t).to(torch.float32)[None]

    # -- Backend protocol ---------------------------------------------------------------------
    def initial_state(self) -> GanDragState:
        """A fresh `GanDragState` from `w_start` (the leading ws, or the first w in W mode)."""
        head = self.w_start[:, : self.n_opt] if self.w_plus else self.w_start[:, :1]
        return GanDragState(w_opt=head.clone().requires_grad_(True), w_fixed=self.w_start[:, self.n_opt:].clone(),
                        n_opt=self.n_opt)

    def parameters(self, state: GanDragState) -> list[torch.Tensor]:
        """`[state.w_opt]`."""
        return [state.w_opt]

    def features(self, state: GanDragState) -> BackendOutput:
        """Synthesis up to the drag block; its output resized to `C x H x W` (image size).
        extras: `ws` (detached), and the block's `x` / partial image for finishing previews."""
        ws = state.ws()
        syn = self.G.synthesis
        x, img, feats = syn.run_blocks(ws, None, None, 0, self.feature_res, noise_mode=self.noise_mode,
                                       feature_res=[self.feature_res], render=True)
        feat = feats[self.feature_res]
        w, h = self.image_size
        if feat.shape[-2:] != (h, w):
            feat = F.interpolate(feat, size=(h, w), mode="bilinear", align_corners=False)
        extras = {"ws": ws.detach(), "x": x.detach(), "img": None if img is None else img.detach()}
        return BackendOutput(features=feat[0], extras=extras)

    def mask_loss(self, state: GanDragState, out: BackendOutput, ref: BackendOutput) -> Optional[torch.Tensor]:
        """DragGAN's mask term `mean(|F - F0| * fixed)` (over all `C x H x W`), or None without a mask."""
        if self.fixed is None:
            return None
        return ((out.features - ref.features.detach()).abs() * self.fixed).mean()

    def preview(self, state: GanDragState, out: BackendOutput) -> np.ndarray:
        """The image of `out`'s latent, `H x W x 3` uint8 (finishes the synthesis from the drag block)."""
        with torch.no_grad():
            img = self.finish_image(out.extras["ws"], out.extras["x"], out.extras["img"])
        return to_uint8(img)

    # -- helpers ------------------------------------------------------------------------------
    def finish_image(self, ws: torch.Tensor, x: torch.Tensor, img: Optional[torch.Tensor]) -> torch.Tensor:
        """Run the blocks after the drag block from its output `x` / partial `img`; `1 x 3 x H x W`."""
        syn = self.G.synthesis
        _, img, _ = syn.run_blocks(ws, x, img, self.feature_res, syn.img_resolution, noise_mode=self.noise_mode)
        return img
