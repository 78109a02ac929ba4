"""Drag presets of the GAN engine: our tuned settings and DragGAN's exactly.

Engine presets live with their engine (the core's `stabledrag.config` holds only `DragConfig`);
`stabledrag.gan.editor` and the CLI read them by method name. A model folder may also carry its own
recommended settings (`stabledrag_settings.json`, read by `recommended_overrides`), applied between
the preset and the user's settings: preset < model < user.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from ..config import DragConfig


#: StableDrag stops at this share of the baseline's stop distance: its tracker (sub-pixel, plateau
#: centroid, context ring) stays within ~0.2-0.5 px of an eye over a drag where nearest neighbour is
#: ~1 px off, so it can stop closer. On the toy GAN (`bench toy --backend gan`, 40 cases, r_m 3) it
#: lowers StableDrag's mean miss from 0.87 to 0.69 px, while the baseline at 0.5 px does worse than
#: at 1 px (README, "Toy-faces drag benchmark").
STABLEDRAG_STOP_SHARE = 0.5


def gan_defaults(method: str = "stabledrag", image_height: int = 512, **overrides: Any) -> DragConfig:
    """GAN drag settings for `method` on features at full image size (`image_height` px).

    "draggan": `draggan_defaults` (DragGAN exactly). "stabledrag" / "baseline": *our tuned*
    settings (they differ from DragGAN's): r_m 3 and r_p 12 scaled by H/512 (at least 1 and 2),
    centred disk patch, Adam lr 2e-3, stop within max(2 H/512, 1) px (StableDrag: half that,
    see `STABLEDRAG_STOP_SHARE`), mask lambda 20, L2 tracking, sub-pixel points; the GAN editor drags
    on b64 of a 128 px model (DragGAN: b128).
    """
    if method == "draggan":
        return draggan_defaults(image_height, **overrides)
    s = image_height / 512.0
    stop = max(2.0 * s, 1.0) * (STABLEDRAG_STOP_SHARE if method == "stabledrag" else 1.0)
    base = dict(method=method, r_m=float(max(1, round(3 * s))), r_p=float(max(2, round(12 * s))),
                patch_shape="disk", lr=2e-3, max_steps=300, stop_distance=stop,
                lambda_mask=20.0, nn_metric="l2",
                motion_reduction="mean")
    base.update(overrides)
    return DragConfig(**base)


#: DragGAN's UI defaults (`r1`, `r2` at 512 px, lambda_mask, lr) and its feature index.
DRAGGAN_R1, DRAGGAN_R2, DRAGGAN_LAMBDA_MASK, DRAGGAN_LR, DRAGGAN_FEATURE_INDEX = 3, 12, 20.0, 1e-3, 5


def draggan_defaults(image_height: int = 512, **overrides: Any) -> DragConfig:
    """DragGAN's drag exactly (Pan et al. 2023, its `renderer._render_drag_impl` and UI defaults),
    for an `image_height` px model, in our conventions:

    - features: synthesis block `feature_idx = 5` (b128 on 128-1024 px models), bilinear
      (align_corners False) to H x W (the GAN editor picks the block: `gan.editor.draggan_feature_res`);
    - points: whole pixels (point_snap "pixel");
    - tracking: nearest neighbour, L2 over channels, square window r_p = round(12 H / 512);
    - motion: DragGAN's grid patch (patch_shape "draggan") of radius r_m = round(3 H / 512)
      (at least 1: below 86 px DragGAN's own patch would be empty), loss = mean |.| over patch
      and channels (reduction "mean"), summed over handles;
    - stop when every |t - p| <= max(2 H / 512, 2); every handle with |t - p| > 1 is pushed while
      any is farther than that (supervise_min_distance 1);
    - Adam lr 1e-3 on the first 6 W+ vectors, mask term lambda 20 (mean |F - F0| on the fixed part);
    - max_steps 300 is ours (DragGAN runs until stopped).
    Python's `round` (half to even) as in DragGAN.
    """
    h = float(image_height)
    base = dict(method="draggan", r_m=float(max(1, round(DRAGGAN_R1 / 512 * h))),
                r_p=float(max(1, round(DRAGGAN_R2 / 512 * h))), patch_shape="draggan", lr=DRAGGAN_LR,
                max_steps=300, stop_distance=max(2.0 / 512 * h, 2.0), supervise_min_distance=1.0,
                lambda_mask=DRAGGAN_LAMBDA_MASK, nn_metric="l2", motion_reduction="mean", point_snap="pixel")
    base.update(overrides)
    return DragConfig(**base)


def settings_folder(model: Optional[str | os.PathLike] = None) -> str | os.PathLike:
    """Where GAN `model`'s `stabledrag_settings.json` would be: the model itself (a native folder;
    a single file has none), or the bundled toy GAN's folder for None / ""."""
    from ..paths import TOY_GAN_DIR

    return TOY_GAN_DIR if model is None or str(model) == "" else model


def recommended_overrides(model: Optional[str | os.PathLike] = None, photo: bool = False) -> dict[str, Any]:
    """The drag settings recommended for the GAN `model` (a native model folder; None = the
    bundled toy GAN, `assets/models/toy_gan/`): its `stabledrag_settings.json` `edit` entry
    (`stabledrag.model_settings`), `{}` when the model is a single file (`.pkl`, `.safetensors`) or
    its folder has no such file. With `photo`, the file's `edit_photo` entry over it: the settings
    for a photo projected into the model (a PTI-tuned generator moves its parts more slowly, so
    e.g. more steps). Keys are `DragConfig` fields ("r_p", "lr", "max_steps", ...; radii and
    distances in image px of the model), values as `gan_defaults`' overrides.

    Raises UserError naming the file when it is malformed, names a key that is not a
    `DragConfig` field (or names "method"), or gives a value `DragConfig` or the limits refuse."""
    from ..errors import UserError
    from ..model_settings import folder_overrides, settings_path

    folder = settings_folder(model)
    rec = folder_overrides(folder)
    if photo:
        rec = {**rec, **folder_overrides(folder, "edit_photo")}
    known = {f.name for f in dataclasses.fields(DragConfig)} - {"method"}
    unknown = sorted(set(rec) - known)
    if unknown:
        raise UserError(f"{os.fspath(settings_path(folder))!r}: {', '.join(map(repr, unknown))} "
                        f"{'is not a drag setting' if len(unknown) == 1 else 'are not drag settings'} "
                        "(keys of the GAN engine's settings are DragConfig fields such as r_p, lr, max_steps)")
    if rec:  # values checked here, so every caller (CLI, benches, app) names the file for a bad one
        from ..limits import checked_config

        checked_config(lambda: gan_defaults("stabledrag", **rec), repr(os.fspath(settings_path(folder))))
    return rec
