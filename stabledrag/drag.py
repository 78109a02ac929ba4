"""The drag loop (DragGAN, Pan et al. 2023 §3.2; StableDrag, Cui et al. 2024 §3), written once
against a small `Backend` protocol.

    state = backend.initial_state()
    F0 = backend.features(state).features       # C x H x W, detached -> templates
    tracker.fit(F0, handles)
    for step in range(max_steps):
        out = backend.features(state)
        if step > 0: handles, conf = tracker.track(out.features, handles)
        if all handles within stop_distance: stop
        loss = motion_loss(...) + lambda_mask * backend.mask_loss(state, out, ref)
        Adam step on backend.parameters(state)

Points enter and leave in *image* pixels `(x, y)`; inside the loop they live in feature pixels of
the backend's feature map. The core knows nothing of any engine: a backend only has to
implement `Backend`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Protocol, runtime_checkable

import torch

from .config import DragConfig
from .points import DragPoints, clamp_points, scale_points
from .progress import CancelToken, ProgressCallback, report
from .supervision import active_handles, motion_loss, template_patches
from .tracking import make_tracker

log = logging.getLogger(__name__)

#: A state is "good" only while it is finite AND its norm stays within MAX_STATE_GROWTH times the
#: initial norm (at least MIN_STATE_NORM_BOUND): a finite but huge latent (e.g. lr = 1e20) decodes
#: to a black or saturated image, so it is treated as divergence and the last good state is kept.
MAX_STATE_GROWTH = 10.0
MIN_STATE_NORM_BOUND = 1e3


@dataclass
class BackendOutput:
    """What one backend forward pass returns.

    features: `C x H x W` float32 feature map, differentiable w.r.t. the optimised parameters.
    extras: anything the backend needs later (mask-loss inputs, an image for previews, ...).
    """

    features: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """What the drag loop needs from an engine (GAN, diffusion, a test texture, ...).

    image_size: `(W, H)` of the image the user clicks on.
    """

    image_size: tuple[int, int]

    def initial_state(self) -> Any:
        """The optimisable state at step 0 (e.g. a latent or W+); holds the parameter leaves."""

    def parameters(self, state: Any) -> list[torch.Tensor]:
        """Leaf tensors of `state` (requires_grad=True) that the loop optimises in place."""

    def features(self, state: Any) -> BackendOutput:
        """Run the model on `state`; return the `C x H x W` feature map (with grad) and extras."""

    def mask_loss(self, state: Any, out: BackendOutput, ref: BackendOutput) -> Optional[torch.Tensor]:
        """Unweighted scalar loss keeping the region outside the editable mask unchanged, given the
        current output and the step-0 output `ref`; None when there is no mask."""

    def preview(self, state: Any, out: BackendOutput) -> Any:
        """An `H x W x 3` uint8 preview of `state` (may be None when cheap previews are impossible)."""


@dataclass
class DragStep:
    """One iteration's record: handles in image px `N x 2`, confidences `N`, loss terms."""

    step: int
    handles: torch.Tensor
    confidence: torch.Tensor
    loss: float
    motion_loss: float
    mask_loss: float
    template_used: list[bool]
    seconds: float
    template_mix: list[float] = field(default_factory=list)
    pushed: bool = True


