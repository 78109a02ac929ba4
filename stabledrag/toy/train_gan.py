"""Train the bundled toy-faces StyleGAN2 (128 x 128) on a CPU, export it, and gate it.

`python -m stabledrag.toy.train_gan [--minutes N] [--resume] [--out assets/models/toy_gan]`
`python -m stabledrag.toy.train_gan --stage eval [--out assets/models/toy_gan]`

Why not a plain GAN run: the machine this ships from is a shared 2-core CPU where one forward +
backward of even a 0.3 M-parameter 128 px generator at batch 16 takes seconds, so a StyleGAN2
adversarial run (tens of thousands of steps) cannot converge in the time available. The toy world
is procedural, though, so every latent can be given its *own* face: `face_from_z` turns a
latent `z` into face parameters (each coordinate's normal CDF drives one parameter; constraints
are met by construction, with no rejection sampling, so the map is smooth almost everywhere) and
the generator learns `z -> render(face_from_z(z))` with a weighted L1 loss ("recon" loss; a
generator trained as a decoder of fixed codes). Faces are roughly aligned (head within 13 px of the
centre, small tilt), as FFHQ is for StyleGAN: translation is what a StyleGAN learns slowest. Each eye
and each mouth corner also has its own offset, so that a drag of one part is something the
generator can draw (a first model with one eye spacing for both eyes could not move one eye alone;
it was fine-tuned into this world from its checkpoint). Since `z ~ N(0, I)` maps onto the whole face
distribution, *every* random latent gives a complete face and truncation towards `w_avg` gives
an average face - exactly what dragging needs. The network is the project's own StyleGAN2
(`stabledrag.gan.networks`), exported as `G_ema` in the native safetensors format.

The adversarial path is implemented too (`--adv-weight > 0`): non-saturating logistic loss,
lazy R1 on the StyleGAN2-style residual discriminator (`stabledrag.gan.discriminator`), usable
alone (`--recon-weight 0`) on a machine with more compute, or as a sharpening term.

Threads: keep `--threads 1` on a shared, oversubscribed CPU. With 2 threads and other jobs
running, OpenMP's barriers wait on a descheduled partner thread: a step measured 7.5 s with 2
threads and 0.4 s with 1 on the 2-core build machine.

Files under `--run-dir` (default `runs/toy_gan/`): `log.txt`, `checkpoint.pt` (every
`--ckpt-minutes`, atomic; `--resume` continues from it), `samples_XXXXXX.png` (fixed latents,
psi 1.0 top rows / 0.7 bottom rows). The model is exported to `--out` whenever the quick gate
(detector on `--gate-n` samples) does not get worse, and at the end.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..gan.checkpoints import load_native, save_native
from ..paths import REPO_ROOT
from ..gan.discriminator import Discriminator, DiscriminatorConfig
from ..gan.networks import Generator, GeneratorConfig, to_uint8
from . import render as R
from .detect import EYE, HIGHLIGHT, MOUTH, classify, detect

log = logging.getLogger(__name__)

DEFAULT_RUN_DIR = REPO_ROOT / "runs" / "toy_gan"
DEFAULT_OUT = REPO_ROOT / "assets" / "models" / "toy_gan"
CHECKPOINT_NAME = "checkpoint.pt"
TRAINING_INFO_NAME = "training.json"

# Latent coordinates used by `face_from_z` (the rest of z is ignored by the face, so the
# generator learns to ignore it too): 20 for the face's layout, shape and background, then 8 for
# independent part offsets (each eye and each mouth corner, 2 each).
FACE_DIMS = 28
# Backgrounds ordered by colour so that neighbouring latent cells have similar backgrounds.
_BG_ORDER = ("brown", "grey", "green", "teal", "light blue", "lavender", "purple", "pink", "lime")
# Faces are *roughly aligned* (like FFHQ for StyleGAN): the head centre stays within CENTRE_JITTER
# of the image centre and tilts at most MAX_TILT degrees. A StyleGAN learns global translation slowly
# (styles are spatially uniform), so the CPU budget goes to the parts, which are what dragging moves.
CENTRE_JITTER = 0.10
MAX_TILT = 15.0
# Independent part offsets (head frame, fractions of the image side; uniform in +-range, shrunk
# towards 0 until the face stays valid). A generator can only drag within what it learned: with
# the eyes laid out symmetrically (one spacing, one height) no latent moves one eye alone, and the
# first bundled model could not follow a single-eye drag that keeps the rest of the face still.
EYE_OFFSET = 0.09                         # ~11.5 px at 128
MOUTH_CORNER_OFFSET = 0.055               # ~7 px at 128
EYE_GAP = 0.03                            # least gap between the two eyes (~4 px at 128)
_SAFE_EYES = (0.12, 0.6, -0.3)            # (radius / a, spacing / a, height / b): always fits
_SAFE_MOUTH = (0.42, 0.35, 0.1, 0.15)     # (y / b, half width / a, curve, opening)


# ----------------------------------------------------------------------------------------------
# Latent -> face


def _lerp(lo_hi: Sequence[float], t: float) -> float:
    return float(lo_hi[0] + (lo_hi[1] - lo_hi[0]) * t)


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


def latent_uniforms(z: np.ndarray) -> np.ndarray:
    """`z` (`z_dim`, any scale) -> uniforms in (0, 1) for the first `FACE_DIMS` coordinates.

    z is first normalised to unit mean square, as the mapping network does, so `z` and `c * z`
    give the same face (the generator cannot tell them apart either); then the normal CDF.
    """
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    if z.size < FACE_DIMS:
        raise ValueError(f"z needs at least {FACE_DIMS} coordinates, got {z.size}")
    z = z / math.sqrt(float(np.mean(z ** 2)) + 1e-8)
    u = 0.5 * (1.0 + np.vectorize(math.erf)(z[:FACE_DIMS] / math.sqrt(2.0)))
    return np.clip(u, 1e-6, 1 - 1e-6)


def _offsets(u: np.ndarray, scale: float) -> np.ndarray:
    """Uniforms `u` in (0, 1) -> offsets in (-scale, scale)."""
    return (np.asarray(u, dtype=np.float64) - 0.5) * 2.0 * scale


def _disc_points(c: np.ndarray, r: float, n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return c[0] + r * np.cos(t), c[1] + r * np.sin(t)


def _mouth_band(left: np.ndarray, right: np.ndarray, curve: float, opening: float, n: int = 17) -> np.ndarray:
    """`2n x 2` outline points (u, v) of the mouth band drawn between corners `left` and `right`
    (head frame), as `render` draws an edited mouth."""
    d = right - left
    w = max(float(np.linalg.norm(d)) / 2, 1e-6)
    e = d / (2 * w)
    nrm = np.array([-e[1], e[0]])  # towards the chin for a left-to-right mouth
    mu, mv = R._mouth_outline(w, 0.0, curve, opening, n)
    mid = (left + right) / 2
    return mid[None, :] + mu[:, None] * e[None, :] + mv[:, None] * nrm[None, :]


def face_from_z(z: np.ndarray) -> R.FaceParams:
    """A valid toy face (`FaceParams`) determined by latent `z` (`z_dim >= FACE_DIMS`).

    The first 20 normalised coordinates drive head size/aspect/tilt/centre, eye size/spacing/height,
    gaze, highlight, mouth place/width/curve/opening and background over the ranges of
    `render.sample_params`, except that the head is roughly aligned (centre within `CENTRE_JITTER`
    of the middle, tilt within `MAX_TILT` degrees); the next 8 move each eye (up to `EYE_OFFSET`)
    and each mouth corner (up to `MOUTH_CORNER_OFFSET`) on its own. Where a combination would put
    a part outside the head (or the eyes too close, or the mouth into the eyes) it is blended
    towards a known-good value just far enough to fit, so nearby latents give nearby faces. Part
    colours are the nominal ones.
    """
    u = latent_uniforms(z)
    a = _lerp(R._HEAD_A, u[0])
    b = min(a * _lerp(R._HEAD_ASPECT, u[1]), R._HEAD_B_MAX)
    angle = _lerp((-MAX_TILT, MAX_TILT), u[2])
    t = math.radians(angle)
    ext = (math.hypot(a * math.cos(t), b * math.sin(t)), math.hypot(a * math.sin(t), b * math.cos(t)))
    centre = []
    for k, e in enumerate(ext):  # the centre's range: near the middle, and the head inside the image
        lo, hi = max(0.5 - CENTRE_JITTER, e + R._MARGIN), min(0.5 + CENTRE_JITTER, 1 - e - R._MARGIN)
        centre.append(_lerp((lo, hi), u[3 + k]) if lo < hi else 0.5)
    cx, cy = centre

    want = (_lerp(R._EYE_R, u[5]), _lerp(R._EYE_SPACING, u[6]), _lerp(R._EYE_HEIGHT, u[7]))
    for s in np.linspace(0.0, 1.0, 11):
        rr, sp, hh = (w + (safe - w) * s for w, safe in zip(want, _SAFE_EYES))
        r = a * rr
        spacing = max(a * sp, 2 * r + 0.04 * a)
        eye_h = b * hh
        eu = np.array([spacing / 2 - r, spacing / 2 + r])
        ev = np.array([eye_h - r, eye_h + r])
        if R._inside_ellipse(*np.meshgrid(eu, ev), a, b, R._INNER_MARGIN):
            break
    # Independent eye offsets (head frame), shrunk until both eyes fit and keep apart.
    eye_off = _offsets(u[20:24], EYE_OFFSET).reshape(2, 2)
    base_eyes = np.array([[-spacing / 2, eye_h], [spacing / 2, eye_h]])
    for s in np.linspace(1.0, 0.0, 11):
        eyes = base_eyes + s * eye_off
        fits = all(R._inside_ellipse(*_disc_points(c, r), a, b, R._INNER_MARGIN) for c in eyes)
        if fits and np.linalg.norm(eyes[1] - eyes[0]) >= 2 * r + EYE_GAP:
            break
    eye_bottom = float(eyes[:, 1].max()) + r

    # Mouth: curve from frown to smile; wide openings only with a smile-like curve ("open").
    opening = 0.06 + 0.79 * float(u[8]) ** 2
    open_t = _smoothstep((opening - 0.3) / 0.2)
    curve = _lerp((-0.45 + 0.6 * open_t, 0.5 - 0.1 * open_t), u[9])
    want_m = (_lerp(R._MOUTH_Y, u[10]), _lerp(R._MOUTH_HALF_W, u[11]), curve, opening)
    for s in np.linspace(0.0, 1.0, 21):
        my, hw, cv, op = (w + (safe - w) * s for w, safe in zip(want_m, _SAFE_MOUTH))
        mouth_y, half_w = b * my, a * hw
        mu, mv = R._mouth_outline(half_w, mouth_y, cv, op)
        if mv.min() - eye_bottom >= 2 * R._INNER_MARGIN and R._inside_ellipse(np.abs(mu), mv, a, b, R._INNER_MARGIN):
            break
    # Independent mouth-corner offsets, shrunk until the re-drawn band fits below the eyes.
    corner_off = _offsets(u[24:28], MOUTH_CORNER_OFFSET).reshape(2, 2)
    base_corners = np.array([[-half_w, mouth_y], [half_w, mouth_y]])
    for s in np.linspace(1.0, 0.0, 11):
        corners = base_corners + s * corner_off
        band = _mouth_band(corners[0], corners[1], cv, op)
        if (corners[1, 0] - corners[0, 0] >= half_w and band[:, 1].min() - eye_bottom >= 2 * R._INNER_MARGIN
                and R._inside_ellipse(band[:, 0], band[:, 1], a, b, R._INNER_MARGIN)):
            break
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])  # head frame -> image axes

    def image_offset(delta: np.ndarray) -> tuple[float, float]:
        o = rot @ delta
        return (float(o[0]), float(o[1]))

    g_r, g_t = math.sqrt(u[12]), 2 * math.pi * u[13]
    hl = _lerp(R._HIGHLIGHT_R, u[14])

    name = _BG_ORDER[min(int(u[15] * len(_BG_ORDER)), len(_BG_ORDER) - 1)]
    base = np.array(R.BACKGROUND_FAMILIES[name])
    off0 = (np.array([u[16], u[17], u[18]]) - 0.5) * 50.0
    spread = (u[19] - 0.5) * 120.0
    direction = np.array([1.0, 0.6, -0.4]) if _BG_ORDER.index(name) % 2 else np.array([-0.5, 1.0, 0.7])
    c0 = np.clip(base + off0, 0, 255)
    c1 = np.clip(c0 + spread * direction / np.linalg.norm(direction) * 0.8, 0, 255)
    for s in np.linspace(0.0, 1.0, 11):  # shrink the gradient, then the offset, until far from the parts
        cc0 = np.clip(base + off0 * (1 - s), 0, 255)
        cc1 = cc0 + (c1 - c0) * (1 - s)
        if R._segment_min_distance(cc0, cc1) >= R.MIN_BG_DISTANCE + 0.5:
            c0, c1 = cc0, cc1
            break
    else:
        c0 = c1 = base
    bg_angle = 2 * math.pi * float(u[16] * 7.0 % 1.0)
    return R.FaceParams(
        head_center=(cx, cy), head_axes=(a, b), head_angle=angle, eye_spacing=float(spacing),
        eye_height=float(eye_h), eye_radius=float(r), gaze=(g_r * math.cos(g_t), g_r * math.sin(g_t)),
        highlight_ratio=hl, mouth_y=float(mouth_y), mouth_half_width=float(half_w), mouth_curve=float(cv),
        mouth_open=float(op), highlight_colour=(250.0, 250.0, 250.0),
        bg_colours=(tuple(map(float, c0)), tuple(map(float, c1))), bg_angle=bg_angle, bg_name=name,
        left_eye_offset=image_offset(eyes[0] - base_eyes[0]), right_eye_offset=image_offset(eyes[1] - base_eyes[1]),
        mouth_left_offset=image_offset(corners[0] - base_corners[0]),
        mouth_right_offset=image_offset(corners[1] - base_corners[1]),
    )


def render_batch(z: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Faces of the latents `z` (`N x z_dim`): images `N x 3 x size x size` in [-1, 1] and loss
    weights `N x 1 x size x size` (1 on background/head, `part_weight` set later on eyes/mouth)."""
    imgs, parts = [], []
    for zi in z.detach().cpu().numpy():
        img, _ = R.render(face_from_z(zi), size)
        imgs.append(img)
        cls = classify(img)
        parts.append(np.isin(cls, (EYE, MOUTH, HIGHLIGHT)))
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    m = torch.from_numpy(np.stack(parts)).float()[:, None]
    return x, m


