"""Issue 13: hostile and odd input to the web app's handlers (sessions, settings, points, layers).
Each numbered example of the issue is a case here, asserting the message a person gets."""

import io
import json
import struct
import zipfile
import zlib

import numpy as np
import pytest
from PIL import Image

from stabledrag.errors import UserError
from stabledrag.webapp import diff_handlers as dh
from stabledrag.webapp import gan_handlers as gh
from stabledrag.webapp import session_io, views
from stabledrag.webapp.state import DiffState


def _png(arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(w=13000, h=13000):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))


def _session_files(engine="diffusion", **doc_changes):
    data = session_io.SessionData(engine=engine, image=np.full((32, 32, 3), 90, np.uint8), clicks=[(4, 4), (9, 4)],
                                  settings=dh.DiffSettings().to_dict() if engine == "diffusion" else {})
    with zipfile.ZipFile(io.BytesIO(session_io.session_bytes(data))) as z:
        files = {n: z.read(n) for n in z.namelist()}
    doc = json.loads(files["session.json"])
    doc.update(doc_changes)
    files["session.json"] = json.dumps(doc).encode()
    return files


def _zip(files, compression=zipfile.ZIP_DEFLATED):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_a_valid_session_still_imports():
    data = session_io.read_session(_zip(_session_files()))
    assert data.clicks == [(4, 4), (9, 4)] and data.image.shape == (32, 32, 3)


def test_entry_that_inflates_beyond_the_cap_is_refused_while_reading():
    # issue 13 #1: a small zip whose entry inflates to far more than any session holds
    files = _session_files()
    files["result.png"] = b"\0" * (40 * 2**20)  # 40 MB of zeros: ~40 KB deflated
    blob = _zip(files)
    assert len(blob) < 2**20
    with pytest.raises(UserError, match="result.png inflates to more than 32 MB"):
        session_io.read_session(blob)


def test_entry_that_lies_about_its_size_is_refused():
    # the declared size says 100 bytes; the data inflates to 20 MB: never trusted, caught by the CRC / cap
    files = _session_files()
    files["result.png"] = b"\0" * (20 * 2**20)
    blob = bytearray(_zip(files))
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory
        start = 0
        while (i := blob.find(sig, start)) >= 0:
            name_len = struct.unpack("<H", blob[i + (26 if sig == b"PK\x03\x04" else 28):][:2])[0]
            name_at = i + (30 if sig == b"PK\x03\x04" else 46)
            if bytes(blob[name_at:name_at + name_len]) == b"result.png":
                blob[i + off:i + off + 4] = struct.pack("<I", 100)
            start = i + 4
    with pytest.raises(UserError, match="result.png cannot be read"):
        session_io.read_session(bytes(blob))


def test_pixel_bombs_inside_a_session_are_refused():
    # issue 13 #2: three 13000x13000 PNGs in a few KB
    for name in ("image.png", "mask.png", "result.png"):
        files = _session_files()
        files[name] = _bomb_png()
        with pytest.raises(UserError, match=rf"The session's {name} is too large \(13000x13000 pixels\)"):
            session_io.read_session(_zip(files))


def test_eps_named_image_png_in_a_session_is_refused():
    # issue 13 #5
    files = _session_files()
    files["image.png"] = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n"
    with pytest.raises(UserError, match="not a PNG, JPEG"):
        session_io.read_session(_zip(files))


def test_bad_crc_corrupt_deflate_and_encrypted_entries():
    # issue 13 #10
    files = _session_files()
    stored = bytearray(_zip(files, zipfile.ZIP_STORED))
    i = stored.find(b"IDAT")  # a byte of image.png's pixel data
    stored[i + 6] ^= 0xFF
    with pytest.raises(UserError, match="image.png cannot be read \\(its checksum does not match\\)"):
        session_io.read_session(bytes(stored))

    files = _session_files()
    files["image.png"] = b"\0" * 50_000
    deflated = bytearray(_zip(files))
    j = deflated.find(b"image.png") + len(b"image.png")  # the first bytes of its deflate stream
    deflated[j:j + 8] = b"\xff" * 8
    with pytest.raises(UserError, match="image.png cannot be read \\(its data is damaged\\)"):
        session_io.read_session(bytes(deflated))

    enc = bytearray(_zip(_session_files()))
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = 0
        while (k := enc.find(sig, start)) >= 0:
            enc[k + off] |= 0x1
            start = k + 4
    with pytest.raises(UserError, match="session.json is encrypted"):
        session_io.read_session(bytes(enc))


def test_nan_points_deep_json_and_nan_settings_in_session_json():
    files = _session_files()
    doc_text = json.dumps({**json.loads(_session_files()["session.json"]), "points": [[4, 4], [9, 4]]})
    files["session.json"] = doc_text.replace("[4, 4]", "[NaN, 4]").encode()
    with pytest.raises(UserError, match="session.json holds NaN"):
        session_io.read_session(_zip(files))
    files["session.json"] = doc_text.replace('"prompt": ""', '"prompt": -Infinity').encode()
    with pytest.raises(UserError, match="session.json holds -Infinity"):
        session_io.read_session(_zip(files))
    files["session.json"] = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(UserError, match="nested more than 32 levels"):
        session_io.read_session(_zip(files))


