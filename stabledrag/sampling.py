"""Bilinear sampling of `C x H x W` feature maps at float `(x, y)` points.

Pixel centres sit at integer coordinates: (0, 0) is the top-left pixel, (W-1, H-1) the
bottom-right one. Points outside the map sample zeros and are flagged invalid.
"""

from __future__ import annotations

import math

import torch


def sample_features(feat: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Sample `feat` (`C x H x W`) bilinearly at `points` (`... x 2`, (x, y) pixels).

    Returns `... x C`. Differentiable w.r.t. `feat`. Corners outside the map contribute zeros
    (like `grid_sample(padding_mode="zeros", align_corners=True)`). Implemented as a gather of the
    four corners along the flattened `H*W` axis, which is much faster than `grid_sample` on CPU
    when C is large.
    """
    assert feat.ndim == 3, f"expected C x H x W, got {tuple(feat.shape)}"
    c, h, w = feat.shape
    lead = points.shape[:-1]
    pts = points.reshape(-1, 2).to(device=feat.device, dtype=torch.float32)
    x, y = pts[:, 0], pts[:, 1]
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    flat = feat.reshape(c, h * w)
    need_x1, need_y1 = bool((fx > 0).any()), bool((fy > 0).any())  # integer points need one corner
    corners = [(0, 0, (1 - fx) * (1 - fy))]
    if need_x1:
        corners.append((1, 0, fx * (1 - fy)))
    if need_y1:
        corners.append((0, 1, (1 - fx) * fy))
    if need_x1 and need_y1:
        corners.append((1, 1, fx * fy))
    idx, wgt = [], []
    for dx, dy, w_c in corners:
        xi, yi = x0 + dx, y0 + dy
        ok = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
        idx.append((yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long())
        wgt.append(w_c * ok)
    # One gather for all corners: its backward allocates one map-sized gradient buffer, not four.
    k = len(corners)
    gathered = flat.index_select(1, torch.cat(idx)).view(c, k, -1)
    out = (gathered * torch.stack(wgt).to(feat.dtype)[None]).sum(1)
    return out.transpose(0, 1).reshape(*lead, c)


def inside(points: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Boolean mask `...` of points (`... x 2`, (x, y)) inside a map of `size = (W, H)`."""
    w, h = size
    eps = 1e-4
    x, y = points[..., 0], points[..., 1]
    return (x >= -eps) & (x <= w - 1 + eps) & (y >= -eps) & (y <= h - 1 + eps)


def square_offsets(radius: float, step: float = 1.0, device=None) -> torch.Tensor:
    """Integer-lattice offsets `M x 2` (x, y) of the square `[-radius, radius]^2` with spacing `step`,
    always containing (0, 0), ordered row-major."""
    n = int(radius // step)
    r = torch.arange(-n, n + 1, device=device, dtype=torch.float32) * step
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def disk_offsets(radius: float, device=None) -> torch.Tensor:
    """Integer offsets `M x 2` (x, y) with norm <= radius (always contains (0, 0))."""
    sq = square_offsets(radius, 1.0, device)
    return sq[sq.norm(dim=1) <= radius + 1e-6]


def draggan_patch(handles: torch.Tensor, size: tuple[int, int], radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DragGAN's motion patch around each handle, as DragGAN's renderer builds it.

    DragGAN takes the integer pixels `(i, j)` (row, column) whose position on the grid
    `X = linspace(0, H, H)`, `Y = linspace(0, W, W)` (float32, so row i sits at `i H / (H - 1)`) is at
    distance `< radius` from the handle `(py, px)`. The patch is therefore not centred on the handle:
    it shifts towards the top-left by up to about 1 px near the far edge (3-4 pixels at radius 1).

    handles: `N x 2` (x, y) feature px (DragGAN's handles are whole pixels). size: `(W, H)` of the map.
    Returns `(positions N x M x 2` (x, y) whole pixels, `valid N x M` bool)`: the patch of handle n is
    `positions[n][valid[n]]`, in DragGAN's row-major order.
    """
    w, h = size
    dev = handles.device
    gx = torch.linspace(0, w, w, device=dev)  # DragGAN's Y (columns)
    gy = torch.linspace(0, h, h, device=dev)  # DragGAN's X (rows)
    k = int(math.ceil(radius)) + 2  # the grid runs ahead of the pixels by < 1 px
    base = torch.round(handles.float())
    pos = base[:, None, :] + square_offsets(k, 1.0, dev)[None]  # N x M x 2
    col, row = pos[..., 0].long(), pos[..., 1].long()
    ok = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    px, py = handles[:, 0:1].float(), handles[:, 1:2].float()
    dist = ((gy[row.clamp(0, h - 1)] - py) ** 2 + (gx[col.clamp(0, w - 1)] - px) ** 2) ** 0.5
    return pos, ok & (dist < radius)