# ----------------------------------------------------------------------------------------------
# Configuration


@dataclass
class TrainConfig:
    """Training settings (recorded in checkpoints and the exported `training.json`)."""

    batch: int = 8
    lr: float = 0.003
    betas: tuple[float, float] = (0.9, 0.99)
    recon_weight: float = 1.0
    adv_weight: float = 0.0
    mapping_lr_scale: float = 10.0  # learning-rate factor of the mapping network (see Trainer)
    part_weight: float = 6.0        # extra L1 weight on eye / mouth pixels (small but decisive parts)
    coarse_weight: float = 1.0      # L1 on 4x average-pooled images: fast coarse gradients
    d_lr: float = 0.002
    r1_gamma: float = 0.2
    r1_interval: int = 16
    ema_nimg: int = 2000            # EMA half-life in images (with a 5% ramp-up, as StyleGAN2)
    w_avg_beta: float = 0.995
    seed: int = 0


def toy_generator_config(size: str = "small") -> GeneratorConfig:
    """The toy model's architecture. "small": 128 px, 128 channels up to 8 px, then halving
    (64 @ 16, 32 @ 32, 16 @ 64, 8 @ 128); z 32, w 128, 2 mapping layers, no noise inputs (the
    toy world has no stochastic texture).

    Dragging uses the b64 block (`feature_res=64`, 16 channels, i.e. H/2): DragGAN's b128 on 512 px
    models is H/4, but here b32 is only 32 x 32 (4 image px per feature px) for eyes 4-7 px in
    radius; in a trial drag of an eye by (6, -4) px on three seeds b64 ended 2.1 px from the
    target on average and b32 2.8 px. b64 is also `GeneratorConfig.default_feature_res` at 128 px.

    "medium": twice the channels from 16 px up (128 @ 16,
    64 @ 32, 32 @ 64, 16 @ 128), about 3x the compute. "tiny": a few channels, for tests."""
    if size == "medium":
        return GeneratorConfig(z_dim=32, w_dim=128, img_resolution=128, mapping_layers=2, channel_base=2048,
                               channel_max=128, use_noise=False, mapping_lr_multiplier=0.1, feature_res=64)
    if size == "tiny":
        return GeneratorConfig(z_dim=FACE_DIMS + 4, w_dim=16, img_resolution=32, mapping_layers=1, channel_base=64,
                               channel_max=16, use_noise=False, mapping_lr_multiplier=0.1, feature_res=16)
    return GeneratorConfig(z_dim=32, w_dim=128, img_resolution=128, mapping_layers=2, channel_base=1024,
                           channel_max=128, use_noise=False, mapping_lr_multiplier=0.1, feature_res=64)


