"""`GanEditor`: the step-wise StableDrag-GAN editing API used by the UI and the CLI.

    editor = GanEditor(load_generator(None))
    img = editor.generate(seed=3)                      # sets w0 and the current latent
    sess = editor.session(points, mask=editable)       # starts from the *current* latent
    for rec in sess.frames(every=5): show(sess.last_preview)   # stop iterating = pause
    editor.image()                                     # the current (dragged) latent's image
    editor.reset()                                     # back to the generated latent

The editor's current latent follows the latest session, so Stop + Start continues the edit.
Latents can be saved/loaded as `.npy` or `.pt` (`1 x num_ws x w_dim`, float32).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..config import DragConfig
from .presets import DRAGGAN_FEATURE_INDEX, gan_defaults
from ..device import resolve_device
from ..drag import DragSession
from ..errors import UserError
from ..points import DragPoints, snap_points, validate
from ..progress import CancelToken, ProgressCallback
from .backend import DEFAULT_OPT_WS, GanBackend, GanDragState
from .networks import Generator, to_uint8

log = logging.getLogger(__name__)


def draggan_feature_res(G: Generator) -> int:
    """The synthesis block DragGAN drags on: its `feature_idx = 5`, the sixth block (b128 on every
    model of 128 px and more: 4, 8, 16, 32, 64, 128, ...). On a smaller model, where DragGAN itself
    would fail, the last block (the image resolution)."""
    blocks = list(G.synthesis.block_resolutions)
    return int(blocks[min(DRAGGAN_FEATURE_INDEX, len(blocks) - 1)])


class GanEditor:
    """Generate an image by seed, drag points on it, reset.

    generator: a loaded `Generator` (moved to `device` when given).
    feature_res: drag block resolution (None = the generator's default for our methods, and
      DragGAN's block, `draggan_feature_res`, for method "draggan").
    n_opt: leading W+ vectors optimised (DragGAN: 6). noise_mode: "const" by default.
    recommended: the model's own recommended drag settings (`presets.recommended_overrides` of its
      folder; `DragConfig` fields), applied by `default_config` between the preset and the caller's
      overrides. None / {} = the presets as they are.
    """

    def __init__(self, generator: Generator, device: Any = None, feature_res: Optional[int] = None,
                 n_opt: int = DEFAULT_OPT_WS, noise_mode: str = "const",
                 recommended: Optional[dict[str, Any]] = None) -> None:
        if device is not None and resolve_device(device) != generator.device:
            # A copy, because generators are shared (load_generator caches them per device).
            generator = copy.deepcopy(generator).to(resolve_device(device))
        self.base_G = generator  # the loaded weights; `G` is this, or a PTI-tuned copy of it
        self.G = generator
        self.weight_delta: dict[str, torch.Tensor] = {}
        self.projection: Any = None  # the ProjectionResult or LatentFile being edited, if any
        self.device = generator.device
        self.feature_res = feature_res
        self.n_opt = n_opt
        self.noise_mode = noise_mode
        self.recommended: dict[str, Any] = dict(recommended or {})
        self.seed: Optional[int] = None
        self.truncation_psi: Optional[float] = None
        self._w0: Optional[torch.Tensor] = None
        self._w: Optional[torch.Tensor] = None
        self._state: Optional[GanDragState] = None

    @property
    def image_size(self) -> tuple[int, int]:
        """`(W, H)` of the generated images."""
        r = self.G.img_resolution
        return (r, r)

    # -- latents --------------------------------------------------------------------------------
    def generate(self, seed: int, truncation_psi: float = 0.7) -> np.ndarray:
        """Map `z = RandomState(seed).randn(1, z_dim)` to W+ with truncation `truncation_psi`; make it
        both the reference latent (`reset`) and the current one. Returns `H x W x 3` uint8."""
        if self.G.c_dim > 0:
            raise UserError("This generator is class-conditional, which the editor does not support yet.")
        self.set_weight_delta({})
        self.projection = None
        with torch.no_grad():
            ws = self.G.mapping(self.G.seed_to_z(seed), None, truncation_psi=truncation_psi)
        self.seed, self.truncation_psi = int(seed), float(truncation_psi)
        self.set_latent(ws, as_reference=True)
        return self.image()

    def set_weight_delta(self, delta: Optional[dict[str, torch.Tensor]]) -> None:
        """Edit with the loaded generator plus `delta` (`{state-dict name: tensor}`, PTI's tuned -
        original; empty/None = the loaded weights). Raises UserError when it does not fit the model."""
        from .projection import apply_weight_delta

        delta = dict(delta or {})
        self.G = apply_weight_delta(self.base_G, delta) if delta else self.base_G
        self.weight_delta = delta
        self._state = None

    def set_projection(self, result: Any) -> np.ndarray:
        """Edit a projected photo: its PTI weight delta (if any) and its W+ (the reset point).
        `result`: a `stabledrag.gan.projection.ProjectionResult` or a latent file's contents
        (`latent_file.LatentFile`): anything with `ws` and `weight_delta`. Returns the image
        `H x W x 3` uint8."""
        self.set_weight_delta(result.weight_delta)
        self.seed, self.truncation_psi = None, None
        self.set_latent(result.ws, as_reference=True)
        self.projection = result
        return self.image()

    def set_latent(self, ws: torch.Tensor, as_reference: bool = True) -> None:
        """Use `ws` as the current latent (and as the reset point when `as_reference`).

        Accepts `1 x num_ws x w_dim`, `num_ws x w_dim`, or a single w (`w_dim` / `1 x w_dim`),
        which is broadcast to every layer."""
        ws = torch.as_tensor(ws).detach().to(self.device, torch.float32)
        n, d = self.G.num_ws, self.G.w_dim
        if ws.shape[-1] != d:
            raise UserError(f"The latent has {ws.shape[-1]} values per vector but this model uses {d}.")
        ws = ws.reshape(-1, d)
        if ws.shape[0] == 1:
            ws = ws.expand(n, d)
        if ws.shape[0] != n:
            raise UserError(f"The latent has {ws.shape[0]} vectors but this model uses {n} (W+) or 1 (W).")
        ws = ws.reshape(1, n, d).clone()
        self._w = ws
        self._state = None
        if as_reference or self._w0 is None:
            self._w0 = ws.clone()

    def latent(self) -> torch.Tensor:
        """The current W+ latent, `1 x num_ws x w_dim` (detached)."""
        if self._state is not None:
            return self._state.ws().detach().clone()
        if self._w is None:
            raise UserError("No image yet: generate one from a seed first.")
        return self._w.clone()

    def load_latent(self, path: str | Path, as_reference: bool = True) -> np.ndarray:
        """Read a latent written by `save_latent` (or DragGAN/PTI: a tensor of ws) and render it.
        `.pt` files are read with `torch.load(weights_only=True)` (no code runs)."""
        path = Path(path)
        try:
            if path.suffix == ".npy":
                w = torch.from_numpy(np.load(path, allow_pickle=False))
            else:
                w = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # numpy/torch raise many error types for unreadable files
            raise UserError(f"Could not read a latent from {path}: {e}") from e
        if not isinstance(w, torch.Tensor):
            raise UserError(f"{path} does not hold a latent tensor.")
        self.set_latent(w, as_reference=as_reference)
        return self.image()

    # -- rendering ------------------------------------------------------------------------------
    def image(self) -> np.ndarray:
        """Render the current latent: `H x W x 3` uint8."""
        with torch.no_grad():
            img, _ = self.G.synthesis(self.latent(), noise_mode=self.noise_mode)
        return to_uint8(img)

    def reset(self) -> np.ndarray:
        """Go back to the generated (reference) latent; returns its image."""
        if self._w0 is None:
            raise UserError("No image yet: generate one from a seed first.")
        self._w = self._w0.clone()
        self._state = None
        return self.image()

    # -- dragging -------------------------------------------------------------------------------
    def default_config(self, method: str = "stabledrag", **overrides: Any) -> DragConfig:
        """`gan_defaults(method, image height)` ("draggan": DragGAN's own settings), then the model's
        `recommended` settings, then `overrides` (the caller's win). TypeError / ValueError for an
        unknown key or a bad value."""
        return gan_defaults(method, self.image_size[1], **{**self.recommended, **overrides})

    def feature_res_for(self, method: str) -> Optional[int]:
        """The drag block for `method`: the editor's `feature_res` if set, else DragGAN's block for
        "draggan" and the generator's default (None) otherwise."""
        if self.feature_res is None and method == "draggan":
            return draggan_feature_res(self.G)
        return self.feature_res

    def backend(self, mask: Any = None, w_plus: bool = True, method: str = "stabledrag") -> GanBackend:
        """A `GanBackend` starting from the current latent, on the drag block of `method`."""
        try:
            return GanBackend(self.G, self.latent(), mask=mask, w_plus=w_plus, n_opt=self.n_opt,
                              feature_res=self.feature_res_for(method), noise_mode=self.noise_mode)
        except ValueError as e:
            raise UserError(str(e)) from e

    def session(self, points: DragPoints, config: Optional[DragConfig] = None, mask: Any = None,
                w_plus: bool = True, progress: Optional[ProgressCallback] = None,
                cancel: Optional[CancelToken] = None, preview_every: int = 0) -> DragSession:
        """Start a drag of `points` (image px `(x, y)`) from the current latent.

        mask: `H x W` bool, True = editable (None = everything may change). The editor's current
        latent follows the session's state, so a later `session()` continues from where this one
        stopped. With `config.point_snap` "pixel" (DragGAN) the points are first rounded to whole
        pixels (features are at image size). Returns the `DragSession` (call `step()`,
        `frames(every)`, `run()`).
        """
        validate(points, self.image_size)
        cfg = config if config is not None else self.default_config()
        points = snap_points(points, cfg.point_snap, self.image_size, self.image_size)
        backend = self.backend(mask=mask, w_plus=w_plus, method=cfg.method)
        sess = DragSession(backend, points, cfg, progress=progress, cancel=cancel, preview_every=preview_every)
        self._state = sess.state
        return sess
