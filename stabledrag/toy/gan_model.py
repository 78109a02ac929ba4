"""The bundled toy GAN's recipe: what each latent draws, its training targets, its architecture.

A StyleGAN2 adversarial run cannot converge on the shared 2-core CPU this ships from, but the toy
world is procedural, so every latent can be given its *own* face: `face_from_z` turns a latent `z`
into face parameters (each coordinate's normal CDF drives one parameter; constraints are met by
construction, with no rejection sampling, so the map is smooth almost everywhere) and the generator
learns `z -> render(face_from_z(z))` (`render_batch`: target images and part masks) with a weighted
L1 loss (a generator trained as a decoder of fixed codes; the training program is
`python -m scripts.train_gan`). Faces are roughly aligned (head within 13 px of the centre, small
tilt), as FFHQ is for StyleGAN: translation is what a StyleGAN learns slowest. Each eye and each
mouth corner also has its own offset, so that a drag of one part is something the generator can
draw. Since `z ~ N(0, I)` maps onto the whole face distribution, *every* random latent gives a
complete face and truncation towards `w_avg` gives an average face - exactly what dragging needs.

`toy_generator_config` is the network (the project's own StyleGAN2, `stabledrag.gan.networks`);
`discriminator_config` the matching discriminator for the optional adversarial term.
`bench toy --source rendered` renders ground-truth faces with `face_from_z`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..gan.discriminator import DiscriminatorConfig
from ..gan.networks import GeneratorConfig
from . import render as R
from .detect import EYE, HIGHLIGHT, MOUTH, classify

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
# Architecture


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
