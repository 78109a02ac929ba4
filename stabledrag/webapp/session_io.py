"""Export and import of an editing session, so work is never lost.

A session file is a zip holding:
  session.json   {"format": "stabledrag-session", "version": 1, "engine": "diffusion" | "gan",
                  "image_size": [W, H], "points": [[x, y], ...] (handle, target, handle, ...),
                  "prompt": str, "settings": {...}, "gan": {"model", "seed", "psi"}}
  image.png      the input image (Diff) / the generated image (GAN)
  mask.png       the editable region, white = may change (optional)
  result.png     the last result (optional)
  latent0.npy / latent.npy   GAN: generated and current W+ latents (optional)
  weight_delta.npz            GAN, projected photo with PTI: tuned - original weights by name (optional)
  photo.png                   GAN, projected photo: the uploaded photo, for paste-back (optional)
  report.json    the engine's report of the last result (optional)

Reading is defensive: only these names are read (never extracted to disk), sizes are capped,
images are decoded with PIL, arrays with `allow_pickle=False`, and anything wrong raises
UserError saying what.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import UserError
from .masks import mask_from_png_array, mask_to_png_array

FORMAT = "stabledrag-session"
VERSION = 1
ENGINES = ("diffusion", "gan")
MAX_MEMBER_BYTES = 64 * 1024 * 1024
MAX_TOTAL_BYTES = 160 * 1024 * 1024
_KNOWN = {"session.json", "image.png", "mask.png", "result.png", "latent0.npy", "latent.npy", "report.json",
          "weight_delta.npz", "photo.png"}


@dataclass
class SessionData:
    """Everything a session file holds (see the module docstring).

    image / result: `H x W x 3` uint8. mask: `H x W` bool or None. clicks: image px.
    latents: GAN latents by name ("latent0", "latent"), `1 x num_ws x w_dim` float32.
    weight_delta: GAN PTI weight delta (`{state-dict name: float32 array}`). photo: the projected
    photo (`H' x W' x 3` uint8) or None.
    """

    engine: str
    image: np.ndarray
    clicks: list[tuple[int, int]] = field(default_factory=list)
    mask: Optional[np.ndarray] = None
    result: Optional[np.ndarray] = None
    settings: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""
    gan: dict[str, Any] = field(default_factory=dict)
    latents: dict[str, np.ndarray] = field(default_factory=dict)
    report: Optional[dict[str, Any]] = None
    weight_delta: dict[str, np.ndarray] = field(default_factory=dict)
    photo: Optional[np.ndarray] = None


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})
    return buf.getvalue()


def _read_npz(z: zipfile.ZipFile, name: str) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(z.read(name)), allow_pickle=False) as arrays:
            out = {k: np.asarray(arrays[k]) for k in arrays.files}
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise UserError(f"The session's {name} is not readable ({e}).") from None
    if not all(a.dtype.kind == "f" and np.isfinite(a).all() for a in out.values()):
        raise UserError(f"The session's {name} holds something other than finite float weights.")
    return {k: a.astype(np.float32) for k, a in out.items()}


def session_bytes(data: SessionData) -> bytes:
    """The zip file of `data` as bytes."""
    if data.engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}")
    h, w = data.image.shape[:2]
    doc = {
        "format": FORMAT, "version": VERSION, "engine": data.engine, "image_size": [int(w), int(h)],
        "points": [[int(x), int(y)] for x, y in data.clicks], "prompt": data.prompt,
        "settings": data.settings, "gan": data.gan,
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("session.json", json.dumps(doc, indent=2, default=_json_default))
        z.writestr("image.png", _png(data.image))
        if data.mask is not None:
            z.writestr("mask.png", _png(mask_to_png_array(data.mask)))
        if data.result is not None:
            z.writestr("result.png", _png(data.result))
        for name, arr in data.latents.items():
            z.writestr(f"{name}.npy", _npy(arr))
        if data.weight_delta:
            z.writestr("weight_delta.npz", _npz(data.weight_delta))
        if data.photo is not None:
            z.writestr("photo.png", _png(data.photo))
        if data.report is not None:
            z.writestr("report.json", json.dumps(data.report, indent=2, default=_json_default))
    return buf.getvalue()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    return str(o)


def write_session(data: SessionData, path: str | Path) -> Path:
    """Write `data` to the zip file `path`; returns the path."""
    path = Path(path)
    path.write_bytes(session_bytes(data))
    return path


def _read_image(z: zipfile.ZipFile, name: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(z.read(name))) as im:
            im.load()
            return np.asarray(im.convert("L" if name == "mask.png" else "RGB"))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"The session's {name} is not a readable image ({e}).") from None


def _read_npy(z: zipfile.ZipFile, name: str) -> np.ndarray:
    try:
        arr = np.load(io.BytesIO(z.read(name)), allow_pickle=False)
    except (ValueError, OSError) as e:
        raise UserError(f"The session's {name} is not a readable latent ({e}).") from None
    if arr.dtype.kind != "f" or arr.ndim not in (2, 3) or not np.isfinite(arr).all():
        raise UserError(f"The session's {name} is not a latent (a finite float array of 2 or 3 dimensions).")
    return arr.astype(np.float32)


def read_session(source: bytes | str | Path, expect_engine: Optional[str] = None) -> SessionData:
    """Read a session zip (bytes or a path). `expect_engine`: raise UserError when the session
    belongs to the other tab. Raises UserError for anything that is not a valid session file."""
    blob = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    try:
        z = zipfile.ZipFile(io.BytesIO(blob))
    except zipfile.BadZipFile:
        raise UserError("That file is not a session file: export one with 'Export session' (a .zip).") from None
    with z:
        infos = {i.filename: i for i in z.infolist()}
        if "session.json" not in infos or "image.png" not in infos:
            raise UserError("That zip is not a StableDrag session (it has no session.json and image.png).")
        total = 0
        for name, info in infos.items():
            if name in _KNOWN:
                if info.file_size > MAX_MEMBER_BYTES:
                    raise UserError(f"The session's {name} is too large ({info.file_size // 2**20} MB).")
                total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise UserError("The session file is too large to import.")
        try:
            doc = json.loads(z.read("session.json").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"The session's session.json is not valid JSON ({e}).") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise UserError("That zip is not a StableDrag session (unknown format).")
        if not isinstance(doc.get("version"), int) or doc["version"] > VERSION:
            raise UserError("The session was written by a newer StableDrag Studio; please update the app.")
        engine = doc.get("engine")
        if engine not in ENGINES:
            raise UserError(f"The session names an unknown engine {engine!r}.")
        if expect_engine is not None and engine != expect_engine:
            tab = "StableDrag-Diff" if engine == "diffusion" else "StableDrag-GAN"
            raise UserError(f"This session belongs to the {tab} tab; import it there.")
        image = _read_image(z, "image.png")
        h, w = image.shape[:2]
        clicks = _points(doc.get("points", []), (w, h))
        mask = None
        if "mask.png" in infos:
            mask = mask_from_png_array(_read_image(z, "mask.png"), (w, h))
        result = _read_image(z, "result.png") if "result.png" in infos else None
        latents = {n[:-4]: _read_npy(z, n) for n in ("latent0.npy", "latent.npy") if n in infos}
        weight_delta = _read_npz(z, "weight_delta.npz") if "weight_delta.npz" in infos else {}
        photo = _read_image(z, "photo.png") if "photo.png" in infos else None
        report = None
        if "report.json" in infos:
            try:
                report = json.loads(z.read("report.json").decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                report = None  # the report is informative only; a damaged one is dropped
        settings = doc.get("settings") or {}
        gan = doc.get("gan") or {}
        if not isinstance(settings, dict) or not isinstance(gan, dict):
            raise UserError("The session's settings are damaged (not a JSON object).")
        prompt = doc.get("prompt") or ""
        return SessionData(engine=engine, image=image, clicks=clicks, mask=mask, result=result,
                           settings=settings, prompt=str(prompt), gan=gan, latents=latents, report=report,
                           weight_delta=weight_delta, photo=photo)


def _points(raw: Any, size: tuple[int, int]) -> list[tuple[int, int]]:
    w, h = size
    if not isinstance(raw, list):
        raise UserError("The session's points are damaged (not a list).")
    out = []
    for p in raw:
        if not (isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p)):
            raise UserError("The session's points are damaged (each must be [x, y]).")
        x, y = int(round(p[0])), int(round(p[1]))
        if not (0 <= x < w and 0 <= y < h):
            raise UserError(f"The session's point ({x}, {y}) is outside its {w}x{h} image.")
        out.append((x, y))
    return out
