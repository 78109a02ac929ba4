"""Fixtures for the tests and the check scripts, made in code (nothing is downloaded):

- tiny random-weight models of both engines saved to disk, for the tests (the app's, the CLI's)
  and for trying the page without the bundled models (`python -m scripts.screenshots --tiny`);
- hostile input files (decompression bombs, corrupt session zips) for the hostile-input tests and
  `python -m scripts.hostile_check` (issue 13).

(The tiny models lived in `stabledrag.webapp`, the hostile files in `stabledrag.webapp.abuse`; the
web app imports no engine and holds no test program.)"""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def save_tiny_gan(directory: str | Path, resolution: int = 32, seed: int = 0) -> str:
    """A random StyleGAN2 generator (`resolution` px, tiny widths) in the native format, with
    non-zero noise strengths and w_avg so seeds give distinct images. Returns the folder path."""
    from .gan import Generator, GeneratorConfig, save_native

    cfg = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=resolution, channel_base=512, channel_max=32,
                          mapping_layers=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(cfg)
        with torch.no_grad():
            G.mapping.w_avg.normal_()
    path = Path(directory) / "tiny_gan"
    save_native(G, path)
    return str(path)


def save_tiny_sd(directory: str | Path, image_size: int = 64, seed: int = 0) -> str:
    """A tiny random Stable-Diffusion-shaped pipeline as a diffusers folder. Returns its path."""
    from .diffusion.tiny import save_tiny_pipeline

    return save_tiny_pipeline(Path(directory) / "tiny_sd", seed=seed, image_size=image_size)


# -- hostile input files ------------------------------------------------------------------------


def png_header_bomb(w: int = 13000, h: int = 13000) -> bytes:
    """A PNG of a few KB whose header claims `w x h` RGB pixels (rows of zeros)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    row = b"\0" * (w * 3 + 1)
    data = b"".join(comp.compress(row) for _ in range(64)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def big_png(side: int) -> bytes:
    """A real, valid `side x side` grey PNG (compresses to little)."""
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (128, 128, 128)).save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def session_zip(files: dict[str, bytes], engine: str = "gan", **doc: Any) -> bytes:
    """A session zip with a valid session.json (plus `doc` changes) and `files`."""
    base = {"format": "stabledrag-session", "version": 1, "engine": engine, "image_size": [32, 32],
            "points": [[4, 4], [9, 4]], "prompt": "", "settings": {}, "gan": {"model": "x", "seed": 0, "psi": 0.7}}
    base.update(doc)
    out = {"session.json": json.dumps(base).encode(), "image.png": big_png(32)}
    out.update(files)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in out.items():
            z.writestr(name, data)
    return buf.getvalue()


def inflation_bomb_zip(inflated_mb: int = 1024) -> bytes:
    """A session zip of about 1 MB whose image.png inflates to `inflated_mb` MB of zeros."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.writestr("session.json", json.dumps({"format": "stabledrag-session", "version": 1, "engine": "diffusion"}))
        info = zipfile.ZipInfo("image.png")
        info.compress_type = zipfile.ZIP_DEFLATED
        info._compresslevel = 1
        with z.open(info, "w", force_zip64=True) as f:
            chunk = b"\0" * (16 << 20)
            for _ in range(inflated_mb // 16):
                f.write(chunk)
    return buf.getvalue()


def corrupt_sessions() -> dict[str, tuple[str, bytes]]:
    """Malformed session files by name -> (engine tab, zip): bad CRC, encrypted entry, deep JSON,
    NaN points, huge .npy, pixel bombs, EPS."""
    good = session_zip({}, engine="gan")
    stored = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good)) as zin, zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as zout:
        for n in zin.namelist():
            zout.writestr(n, zin.read(n))
    bad_crc = bytearray(stored.getvalue())
    i = bad_crc.find(b"IDAT")
    bad_crc[i + 6] ^= 0xFF
    enc = bytearray(good)
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        k = enc.find(sig)
        while k >= 0:
            enc[k + off] |= 1
            k = enc.find(sig, k + 4)
    npy = io.BytesIO()
    np.lib.format.write_array_header_1_0(npy, {"descr": "<f4", "fortran_order": False, "shape": (200000, 200000)})
    deep = session_zip({})
    with zipfile.ZipFile(io.BytesIO(deep)) as z:
        files = {n: z.read(n) for n in z.namelist()}
    files["session.json"] = b"[" * 200_000 + b"]" * 200_000
    deep_buf = io.BytesIO()
    with zipfile.ZipFile(deep_buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files.items():
            z.writestr(n, d)
    nan_doc = json.dumps({"format": "stabledrag-session", "version": 1, "engine": "gan", "points": [[float("nan"), 1]]})
    nan_buf = io.BytesIO()
    with zipfile.ZipFile(nan_buf, "w") as z:
        z.writestr("session.json", nan_doc)
        z.writestr("image.png", big_png(32))
    return {
        "bad CRC": ("gan", bytes(bad_crc)),
        "encrypted entry": ("gan", bytes(enc)),
        "deeply nested JSON": ("gan", deep_buf.getvalue()),
        "NaN point": ("gan", nan_buf.getvalue()),
        "npy with a huge shape": ("gan", session_zip({"latent0.npy": npy.getvalue() + b"\0" * 64,
                                                      "latent.npy": npy.getvalue() + b"\0" * 64})),
        "three 13000x13000 PNGs": ("diffusion", session_zip(
            {"image.png": png_header_bomb(), "mask.png": png_header_bomb(), "result.png": png_header_bomb()},
            engine="diffusion")),
        "EPS named image.png": ("gan", session_zip({"image.png": b"%!PS-Adobe-3.0 EPSF-3.0\n"
                                                                  b"%%BoundingBox: 0 0 9 9\n"})),
    }