def test_out_of_range_settings_in_a_session_give_a_message():
    # issue 13 #11: a session with absurd settings imports no more; the API never echoes NaN
    settings = dict(dh.DiffSettings().to_dict(), r_p=1e6)
    blob = _zip(_session_files(settings=settings))
    with pytest.raises(UserError, match="r_p must be a number between 1 and 64; got 1e\\+06"):
        dh.import_session(DiffState(), blob, max_side=1024)


def test_npy_claiming_a_huge_shape_is_refused_from_its_header():
    files = _session_files(engine="gan", gan={"model": "m", "seed": 0, "psi": 0.7})
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (100_000, 100_000)})
    files["latent.npy"] = buf.getvalue() + b"\0" * 64
    with pytest.raises(UserError, match=r"latent.npy is not a latent .*claims float32 of shape \(100000, 100000\)"):
        session_io.read_session(_zip(files))


def test_too_many_points_and_long_prompts_in_a_session():
    files = _session_files(points=[[i % 30, 1] for i in range(2000)])  # 1000 pairs
    with pytest.raises(UserError, match="Too many drag pairs \\(1000\\); use at most 64"):
        session_io.read_session(_zip(files))
    with pytest.raises(UserError, match="prompt is too long"):
        session_io.read_session(_zip(_session_files(prompt="x" * 8_000_000)))


@pytest.mark.parametrize("name, value, message", [
    ("r_p", float("nan"), "r_p must be a finite number"),
    ("r_p", float("inf"), "r_p must be a finite number"),
    ("r_p", 1e6, "r_p must be a number between 0 and 64"),
    ("r_m", "abc", "r_m must be a number between 0 and 64, not 'abc'"),
    ("tau", float("nan"), "tau must be a finite number"),
    ("lr", 1e20, "The step size must be a number between"),
    ("step_size", 1e20, "The step size must be a number between"),  # the former name (old sessions)
    ("max_steps", 10**9, "Steps per Start must be a whole number between 1 and 2000"),
])
def test_gan_settings_are_finite_and_bounded(name, value, message):
    with pytest.raises(UserError, match=message):
        gh.GanSettings.from_values({name: value})
    assert gh.GanSettings.from_values({"r_m": 0, "r_p": 0}).r_p is None  # 0 = automatic still works


@pytest.mark.parametrize("name, value, message", [
    ("seed", 2**63, "The seed must be a whole number between 0 and 2147483647; got 9223372036854775808"),
    ("seed", float("inf"), "The seed must be a finite number"),
    ("seed", -1, "The seed must be a whole number between 0"),
    ("stop_distance", float("inf"), "The stop distance must be a finite number"),
    ("tau", float("nan"), "tau must be a finite number"),
    ("lr", 1e20, "The drag learning rate must be a number between"),
    ("drag_lr", 1e20, "The drag learning rate must be a number between"),  # the former name (old sessions)
    ("max_steps", 10**9, "Drag steps must be a whole number between 1 and 2000"),
    ("r_p", 1e6, "r_p must be a number between 1 and 64"),
])
def test_diff_settings_are_finite_and_bounded(name, value, message):
    with pytest.raises(UserError, match=message):
        dh.DiffSettings.from_values({name: value})


def test_gan_generate_refuses_nan_truncation_and_bad_seeds():
    # issue 13 #11: psi = NaN gave a black image reported as "Generated seed 3"
    from stabledrag.webapp.state import GanState

    for seed, psi, message in ((3, float("nan"), "truncation ψ must be a finite number"),
                               (float("inf"), 0.7, "The seed must be a finite number"),
                               (2**63, 0.7, "The seed must be a whole number between 0 and 2147483647"),
                               ("x", 0.7, "The seed must be a whole number")):
        with pytest.raises(UserError, match=message):
            gh.generate(GanState(), "m", seed, psi, generator=None)


def test_point_count_is_bounded():
    s = DiffState(image=np.zeros((64, 64, 3), np.uint8))
    text = " ".join(f"{i % 60},1:{i % 60},9" for i in range(1000))  # 1k pairs
    with pytest.raises(UserError, match="Too many drag pairs \\(1000\\); use at most 64"):
        views.set_points_text(s, text)
    s.clicks = [(1, 1), (2, 2)] * 64
    with pytest.raises(UserError, match="Too many drag pairs \\(65\\)"):
        views.add_point(s, (400, 400))  # away from the markers (a click on one selects it)
    with pytest.raises(UserError, match="did not land on the image"):
        views.add_point(DiffState(image=np.zeros((64, 64, 3), np.uint8)), (float("nan"), 3))


def test_long_prompt_is_refused_before_any_work():
    s = DiffState(image=np.zeros((64, 64, 3), np.uint8), clicks=[(1, 1), (9, 1)])
    with pytest.raises(UserError, match="The prompt is too long \\(8000000 characters\\); use at most 1000"):
        next(dh.run_edit(s, None, "x" * 8_000_000, dh.DiffSettings(), get_editor=lambda: 1 / 0))


