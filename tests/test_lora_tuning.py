"""Identity LoRA: training, diffusers-format save/load, adapter swapping, cache, progress, CLI."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

import lora_tuning
from lora_tuning import (IdentityLoraConfig, active_lora, ensure_identity_lora, load_lora, save_lora,
                         train_identity_lora, unload_lora)
from lora_tuning import cache as lora_cache
from stabledrag.diffusion.tiny import build_tiny_pipeline, save_tiny_pipeline
from stabledrag.progress import CancelToken, Cancelled

FAST = IdentityLoraConfig(steps=1, batch_size=1, lr=1e-2, rank=4)


def _image(seed: int, size=(64, 64), mode="RGB") -> Image.Image:
    arr = (np.random.RandomState(seed).rand(size[1], size[0], 3) * 255).astype(np.uint8)
    return Image.fromarray(arr, "RGB").convert(mode)


@pytest.fixture()
def pipe():
    return build_tiny_pipeline(seed=0)


def _unet_out(pipe) -> torch.Tensor:
    g = torch.Generator().manual_seed(123)
    x = torch.randn(1, 4, 8, 8, generator=g)
    e = torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        return pipe.unet(x, 500, encoder_hidden_states=e).sample


def _has_lora(pipe) -> bool:
    return any("lora_" in n for n, _ in pipe.unet.named_parameters())


def test_train_save_load_round_trip_changes_the_unet(pipe, tmp_path):
    base = _unet_out(pipe)
    state = train_identity_lora(pipe, _image(0), "a photo of a cat", FAST.replace(steps=2, batch_size=2))
    assert state and all(".lora." in k for k in state)
    assert any("to_out.0" in k for k in state) and any("attn2.to_k" in k for k in state)
    assert any(v.abs().sum() > 0 for k, v in state.items() if "lora.up" in k)  # B moved off zero
    assert not _has_lora(pipe) and torch.equal(_unet_out(pipe), base)  # training leaves no adapter

    path = save_lora(state, tmp_path / "lora", metadata={"prompt": "a photo of a cat"})
    assert os.path.basename(path) == lora_tuning.WEIGHT_NAME
    load_lora(pipe, tmp_path / "lora")
    assert active_lora(pipe) == os.path.abspath(path)
    with_lora = _unet_out(pipe)
    assert not torch.allclose(with_lora, base)

    # Fused (the default): no LoRA layers are left, and a touched weight is W + up @ down (alpha = r).
    assert not _has_lora(pipe)
    name = next(k for k in state if k.endswith("attn1.to_q.lora.down.weight")).removesuffix(".lora.down.weight")
    fused = pipe.unet.get_submodule(name).weight
    base_w = build_tiny_pipeline(seed=0).unet.get_submodule(name).weight
    up, down = state[name + ".lora.up.weight"], state[name + ".lora.down.weight"]
    assert torch.allclose(fused, base_w + up @ down, atol=1e-6)

    # A live adapter (fuse=False) holds exactly the trained weights and gives the fused output.
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    live = build_tiny_pipeline(seed=0)
    load_lora(live, tmp_path / "lora", fuse=False)
    loaded = convert_state_dict_to_diffusers(get_peft_model_state_dict(live.unet, adapter_name="identity"))
    assert loaded.keys() == state.keys()
    assert all(torch.allclose(loaded[k].float(), state[k]) for k in state)
    assert torch.allclose(_unet_out(live), with_lora, atol=1e-5)

    # A fresh pipeline loading the same file gives the same output; unloading restores the base.
    other = build_tiny_pipeline(seed=0)
    load_lora(other, path)
    assert torch.allclose(_unet_out(other), with_lora, atol=1e-6)
    unload_lora(pipe)
    assert not _has_lora(pipe) and torch.equal(_unet_out(pipe), base)


def test_training_is_deterministic_for_a_seed(pipe):
    cfg = FAST
    a = train_identity_lora(pipe, _image(1), "x", cfg)
    b = train_identity_lora(pipe, _image(1), "x", cfg)
    c = train_identity_lora(pipe, _image(1), "x", cfg.replace(seed=1))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_progress_sees_every_step_and_cancel_stops(pipe):
    seen = []
    train_identity_lora(pipe, _image(2), "", FAST.replace(steps=3), progress=seen.append)
    assert [p.step for p in seen] == [0, 1, 2, 3]
    assert all(p.phase == "lora" and p.total == 3 for p in seen)
    assert all(np.isfinite(p.info["loss"]) for p in seen[1:])

    token = CancelToken()

    def cancel_after_first(p):
        if p.step == 1:
            token.cancel()

    with pytest.raises(Cancelled):
        train_identity_lora(pipe, _image(2), "", FAST.replace(steps=5), progress=cancel_after_first,
                            cancel=token)
    assert not _has_lora(pipe)  # a cancelled run leaves the pipeline clean


def test_cache_hit_skips_training_and_adapters_swap(pipe, tmp_path, monkeypatch):
    calls = []
    real = lora_cache.train_identity_lora

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(lora_cache, "train_identity_lora", counting)
    base = _unet_out(pipe)
    img_a, img_b = _image(3), _image(4)

    path_a, trained = ensure_identity_lora(pipe, "tiny", img_a, "a face", FAST, cache_dir=tmp_path)
    assert trained and len(calls) == 1 and os.path.isdir(path_a)
    out_a = _unet_out(pipe)
    assert not torch.allclose(out_a, base)

    progress = []
    path_b, trained = ensure_identity_lora(pipe, "tiny", img_b, "a face", FAST, cache_dir=tmp_path)
    assert trained and len(calls) == 2 and path_b != path_a
    out_b = _unet_out(pipe)
    assert not torch.allclose(out_b, out_a)

    # Back to image A: a cache hit, no training, and the UNet carries A's LoRA only (no stacking).
    path, trained = ensure_identity_lora(pipe, "tiny", img_a.copy(), "a face", FAST, cache_dir=tmp_path,
                                         progress=progress.append)
    assert (path, trained) == (path_a, False) and len(calls) == 2
    assert torch.allclose(_unet_out(pipe), out_a, atol=1e-6)
    assert progress and progress[-1].info.get("cached") is True

    # A new process (fresh pipeline) hits the on-disk cache too.
    fresh = build_tiny_pipeline(seed=0)
    assert ensure_identity_lora(fresh, "tiny", img_a, "a face", FAST, cache_dir=tmp_path) == (path_a, False)
    assert torch.allclose(_unet_out(fresh), out_a, atol=1e-6)

    # Anything in the key changes -> a different entry (would train again).
    key = lora_cache.cache_key("tiny", img_a, "a face", FAST)
    assert os.path.basename(path_a) == key[:32]
    assert len({key, lora_cache.cache_key("tiny", img_a, "another prompt", FAST),
                lora_cache.cache_key("other-model", img_a, "a face", FAST),
                lora_cache.cache_key("tiny", img_a, "a face", FAST.replace(rank=2)),
                lora_cache.cache_key("tiny", img_a, "a face", FAST.replace(steps=2)),
                lora_cache.cache_key("tiny", img_a.resize((128, 128)), "a face", FAST)}) == 6
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]  # no half-written entries

    # steps=0 means "no LoRA": nothing applied, nothing trained.
    assert ensure_identity_lora(pipe, "tiny", img_a, "a face", FAST.replace(steps=0), cache_dir=tmp_path) \
        == ("", False)
    assert not _has_lora(pipe) and torch.equal(_unet_out(pipe), base)


def test_cache_key_uses_the_prepared_image(pipe, tmp_path, monkeypatch):
    """An RGBA or larger copy of the same picture is prepared to the same pixels -> same entry."""
    img = _image(5, size=(64, 64))
    key_rgb = lora_cache.cache_key("m", img, "p", FAST)
    assert key_rgb != lora_cache.cache_key("m", _image(6), "p", FAST)
    monkeypatch.setenv("STABLEDRAG_CACHE", str(tmp_path))
    assert lora_cache.default_cache_dir() == tmp_path / "lora"
    path, trained = ensure_identity_lora(pipe, None, img.convert("RGBA"), "p", FAST)
    assert trained and path.startswith(str(tmp_path / "lora"))
    assert ensure_identity_lora(pipe, None, img, "p", FAST) == (path, False)


def test_model_identity_without_a_loader_key_fingerprints_weights():
    a, b, c = build_tiny_pipeline(seed=0), build_tiny_pipeline(seed=0), build_tiny_pipeline(seed=1)
    fa = lora_cache.model_identity(a)
    assert fa == lora_cache.model_identity(b) != lora_cache.model_identity(c)
    assert lora_cache.model_identity(a, "given") == "given"


def test_config_validation():
    assert IdentityLoraConfig() == IdentityLoraConfig(rank=16, lr=5e-4, batch_size=4, steps=80, seed=0)
    assert IdentityLoraConfig().target_modules == ("to_q", "to_k", "to_v", "to_out.0")
    for bad in ({"rank": 0}, {"lr": 0}, {"batch_size": 0}, {"steps": -1}, {"target_modules": ()}):
        with pytest.raises(ValueError):
            IdentityLoraConfig(**bad)


def test_cli_trains_and_saves_on_a_saved_tiny_pipeline(tmp_path, capsys):
    from lora_tuning.__main__ import main

    model = save_tiny_pipeline(tmp_path / "model")
    img_path = tmp_path / "in.png"
    _image(7, size=(90, 70), mode="P").save(img_path)
    out = tmp_path / "out"
    code = main(["--model", model, "--image", str(img_path), "--prompt", "a toy face", "--out", str(out),
                 "--steps", "2", "--batch-size", "1", "--rank", "4", "--device", "cpu", "--quiet"])
    assert code == 0
    weights = out / lora_tuning.WEIGHT_NAME
    assert weights.is_file() and str(weights) in capsys.readouterr().out
    meta = json.loads((out / lora_tuning.weights.CONFIG_NAME).read_text())
    assert meta["config"]["steps"] == 2 and meta["prompt"] == "a toy face" and meta["image_size"] == [64, 64]
    pipe = build_tiny_pipeline(seed=0)
    base = _unet_out(pipe)
    load_lora(pipe, out)
    assert not torch.allclose(_unet_out(pipe), base)

    assert main(["--model", model, "--image", str(tmp_path / "missing.png"), "--out", str(out)]) == 2
    assert "missing.png' does not exist" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "nope"), "--image", str(img_path), "--out", str(out)]) == 2
    assert main(["--model", model, "--image", str(img_path), "--out", str(out), "--rank", "0"]) == 2


def test_dragdiffusion_and_kohya_lora_files_load_like_ours(pipe, tmp_path):
    from safetensors.torch import save_file

    state = train_identity_lora(pipe, _image(5), "x", FAST.replace(steps=2, batch_size=1))
    ours = save_lora(state, tmp_path / "ours")
    load_lora(pipe, ours)
    expected = _unet_out(pipe)
    unload_lora(pipe)

    # DragDiffusion: a doubled "unet.unet." prefix; with older diffusers also processor names.
    save_file({"unet.unet." + k: v for k, v in state.items()}, str(tmp_path / "dd.safetensors"))
    procs = {}
    for k, v in state.items():
        mod, _, tail = k.partition(".lora.")
        attn, _, proj = mod.rpartition(".")
        if proj == "0":  # to_out.0
            attn, proj = attn.rpartition(".")[0], "to_out"
        procs[f"unet.unet.{attn}.processor.{proj}_lora.{tail}"] = v
    save_file(procs, str(tmp_path / "dd_procs.safetensors"))
    # kohya: lora_unet_<module with underscores>.lora_down/lora_up.weight and alpha (= rank: scale 1).
    kohya = {}
    for k, v in state.items():
        mod, _, tail = k.partition(".lora.")
        base = "lora_unet_" + mod.replace(".", "_")
        kohya[f"{base}.lora_{tail.split('.')[0]}.weight"] = v
        if tail.startswith("down"):
            kohya[f"{base}.alpha"] = torch.tensor(float(v.shape[0]))
    save_file(kohya, str(tmp_path / "kohya.safetensors"))
    for name in ("dd.safetensors", "dd_procs.safetensors", "kohya.safetensors"):
        load_lora(pipe, tmp_path / name)
        assert torch.allclose(_unet_out(pipe), expected, atol=1e-5), name
        unload_lora(pipe)


def test_a_user_lora_is_fused_under_the_identity_lora(tmp_path):
    """`load_pipeline(..., loras=[(file, scale)])` fuses a user's LoRA into the base weights, so the
    identity LoRA is trained on and applied over it, and removing the identity LoRA keeps it."""
    from safetensors.torch import save_file

    from stabledrag.diffusion.loading import clear_cache, load_pipeline
    from stabledrag.diffusion.tiny import save_tiny_pipeline

    folder = save_tiny_pipeline(tmp_path / "tiny", seed=0)
    style = train_identity_lora(build_tiny_pipeline(seed=0), _image(6), "style", FAST.replace(steps=2, batch_size=1))
    save_file({"unet.unet." + k: v * 3 for k, v in style.items()}, str(tmp_path / "style.safetensors"))
    clear_cache()
    plain = load_pipeline(folder, device="cpu")
    styled = load_pipeline(folder, device="cpu", loras=[(str(tmp_path / "style.safetensors"), 0.5)])
    assert styled is not plain and styled.stabledrag_model_key != plain.stabledrag_model_key
    assert not _has_lora(styled)
    with_style = _unet_out(styled)
    assert not torch.allclose(with_style, _unet_out(plain))
    path, _ = ensure_identity_lora(styled, None, _image(7), "x", FAST.replace(steps=1, batch_size=1),
                                   cache_dir=tmp_path / "cache")
    assert active_lora(styled) is not None
    unload_lora(styled)
    assert torch.equal(_unet_out(styled), with_style)  # the user's LoRA stays, the identity LoRA is gone
    clear_cache()