def discriminator_config(g: GeneratorConfig) -> DiscriminatorConfig:
    """A discriminator matching the generator's widths."""
    return DiscriminatorConfig(img_resolution=g.img_resolution, channel_base=g.channel_base,
                               channel_max=g.channel_max)


# ----------------------------------------------------------------------------------------------
# Training state


class Trainer:
    """Holds G, G_ema, D, their optimisers and the counters; one `step()` = one G (and D) update."""

    def __init__(self, gcfg: GeneratorConfig, tcfg: TrainConfig) -> None:
        torch.manual_seed(tcfg.seed)
        self.gcfg, self.tcfg = gcfg, tcfg
        self.G = Generator(gcfg).train().requires_grad_(True)
        # The last block's toRGB starts at zero so early images are the smooth up-sampled
        # lower-resolution image (the low-res blocks learn the layout first).
        last = getattr(self.G.synthesis, f"b{gcfg.img_resolution}")
        with torch.no_grad():
            last.torgb.weight.mul_(0.1)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        # The mapping's parameters get `mapping_lr_scale` x the learning rate: StyleGAN2's 0.01
        # mapping multiplier keeps adversarial training stable, but a decoder must learn how z
        # drives the face quickly (with a 0.1 multiplier the images ignored z for thousands of steps).
        mapping = list(self.G.mapping.parameters())
        ids = {id(p) for p in mapping}
        rest = [p for p in self.G.parameters() if id(p) not in ids]
        self.opt_G = torch.optim.Adam([{"params": rest, "lr": tcfg.lr},
                                       {"params": mapping, "lr": tcfg.lr * tcfg.mapping_lr_scale}],
                                      lr=tcfg.lr, betas=tcfg.betas)
        self.D: Optional[Discriminator] = None
        self.opt_D = None
        if tcfg.adv_weight > 0:
            self.D = Discriminator(discriminator_config(gcfg)).train()
            c = tcfg.r1_interval / (tcfg.r1_interval + 1)  # lazy-regularisation correction
            self.opt_D = torch.optim.Adam(self.D.parameters(), lr=tcfg.d_lr * c, betas=(0.0, 0.99 ** c))
        self.step_idx = 0
        self.nimg = 0
        self.train_seconds = 0.0
        self.rng = np.random.default_rng(tcfg.seed)
        self.best_gate: float = -1.0
        self.last_stats: dict[str, float] = {}

    # -- losses ---------------------------------------------------------------------------------
    def _latents(self, n: int) -> torch.Tensor:
        return torch.from_numpy(self.rng.standard_normal((n, self.gcfg.z_dim))).float()

    def _generate(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ws = self.G.mapping(z)
        self._track_w_avg(ws)
        img, _ = self.G.synthesis(ws, noise_mode="const")
        return img, ws

    def _track_w_avg(self, ws: torch.Tensor) -> None:
        m = self.G.mapping
        if hasattr(m, "w_avg"):
            with torch.no_grad():
                m.w_avg.copy_(ws[:, 0].detach().mean(0).lerp(m.w_avg, self.tcfg.w_avg_beta))

    def recon_loss(self, fake: torch.Tensor, real: torch.Tensor, parts: torch.Tensor) -> torch.Tensor:
        """Weighted L1 (parts count `part_weight` more, dilated 1 px) + L1 of 4x pooled images."""
        t = self.tcfg
        weight = 1.0 + t.part_weight * F.max_pool2d(parts, 3, stride=1, padding=1)
        loss = ((fake - real).abs() * weight).mean()
        if t.coarse_weight > 0:
            k = max(1, fake.shape[-1] // 32)
            loss = loss + t.coarse_weight * (F.avg_pool2d(fake, k) - F.avg_pool2d(real, k)).abs().mean()
        return loss

    def step(self) -> dict[str, float]:
        """One optimisation step; returns scalar stats."""
        t = self.tcfg
        t0 = time.time()
        z = self._latents(t.batch)
        real, parts = render_batch(z, self.gcfg.img_resolution)
        stats: dict[str, float] = {}

        if self.D is not None:
            self._d_step(real, t.batch)
            stats.update(self.last_stats)

        self.opt_G.zero_grad(set_to_none=True)
        fake, _ = self._generate(z)
        loss = torch.zeros(())
        if t.recon_weight > 0:
            lr_ = self.recon_loss(fake, real, parts)
            stats["recon"] = lr_.item()
            loss = loss + t.recon_weight * lr_
        if self.D is not None and t.adv_weight > 0:
            adv = F.softplus(-self.D(fake)).mean()
            stats["g_adv"] = adv.item()
            loss = loss + t.adv_weight * adv
        loss.backward()
        self.opt_G.step()
        self.nimg += t.batch
        self.step_idx += 1
        self._update_ema()
        self.train_seconds += time.time() - t0
        stats["loss"] = loss.item()
        stats["sec"] = time.time() - t0
        return stats

    def _d_step(self, real: torch.Tensor, n: int) -> None:
        t = self.tcfg
        assert self.D is not None and self.opt_D is not None
        self.opt_D.zero_grad(set_to_none=True)
        with torch.no_grad():
            fake, _ = self._generate(self._latents(n))
        loss = F.softplus(self.D(fake)).mean() + F.softplus(-self.D(real)).mean()
        self.last_stats = {"d_loss": loss.item()}
        if self.step_idx % t.r1_interval == 0:
            r = real.detach().requires_grad_(True)
            logits = self.D(r)
            (grad,) = torch.autograd.grad(logits.sum(), r, create_graph=True)
            r1 = grad.square().sum(dim=[1, 2, 3]).mean()
            loss = loss + r1 * (t.r1_gamma / 2) * t.r1_interval
            self.last_stats["r1"] = r1.item()
        loss.backward()
        self.opt_D.step()

    def _update_ema(self) -> None:
        t = self.tcfg
        ema_nimg = min(t.ema_nimg, self.nimg * 0.05)
        beta = 0.5 ** (t.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for pe, p in zip(self.G_ema.parameters(), self.G.parameters()):
                pe.copy_(p.detach().lerp(pe, beta))
            for be, b in zip(self.G_ema.buffers(), self.G.buffers()):
                be.copy_(b)

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (plain tensors and Python values: `weights_only` loadable)."""
        return {
            "generator_config": self.gcfg.to_dict(),
            "train_config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self.tcfg).items()},
            "G": self.G.state_dict(), "G_ema": self.G_ema.state_dict(), "opt_G": self.opt_G.state_dict(),
            "D": None if self.D is None else self.D.state_dict(),
            "opt_D": None if self.opt_D is None else self.opt_D.state_dict(),
            "step": self.step_idx, "nimg": self.nimg, "train_seconds": self.train_seconds,
            "best_gate": self.best_gate, "rng": json.dumps(self.rng.bit_generator.state),
        }

    def save(self, path: Path) -> None:
        """Write a checkpoint atomically (temp file + rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "Trainer":
        """Rebuild a trainer from `save`'s file."""
        sd = torch.load(path, map_location="cpu", weights_only=True)
        tc = dict(sd["train_config"])
        tc["betas"] = tuple(tc["betas"])
        tr = cls(GeneratorConfig.from_dict(sd["generator_config"]), TrainConfig(**tc))
        tr.G.load_state_dict(sd["G"])
        tr.G_ema.load_state_dict(sd["G_ema"])
        tr.opt_G.load_state_dict(sd["opt_G"])
        if tr.D is not None and sd["D"] is not None:
            tr.D.load_state_dict(sd["D"])
            tr.opt_D.load_state_dict(sd["opt_D"])
        tr.step_idx, tr.nimg = int(sd["step"]), int(sd["nimg"])
        tr.train_seconds = float(sd["train_seconds"])
        tr.best_gate = float(sd["best_gate"])
        tr.rng.bit_generator.state = json.loads(sd["rng"])
        return tr


# ----------------------------------------------------------------------------------------------
# Sampling, gate, export


@torch.no_grad()
def sample_images(G: Generator, seeds: Sequence[int], psi: float) -> list[np.ndarray]:
    """`H x W x 3` uint8 images of `G` for `seeds` (the app's seed -> z), truncation `psi`."""
    out = []
    for s in seeds:
        img = G(G.seed_to_z(s), truncation_psi=psi, noise_mode="const")
        out.append(to_uint8(img))
    return out


def gate(G: Generator, n: int = 200, psis: Sequence[float] = (0.7, 1.0), first_seed: int = 100_000) -> dict[str, Any]:
    """Share of `n` fresh samples (seeds `first_seed ...`) in which the detector finds a complete
    face (head, two eyes, mouth), per truncation psi; with counts of the missing parts."""
    res: dict[str, Any] = {"n": n, "first_seed": first_seed}
    for psi in psis:
        ok, reasons = 0, {}
        for img in sample_images(G, range(first_seed, first_seed + n), psi):
            det = detect(img)
            ok += det.complete
            for r in det.reasons:
                key = r.split(" (")[0]
                reasons[key] = reasons.get(key, 0) + 1
        res[f"psi_{psi:g}"] = {"complete_rate": ok / n, "complete": ok, "missing": reasons}
    return res


def save_samples(G: Generator, path: Path, seeds: Sequence[int] = tuple(range(8))) -> None:
    """A grid: psi 1.0 samples (top row), psi 0.7 (middle), and the target renders of the same
    latents (bottom row) - so a glance shows what the model should draw."""
    from PIL import Image

    top = sample_images(G, seeds, 1.0)
    mid = sample_images(G, seeds, 0.7)
    targets = [R.render(face_from_z(G.seed_to_z(s)[0].cpu().numpy()), G.img_resolution)[0] for s in seeds]
    Image.fromarray(R.make_grid(top + mid + targets, columns=len(seeds))).save(path)


def export(G_ema: Generator, out: Path, info: dict[str, Any]) -> Path:
    """Write `G_ema` in the native format (`model.safetensors` + `config.json`) plus `training.json`."""
    G = Generator(G_ema.config)
    G.load_state_dict(G_ema.state_dict())
    weights = save_native(G, out)
    (Path(out) / TRAINING_INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
    return weights


# ----------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(prog="python -m stabledrag.toy.train_gan", description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", choices=("train", "eval", "samples"), default="train")
    p.add_argument("--minutes", type=float, default=90.0, help="training wall-clock budget for this call")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps in total (0 = no limit)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoint.pt")
    p.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="export folder (native format)")
    p.add_argument("--no-export", action="store_true")
    p.add_argument("--size", choices=("small", "medium", "tiny"), default="small", help="architecture preset")
    p.add_argument("--batch", type=int, default=None, help=f"default {TrainConfig.batch}; overrides on --resume")
    p.add_argument("--lr", type=float, default=None, help=f"default {TrainConfig.lr}; overrides on --resume")
    p.add_argument("--recon-weight", type=float, default=TrainConfig.recon_weight)
    p.add_argument("--adv-weight", type=float, default=TrainConfig.adv_weight)
    p.add_argument("--r1-gamma", type=float, default=TrainConfig.r1_gamma)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ckpt-minutes", type=float, default=4.0)
    p.add_argument("--sample-minutes", type=float, default=10.0)
    p.add_argument("--export-minutes", type=float, default=15.0, help="quick gate + export this often")
    p.add_argument("--gate-n", type=int, default=40, help="samples in the quick gate during training")
    p.add_argument("--eval-n", type=int, default=200, help="samples per psi in --stage eval")
    p.add_argument("--from-checkpoint", action="store_true", help="eval: use RUN_DIR's G_ema, not --out")
    return p


def _setup_logging(run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for h in (logging.FileHandler(run_dir / "log.txt"), logging.StreamHandler(sys.stderr)):
        h.setFormatter(fmt)
        root.addHandler(h)


def _info(tr: Trainer, gate_res: Optional[dict[str, Any]]) -> dict[str, Any]:
    return {
        "method": "StyleGAN2 generator trained as a decoder of latent-determined toy faces "
                  "(weighted L1, see stabledrag/toy/train_gan.py)"
                  + (f" + adversarial (weight {tr.tcfg.adv_weight})" if tr.tcfg.adv_weight > 0 else ""),
        "steps": tr.step_idx, "images_seen": tr.nimg, "train_seconds": round(tr.train_seconds, 1),
        "train_config": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(tr.tcfg).items()},
        "drag_feature_res": tr.gcfg.drag_feature_res, "gate": gate_res,
        "command": "python -m stabledrag.toy.train_gan " + " ".join(sys.argv[1:]),
    }


def train(args: argparse.Namespace) -> int:
    """The training stage; returns an exit code."""
    run_dir: Path = args.run_dir
    ckpt = run_dir / CHECKPOINT_NAME
    if args.resume and ckpt.is_file():
        tr = Trainer.load(ckpt)
        log.info("resumed from %s at step %d (%d images, %.0f s)", ckpt, tr.step_idx, tr.nimg, tr.train_seconds)
        if args.batch is not None:
            tr.tcfg.batch = args.batch
        if args.lr is not None:
            tr.tcfg.lr = args.lr
            tr.opt_G.param_groups[0]["lr"] = args.lr
            tr.opt_G.param_groups[1]["lr"] = args.lr * tr.tcfg.mapping_lr_scale
    else:
        if args.resume:
            log.info("no checkpoint at %s; starting fresh", ckpt)
        tcfg = TrainConfig(batch=args.batch or TrainConfig.batch, lr=args.lr or TrainConfig.lr,
                           recon_weight=args.recon_weight, adv_weight=args.adv_weight,
                           r1_gamma=args.r1_gamma, seed=args.seed)
        tr = Trainer(toy_generator_config(args.size), tcfg)
    n_g = sum(p.numel() for p in tr.G.parameters())
    log.info("G %.2f M params; config %s", n_g / 1e6, json.dumps(tr.gcfg.to_dict()))
    start = time.time()
    last = {"ckpt": start, "sample": start, "export": start}
    avg: dict[str, float] = {}
    done = False
    while not done:
        stats = tr.step()
        for k, v in stats.items():
            avg[k] = v if k not in avg else 0.9 * avg[k] + 0.1 * v
        now = time.time()
        done = (now - start) >= args.minutes * 60 or (args.max_steps and tr.step_idx >= args.max_steps)
        if tr.step_idx % 10 == 0 or tr.step_idx <= 3:
            log.info("step %d nimg %d %s", tr.step_idx, tr.nimg, " ".join(f"{k} {v:.4f}" for k, v in avg.items()))
        if done or now - last["ckpt"] >= args.ckpt_minutes * 60:
            tr.save(ckpt)
            last["ckpt"] = now
        if done or now - last["sample"] >= args.sample_minutes * 60:
            save_samples(tr.G_ema, run_dir / f"samples_{tr.step_idx:06d}.png")
            last["sample"] = now
        if not args.no_export and (done or now - last["export"] >= args.export_minutes * 60):
            g = gate(tr.G_ema, n=args.gate_n, psis=(0.7, 1.0))
            score = min(g["psi_0.7"]["complete_rate"], g["psi_1"]["complete_rate"])
            log.info("quick gate (n=%d): %s", args.gate_n, json.dumps(g))
            if score >= tr.best_gate:
                tr.best_gate = score
                export(tr.G_ema, args.out, _info(tr, g))
                log.info("exported to %s (score %.3f)", args.out, score)
                tr.save(ckpt)
            last["export"] = time.time()
    log.info("stopped at step %d after %.0f s of training in total", tr.step_idx, tr.train_seconds)
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """The eval stage: print the gate as JSON."""
    if args.from_checkpoint:
        G = Trainer.load(args.run_dir / CHECKPOINT_NAME).G_ema
        source = str(args.run_dir / CHECKPOINT_NAME)
    else:
        G = load_native(args.out)
        source = str(args.out)
    t0 = time.time()
    res = gate(G, n=args.eval_n, psis=(0.7, 1.0))
    res["model"] = source
    res["gate_passed"] = res["psi_0.7"]["complete_rate"] >= 0.9
    res["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(res, indent=2))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of `python -m stabledrag.toy.train_gan`."""
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if args.stage == "eval":
        logging.basicConfig(level=logging.WARNING)
        return evaluate(args)
    if args.stage == "samples":
        G = Trainer.load(args.run_dir / CHECKPOINT_NAME).G_ema if args.from_checkpoint else load_native(args.out)
        path = args.run_dir / "samples_eval.png"
        args.run_dir.mkdir(parents=True, exist_ok=True)
        save_samples(G, path)
        print(path)
        return 0
    _setup_logging(args.run_dir)
    return train(args)


if __name__ == "__main__":
    raise SystemExit(main())
