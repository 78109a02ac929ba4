"""Export and import of an editing session, so work is never lost.

A session file is a zip holding:
  session.json   {"format": "stabledrag-session", "version": 2, "engine": "diffusion" | "gan" (a
                  registered app engine's name, `stabledrag.engine.app_engines()`),
                  "image_size": [W, H], "points": [[x, y], ...] (handle, target, handle, ...),
                  "prompt": str, "settings": {...}, "gan": {"model", "seed", "psi"}}
  image.png      the input image (Diff) / the generated image (GAN)
  mask.png       the editable region, white = may change (optional)
  result.png     the last result (optional)
  latent0.npy / latent.npy   GAN: generated and current W+ latents (optional)
  weight_delta.npz            GAN, projected photo with PTI: tuned - original weights by name (optional)
  photo.png                   GAN, projected photo: the uploaded photo, for paste-back (optional)
  report.json    the engine's report of the last result (optional)

Reading is defensive: only these names are read (never extracted to disk); each entry is
inflated in chunks and stopped at `Limits.max_inflated_bytes` (the size an entry declares is not
trusted); images and the mask go through `stabledrag.imageio` (format allow-list, pixel limits);
JSON is parsed strictly (no NaN/Infinity, bounded nesting); arrays are read with
`allow_pickle=False` after their header's shape is checked; anything wrong raises UserError
saying what.
"""

from __future__ import annotations

import io
import json
import math
import threading
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image

from .. import engine as registry
from ..errors import UserError
from ..imageio import read_image_array, read_mask, release_memory
from ..limits import LIMITS, Limits, check_point_count, check_prompt
from .masks import mask_to_png_array
from .messages import hide_paths_in

FORMAT = "stabledrag-session"
#: The version written. 2: the settings use today's names (`max_steps`, `lr`); 1: the former ones
#: (`drag_steps`, `drag_lr`, GAN `step_size`), which the tabs upgrade on import
#: (`TabSettings.OLD_FIELD_NAMES`). The version changed with the names so that an app that knows
#: only version 1 (and ignores unknown keys) refuses a new file instead of dropping those settings.
VERSION = 2
#: The versions this app reads.
READ_VERSIONS = (1, 2)
#: A latent holds num_ws x w_dim values (18 x 512 at 1024 px); more is not a latent of any model.
MAX_LATENT_VALUES = 64 * 1024
_KNOWN = {"session.json", "image.png", "mask.png", "result.png", "latent0.npy", "latent.npy", "report.json",
          "weight_delta.npz", "photo.png"}
#: PTI's weight delta is as large as the generator (up to ~130 MB at 1024 px), so it gets its own cap.
MAX_WEIGHT_DELTA_BYTES = 256 * 2**20


def session_engines() -> tuple[str, ...]:
    """The engine names a session file may carry: the registered app engines (`AppEngine`)."""
    return tuple(e.name for e in registry.app_engines())


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


def _npy_header(blob: bytes) -> tuple[tuple[int, ...], np.dtype, int]:
    """`(shape, dtype, number of values)` from an `.npy` file's header, read without building the
    array (header at most 4 KB). Raises ValueError / SyntaxError / TypeError on a bad header."""
    buf = io.BytesIO(blob)
    version = np.lib.format.read_magic(buf)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0}.get(version, np.lib.format.read_array_header_2_0)
    shape, _, dtype = read_header(buf, max_header_size=4096)
    return shape, dtype, int(np.prod(shape, dtype=np.float64)) if shape else 1


def _read_npz(blob: bytes, name: str, cap: int = 0) -> dict[str, np.ndarray]:
    """The float arrays of an `.npz` (`{name: array}`), read without trusting it: members are
    inflated in chunks up to `cap` bytes in all (default `MAX_WEIGHT_DELTA_BYTES`), and each
    `.npy` header (float, no larger than its bytes) is checked before the array is built."""
    cap = cap or MAX_WEIGHT_DELTA_BYTES
    out: dict[str, np.ndarray] = {}
    total = 0
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy") or info.flag_bits & 0x1:
                    raise UserError(f"The session's {name} holds something other than weight arrays.")
                with zf.open(info) as f:
                    data = f.read(cap - total + 1)
                total += len(data)
                if total > cap:
                    raise UserError(f"The session's {name} inflates to more than {cap // 2**20} MB; "
                                    "this is not a session this app wrote.")
                _, dtype, count = _npy_header(data)
                if dtype.kind != "f" or count * dtype.itemsize > len(data):
                    raise UserError(f"The session's {name} holds something other than finite float weights.")
                out[info.filename[:-4]] = np.load(io.BytesIO(data), allow_pickle=False)
    except UserError:
        raise
    except (ValueError, OSError, EOFError, SyntaxError, TypeError, zipfile.BadZipFile, zlib.error) as e:
        raise UserError(f"The session's {name} is not readable ({type(e).__name__}).") from None
    if not all(a.dtype.kind == "f" and np.isfinite(a).all() for a in out.values()):
        raise UserError(f"The session's {name} holds something other than finite float weights.")
    return {k: a.astype(np.float32) for k, a in out.items()}


