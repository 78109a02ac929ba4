"""Point trackers: where did each handle go after an optimisation step?

Both trackers share one interface:
    tracker.fit(F0, handles)                 # once, on the step-0 feature map
    handles, confidence = tracker.track(F, handles)
with `F` a `C x H x W` feature map and `handles` an `N x 2` float tensor of `(x, y)` in feature
pixels. `confidence` is `N` values in [0, 1].

- `NearestNeighbourTracker` (DragGAN / DragDiffusion): argmin over the `(2r+1)^2` search window of the
  distance between the feature there and the handle's template `f_i = F0(p_i^0)`.
- `DiscriminativeTracker` (StableDrag): per handle a 1x1 filter `z_i` over the C channels, initialised
  from the template and learned once on F0 by weighted ridge regression to answer a Gaussian peak at
  the handle and ~0 elsewhere, with look-alike positions (high template similarity away from the
  handle) weighted up so the filter learns what separates the handle from its distractors. At
  tracking time the filter response is fused with the nearest-neighbour similarity (weighted up for
  handles on an outline or band, where the filter answers alike along the ridge); the calibrated
  peak response (times a peak-to-sidelobe margin) is the confidence. The winning position is
  refined to sub-pixel precision (`subpixel_peak`), so a handle follows a part that moves by
  fractions of a pixel per step instead of jumping between whole pixels. A handle inside a flat part
  (an eye) is also matched by the ring of features around it (its context), which sees the part's
  outline where its 1 x 1 features all look alike.

Everything is vectorised over handles and window positions.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

from .config import DragConfig

from .sampling import inside, sample_features, square_offsets


# Added to both margins in the confidence ratio (see DiscriminativeTracker.track).
MARGIN_SOFTENING = 0.25
# Directions in which the handle's own similarity fall-off is read (label width).
SECTORS = 8
# How much more template-like than the handle's own fall-off a position must be to count as a
# look-alike (cosine units).
LOOKALIKE_EXCESS = 0.3
# Similarity (cosine) that joins a position to the handle's own extent (see _ridge_from_centre).
RIDGE_COSINE = 0.95
# Ridge share (see DiscriminativeTracker._ridge_share): positions this far (feature px) or farther
# from the handle whose filter response reaches this fraction of the trained peak.
RIDGE_SHARE_MIN_PX = 1.5
RIDGE_SHARE_LEVEL = 0.9
# Handles whose ridge share is above this keep their sub-pixel peak instead of the plateau centroid.
PLATEAU_MAX_RIDGE_SHARE = 0.1
# Points of a handle's context ring (see DiscriminativeTracker._fit_context): centre + 2 x 8.
CONTEXT_POINTS = 17
# At most this many feature channels are compared on a context ring (see _fit_context).
CONTEXT_CHANNELS = 64


class Tracker(Protocol):
    """The tracker interface (see module docstring)."""

    radius: float

    def fit(self, f0: torch.Tensor, handles: torch.Tensor) -> None:
        """Learn whatever is needed from the step-0 map `f0` (`C x H x W`) at `handles` (`N x 2`)."""

    def track(self, feat: torch.Tensor, handles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return new handles (`N x 2`, (x, y)) and confidences (`N`) on map `feat`."""


