"""`DiffusionEditor`: one StableDrag-Diff edit from a PIL image, points and an optional mask.

    image -> prepare (RGB, model size) -> identity LoRA (cached) -> DDIM inversion (cached)
          -> drag on z_t (core `DragSession` with `DiffusionBackend`)
          -> DDIM denoise [source z_t, dragged z_t] with source self-attention K/V (RLC)
          -> decode -> resize back to the input size -> optional paste-back outside the mask

The editor keeps the pipeline, the LoRA that is applied to its UNet, and the last few inverted
latents with their step-0 features, keyed by a hash of (model, image pixels, prompt, LoRA and
inversion settings): a second drag on the same image and settings does no LoRA or inversion work.
Points are given in pixels of the image passed in; results are reported in the same pixels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image

from ..config import DragConfig
from .presets import diffusion_defaults
from ..drag import BackendOutput, DragResult, DragSession
from ..errors import UserError
from ..points import DragPoints, scale_points, snap_points, validate
from ..progress import CancelToken, Cancelled, ProgressCallback
from .attention import reference_attention, self_attention_layers
from ..tensors import tensor_to_uint8
from .backend import DiffusionBackend
from .features import resolve_block
from .lora import IdentityLoraConfig, active_lora, ensure_identity_lora, model_identity
from .images import model_resolution, prepare_image, size_multiple, to_rgb
from .inversion import (InversionConfig, ddim_denoise, ddim_invert, decode_latent, encode_image,
                        encode_prompt, make_schedulers)

log = logging.getLogger(__name__)

#: Inverted latents kept per editor (each is tiny; the LRU bound keeps a long UI session in check).
MAX_CACHED_INVERSIONS = 8


@dataclass
class DiffusionEditConfig:
    """Every setting of one StableDrag-Diff edit (recorded in the result).

    lora: identity-LoRA settings (steps 0 = no LoRA).
    inversion: DDIM steps and inversion strength (50 / 0.7 -> t = 681).
    feature_block: dotted UNet module whose output is the drag feature map ("up_blocks.2").
    drag: the core drag settings (`diffusion_defaults(method)`).
    rlc_start_block: first block whose self-attention uses the source K/V while denoising (with
      every block after it); None or "" turns reference-latent control off.
    paste_back: paste the input back outside the editable mask.
    seed: seeds the drag (the LoRA has its own `lora.seed`, DragDiffusion: 0 for LoRA, 42 for drag).
    resolution: long side of the working image (LoRA, inversion, drag); None = `lora.resolution`,
      else the model's native size (512 for SD 1.5).
    """

    lora: IdentityLoraConfig = field(default_factory=IdentityLoraConfig)
    inversion: InversionConfig = field(default_factory=InversionConfig)
    feature_block: str = "up_blocks.2"
    drag: DragConfig = field(default_factory=diffusion_defaults)
    rlc_start_block: Optional[str] = "up_blocks.2"
    paste_back: bool = False
    seed: int = 42
    resolution: Optional[int] = None

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-able dict of every setting."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["lora"] = _as_dict(self.lora)
        out["inversion"] = dataclasses.asdict(self.inversion)
        out["drag"] = self.drag.to_dict()
        return out

    def with_overrides(self, overrides: dict[str, Any]) -> "DiffusionEditConfig":
        """A copy with `overrides` applied. Keys: a drag setting ("tau", "r_p", ...), a top-level
        field ("paste_back", "feature_block", ...), or a dotted "lora.<field>" / "inversion.<field>"
        / "drag.<field>". Unknown keys or bad values raise UserError."""
        cfg = dataclasses.replace(self)
        drag_changes: dict[str, Any] = {}
        sub: dict[str, dict[str, Any]] = {"lora": {}, "inversion": {}}
        top = {f.name for f in dataclasses.fields(self)} - {"lora", "inversion", "drag"}
        drag_names = {f.name for f in dataclasses.fields(DragConfig)}
        for key, value in overrides.items():
            head, _, rest = key.partition(".")
            if rest and head in sub:
                sub[head][rest] = value
            elif rest and head == "drag":
                drag_changes[rest] = value
            elif not rest and key in top:
                setattr(cfg, key, value)
            elif not rest and key in drag_names:
                drag_changes[key] = value
            else:
                raise UserError(f"unknown setting {key!r}: use a drag setting ({', '.join(sorted(drag_names))}), "
                                f"one of {', '.join(sorted(top))}, or lora.<field> / inversion.<field>")
        try:
            if drag_changes:
                unknown = set(drag_changes) - drag_names
                if unknown:
                    raise ValueError(f"unknown drag settings {sorted(unknown)}")
                cfg.drag = cfg.drag.replace(**drag_changes)
            if sub["lora"]:
                cfg.lora = dataclasses.replace(cfg.lora, **sub["lora"])
            if sub["inversion"]:
                cfg.inversion = dataclasses.replace(cfg.inversion, **sub["inversion"])
        except (TypeError, ValueError) as e:
            raise UserError(f"bad setting: {e}") from None
        return cfg


def edit_config_for(method: str) -> DiffusionEditConfig:
    """The whole edit's settings for `method`: `diffusion_defaults(method)` for the drag; LoRA
    (rank 16, lr 5e-4, batch 4, 80 steps), inversion (50 DDIM steps, strength 0.7), features
    (`up_blocks.2` at H/2) and reference attention from `up_blocks.2` are DragDiffusion's for every
    method, so "dragdiffusion" differs from our tuned "baseline" only in the drag settings."""
    return DiffusionEditConfig(drag=diffusion_defaults(method))


def _as_dict(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return dataclasses.asdict(obj)


@dataclass
class DiffusionEditResult:
    """The outcome of `DiffusionEditor.edit`.

    image: the edited RGB image, the same size as the input.
    drag: the core `DragResult` (points in *model-size* image px, see `model_size`).
    timings: seconds per phase ("prepare", "lora", "inversion", "drag", "denoise", "decode", "total").
    cached: which phases were skipped thanks to the editor's cache ("lora", "inversion").
    report: JSON-able summary with points in input-image px.
    """

    image: Image.Image
    drag: DragResult
    timings: dict[str, float]
    config: DiffusionEditConfig
    cached: dict[str, bool]
    model_size: tuple[int, int]
    report: dict[str, Any]


@dataclass
class _Inverted:
    """What the cache keeps per (model, image, prompt, LoRA, inversion settings)."""

    latent: torch.Tensor  # z_t, 1 x 4 x h x w float32
    t: int
    emb: torch.Tensor  # 1 x 77 x D
    references: dict[tuple[str, bool], BackendOutput] = field(default_factory=dict)


def _hash(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Image.Image):
            h.update(f"{part.mode}{part.size}".encode())
            h.update(part.tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()[:32]


class DragStopped(Cancelled):
    """`Cancelled` during the drag phase, carrying what a later `edit(..., start_latent=...)` needs
    to continue: `latent` (the dragged z_t, `1 x 4 x h x w` float32 on the CPU), `handles` (`N x 2`
    tracked handles in input-image px) and `steps` (drag steps done)."""

    def __init__(self, latent: torch.Tensor, handles: torch.Tensor, steps: int) -> None:
        super().__init__("stopped during the drag")
        self.latent, self.handles, self.steps = latent, handles, steps


class DiffusionEditor:
    """Holds a Stable-Diffusion pipeline and runs StableDrag-Diff edits on it, caching LoRA and
    inversion per image.

    model: hub id, diffusers folder or single-file checkpoint (`loading.load_pipeline`); None = default.
    device / dtype: as `stabledrag.device.choose`; config_dir: configs for single-file checkpoints.
    pipeline: an already built pipeline (tests, benchmarks); `model` is then only a label.
    lora_cache_dir: where identity LoRAs are stored (None: `stabledrag.diffusion.lora.default_cache_dir()`).
    loras: the user's own LoRA files `(path, scale)`, fused into the model under the identity LoRA
      (`loading.load_pipeline(loras=...)`).
    """

    def __init__(self, model: Optional[str] = None, device: Optional[str] = None, dtype: Optional[Any] = None,
                 config_dir: Optional[str] = None, pipeline: Any = None,
                 lora_cache_dir: Optional[str] = None, loras: Any = ()) -> None:
        self.model = model
        self.loras = tuple(loras)
        self.device = device
        self.dtype = dtype
        self.config_dir = config_dir
        self.lora_cache_dir = lora_cache_dir
        self._pipe = pipeline
        self._given_pipeline = pipeline is not None
        self._active_lora: Optional[tuple[str, Optional[str]]] = None  # (key, LoRA path or None)
        self._inversions: OrderedDict[str, _Inverted] = OrderedDict()
        self._lock = threading.RLock()
        #: Work counters: LoRA preparations, LoRA trainings, inversions, edits, reused step-0 features.
        self.counters = {"lora": 0, "lora_trained": 0, "inversion": 0, "edits": 0, "reference_reused": 0}

    # -- model -------------------------------------------------------------------------------------
    @property
    def pipe(self) -> Any:
        """The pipeline, loaded on first use (raises `ModelUnavailableError` with what to do)."""
        if self._pipe is None:
            from .loading import load_pipeline

            self._pipe = load_pipeline(self.model, self.device, self.dtype, self.config_dir, loras=self.loras)
        return self._pipe

    @property
    def model_id(self) -> str:
        """A string identifying the weights (the loader's key, else a fingerprint of the weights)."""
        return model_identity(self.pipe)

    def recommended_overrides(self) -> dict[str, Any]:
        """The model's own recommended settings (`recommended.recommended_overrides`: its folder's
        `stabledrag_settings.json`); `{}` for a pipeline passed in without a model folder.
        Raises UserError for a malformed settings file."""
        from .recommended import recommended_overrides

        if self._given_pipeline and self.model is None:
            return {}
        return recommended_overrides(self.model)

    def default_config(self, method: str = "stabledrag", overrides: Optional[dict[str, Any]] = None
                       ) -> DiffusionEditConfig:
        """`edit_config_for(method)` with the model's recommended settings, then `overrides` (the
        user's, in `DiffusionEditConfig.with_overrides` keys) on top. Raises UserError for unknown
        keys or bad values (in either)."""
        return edit_config_for(method).with_overrides({**self.recommended_overrides(), **(overrides or {})})

    def clear_cache(self) -> None:
        """Forget cached inversions (the applied LoRA stays until another image needs another)."""
        self._inversions.clear()

    # -- the edit ----------------------------------------------------------------------------------
    def edit(
        self,
        image: Image.Image,
        points: DragPoints,
        mask: Optional[np.ndarray] = None,
        prompt: str = "",
        config: Optional[DiffusionEditConfig] = None,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None,
        preview_every: int = 0,
        start_latent: Optional[torch.Tensor] = None,
    ) -> DiffusionEditResult:
        """Drag `points` (handles -> targets, `(x, y)` px of `image`) on `image`.

        mask: `H x W` of the input image, True/non-zero = editable; None = all editable.
        preview_every: decode a live preview every k drag steps (sent with progress "drag").
        config: the edit's settings; None = `default_config()` (StableDrag with the model's own settings).
        Reports progress phases "lora", "inversion" (skipped when cached), "drag", "denoise".
        start_latent: continue a stopped edit: the drag starts from this z_t (`DragStopped.latent`,
        same image, prompt and settings) instead of the inverted one, with `points.handles` where the
        stopped drag left them; LoRA and inversion still come from the cache.
        Raises UserError for bad input, `Cancelled` when `cancel` fires (`DragStopped`, with the
        partial drag, when it fires during the drag phase).
        """
        with self._lock:  # one edit at a time: the pipeline and its LoRA are shared state
            return self._edit(image, points, mask, prompt, config or self.default_config(), progress, cancel,
                              preview_every, start_latent)

    def _edit(self, image: Image.Image, points: DragPoints, mask: Optional[np.ndarray], prompt: str,
              cfg: DiffusionEditConfig, progress: Optional[ProgressCallback], cancel: Optional[CancelToken],
              preview_every: int, start_latent: Optional[torch.Tensor] = None) -> DiffusionEditResult:
        timings: dict[str, float] = {}
        t_all = time.perf_counter()

        t0 = time.perf_counter()
        if not isinstance(image, Image.Image):
            raise UserError("The image must be a PIL image; open the file with PIL first.")
        if image.width < 1 or image.height < 1:
            raise UserError("The image is empty.")
        orig_size = (image.width, image.height)
        validate(points, orig_size)
        editable = self._check_mask(mask, orig_size)
        pipe = self.pipe
        try:
            resolve_block(pipe.unet, cfg.feature_block)
            if cfg.rlc_start_block and not self_attention_layers(pipe.unet, cfg.rlc_start_block):
                raise ValueError(f"no self-attention layers in {cfg.rlc_start_block!r} or after it")
        except ValueError as e:
            raise UserError(f"{e} (feature_block / rlc_start_block)") from None
        work = self._work_image(image, cfg)
        model_size = (work.width, work.height)
        work_points = points.scaled(orig_size, model_size)
        work_mask = None
        if editable is not None and not editable.all():
            m = Image.fromarray(editable.astype(np.uint8) * 255).resize(model_size, Image.Resampling.NEAREST)
            work_mask = np.asarray(m) > 127
            if not work_mask.any():
                raise UserError("The editable mask is too thin to survive resizing to the model size; "
                                "paint a larger area.")
        timings["prepare"] = time.perf_counter() - t0

        inverted, cached = self._source(work, prompt, cfg, progress, cancel, timings)

        t0 = time.perf_counter()
        if start_latent is not None and tuple(start_latent.shape) != tuple(inverted.latent.shape):
            raise UserError("The stopped drag does not fit this image or model; press Run to start over.")
        try:
            result = self._drag(pipe, inverted, model_size, work_points, work_mask, cfg, progress, cancel,
                                preview_every, start_latent)
        except DragStopped as e:
            e.handles = scale_points(e.handles.float(), model_size, orig_size)
            raise
        timings["drag"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        latent = self._denoise(pipe, inverted, result.state, cfg, progress, cancel)
        timings["denoise"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        with torch.no_grad():
            pixels = tensor_to_uint8(decode_latent(pipe.vae, latent))
        out = Image.fromarray(pixels, "RGB")
        if out.size != orig_size:
            out = out.resize(orig_size, Image.Resampling.LANCZOS)
        if cfg.paste_back and editable is not None:
            source = np.asarray(to_rgb(image))  # the same RGB conversion the model saw
            out = Image.fromarray(np.where(editable[..., None], np.asarray(out), source).astype(np.uint8), "RGB")
        timings["decode"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_all
        self.counters["edits"] += 1

        report = self._report(result, points, cfg, timings, cached, orig_size, model_size, inverted.t, prompt)
        return DiffusionEditResult(image=out, drag=result, timings=timings, config=cfg, cached=cached,
                                   model_size=model_size, report=report)

    def reconstruct(self, image: Image.Image, prompt: str = "", config: Optional[DiffusionEditConfig] = None
                    ) -> tuple[Image.Image, dict[str, float]]:
        """The edit's round trip without a drag: identity LoRA and DDIM inversion (both cached as
        in `edit`), then the same denoising (with reference-latent control when enabled) and
        decoding, at the input's size. What an edit gives back outside the dragged content; the
        measure of how faithful a model and its settings are (`bench fidelity`).
        Returns `(image, seconds per phase)`. Raises UserError for a non-PIL or empty image."""
        cfg = config or self.default_config()
        with self._lock:
            if not isinstance(image, Image.Image) or image.width < 1 or image.height < 1:
                raise UserError("The image must be a non-empty PIL image.")
            timings: dict[str, float] = {}
            pipe = self.pipe
            work = self._work_image(image, cfg)
            inverted, _ = self._source(work, prompt, cfg, None, None, timings)
            t0 = time.perf_counter()
            latent = self._denoise(pipe, inverted, inverted.latent, cfg, None, None)
            with torch.no_grad():
                out = Image.fromarray(tensor_to_uint8(decode_latent(pipe.vae, latent)), "RGB")
            timings["denoise"] = time.perf_counter() - t0
        if out.size != image.size:
            out = out.resize(image.size, Image.Resampling.LANCZOS)
        return out, timings

    # -- phases ------------------------------------------------------------------------------------
    def _work_image(self, image: Image.Image, cfg: DiffusionEditConfig) -> Image.Image:
        """`image` in RGB at the working size (the LoRA's / edit's resolution, else the model's)."""
        target = cfg.resolution or cfg.lora.resolution or model_resolution(self.pipe)
        work, _ = prepare_image(image, target, size_multiple(self.pipe))
        return work

    def _source(self, work: Image.Image, prompt: str, cfg: DiffusionEditConfig,
                progress: Optional[ProgressCallback], cancel: Optional[CancelToken],
                timings: dict[str, float]) -> tuple[_Inverted, dict[str, bool]]:
        """Identity LoRA and DDIM inversion of the working image, each from the cache when it can be:
        `(inverted, {"lora": cached?, "inversion": cached?})`; seconds added to `timings`."""
        lora_cfg = cfg.lora if cfg.resolution is None else cfg.lora.replace(resolution=cfg.resolution)
        lora_key = _hash(self.model_id, work, prompt, _as_dict(lora_cfg))
        inv_key = _hash(lora_key, dataclasses.asdict(cfg.inversion))
        cached = {"lora": self._lora_is_active(lora_key), "inversion": inv_key in self._inversions}
        t0 = time.perf_counter()
        self._ensure_lora(lora_key, work, prompt, lora_cfg, progress, cancel)
        timings["lora"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        inverted = self._ensure_inversion(inv_key, work, prompt, cfg, progress, cancel)
        timings["inversion"] = time.perf_counter() - t0
        return inverted, cached

    @staticmethod
    def _check_mask(mask: Optional[np.ndarray], size: tuple[int, int]) -> Optional[np.ndarray]:
        if mask is None:
            return None
        arr = np.asarray(mask)
        if arr.ndim == 3:  # an RGB(A) painting: any non-zero channel marks the pixel
            arr = arr.max(axis=2)
        if arr.ndim != 2:
            raise UserError(f"The mask must be an H x W image, got shape {arr.shape}.")
        if (arr.shape[1], arr.shape[0]) != size:
            raise UserError(f"The mask is {arr.shape[1]}x{arr.shape[0]} but the image is {size[0]}x{size[1]}; "
                            "draw the mask on the same image.")
        editable = arr > 0
        if not editable.any():
            raise UserError("The mask marks nothing as editable; paint the region that may change, or clear the mask.")
        return editable

    def _lora_is_active(self, key: str) -> bool:
        # The pipeline may be shared (the loader caches it per process): check that the LoRA this
        # editor applied is still the one on the UNet.
        return self._active_lora is not None and self._active_lora[0] == key \
            and active_lora(self.pipe) == self._active_lora[1]

    def _ensure_lora(self, key: str, work: Image.Image, prompt: str, lora_cfg: IdentityLoraConfig,
                     progress: Optional[ProgressCallback], cancel: Optional[CancelToken]) -> None:
        if self._lora_is_active(key):
            return
        self.counters["lora"] += 1
        self._active_lora = None
        path, trained = ensure_identity_lora(self.pipe, None, work, prompt, lora_cfg,
                                             cache_dir=self.lora_cache_dir, progress=progress, cancel=cancel)
        self.counters["lora_trained"] += int(bool(trained))
        self._active_lora = (key, active_lora(self.pipe) if path else None)

    def _ensure_inversion(self, key: str, work: Image.Image, prompt: str, cfg: DiffusionEditConfig,
                          progress: Optional[ProgressCallback], cancel: Optional[CancelToken]) -> _Inverted:
        if key in self._inversions:
            self._inversions.move_to_end(key)
            return self._inversions[key]
        pipe = self.pipe
        self.counters["inversion"] += 1
        emb = encode_prompt(pipe, prompt)
        clean = encode_image(pipe.vae, work)
        z_t, t = ddim_invert(pipe.unet, pipe.scheduler.config, clean, emb, cfg.inversion, progress, cancel)
        inverted = _Inverted(latent=z_t, t=t, emb=emb)
        self._inversions[key] = inverted
        while len(self._inversions) > MAX_CACHED_INVERSIONS:
            self._inversions.popitem(last=False)
        return inverted

    def _drag(self, pipe: Any, inv: _Inverted, model_size: tuple[int, int], points: DragPoints,
              mask: Optional[np.ndarray], cfg: DiffusionEditConfig, progress: Optional[ProgressCallback],
              cancel: Optional[CancelToken], preview_every: int,
              start_latent: Optional[torch.Tensor] = None) -> DragResult:
        scheduler, _ = make_schedulers(pipe.scheduler.config, cfg.inversion)
        ref_key = (cfg.feature_block, mask is not None)
        resuming = start_latent is not None
        latent = start_latent.to(inv.latent.device, inv.latent.dtype) if resuming else inv.latent
        backend = DiffusionBackend(pipe, scheduler, latent, inv.t, inv.emb, model_size, cfg.feature_block,
                                   mask=mask, preview_decode=preview_every > 0,
                                   reference=None if resuming else inv.references.get(ref_key))
        out_h, out_w = backend.extractor.out_size
        # DragDiffusion ("cell"): its points are whole cells of the H/2 x W/2 feature map.
        points = snap_points(points, cfg.drag.point_snap, model_size, (out_w, out_h))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            session = DragSession(backend, points, cfg.drag, progress, cancel, preview_every)
            if backend.reference_reused:
                self.counters["reference_reused"] += 1
            elif backend.reference is not None and not resuming:
                inv.references[ref_key] = _detached(backend.reference)
            result = session.run()
        if result.status == "cancelled":
            raise DragStopped(result.state.detach().float().cpu().clone(), result.handles.detach().cpu(),
                              result.steps)
        if result.status == "diverged":
            log.warning("drag diverged: %s", result.error)
        return result

    def _denoise(self, pipe: Any, inv: _Inverted, state: torch.Tensor, cfg: DiffusionEditConfig,
                 progress: Optional[ProgressCallback], cancel: Optional[CancelToken]) -> torch.Tensor:
        dragged = state.detach().float()
        if not cfg.rlc_start_block:
            return ddim_denoise(pipe.unet, pipe.scheduler.config, dragged, inv.emb, cfg.inversion, progress, cancel)
        batch = torch.cat([inv.latent.to(dragged.device), dragged], dim=0)
        with reference_attention(pipe.unet, cfg.rlc_start_block):
            out = ddim_denoise(pipe.unet, pipe.scheduler.config, batch, inv.emb, cfg.inversion, progress, cancel)
        return out[1:]

    def _report(self, result: DragResult, points: DragPoints, cfg: DiffusionEditConfig, timings: dict[str, float],
                cached: dict[str, bool], orig_size: tuple[int, int], model_size: tuple[int, int], t: int,
                prompt: str) -> dict[str, Any]:
        """JSON-able summary; every point in input-image px (the user's own points exactly)."""
        def back(pts: torch.Tensor) -> torch.Tensor:
            return scale_points(pts.float(), model_size, orig_size)

        def rounded(pts: torch.Tensor) -> list:
            return [[round(float(v), 3) for v in p] for p in pts.tolist()]

        trajectory = [points.handles.float()] + [back(step) for step in result.trajectory[1:]]
        handles = back(result.handles)
        drag = result.to_dict()
        drag.update(
            initial_handles=rounded(points.handles), handles=rounded(handles), targets=rounded(points.targets),
            final_distances=[round(float(d), 3) for d in (handles - points.targets.float()).norm(dim=1)],
            trajectory=[rounded(step) for step in trajectory],
        )
        return {
            "backend": "diffusion",
            "model": self.model_id,
            "prompt": prompt,
            "image_size": list(orig_size),
            "model_size": list(model_size),
            "timestep": t,
            "config": cfg.to_dict(),
            "cached": cached,
            "timings": timings,
            "drag": drag,
        }


def _detached(out: BackendOutput) -> BackendOutput:
    return BackendOutput(features=out.features.detach(),
                         extras={k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in out.extras.items()})
