"""The one image <-> tensor pair: RGB pixels and `[-1, 1]` tensors (the range SD's VAE and
StyleGAN2 work in).

`image_to_tensor` maps uint8 `v` to `v / 127.5 - 1`; `tensor_to_uint8` maps back with
`round((x + 1) * 127.5)` after clamping to `[-1, 1]`, so a round trip is exact. StyleGAN2's own
output rounding (`x * 127.5 + 128`, truncated, as NVlabs' `generate.py`) stays in
`stabledrag.gan.networks.to_uint8`: it is part of the bit-exact StyleGAN claim.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch


def image_to_tensor(image: Any, device: Optional[torch.device | str] = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """RGB PIL image (other modes go through `imageio.to_rgb`) or `H x W x 3` uint8 array ->
    `1 x 3 x H x W` tensor in [-1, 1] on `device` with `dtype`."""
    if hasattr(image, "convert"):
        from .imageio import to_rgb

        image = to_rgb(image) if image.mode != "RGB" else image
    arr = np.asarray(image, dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).unsqueeze(0) / 127.5 - 1.0
    return t.to(device=device, dtype=dtype)


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """`1 x 3 x H x W` (or `3 x H x W`) tensor in [-1, 1] -> `H x W x 3` uint8 (values clamped, rounded)."""
    if x.ndim == 4:
        x = x[0]
    x = ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round()
    return x.permute(1, 2, 0).to(torch.uint8).cpu().numpy()
