"""Drag presets of the diffusion engine: our tuned settings and DragDiffusion's exactly.

Engine presets live with their engine (the core's `stabledrag.config` holds only `DragConfig`);
`stabledrag.diffusion.editor` and the CLI read them by method name.
"""

from __future__ import annotations

from typing import Any

from ..config import DragConfig


def diffusion_defaults(method: str = "stabledrag", **overrides: Any) -> DragConfig:
    """Diffusion drag settings for `method`.

    "dragdiffusion": `dragdiffusion_defaults` (DragDiffusion exactly). "stabledrag" / "baseline":
    *our tuned* settings, close to DragDiffusion's (features at H/2 x W/2, r_m 1, r_p 3, Adam lr 0.01,
    <= 80 steps, mask lambda 0.1, L1 tracking) but with sub-pixel points, a stop within 2 feature px
    and no motion loss for handles within 2 px (DragDiffusion: whole cells, stop when < 2, push
    when >= 2).
    """
    if method == "dragdiffusion":
        return dragdiffusion_defaults(**overrides)
    base = dict(method=method, r_m=1.0, r_p=3.0, patch_shape="square", lr=0.01, max_steps=80,
                stop_distance=2.0, lambda_mask=0.1, nn_metric="l1")
    base.update(overrides)
    return DragConfig(**base)


def dragdiffusion_defaults(**overrides: Any) -> DragConfig:
    """DragDiffusion's drag exactly (Shi et al. 2024, its `drag_utils.drag_diffusion_update` and UI
    defaults), in our conventions:

    - points: `round(p * sup_res / full_res)`, sup_res = half the image (point_snap "cell");
    - tracking: nearest neighbour, L1 over channels, square window r_p = 3, templates at p^0;
    - motion: square patch r_m = 1, loss `(2 r_m + 1)^2 * mean|.|` = sum over positions of the
      channel mean (reduction "sum"), skipped for a handle when `|t - p| < 2`; with whole-cell
      points the squared distance is an integer, so `>= 2` is `> 1.5`;
    - stop when every `|t - p| < 2`, i.e. `<= sqrt 2` on whole cells: stop_distance 1.5 gives both
      rules exactly (stop within it, no motion loss within it);
    - Adam lr 0.01, 80 steps (n_pix_step), mask term lambda 0.1 on the one-step-denoised latent.
    Engine settings (LoRA, inversion, feature block) are in `diffusion.editor.dragdiffusion_edit_config`.
    """
    base = dict(method="dragdiffusion", r_m=1.0, r_p=3.0, patch_shape="square", lr=0.01, max_steps=80,
                stop_distance=1.5, lambda_mask=0.1, nn_metric="l1",
                motion_reduction="sum", point_snap="cell")
    base.update(overrides)
    return DragConfig(**base)
