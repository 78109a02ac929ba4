"""Model loading: diffusers folders, single-file checkpoints, clear errors, the per-process cache."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json
import re
import time

import pytest
import torch

from stabledrag.diffusion import loading
from stabledrag.diffusion.loading import clear_cache, default_model, load_pipeline
from stabledrag.diffusion.tiny import build_tiny_pipeline, save_tiny_pipeline
from stabledrag.errors import ModelUnavailableError


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_pipeline(tmp_path_factory.mktemp("sd") / "tiny", seed=1)


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


# --- an original-layout (LDM / CompVis) single file written from a diffusers pipeline -------------
# Test-only inverse of diffusers' LDM -> diffusers key conversion, for SD 1.x layouts.

_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
           ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]


def _unet_to_ldm(sd: dict, layers: int, n_blocks: int) -> dict:
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        new = None
        for d, ldm in fixed.items():
            if key.startswith(d + "."):
                new = ldm + key[len(d):]
        if parts[0] == "down_blocks":
            b, kind, j = int(parts[1]), parts[2], int(parts[3])
            rest = ".".join(parts[4:])
            if kind == "downsamplers":
                new = f"input_blocks.{1 + b * (layers + 1) + layers}.0.op.{parts[-1]}"
            else:
                idx = 1 + b * (layers + 1) + j
                new = f"input_blocks.{idx}.{0 if kind == 'resnets' else 1}.{rest}"
        elif parts[0] == "mid_block":
            kind, j = parts[1], int(parts[2])
            rest = ".".join(parts[3:])
            new = f"middle_block.{1 if kind == 'attentions' else 2 * j}.{rest}"  # resnet, attn, resnet
        elif parts[0] == "up_blocks":
            b, kind, j = int(parts[1]), parts[2], int(parts[3])
            rest = ".".join(parts[4:])
            has_attn = any(k.startswith(f"up_blocks.{b}.attentions.") for k in sd)
            if kind == "upsamplers":
                idx = b * (layers + 1) + layers
                new = f"output_blocks.{idx}.{2 if has_attn else 1}.conv.{parts[-1]}"
            else:
                idx = b * (layers + 1) + j
                new = f"output_blocks.{idx}.{0 if kind == 'resnets' else 1}.{rest}"
        if new is None:
            raise KeyError(key)
        if ".resnets." in key:
            for d, ldm in _RESNET:
                new = new.replace(f".{d}.", f".{ldm}.")
        out["model.diffusion_model." + new] = value
    return out


def _vae_to_ldm(sd: dict, n_blocks: int) -> dict:
    out = {}
    for key, value in sd.items():
        new = key.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", new)
        new = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", new)
        new = re.sub(r"decoder\.up_blocks\.(\d+)\.",
                     lambda m: f"decoder.up.{n_blocks - 1 - int(m.group(1))}.", new)
        new = new.replace(".resnets.", ".block.").replace(".upsamplers.0.", ".upsample.")
        new = re.sub(r"mid_block\.block\.(\d)", lambda m: f"mid.block_{int(m.group(1)) + 1}", new)
        if "mid_block.attentions.0." in new:
            new = new.replace("mid_block.attentions.0.", "mid.attn_1.")
            new = (new.replace("group_norm", "norm").replace("to_q", "q").replace("to_k", "k")
                   .replace("to_v", "v").replace("to_out.0", "proj_out"))
            if value.ndim == 2:  # the original VAE uses 1x1 convolutions for attention
                value = value[:, :, None, None]
        out["first_stage_model." + new] = value
    return out


def write_ldm_single_file(pipe, path: str) -> None:
    """Save `pipe` (SD 1.x layout) as one original-layout .safetensors file."""
    from safetensors.torch import save_file

    sd = {}
    sd.update(_unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config.layers_per_block,
                           len(pipe.unet.config.down_block_types)))
    sd.update(_vae_to_ldm(pipe.vae.state_dict(), len(pipe.vae.config.down_block_types)))
    for k, v in pipe.text_encoder.state_dict().items():
        # Original files name the HF CLIP text model "cond_stage_model.transformer.text_model.*"
        # (transformers 5 dropped the inner "text_model." from its own state_dict keys).
        k = k if k.startswith("text_model.") else "text_model." + k
        sd["cond_stage_model.transformer." + k] = v
    save_file({k: v.contiguous() for k, v in sd.items()}, path)


# --- tests -----------------------------------------------------------------------------------


def test_folder_loads_offline_with_ddim_and_identity(tiny_dir):
    pipe = load_pipeline(tiny_dir, device="cpu")
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"
    c = pipe.scheduler.config
    assert c.clip_sample is False and c.set_alpha_to_one is False and c.steps_offset == 1
    assert pipe.safety_checker is None
    assert pipe.unet.dtype == torch.float32 and pipe.device.type == "cpu"
    assert not any(p.requires_grad for p in pipe.unet.parameters())
    ref = build_tiny_pipeline(seed=1)
    assert torch.equal(pipe.unet.conv_in.weight, ref.unet.conv_in.weight)
    assert pipe.stabledrag_model_key.startswith("dir:")


def test_cache_returns_the_same_object(tiny_dir):
    a = load_pipeline(tiny_dir, device="cpu")
    assert load_pipeline(tiny_dir + "/", device="cpu") is a
    assert load_pipeline(tiny_dir, device="cpu", dtype="fp32") is a
    clear_cache()
    assert load_pipeline(tiny_dir, device="cpu") is not a


def test_non_ddim_scheduler_is_replaced_keeping_the_model_config(tmp_path):
    from diffusers import PNDMScheduler

    pipe = build_tiny_pipeline(seed=0)
    # SD 1.5 ships a PNDM scheduler config without clip_sample; DDIM must not clip latents.
    pipe.scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                   set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1)
    d = save_tiny_pipeline(tmp_path / "pndm", pipe=pipe)
    loaded = load_pipeline(d, device="cpu")
    assert type(loaded.scheduler).__name__ == "DDIMScheduler"
    assert loaded.scheduler.config.clip_sample is False
    assert loaded.scheduler.config.beta_schedule == "scaled_linear"


def test_single_file_with_local_config_dir(tmp_path, tiny_dir):
    pipe = build_tiny_pipeline(seed=1)
    ckpt = str(tmp_path / "tiny.safetensors")
    write_ldm_single_file(pipe, ckpt)
    loaded = load_pipeline(ckpt, device="cpu", config_dir=tiny_dir)
    for name in ("unet", "vae", "text_encoder"):
        ref, got = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        for k, v in ref.items():
            assert torch.equal(v, got[k].reshape(v.shape)), f"{name}.{k}"
    assert type(loaded.scheduler).__name__ == "DDIMScheduler"
    assert loaded.stabledrag_model_key.startswith("file:")


def test_single_file_without_configs_offline_asks_for_config_dir(tmp_path):
    ckpt = str(tmp_path / "tiny.safetensors")
    write_ldm_single_file(build_tiny_pipeline(seed=1), ckpt)
    t = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="--config-dir"):
        load_pipeline(ckpt, device="cpu")
    assert time.monotonic() - t < 30  # no network waits (generous bound, not a benchmark)


def test_bad_config_dir_is_a_clear_error(tmp_path):
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"")
    with pytest.raises(ModelUnavailableError, match="model_index.json"):
        load_pipeline(str(ckpt), device="cpu", config_dir=str(tmp_path))


def test_missing_hub_model_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(loading, "hub_reachable", lambda *a, **k: pytest.fail("hub probed while offline"))
    with pytest.raises(ModelUnavailableError) as info:
        load_pipeline("stable-diffusion-v1-5/stable-diffusion-v1-5", device="cpu")
    msg = str(info.value)
    assert "HF_HUB_OFFLINE" in msg and "--model /path/to/diffusers-folder" in msg and "cache" in msg


def test_unreachable_hub_is_not_waited_on(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(loading, "hub_offline", lambda: False)
    monkeypatch.setattr(loading, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(ModelUnavailableError, match="unreachable"):
        load_pipeline("someone/some-model", device="cpu")


@pytest.mark.parametrize("spec, match", [
    ("/no/such/folder", "not found"),
    ("weights.ckpt", "not found"),
    ("a/b/c", "not found"),
])
def test_missing_paths_are_clear_errors(spec, match):
    with pytest.raises(ModelUnavailableError, match=match):
        load_pipeline(spec, device="cpu")


def test_wrong_folders_are_rejected(tmp_path, tiny_dir):
    with pytest.raises(ModelUnavailableError, match="model_index.json"):
        load_pipeline(str(tmp_path), device="cpu")
    sdxl = tmp_path / "xl"
    sdxl.mkdir()
    index = json.load(open(os.path.join(tiny_dir, "model_index.json")))
    index.update(_class_name="StableDiffusionXLPipeline", text_encoder_2=["transformers", "CLIPTextModel"])
    (sdxl / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelUnavailableError, match="SDXL"):
        load_pipeline(str(sdxl), device="cpu")


def test_default_model_prefers_the_bundled_toy_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "TOY_MODEL_DIR", tmp_path / "toy_sd")
    assert default_model() == loading.SD15_HUB_ID
    save_tiny_pipeline(tmp_path / "toy_sd")
    assert default_model() == str(tmp_path / "toy_sd")
    pipe = load_pipeline(None, device="cpu")
    assert pipe.unet.config.block_out_channels[0] == 32


def test_unavailable_device_is_a_user_error():
    from stabledrag.errors import UserError

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(UserError, match="CUDA"):
        load_pipeline("x/y", device="cuda")