def session_bytes(data: SessionData) -> bytes:
    """The zip file of `data` as bytes."""
    known = session_engines()
    if data.engine not in known:
        raise ValueError(f"engine must be one of {known}")
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
        if data.report is not None:  # server paths (the model's folder) are not the recipient's business
            report = hide_paths_in(json.loads(json.dumps(data.report, default=_json_default)))
            z.writestr("report.json", json.dumps(report, indent=2))
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


def _read_member(z: zipfile.ZipFile, name: str, budget: list[int], limits: Limits,
                 cap: Optional[int] = None) -> bytes:
    """The bytes of entry `name`, inflated in chunks and stopped as soon as they exceed
    `limits.max_inflated_bytes` (or the session's remaining `budget[0]`): the size an entry
    declares is never trusted. Bad CRC, corrupt deflate data and encrypted entries -> UserError."""
    info = z.getinfo(name)
    if info.flag_bits & 0x1:
        raise UserError(f"The session's {name} is encrypted; export the session again without a password.")
    cap = min(limits.max_inflated_bytes if cap is None else cap, budget[0])
    chunks, n = [], 0
    try:
        with z.open(info) as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                n += len(chunk)
                if n > cap:
                    raise UserError(f"The session's {name} inflates to more than {cap // 2**20} MB; "
                                    "this is not a session this app wrote.")
                chunks.append(chunk)
    except zipfile.BadZipFile as e:
        text = "its checksum does not match" if "CRC" in str(e) else "it is damaged"
        raise UserError(f"The session's {name} cannot be read ({text}); export the session again.") from None
    except (zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and "encrypted" in str(e):
            raise UserError(f"The session's {name} is encrypted; export the session again without a password.") \
                from None
        kind = "compressed in an unsupported way" if isinstance(e, NotImplementedError) else "damaged"
        raise UserError(f"The session's {name} cannot be read (its data is {kind}); export the session again.") \
            from None
    budget[0] -= n
    return b"".join(chunks)


def _read_image(blob: bytes, name: str) -> np.ndarray:
    return read_image_array(blob, f"session's {name}")  # ImageInputError: "The session's image.png is ..."


def _read_mask(blob: bytes, size: tuple[int, int]) -> np.ndarray:
    return read_mask(blob, size, what="session's mask.png")


def _read_npy(blob: bytes, name: str, limits: Limits) -> np.ndarray:
    bad = f"The session's {name} is not a latent (a finite float array of 2 or 3 dimensions"
    try:
        shape, dtype, count = _npy_header(blob)
    except (ValueError, OSError, SyntaxError, TypeError) as e:
        raise UserError(f"The session's {name} is not a readable latent ({type(e).__name__}).") from None
    if dtype.kind != "f" or len(shape) not in (2, 3) or count * dtype.itemsize > len(blob):
        raise UserError(bad + f"; it claims {dtype} of shape {tuple(shape)[:4]}).")
    if count > MAX_LATENT_VALUES:
        raise UserError(bad + f" of at most {MAX_LATENT_VALUES} values).")
    try:
        arr = np.load(io.BytesIO(blob), allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"The session's {name} is not a readable latent ({type(e).__name__}).") from None
    if arr.dtype.kind != "f" or arr.ndim not in (2, 3) or not np.isfinite(arr).all():
        raise UserError(bad + ").")
    return arr.astype(np.float32)


def _load_json(blob: bytes, name: str, limits: Limits) -> Any:
    """Parse `blob` as strict JSON: NaN / Infinity are refused, nesting deeper than
    `limits.max_json_depth` is refused before parsing (no RecursionError)."""
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"The session's {name} is not UTF-8 text.") from None
    if _json_depth(text) > limits.max_json_depth:
        raise UserError(f"The session's {name} is nested more than {limits.max_json_depth} levels deep.")

    def no_constant(c: str) -> Any:
        raise UserError(f"The session's {name} holds {c}, which is not a number this app accepts.")

    try:
        return json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as e:
        raise UserError(f"The session's {name} is not valid JSON ({e.msg} at line {e.lineno}).") from None
    except RecursionError:
        raise UserError(f"The session's {name} is nested too deeply.") from None


def _json_depth(text: str) -> int:
    """Deepest bracket nesting of a JSON text (brackets inside strings ignored)."""
    depth = deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


#: Session files read at once (each may inflate up to `Limits.max_inflated_total`).
_READ_SLOTS = threading.BoundedSemaphore(2)