@dataclass
class DragResult:
    """The outcome of a drag, carrying the config that produced it.

    status: "reached" | "max_steps" | "cancelled" | "diverged".
    handles / targets / initial_handles: `N x 2` (x, y) in image pixels.
    trajectory: `(S+1) x N x 2` handle positions in image px, from the start to the end.
    confidences: `S x N` tracker confidence per step (1.0 at step 0).
    losses: total loss per optimiser step. timings: seconds per phase.
    template_used: per step and handle, whether its template entered the motion loss;
    template_mix: the template's share of the source (0 = current patch, 1 = template).
    pushed_steps: optimiser steps in which at least one handle had a motion loss.
    state: the backend state at the end (the last good one if the drag diverged).
    "reached" is the tracker's belief (every tracked handle within `config.stop_distance` feature
    px of its target), not a measurement of the image.
    """

    config: DragConfig
    status: str
    steps: int
    initial_handles: torch.Tensor
    handles: torch.Tensor
    targets: torch.Tensor
    trajectory: torch.Tensor
    confidences: torch.Tensor
    losses: list[float]
    template_used: list[list[bool]]
    timings: dict[str, float]
    state: Any = None
    error: Optional[str] = None
    template_mix: list[list[float]] = field(default_factory=list)
    pushed_steps: int = 0

    @property
    def distances(self) -> torch.Tensor:
        """`N` distances from final handles to targets, image px."""
        return (self.handles - self.targets).norm(dim=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (everything but the state)."""
        return {
            "config": self.config.to_dict(),
            "status": self.status,
            "steps": self.steps,
            "error": self.error,
            "initial_handles": self.initial_handles.tolist(),
            "handles": self.handles.tolist(),
            "targets": self.targets.tolist(),
            "final_distances": self.distances.tolist(),
            "trajectory": self.trajectory.tolist(),
            "confidences": self.confidences.tolist(),
            "losses": self.losses,
            "template_used": self.template_used,
            "template_mix": self.template_mix,
            "pushed_steps": self.pushed_steps,
            "timings": self.timings,
        }


class DragSession:
    """A drag in progress: call `step()` repeatedly, or `run()`, or iterate `frames(every=k)`.

    The session can be paused (stop iterating) and resumed (iterate again): optimiser state,
    handles and the tracker are kept. Points are given in image pixels.
    """

    def __init__(
        self,
        backend: Backend,
        points: DragPoints,
        config: DragConfig,
        progress: Optional[ProgressCallback] = None,
        cancel: Optional[CancelToken] = None,
        preview_every: int = 0,
    ) -> None:
        self.backend = backend
        self.config = config
        self.progress = progress
        self.cancel = cancel
        self.preview_every = preview_every
        self.status = "running"
        self.error: Optional[str] = None
        self.steps_done = 0
        self._timings = {"fit": 0.0, "track": 0.0, "forward": 0.0, "backward": 0.0, "total": 0.0}

        t0 = time.perf_counter()
        self.state = backend.initial_state()
        self._params = list(backend.parameters(self.state))
        if not self._params:
            raise ValueError("backend.parameters(state) returned nothing to optimise")
        with torch.no_grad():
            self._ref = backend.features(self.state)
        f0 = self._ref.features.detach()
        if f0.ndim != 3:
            raise ValueError(f"backend features must be C x H x W, got shape {tuple(f0.shape)}")
        self._f0 = f0
        self.feature_size = (int(f0.shape[2]), int(f0.shape[1]))  # (W, H)
        self.image_size = tuple(backend.image_size)
        self.targets = points.targets.float()
        self.initial_handles = points.handles.float()
        self._p0 = self._to_feat(self.initial_handles)
        self._t = self._to_feat(self.targets)
        self._handles = self._p0.clone()
        self._conf = torch.ones(len(points))
        # confident supervision's template patches (N x P x C), refreshed while tracking is confident
        self._template = template_patches(f0, self._p0, config.r_m, config.patch_shape)
        self._optim = torch.optim.Adam(self._params, lr=config.lr)
        self._good = [p.detach().clone() for p in self._params]
        self._norm_bound = [max(MAX_STATE_GROWTH * float(p.detach().norm()), MIN_STATE_NORM_BOUND)
                            for p in self._params]

        t1 = time.perf_counter()
        self.tracker = make_tracker(config)
        self.tracker.fit(f0, self._p0)
        self._timings["fit"] = time.perf_counter() - t1
        self._timings["total"] += time.perf_counter() - t0

        self.trajectory = [self.initial_handles.clone()]
        self.confidences: list[torch.Tensor] = []
        self.losses: list[float] = []
        self.template_used: list[list[bool]] = []
        self.template_mix: list[list[float]] = []
        self.pushed_steps = 0
        self.last_preview: Any = None

    # -- coordinates -------------------------------------------------------------------------
    def _to_feat(self, pts: torch.Tensor) -> torch.Tensor:
        return scale_points(pts, self.image_size, self.feature_size)

    def _to_image(self, pts: torch.Tensor) -> torch.Tensor:
        return scale_points(pts, self.feature_size, self.image_size)

    @property
    def handles(self) -> torch.Tensor:
        """Current handles, `N x 2` (x, y) image px."""
        return self._to_image(self._handles)

    @property
    def done(self) -> bool:
        """True once the drag reached, ran out of steps, was cancelled or diverged."""
        return self.status != "running"

    def _reached(self) -> bool:
        return bool(((self._handles - self._t).norm(dim=1) <= self.config.stop_distance).all())

    # -- one iteration -----------------------------------------------------------------------
    def step(self) -> Optional[DragStep]:
        """Run one drag iteration. Returns its record, or None when the session is done."""
        if self.done:
            return None
        if self.cancel is not None and self.cancel.cancelled:
            self.status = "cancelled"
            return None
        if self.steps_done >= self.config.max_steps:
            self._finish("max_steps")
            return None
        cfg = self.config
        t_step = time.perf_counter()

        t0 = time.perf_counter()
        out = self.backend.features(self.state)
        self._timings["forward"] += time.perf_counter() - t0
        feats = out.features
        if self.steps_done > 0:
            t0 = time.perf_counter()
            with torch.no_grad():
                handles, conf = self.tracker.track(feats.detach(), self._handles)
            self._handles = clamp_points(handles, self.feature_size)
            self._conf = conf.detach().float().cpu()
            self._timings["track"] += time.perf_counter() - t0
            self.trajectory.append(self.handles)
        if self._reached():
            self.status = "reached"
            self._emit(out, force_preview=True)
            return None

        mix = self._template_mix(feats)
        active = active_handles(self._handles, self._t, cfg.push_distance)
        t0 = time.perf_counter()
        m_loss = motion_loss(
            feats, self._handles, self._t, radius=cfg.r_m, shape=cfg.patch_shape,
            template=self._template if mix is not None else None, template_mix=mix,
            template_weight=cfg.template_weight, min_distance=cfg.push_distance,
            reduction=cfg.motion_reduction,
        )
        k_loss = self.backend.mask_loss(self.state, out, self._ref) if cfg.lambda_mask > 0 else None
        loss = m_loss if k_loss is None else m_loss + cfg.lambda_mask * k_loss
        if not torch.isfinite(loss):
            return self._diverge(f"the loss became {loss.item()} at step {self.steps_done}")
        self._optim.zero_grad(set_to_none=True)
        loss.backward()
        self._optim.step()
        self._timings["backward"] += time.perf_counter() - t0
        if not all(torch.isfinite(p).all() for p in self._params):
            return self._diverge(f"the optimised state became non-finite at step {self.steps_done}")
        with torch.no_grad():
            grown = [float(p.norm()) > b for p, b in zip(self._params, self._norm_bound)]
        if any(grown):
            return self._diverge(f"the optimised state grew more than {MAX_STATE_GROWTH:g} times its initial size "
                                 f"at step {self.steps_done}")
        with torch.no_grad():
            for g, p in zip(self._good, self._params):
                g.copy_(p)

        self.steps_done += 1
        pushed = bool(active.any())
        self.pushed_steps += int(pushed)
        mix_list = [0.0] * len(self._conf) if mix is None else [round(float(m), 4) for m in mix]
        record = DragStep(
            step=self.steps_done, handles=self.handles, confidence=self._conf.clone(), loss=float(loss.detach()),
            motion_loss=float(m_loss.detach()), mask_loss=float(k_loss.detach()) if k_loss is not None else 0.0,
            template_used=[m > 0 for m in mix_list], seconds=time.perf_counter() - t_step,
            template_mix=mix_list, pushed=pushed,
        )
        self.confidences.append(record.confidence)
        self.losses.append(record.loss)
        self.template_used.append(record.template_used)
        self.template_mix.append(record.template_mix)
        self._timings["total"] += record.seconds
        self._emit(out, record=record)
        return record

    def _template_mix(self, feats: torch.Tensor) -> Optional[torch.Tensor]:
        """Confident supervision's template share per handle (`N`, in [0, 1]), or None for plain
        supervision. With `template_refresh`, handles tracked with confidence >= tau first take
        their current patch as the new template (what is pushed when confidence drops later is
        the last content the tracker was sure of). Share: `1[conf < tau]` (the paper), or with
        `template_blend` `clamp(1 - conf / tau, 0, 1)`, so a handle whose look changes as it moves
        is still pushed by mostly its current content and does not stall."""
        cfg = self.config
        if cfg.supervision != "confident":
            return None
        conf = self._conf.to(feats.device)
        if cfg.template_refresh and self.steps_done > 0:
            sure = conf >= cfg.tau
            if bool(sure.any()):
                fresh = template_patches(feats, self._handles, cfg.r_m, cfg.patch_shape)
                self._template = torch.where(sure[:, None, None], fresh, self._template)
        if cfg.template_blend:
            return (1 - conf / max(cfg.tau, 1e-6)).clamp(0, 1)
        return (conf < cfg.tau).float()

    def _emit(self, out: BackendOutput, record: Optional[DragStep] = None, force_preview: bool = False) -> None:
        preview = None
        if self.preview_every and (force_preview or self.steps_done % self.preview_every == 0):
            with torch.no_grad():
                preview = self.backend.preview(self.state, out)
            self.last_preview = preview
        info: dict[str, Any] = {"handles": self.handles.tolist(), "confidence": self._conf.tolist()}
        if record is not None:
            info.update(loss=round(record.loss, 5), template_used=record.template_used,
                        template_mix=record.template_mix)
        report(self.progress, "drag", self.steps_done, self.config.max_steps, info, preview)

    def _diverge(self, why: str) -> None:
        with torch.no_grad():
            for g, p in zip(self._good, self._params):
                p.copy_(g)
        self.status = "diverged"
        self.error = f"The drag stopped because {why}; the last good state was kept. Try a smaller learning rate."
        log.warning(self.error)
        return None

    def _finish(self, status: str) -> None:
        """Re-track on the final state so the reported handles match it, then set `status`."""
        t0 = time.perf_counter()
        with torch.no_grad():
            out = self.backend.features(self.state)
            handles, conf = self.tracker.track(out.features, self._handles)
        self._handles = clamp_points(handles, self.feature_size)
        self._conf = conf.float().cpu()
        self.trajectory.append(self.handles)
        self._timings["track"] += time.perf_counter() - t0
        self.status = "reached" if self._reached() else status
        self._emit(out, force_preview=True)

    # -- drivers -------------------------------------------------------------------------------
    def frames(self, every: int = 1) -> Iterator[DragStep]:
        """Yield a record every `every` steps (and the last one) until done or the consumer stops.

        Stopping iteration pauses the session; calling `frames` again resumes it.
        """
        last: Optional[DragStep] = None
        while not self.done:
            rec = self.step()
            if rec is None:
                break
            last = rec
            if rec.step % every == 0:
                yield rec
                last = None
        if last is not None:
            yield last

    def run(self) -> DragResult:
        """Iterate until done; return the result."""
        for _ in self.frames(every=1):
            pass
        return self.result()

    def result(self) -> DragResult:
        """The result so far (a paused session reports status "running")."""
        conf = torch.stack(self.confidences) if self.confidences else torch.ones(0, len(self.targets))
        timings = dict(self._timings)
        timings["per_step"] = timings["total"] / max(1, self.steps_done)
        return DragResult(
            config=self.config, status=self.status, steps=self.steps_done,
            initial_handles=self.initial_handles, handles=self.handles, targets=self.targets,
            trajectory=torch.stack(self.trajectory), confidences=conf, losses=list(self.losses),
            template_used=list(self.template_used), timings=timings, state=self.state, error=self.error,
            template_mix=list(self.template_mix), pushed_steps=self.pushed_steps,
        )


def drag(
    backend: Backend,
    points: DragPoints,
    config: DragConfig,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    preview_every: int = 0,
) -> DragResult:
    """Run a whole drag: move `points.handles` (image px) onto `points.targets` on `backend`.

    Returns a `DragResult` (status "reached", "max_steps", "cancelled" or "diverged"); the backend's
    parameters hold the final (or last good) state.
    """
    return DragSession(backend, points, config, progress, cancel, preview_every).run()