def _window(handles: torch.Tensor, radius: float, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Search-window positions `N x M x 2` around `handles` and their validity `N x M`."""
    offsets = square_offsets(radius, 1.0, device=handles.device)
    pos = handles[:, None, :] + offsets[None]
    return pos, inside(pos, size)


def _side(radius: float) -> int:
    """Side of the square search lattice of `radius` (`sampling.square_offsets`, step 1)."""
    return 2 * int(radius // 1.0) + 1


def _distance(feats: torch.Tensor, templates: torch.Tensor, metric: str) -> torch.Tensor:
    """Distances `N x M` between `feats` (`N x M x C`) and `templates` (`N x C`)."""
    diff = feats - templates[:, None, :]
    return diff.abs().sum(-1) if metric == "l1" else diff.norm(dim=-1)


def subpixel_peak(score: torch.Tensor, idx: torch.Tensor, side: int) -> torch.Tensor:
    """Sub-pixel offset `N x 2` (x, y), each in [-0.5, 0.5] feature px, of the peak of `score`.

    score: `N x M` values on the square row-major lattice of `side x side` positions spaced 1 apart
    (`sampling.square_offsets`), `-inf` where invalid. idx: `N` argmax indices into M.
    Per axis, a parabola through the peak and its two lattice neighbours gives the vertex
    `0.5 (s[-1] - s[+1]) / (s[-1] - 2 s[0] + s[+1])` (the standard three-point peak interpolation of
    correlation trackers); an axis whose neighbour is missing (window edge, invalid) or whose
    curvature is not negative gets 0. The argmax alone moves a handle only in whole feature
    pixels, so a part moving by fractions of a pixel per step is seen late, in jumps.
    """
    n = score.shape[0]
    grid = score.view(n, side, side)
    row, col = idx // side, idx % side
    ar = torch.arange(n, device=score.device)
    out = torch.zeros(n, 2, device=score.device)
    for axis, (pos, lim) in enumerate(((col, side), (row, side))):
        lo_i, hi_i = (pos - 1).clamp_min(0), (pos + 1).clamp_max(lim - 1)
        if axis == 0:
            s_lo, s_0, s_hi = grid[ar, row, lo_i], grid[ar, row, pos], grid[ar, row, hi_i]
        else:
            s_lo, s_0, s_hi = grid[ar, lo_i, col], grid[ar, pos, col], grid[ar, hi_i, col]
        ok = (pos > 0) & (pos < lim - 1) & torch.isfinite(s_lo) & torch.isfinite(s_hi)
        curv = s_lo - 2 * s_0 + s_hi
        ok = ok & (curv < -1e-12)
        vertex = 0.5 * (s_lo - s_hi) / torch.where(ok, curv, torch.full_like(curv, -1.0))
        out[:, axis] = torch.where(ok, vertex.clamp(-0.5, 0.5), torch.zeros_like(vertex))
    return out


def _similarity(dist: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """`1 - dist / (largest valid dist in the window)`: distances `N x M` over each handle's window
    turned into similarities in [0, 1] (1 at a perfect match), as fused into the tracker's score."""
    dmax = dist.masked_fill(~valid, 0).amax(1, keepdim=True).clamp_min(1e-8)
    return 1 - dist / dmax


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity along the last dim (broadcasting), 0 for zero vectors."""
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-8)


def _spd_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve `a x = b` for batched symmetric positive-definite `a` (`N x K x K`) by Cholesky.

    (Also sidesteps an MKL batched-LU failure seen with torch 2.13 CPU after set_num_threads.)
    """
    return torch.cholesky_solve(b, torch.linalg.cholesky(a))


class NearestNeighbourTracker:
    """DragGAN / DragDiffusion point tracking: nearest template match in a square window.

    radius: search radius r_p (feature px). metric: "l1" (DragDiffusion) or "l2" (DragGAN).
    subpixel: refine the best match to sub-pixel precision (`subpixel_peak` on the negated
    distance); off for DragGAN / DragDiffusion, which move handles in whole feature pixels.
    Confidence: cosine similarity of the best match to the template, clamped to [0, 1] (reported,
    not used by plain supervision).
    """

    def __init__(self, radius: float = 3.0, metric: str = "l1", subpixel: bool = False) -> None:
        self.radius = float(radius)
        self.metric = metric
        self.subpixel = bool(subpixel)
        self.templates: torch.Tensor | None = None

    def fit(self, f0: torch.Tensor, handles: torch.Tensor) -> None:
        """Store the templates `f_i = F0(p_i^0)` (`N x C`)."""
        self.templates = sample_features(f0.detach(), handles.to(f0.device)).float()

    def track(self, feat: torch.Tensor, handles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Move each handle to the window position whose feature is nearest to its template."""
        assert self.templates is not None, "call fit() first"
        feat = feat.detach()
        size = (feat.shape[2], feat.shape[1])
        pos, valid = _window(handles.to(feat.device), self.radius, size)
        feats = sample_features(feat, pos).float()
        dist = _distance(feats, self.templates, self.metric).masked_fill(~valid, math.inf)
        idx = dist.argmin(dim=1)
        ar = torch.arange(len(idx), device=idx.device)
        best = pos[ar, idx]
        conf = _cosine(feats[ar, idx], self.templates).clamp(0, 1)
        if self.subpixel:
            best = best + subpixel_peak(-dist, idx, _side(self.radius))
        return best, conf


class DiscriminativeTracker:
    """StableDrag's discriminative point tracker (see module docstring).

    radius: search radius r_p (feature px). train_radius: training-window radius (> radius, so the
    training set holds background and distractors). train_points: at most this many training
    positions per window side (the lattice is strided beyond). sigma: Gaussian label width.
    ridge: regularisation towards the template initialisation, relative to the data's mean
    eigenvalue. hard_negative_weight: extra weight `w * max(0, cos)^2` on positions farther than
    2 sigma from the handle that look like it. fusion_weight, fusion_ridge_gain: beta in
    `score = response + beta * nn_similarity`, per handle `beta = fusion_weight + fusion_ridge_gain
    * ridge_share` (`_ridge_share`, measured at fit time). metric: distance for the nearest-neighbour term.
    subpixel: refine the score's peak to sub-pixel precision (`subpixel_peak`). plateau_level:
    > 0 (with `subpixel`): the handle is the centroid of the score's top plateau
    (`plateau_centroid`), not its peak, for blob-like handles (ridge share at most
    `PLATEAU_MAX_RIDGE_SHARE`; on a ridge the plateau runs along it); the confidence stays the peak's.
    context_weight: gamma in `score += gamma * flat_share_i * context_similarity`: a handle inside a
    flat part (an eye, whose interior looks alike 1 x 1 everywhere) is also matched by a ring of
    `CONTEXT_POINTS` features around it, as wide as its own extent (at most half the training window
    + 1 px), against the same ring at step 0 (`_fit_context`, `_context_sim`; not fitted at
    context_weight 0). The motion loss copies the handle's feature one step ahead of the part; on a
    long drag every 1 x 1 match follows that copy and the handle runs ahead of the part (the toy
    GAN's eyes: 3 px by the end of an 11 px drag); the ring sees the part's outline and keeps the
    handle on it. `flat_share_i` (the directions in which the handle's look fills half the training
    window) is ~0 on texture, where the term and its cost are skipped. The ring is a sparse k x k
    template, as in classic patch trackers; the paper's tracker is 1 x 1 (context_weight 0).
    """

    def __init__(
        self,
        radius: float = 3.0,
        train_radius: float | None = None,
        train_points: int = 25,
        sigma: float = 1.0,
        ridge: float = 0.1,
        hard_negative_weight: float = 4.0,
        fusion_weight: float = 0.5,
        fusion_ridge_gain: float = 40.0,
        metric: str = "l1",
        subpixel: bool = True,
        plateau_level: float = 0.2,
        context_weight: float = 1.0,
    ) -> None:
        self.radius = float(radius)
        self.train_radius = float(train_radius if train_radius is not None else 3 * radius)
        if self.train_radius < self.radius:
            raise ValueError("train_radius must be >= radius")
        self.train_points = int(train_points)
        self.sigma = float(sigma)
        self.ridge = float(ridge)
        self.hard_negative_weight = float(hard_negative_weight)
        self.fusion_weight = float(fusion_weight)
        self.fusion_ridge_gain = float(fusion_ridge_gain)
        if not (self.fusion_weight >= 0 and self.fusion_ridge_gain >= 0):
            raise ValueError("fusion_weight and fusion_ridge_gain must be >= 0")
        self.metric = metric
        self.subpixel = bool(subpixel)
        self.plateau_level = float(plateau_level)
        if not 0 <= self.plateau_level < 1:
            raise ValueError("plateau_level must be in [0, 1)")
        self.context_weight = float(context_weight)
        if not self.context_weight >= 0:
            raise ValueError("context_weight must be >= 0")
        self.filters: torch.Tensor | None = None  # N x C
        self.means: torch.Tensor | None = None  # N x C
        self.scales: torch.Tensor | None = None  # N
        self.templates: torch.Tensor | None = None  # N x C (raw features, for the NN term)
        self.peak0: torch.Tensor | None = None  # N
        self.margin0: torch.Tensor | None = None  # N
        self.sigmas: torch.Tensor | None = None  # N, label widths used (>= sigma)
        self.ridge_share: torch.Tensor | None = None  # N, see _ridge_share
        self.flat_share: torch.Tensor | None = None  # N, see _label_shape
        self.ctx_offsets: torch.Tensor | None = None  # N x K x 2, see _fit_context
        self.ctx_templates: torch.Tensor | None = None  # N x K x C (or x CONTEXT_CHANNELS)
        self.ctx_valid: torch.Tensor | None = None  # N x K
        self.ctx_channels: torch.Tensor | None = None  # the channels compared on the rings (None = all)

    # -- learning ----------------------------------------------------------------------------
    def _normalise(self, x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Centre by the per-handle training mean and divide by the per-handle scale (the norm of
        the centred template), so the template maps to a unit vector while magnitudes elsewhere keep
        their meaning (a blob's falloff still lowers the response): `N x M x C`."""
        return (x - mean[:, None, :]) / scale[:, None, None]

    def fit(self, f0: torch.Tensor, handles: torch.Tensor) -> None:
        """Learn one filter per handle on `f0` (`C x H x W`) around `handles` (`N x 2`), then freeze it."""
        f0 = f0.detach().float()
        handles = handles.to(f0.device).float()
        size = (f0.shape[2], f0.shape[1])
        side = 2 * math.floor(self.train_radius) + 1
        step = max(1.0, math.ceil(side / self.train_points))
        offsets = square_offsets(self.train_radius, step, device=f0.device)  # M x 2
        pos = handles[:, None, :] + offsets[None]
        valid = inside(pos, size).float()  # N x M
        raw = sample_features(f0, pos)  # N x M x C
        self.templates = sample_features(f0, handles)  # N x C
        mean = (raw * valid[..., None]).sum(1) / valid.sum(1, keepdim=True).clamp_min(1)
        scale = (self.templates - mean).norm(dim=-1).clamp_min(1e-6)
        x = self._normalise(raw, mean, scale)  # N x M x C
        t = self._normalise(self.templates[:, None, :], mean, scale)[:, 0]  # N x C, unit norm

        d2 = (offsets ** 2).sum(-1)[None]  # 1 x M
        cos = _cosine(x, t[:, None, :])  # N x M
        sigma, mined, self.flat_share = self._label_shape(cos, valid, offsets)  # N, N x M, N
        self.sigmas = sigma
        self.mined = mined
        label = torch.exp(-d2 / (2 * sigma[:, None] ** 2)) * (~mined)  # N x M
        far = (d2.sqrt() > 2 * sigma[:, None]) | mined
        look_alike = cos.clamp_min(0) ** 2
        weight = valid * (1 + self.hard_negative_weight * look_alike * far)

        z0 = t  # response 1 at the template, a scaled projection elsewhere
        resid = label - (x @ z0[..., None])[..., 0]  # N x M
        sw = weight.sqrt()
        xw = x * sw[..., None]
        rw = resid * sw
        n, m, c = x.shape
        lam = (self.ridge * weight.sum(1) / c).clamp_min(1e-6)  # N
        if m <= c:  # dual: u = Xw^T (Xw Xw^T + lam I)^-1 rw
            gram = xw @ xw.transpose(1, 2) + lam[:, None, None] * torch.eye(m, device=x.device)
            alpha = _spd_solve(gram, rw[..., None])
            u = (xw.transpose(1, 2) @ alpha)[..., 0]
        else:  # primal: (Xw^T Xw + lam I) u = Xw^T rw
            a = xw.transpose(1, 2) @ xw + lam[:, None, None] * torch.eye(c, device=x.device)
            u = _spd_solve(a, xw.transpose(1, 2) @ rw[..., None])[..., 0]
        self.filters = z0 + u
        self.means = mean
        self.scales = scale

        # Calibrate on the training map itself: response at the handle, and its margin over the
        # strongest response elsewhere in the training window.
        self.peak0 = torch.ones(n, device=f0.device)
        self.margin0 = torch.ones(n, device=f0.device)
        resp, valid_w, pos_w, _ = self._response(f0, handles, self.train_radius)
        centre = resp[:, resp.shape[1] // 2]
        self.peak0 = centre.clamp_min(1e-3)
        self.margin0 = self._margin(resp / self.peak0[:, None], valid_w, pos_w, handles).clamp_min(1e-3)
        self.ridge_share = self._ridge_share(f0, handles)
        if self.context_weight > 0:
            self._fit_context(f0, handles)

    def _fit_context(self, f0: torch.Tensor, handles: torch.Tensor) -> None:
        """The context ring of each handle: `CONTEXT_POINTS` offsets `N x K x 2` (the centre, and 8
        directions at rho / 2 and rho, with rho = `1.18 sigma_i + 1` feature px within [2,
        train_radius]: the handle's own extent as its label width measures it, which for a fully
        flat handle is capped at half the training window, so rho = train_radius / 2 + 1 however
        large the part) and the step-0 features there (`N x K x C`, or `x CONTEXT_CHANNELS`), with
        their validity `N x K` (on the map)."""
        rho = (self.sigmas * 1.18 + 1.0).clamp(min=2.0, max=self.train_radius)  # N
        ang = torch.arange(8, device=f0.device, dtype=torch.float32) * (2 * math.pi / 8)
        unit = torch.stack([ang.cos(), ang.sin()], 1)  # 8 x 2
        base = torch.cat([torch.zeros(1, 2, device=f0.device), 0.5 * unit, unit], 0)  # K x 2
        assert base.shape == (CONTEXT_POINTS, 2)
        self.ctx_offsets = base[None] * rho[:, None, None]
        pts = handles[:, None, :] + self.ctx_offsets
        self.ctx_valid = inside(pts, (f0.shape[2], f0.shape[1]))
        tmpl = sample_features(f0, pts)  # N x K x C
        # Wide maps (a 512 px StyleGAN2 has 256 channels) are compared on the CONTEXT_CHANNELS channels
        # that vary most over the rings (those that see the parts' outlines): the ring is read at
        # N x M x K places per step, and this keeps its cost a fraction of the drag step's. The
        # variance is taken over the ring points on the map of the handles the ring is used for.
        self.ctx_channels = None
        if tmpl.shape[-1] > CONTEXT_CHANNELS:
            use = self.ctx_valid & (self.flat_share > 0)[:, None]
            if int(use.sum()) < 2:
                use = self.ctx_valid if int(self.ctx_valid.sum()) >= 2 else torch.ones_like(self.ctx_valid)
            spread = tmpl[use].var(dim=0)
            self.ctx_channels = spread.topk(CONTEXT_CHANNELS).indices.sort().values
            tmpl = tmpl[..., self.ctx_channels]
        self.ctx_templates = tmpl

    def _context_sim(self, feat: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor,
                     rows: torch.Tensor) -> torch.Tensor:
        """Context similarity `R x M` in [0, 1] of the handles `rows` (`R` indices) at their window
        positions `pos[rows]`: 1 - (mean L2 distance between the ring's features there and at step 0,
        over ring points on the map both times) / (its largest value in the window)."""
        offs, tmpl, ok0 = self.ctx_offsets[rows], self.ctx_templates[rows], self.ctx_valid[rows]
        pts = pos[rows][:, :, None, :] + offs[:, None]  # R x M x K x 2
        ok = inside(pts, (feat.shape[2], feat.shape[1])) & ok0[:, None]
        # read only the box of the map that the rings cover (same values: corners off the map are
        # still zeros, since the box is clipped to the map and the points keep their place in it)
        flat_pts = pts.reshape(-1, 2)
        x0, y0 = (int(v) for v in flat_pts.amin(0).floor().clamp_min(0).tolist())
        x1 = min(int(flat_pts[:, 0].amax().floor()) + 1, feat.shape[2] - 1)
        y1 = min(int(flat_pts[:, 1].amax().floor()) + 1, feat.shape[1] - 1)
        if x0 > x1 or y0 > y1:  # every ring point off the map
            return torch.zeros(pts.shape[:2], device=feat.device)
        box = feat[:, y0:y1 + 1, x0:x1 + 1]
        box = box if self.ctx_channels is None else box.index_select(0, self.ctx_channels)
        shift = torch.tensor([x0, y0], device=pts.device, dtype=pts.dtype)
        d = (sample_features(box, pts - shift) - tmpl[:, None]).norm(dim=-1)
        d = (d * ok).sum(-1) / ok.sum(-1).clamp_min(1)
        return _similarity(d, valid[rows])

    def _ridge_share(self, f0: torch.Tensor, handles: torch.Tensor) -> torch.Tensor:
        """`N` in [0, 1]: the share of each handle's search window (positions farther than
        `RIDGE_SHARE_MIN_PX` feature px, inside the map) where its filter answers at least
        `RIDGE_SHARE_LEVEL` of its trained peak on the map it was fitted on. ~0 for a blob (an eye),
        0.15-0.3 for a point on an outline or a band (the filter cannot tell places along it apart)."""
        resp, valid, pos, _ = self._response(f0, handles)
        ring = valid & ((pos - handles[:, None, :]).norm(dim=-1) > RIDGE_SHARE_MIN_PX)
        high = (resp / self.peak0[:, None] >= RIDGE_SHARE_LEVEL) & ring
        return high.float().sum(1) / ring.float().sum(1).clamp_min(1)

    def _label_shape(self, cos: torch.Tensor, valid: torch.Tensor,
                     offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-handle Gaussian label width `N` (feature px), mined look-alikes `N x M` (bool) and
        flat share `N`: the share of the `SECTORS` directions that reach positions on the map within
        half the training window and in none of which the cosine falls below 0.5 there (the inside
        of a part larger than that, e.g. an eye; see `_context_sim`).

        Width: backends up-sample coarse maps (DragGAN resizes a block to the image, DragDiffusion
        a 64 px block to H/2), so a handle's neighbours can be near copies of it and a label sharper
        than the features cannot be fitted (the ridge then shrinks the whole response towards 0).
        The width follows the handle's *own* fall-off: in each of `SECTORS` directions, the
        distance at which the centred features' cosine with the template first drops below 0.5;
        the median over directions, over 1.18 (a Gaussian's half width at half maximum), at least
        `sigma`. The median ignores the few directions where a look-alike sits, so a twin 2 px away
        does not widen the label over itself (the former area-based width did: 2.9 px).

        Look-alikes: positions farther than 1 px that are clearly more like the template than the
        handle's own fall-off predicts at their distance (cosine above the median cosine of their
        ring + LOOKALIKE_EXCESS, and above 0.5). They get label 0 and the hard-negative weight
        whatever their distance, so the filter learns what separates the handle from them."""
        n, m = cos.shape
        r = offsets.norm(dim=-1)  # M
        ang = torch.atan2(offsets[:, 1], offsets[:, 0])
        sector = ((ang + math.pi) / (2 * math.pi) * SECTORS).long().clamp_max(SECTORS - 1)  # M
        half = self.train_radius / 2
        ok = (valid > 0) & (r <= half)[None] & (r > 0)[None]
        low = ok & (cos < 0.5)
        # crossing radius per handle and sector (half the window when it never drops below 0.5)
        big = torch.full((n, m), half, device=cos.device)
        rr = torch.where(low, r[None].expand(n, m), big)
        cross = torch.full((n, SECTORS), half, device=cos.device)
        cross = cross.scatter_reduce(1, sector[None].expand(n, m), rr, reduce="amin", include_self=True)
        width = torch.clamp(cross.median(dim=1).values / 1.18, min=self.sigma)
        # flat share: the directions in which the handle's look never falls below 0.5 within half
        # the training window (the inside of a part larger than that, e.g. an eye); a direction that
        # leaves the map there is not seen, so it does not count as flat
        idx = sector[None].expand(n, m)
        zeros = torch.zeros(n, SECTORS, device=cos.device)
        seen = zeros.scatter_reduce(1, idx, ok.float(), reduce="amax", include_self=True) > 0
        dropped = zeros.scatter_reduce(1, idx, low.float(), reduce="amax", include_self=True) > 0
        flat_share = (seen & ~dropped).float().mean(1)
        # the handle's own similarity fall-off: median cosine per 1 px ring
        ring = torch.round(r).long()  # M
        n_rings = int(ring.max()) + 1
        prof = torch.zeros(n, n_rings, device=cos.device)
        for k in range(1, n_rings):
            sel = (ring == k)
            if not bool(sel.any()):  # a strided lattice (large windows) skips some rings
                continue
            vals = cos[:, sel].masked_fill(~(valid[:, sel] > 0), float("nan"))
            prof[:, k] = torch.nan_to_num(vals.nanmedian(dim=1).values, nan=1.0)
        expected = prof[:, ring]  # N x M
        mined = (valid > 0) & (r > 1.0)[None] & (cos > 0.5) & (cos > expected + LOOKALIKE_EXCESS)
        # A look-alike is a separate place: positions joined to the handle by a ridge of high
        # similarity (an edge or a band the handle lies on) are the handle's own extent, not a twin.
        mined = mined & ~_ridge_from_centre(cos > RIDGE_COSINE, valid > 0)
        return width, mined, flat_share

    # -- tracking ----------------------------------------------------------------------------
    def _response(self, feat: torch.Tensor, handles: torch.Tensor, radius: float | None = None):
        """Filter response `N x M` over windows of `radius` (default: the search radius) around
        `handles`, their validity, positions and raw features."""
        assert self.filters is not None and self.means is not None, "call fit() first"
        size = (feat.shape[2], feat.shape[1])
        pos, valid = _window(handles, self.radius if radius is None else radius, size)
        raw = sample_features(feat, pos)
        x = self._normalise(raw, self.means, self.scales)
        resp = (x @ self.filters[..., None])[..., 0]
        return resp, valid, pos, raw

    def _margin(self, resp: torch.Tensor, valid: torch.Tensor, pos: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
        """1 - (strongest response farther than 2 sigma from `at`) / (response peak), with the
        per-handle label width sigma (where the trained peak has fallen to ~0.14)."""
        peak = resp.masked_fill(~valid, -math.inf).amax(1)
        away = (pos - at[:, None, :]).norm(dim=-1) > 2 * self.sigmas[:, None]
        side = resp.masked_fill(~(valid & away), -math.inf).amax(1)
        side = torch.where(torch.isfinite(side), side, torch.zeros_like(side)).clamp_min(0)
        return 1 - side / peak.clamp_min(1e-6)

    def track(self, feat: torch.Tensor, handles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Score the window with the filter fused with NN similarity; argmax -> new handle.
        Confidence = clamp(response / peak0) * clamp((margin + e) / (margin0 + e)), ~1 on a clean
        re-find, low when the handle's look is gone or a look-alike answers as strongly."""
        assert self.peak0 is not None and self.margin0 is not None and self.templates is not None
        assert self.ridge_share is not None, "call fit() first"
        feat = feat.detach().float()
        handles = handles.to(feat.device).float()
        resp, valid, pos, raw = self._response(feat, handles)
        # The filter was trained to answer 1 at the handle; a larger answer is not "more handle"
        # (a linear filter grows without bound along smooth feature gradients), so the response is
        # capped at the trained peak and the nearest-neighbour term breaks ties among capped places.
        resp = (resp / self.peak0[:, None]).clamp_max(1.0)
        nn_sim = _similarity(_distance(raw, self.templates, self.metric), valid)
        # Handles on a ridge (outline, band) lean on the template: the filter answers alike along it.
        beta = self.fusion_weight + self.fusion_ridge_gain * self.ridge_share[:, None]
        score = resp + beta * nn_sim
        # Handles inside a flat part (an eye) also match their surroundings: the ring sees the part's
        # outline where every 1 x 1 feature inside it looks alike (see the class docstring).
        gamma = self.context_weight * self.flat_share
        rows = torch.nonzero(gamma > 0)[:, 0]
        if len(rows):
            score = score.index_add(0, rows, gamma[rows, None] * self._context_sim(feat, pos, valid, rows))
        score = score.masked_fill(~valid, -math.inf)
        idx = score.argmax(1)
        ar = torch.arange(len(idx), device=idx.device)
        best = pos[ar, idx]
        if self.subpixel:
            best = best + subpixel_peak(score, idx, _side(self.radius))
        # Confidence: the capped response at the peak times its margin over the strongest
        # response elsewhere in a training-size window around it (a search window can be too
        # small to hold any sidelobe once the label is wide).
        wide, valid_w, pos_w, _ = self._response(feat, best, self.train_radius)
        wide = (wide / self.peak0[:, None]).clamp_max(1.0)
        margin = self._margin(wide, valid_w, pos_w, best)
        if self.subpixel and self.plateau_level > 0:  # the location only; the confidence is the peak's
            cen = plateau_centroid(score, valid, pos, idx, best, self.plateau_level,
                                   (feat.shape[2], feat.shape[1]))
            # on a ridge (an outline, the mouth's band) the plateau runs along it and its centroid
            # would pull the handle along the ridge: those handles keep the sub-pixel peak
            blob = self.ridge_share <= PLATEAU_MAX_RIDGE_SHARE
            best = torch.where(blob[:, None], cen, best)
        # The margin counts relative to the handle's own margin at step 0, softened by
        # MARGIN_SOFTENING: a handle on an elongated part (a mouth corner on its band) has almost no
        # margin to begin with, and a raw ratio of two tiny numbers is noise.
        eps = MARGIN_SOFTENING
        conf = resp[ar, idx].clamp(0, 1) * ((margin + eps) / (self.margin0 + eps)).clamp(0, 1)
        return best, conf


def plateau_centroid(score: torch.Tensor, valid: torch.Tensor, pos: torch.Tensor, idx: torch.Tensor,
                     best: torch.Tensor, level: float, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Handles `N x 2` (x, y feature px) at the centroid of each score's top plateau.

    score: `N x M` on the square row-major lattice of the search window (`M = side^2`), valid:
    `N x M` bool, pos: `N x M x 2` the lattice positions, idx: `N` argmax indices, best: `N x 2` the
    peak positions (returned where the plateau is the peak alone). The plateau: positions whose
    score is at least `peak - level * (peak - lowest valid score)`, joined to the peak through
    8-neighbours on the lattice (a look-alike elsewhere in the window, separated by lower scores,
    is not part of it), and - with the map's `size` (W, H) - whose mirror through the peak is on
    the map (a window clipped by the border does not pull the handle inwards); each weighted by
    its height above that floor. The plateau may reach farther behind the peak than ahead of it:
    that is the smear it is there for; but a peak on the window's edge is kept as it is (what lies
    beyond it is unseen, and a one-sided plateau would pull the handle back). A correlation tracker's
    centre-of-mass refinement (as in mean-shift / centroid trackers), restricted to the peak's own
    blob. Raises nothing; `level` in (0, 1)."""
    n, m = score.shape
    side = int(round(math.sqrt(m)))
    s = score.masked_fill(~valid, -math.inf)
    peak = s.amax(1, keepdim=True)
    low = torch.where(valid, score, peak).amin(1, keepdim=True)
    floor = peak - level * (peak - low)
    high = (s >= floor) & valid
    if size is not None:  # near the map's border, only positions whose mirror through the peak is
        # on the map count, so a window clipped by the border does not pull the handle inwards
        mirror = 2 * pos[torch.arange(n, device=idx.device), idx][:, None, :] - pos
        high = high & inside(mirror, size)
    reach = _connected_from(high, idx).float()
    w = reach * (s - floor).clamp_min(0).nan_to_num(0.0)
    tot = w.sum(1, keepdim=True)
    cen = (w[..., None] * pos).sum(1) / tot.clamp_min(1e-12)
    # a peak on the window's edge: the part may reach on beyond it, unseen, so its plateau would be
    # one-sided (pulled back towards the old handle); the peak is kept there
    row, col = idx // side, idx % side
    on_edge = (row == 0) | (row == side - 1) | (col == 0) | (col == side - 1)
    keep = (reach.sum(1) <= 1) | (tot[:, 0] <= 0) | on_edge
    return torch.where(keep[:, None], best, cen)


def _ridge_from_centre(high: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """`N x M` bool: the positions of the square row-major lattice (`M = side^2`, handle at the
    centre) that `high` connects to the centre through 8-neighbours that are all `high`."""
    n, m = high.shape
    centre = torch.full((n,), m // 2, dtype=torch.long, device=high.device)
    return _connected_from(high & valid, centre)


def _connected_from(high: torch.Tensor, seed: torch.Tensor) -> torch.Tensor:
    """`N x M` bool: the positions of the square row-major lattice (`M = side^2`) joined to
    position `seed[i]` (`N` indices, always included) through 8-neighbours that are all `high`
    (`N x M` bool); grown until nothing changes."""
    n, m = high.shape
    side = int(round(math.sqrt(m)))
    grid = high.view(n, 1, side, side).float()
    ar = torch.arange(n, device=high.device)
    reach = torch.zeros(n, m, device=high.device)
    reach[ar, seed] = 1.0
    reach = reach.view(n, 1, side, side)
    for _ in range(m):
        grown = (torch.nn.functional.max_pool2d(reach, 3, stride=1, padding=1) * grid).view(n, m)
        grown[ar, seed] = 1.0
        grown = grown.view(n, 1, side, side)
        if torch.equal(grown, reach):
            break
        reach = grown
    return reach.view(n, m) > 0


def make_tracker(config: DragConfig) -> Tracker:
    """The tracker named by `config.tracker`, built with the config's constants."""
    if config.tracker == "nearest":
        return NearestNeighbourTracker(radius=config.r_p, metric=config.nn_metric,
                                       subpixel=config.effective_subpixel)
    return DiscriminativeTracker(
        radius=config.r_p,
        train_radius=config.effective_train_radius,
        train_points=config.train_points,
        sigma=config.sigma,
        ridge=config.ridge,
        hard_negative_weight=config.hard_negative_weight,
        fusion_weight=config.fusion_weight,
        fusion_ridge_gain=config.fusion_ridge_gain,
        metric=config.nn_metric,
        subpixel=config.effective_subpixel,
        plateau_level=config.plateau_level,
        context_weight=config.context_weight,
    )
