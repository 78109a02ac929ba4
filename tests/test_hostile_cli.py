"""Issue 13 #13: every fixable command-line error is one line and exit code 2, found before the
model is loaded or the drag starts (a model path that does not exist proves the order)."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from stabledrag.cli import main


def _bomb_png(w=13000, h=13000):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * (w + 1) * 64)) + chunk(b"IEND", b""))


@pytest.fixture
def files(tmp_path):
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(tmp_path / "in.png")
    (tmp_path / "bomb.png").write_bytes(_bomb_png())
    (tmp_path / "fake.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    return tmp_path


NO_MODEL = "no-such-model-folder"


@pytest.mark.parametrize("extra, message", [
    (["--image", "{d}/bomb.png"], "too large (13000x13000 pixels)"),
    (["--image", "{d}/fake.png"], "not a PNG, JPEG"),
    (["--image", "{d}/in.png", "--mask", "{d}/bomb.png"], "The mask is too large"),
    (["--image", "{d}/in.png", "--seed", "-1"], "--seed must be a whole number between 0 and"),
    (["--image", "{d}/in.png", "--seed", str(2**63)], "--seed must be a whole number between 0 and"),
    (["--image", "{d}/in.png", "--set", "tau=nan"], "tau must be a finite number"),
    (["--image", "{d}/in.png", "--set", "r_p=1e9"], "r_p must be a number between 0 and 64"),
    (["--image", "{d}/in.png", "--set", "lr=1e20"], "lr must be a number between 0 and 1"),
    (["--image", "{d}/in.png", "--set", "stop_distance=Infinity"], "stop_distance must be a finite number"),
    (["--image", "{d}/in.png", "--prompt", "x" * 5000], "The prompt is too long (5000 characters)"),
    (["--image", "{d}/in.png", "--w-space"], "--w-space is for --backend gan"),
    (["--image", "{d}/in.png", "--truncation", "0.5"], "--truncation is for --backend gan"),
    (["--image", "{d}/in.png", "--out", "{d}/no/such/folder/o.png"], "The output folder"),
])
def test_diffusion_cli_refuses_bad_input_before_loading_the_model(files, capsys, extra, message):
    argv = ["edit", "--backend", "diffusion", "--model", NO_MODEL, "--drag", "10,10:20,10",
            "--out", str(files / "o.png"), *[a.replace("{d}", str(files)) for a in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1, err
    assert NO_MODEL not in err  # refused before the model was looked at
    assert not (files / "o.png").exists()


def test_diffusion_cli_refuses_too_many_points(files, capsys):
    drags = [a for i in range(65) for a in ("--drag", f"{i % 60},1:{i % 60},5")]
    assert main(["edit", "--backend", "diffusion", "--model", NO_MODEL, "--image", str(files / "in.png"),
                 "--out", str(files / "o.png"), *drags]) == 2
    assert "Too many drag pairs (65); use at most 64" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_gan(tmp_path_factory):
    from stabledrag.testing import save_tiny_gan

    return save_tiny_gan(tmp_path_factory.mktemp("gan"), resolution=32)


@pytest.mark.parametrize("extra, message", [
    (["--seed", "-1"], "--seed must be a whole number between 0 and"),
    (["--truncation", "nan"], "--truncation must be a finite number between 0 and 1"),
    (["--set", "tau=nan"], "tau must be a finite number"),
    (["--set", "r_p=1e9"], "r_p must be a number between 0 and 64"),
    (["--set", "r_m=1e6"], "r_m must be a number between 0 and 64"),
    (["--set", "lr=1e20"], "lr must be a number between 0 and 1"),
    (["--mask", "{d}/bomb.png"], "The mask is too large"),
    (["--prompt", "p", "--lora-steps", "5"], "--prompt is for --backend diffusion"),  # issue 15: not ignored
    (["--lora-steps", "5"], "--lora-steps is for --backend diffusion"),
    (["--paste-back"], "use it with --latent"),
])
def test_gan_cli_refuses_bad_input(files, tiny_gan, capsys, extra, message):
    argv = ["edit", "--backend", "gan", "--model", tiny_gan, "--drag", "10,10:20,10", "--steps", "2", "--quiet",
            "--out", str(files / "o.png"), *[a.replace("{d}", str(files)) for a in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not (files / "o.png").exists()


def test_gan_generate_refuses_nan_truncation(files, tiny_gan, capsys):
    # issue 13 #13: `--truncation nan` exited 0 with a black image
    assert main(["generate", "--model", tiny_gan, "--truncation", "nan", "--out", str(files / "g.png")]) == 2
    assert "--truncation must be a finite number" in capsys.readouterr().err
    assert not (files / "g.png").exists()