def read_session(source: bytes | str | Path, expect_engine: Optional[str] = None,
                 limits: Limits = LIMITS) -> SessionData:
    """Read a session zip (bytes or a path). `expect_engine`: raise UserError when the session
    belongs to the other tab. Raises UserError for anything that is not a valid session file,
    and for anything beyond `limits` (file bytes, inflated bytes counted while reading, pixels,
    JSON depth, points, prompt length, latent size). At most two sessions are read at once."""
    with _READ_SLOTS:
        try:
            return _read_session(source, expect_engine, limits)
        finally:
            release_memory()


def _read_session(source: bytes | str | Path, expect_engine: Optional[str], limits: Limits) -> SessionData:
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.stat().st_size > limits.max_session_bytes:
            raise UserError(f"The session file is too large; sessions this app writes are under "
                            f"{limits.max_session_bytes // 2**20} MB.")
        blob = path.read_bytes()
    else:
        blob = bytes(source)
    if len(blob) > limits.max_session_bytes:
        raise UserError(f"The session file is too large; sessions this app writes are under "
                        f"{limits.max_session_bytes // 2**20} MB.")
    try:
        z = zipfile.ZipFile(io.BytesIO(blob))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise UserError("That file is not a session file: export one with 'Export session' (a .zip).") from None
    budget = [limits.max_inflated_total]
    with z:
        infos = {i.filename: i for i in z.infolist()}
        if "session.json" not in infos or "image.png" not in infos:
            raise UserError("That zip is not a StableDrag session (it has no session.json and image.png).")
        doc = _load_json(_read_member(z, "session.json", budget, limits), "session.json", limits)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise UserError("That zip is not a StableDrag session (unknown format).")
        version = doc.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version not in READ_VERSIONS:
            if isinstance(version, int) and not isinstance(version, bool) and version > max(READ_VERSIONS):
                raise UserError("The session was written by a newer StableDrag Studio; please update the app.")
            raise UserError(f"The session's version {str(version)[:20]!r} is not one this app reads "
                            f"({', '.join(map(str, READ_VERSIONS))}).")
        engine = doc.get("engine")
        if engine not in session_engines():
            raise UserError(f"The session names an unknown engine {str(engine)[:40]!r}.")
        if expect_engine is not None and engine != expect_engine:
            raise UserError(f"This session belongs to the {registry.title(engine)} tab; import it there.")
        image = _read_image(_read_member(z, "image.png", budget, limits), "image.png")
        h, w = image.shape[:2]
        clicks = _points(doc.get("points", []), (w, h), limits)
        mask = None
        if "mask.png" in infos:
            mask = _read_mask(_read_member(z, "mask.png", budget, limits), (w, h))
        result = None
        if "result.png" in infos:
            result = _read_image(_read_member(z, "result.png", budget, limits), "result.png")
        latents = {n[:-4]: _read_npy(_read_member(z, n, budget, limits), n, limits)
                   for n in ("latent0.npy", "latent.npy") if n in infos}
        weight_delta = {}
        if "weight_delta.npz" in infos:
            big = [MAX_WEIGHT_DELTA_BYTES]  # its own budget: not counted against the images'
            weight_delta = _read_npz(_read_member(z, "weight_delta.npz", big, limits, cap=MAX_WEIGHT_DELTA_BYTES),
                                     "weight_delta.npz")
        photo = None
        if "photo.png" in infos:
            photo = _read_image(_read_member(z, "photo.png", budget, limits), "photo.png")
        report = None
        if "report.json" in infos:
            try:
                report = _load_json(_read_member(z, "report.json", budget, limits), "report.json", limits)
            except UserError:
                report = None  # the report is informative only; a damaged one is dropped
        settings = doc.get("settings") or {}
        gan = doc.get("gan") or {}
        if not isinstance(settings, dict) or not isinstance(gan, dict):
            raise UserError("The session's settings are damaged (not a JSON object).")
        prompt = check_prompt(doc.get("prompt") or "", limits)
        return SessionData(engine=engine, image=image, clicks=clicks, mask=mask, result=result,
                           settings=settings, prompt=prompt, gan=gan, latents=latents, report=report,
                           weight_delta=weight_delta, photo=photo)


def _points(raw: Any, size: tuple[int, int], limits: Limits = LIMITS) -> list[tuple[int, int]]:
    w, h = size
    if not isinstance(raw, list):
        raise UserError("The session's points are damaged (not a list).")
    check_point_count(len(raw) // 2, limits)
    out = []
    for p in raw:
        if not (isinstance(p, (list, tuple)) and len(p) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p)):
            raise UserError("The session's points are damaged (each must be [x, y], two finite numbers).")
        x, y = int(round(p[0])), int(round(p[1]))
        if not (0 <= x < w and 0 <= y < h):
            raise UserError(f"The session's point ({x}, {y}) is outside its {w}x{h} image.")
        out.append((x, y))
    return out