def test_region_editor_layer_bomb_is_refused_before_decoding():
    # issue 13 #2: a 493 KB layer took +2.6 GB in Gradio's own decoder
    from stabledrag.webapp.safe_editor import SafeImageEditor

    ed = SafeImageEditor(type="numpy", image_mode="RGBA")
    import gradio as gr

    with pytest.raises(gr.Error, match="painting is too large \\(13000x13000 pixels\\)"):
        ed.convert_and_format_image(_bomb_png())
    with pytest.raises(gr.Error, match="not a PNG"):
        ed.convert_and_format_image(b"%!PS-Adobe-3.0 EPSF-3.0\n")
    layer = np.zeros((40, 40, 4), np.uint8)
    layer[5:10, 5:10] = (255, 0, 180, 255)
    assert (ed.convert_and_format_image(_png(layer)) == layer).all()
    bg = ed.convert_and_format_image(_png(layer), flatten_on_white=True)
    assert bg.shape == (40, 40, 3) and bg[0, 0].tolist() == [255, 255, 255]
    assert ed.get_block_name() == "imageeditor"


def test_messages_and_exported_reports_hide_server_paths():
    # issue 13 #15
    from stabledrag.errors import ModelUnavailableError
    from stabledrag.webapp.messages import user_message

    msg = user_message(ModelUnavailableError("model '/root/.cache/huggingface/hub/models--x' not found; "
                                             "see https://huggingface.co/docs/hub"))
    assert "/root" not in msg and "…/models--x" in msg and "https://huggingface.co/docs/hub" in msg
    data = session_io.SessionData(engine="diffusion", image=np.zeros((16, 16, 3), np.uint8),
                                  report={"model": "/srv/app/models/toy_sd", "drag": {"steps": 3}})
    with zipfile.ZipFile(io.BytesIO(session_io.session_bytes(data))) as z:
        report = json.loads(z.read("report.json"))
    assert report == {"model": "…/toy_sd", "drag": {"steps": 3}}


def test_the_hostile_check_sessions_each_get_a_clear_message():
    from stabledrag.testing import corrupt_sessions

    for what, (engine, blob) in corrupt_sessions().items():
        with pytest.raises(UserError) as e:
            session_io.read_session(blob, expect_engine=engine)
        assert str(e.value).startswith("The session") and "/" not in str(e.value), (what, str(e.value))


def test_temp_files_are_swept_and_dead_processes_folders_removed(tmp_path, monkeypatch):
    # issue 13 #6: temporary files were never cleaned
    import os
    import time

    old = tmp_path / "gradio" / "abc"
    old.mkdir(parents=True)
    (old / "frame.png").write_bytes(b"x")
    os.utime(old / "frame.png", (time.time() - 100, time.time() - 100))
    (tmp_path / "new.png").write_bytes(b"y")
    assert views.sweep_outputs(50, tmp_path) == 1
    assert not old.exists() and (tmp_path / "new.png").exists() and (tmp_path / "gradio").exists()

    monkeypatch.setattr(views.tempfile, "gettempdir", lambda: str(tmp_path))
    dead = tmp_path / "stabledrag-studio" / "999999999"
    dead.mkdir(parents=True)
    (dead / "x.png").write_bytes(b"z")
    alive = tmp_path / "stabledrag-studio" / str(os.getpid())
    alive.mkdir()
    assert views.clean_stale_output_dirs() == 1
    assert not dead.exists() and alive.exists()


def test_weight_delta_npz_is_read_without_trusting_it():
    """A PTI weight delta in a session: a member that inflates past the cap, or whose header claims
    more than it holds, is refused with a message before any array is built."""
    import io
    import zipfile

    import numpy as np

    from stabledrag.errors import UserError
    from stabledrag.webapp.session_io import _read_npz

    def npz(members):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for k, v in members.items():
                z.writestr(k, v)
        return buf.getvalue()

    def npy(arr):
        b = io.BytesIO()
        np.save(b, arr)
        return b.getvalue()

    good = _read_npz(npz({"w.npy": npy(np.ones((3, 4), np.float32))}), "weight_delta.npz")
    assert good["w"].shape == (3, 4)
    bomb = npz({"w.npy": npy(np.zeros(2**20, np.float32))})  # 4 MB inflated, a few KB packed
    assert len(bomb) < 100_000
    with pytest.raises(UserError, match="inflates to more than"):
        _read_npz(bomb, "weight_delta.npz", cap=2**20)
    liar = npy(np.ones(4, np.float32)).replace(b"(4,)", b"(4000000000,)".ljust(4))  # header claims 4e9 values
    with pytest.raises(UserError, match="weight"):
        _read_npz(npz({"w.npy": liar}), "weight_delta.npz")
    with pytest.raises(UserError, match="weight"):
        _read_npz(npz({"w.npy": npy(np.ones(4, np.int64))}), "weight_delta.npz")
