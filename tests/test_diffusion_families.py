"""Model-family detection of single files from tensor names/shapes, and one clear line for every
checkpoint the editor does not run (LoRA, SDXL, inpainting, SD 2.x of unknown prediction type),
by file, folder and hub id alike; fp16-only folders load in fp32 on the CPU."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json

import pytest
import torch
from safetensors.torch import save_file

from stabledrag.diffusion.families import detect_family, read_shapes, refusal
from stabledrag.diffusion.loading import clear_cache, load_pipeline
from stabledrag.diffusion.tiny import build_tiny_pipeline, save_tiny_pipeline
from stabledrag.errors import ModelUnavailableError

U = "model.diffusion_model."


def _ldm(ctx: int, in_ch: int = 4, text: str = "sd1", extra: dict | None = None) -> dict:
    """The tensors that tell families apart, at their real shapes (tiny fill: zeros of size 1 where
    the shape does not matter)."""
    sd = {U + "input_blocks.0.0.weight": torch.zeros(320, in_ch, 3, 3),
          U + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": torch.zeros(320, ctx)}
    if text == "sd1":
        sd["cond_stage_model.transformer.text_model.final_layer_norm.weight"] = torch.zeros(768)
    elif text == "sd2":
        sd["cond_stage_model.model.ln_final.weight"] = torch.zeros(1024)
    sd.update(extra or {})
    return sd


CASES = {
    "sd15": (_ldm(768), "sd1", "epsilon"),
    "sd21": (_ldm(1024, text="sd2"), "sd2", None),
    "sd21_v_marked": (_ldm(1024, text="sd2", extra={"v_pred": torch.zeros(())}), "sd2", "v_prediction"),
    "sdxl": (_ldm(2048, text="", extra={"conditioner.embedders.1.model.ln_final.weight": torch.zeros(1280),
                                         U + "label_emb.0.0.weight": torch.zeros(1280, 2816)}), "sdxl", None),
    "sd15_inpaint": (_ldm(768, in_ch=9), "inpainting", None),
    "sd2_inpaint": (_ldm(1024, in_ch=9, text="sd2"), "inpainting", None),
    "diffusers_sdxl_unet": ({"conv_in.weight": torch.zeros(320, 4, 3, 3),
                             "add_embedding.linear_1.weight": torch.zeros(1280, 2816),
                             "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight":
                                 torch.zeros(640, 2048)},
                            "sdxl", None),
    "kohya_lora": ({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 320),
                    "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(320, 4),
                    "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.zeros(())}, "lora", None),
    "diffusers_lora": ({"unet.unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight":
                        torch.zeros(4, 320)}, "lora", None),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_detect_family_from_names_and_shapes(tmp_path, name):
    sd, family, pred = CASES[name]
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    found = detect_family(read_shapes(path))
    assert (found.family, found.prediction_type) == (family, pred)
    # .ckpt files (torch zip) give the same answer, read without running code
    ckpt = tmp_path / f"{name}.ckpt"
    torch.save({"state_dict": sd}, ckpt)
    assert detect_family(read_shapes(ckpt)) == found


@pytest.fixture(autouse=True)
def _fresh():
    clear_cache()
    yield
    clear_cache()


@pytest.mark.parametrize("name,match", [
    ("sd21", "--config-dir"), ("sdxl", "SDXL"), ("sd15_inpaint", "inpainting"), ("kohya_lora", "is a LoRA file"),
    ("diffusers_lora", "--lora"),
])
def test_unsupported_single_files_get_one_clear_line(tmp_path, name, match):
    sd = CASES[name][0]
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    with pytest.raises(ModelUnavailableError, match=match) as e:
        load_pipeline(str(path), device="cpu")
    assert "\n" not in str(e.value)


def test_config_dir_of_another_family_is_refused(tmp_path):
    cfg_dir = save_tiny_pipeline(tmp_path / "tiny", seed=0)
    path = tmp_path / "sd21.safetensors"
    save_file({k: v.contiguous() for k, v in CASES["sd21"][0].items()}, str(path))
    ctx = json.loads((tmp_path / "tiny" / "unet" / "config.json").read_text())["cross_attention_dim"]
    with pytest.raises(ModelUnavailableError, match=f"text width {ctx}"):
        load_pipeline(str(path), device="cpu", config_dir=cfg_dir)
    assert refusal(detect_family(read_shapes(path)), "m", "dir", 1024) is None  # the same family: go ahead


def test_sdxl_and_inpainting_folders_are_refused(tmp_path):
    d = save_tiny_pipeline(tmp_path / "inp", seed=0)
    cfg = json.loads((tmp_path / "inp" / "unet" / "config.json").read_text())
    cfg["in_channels"] = 9
    (tmp_path / "inp" / "unet" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelUnavailableError, match="inpainting"):
        load_pipeline(d, device="cpu")
    d = save_tiny_pipeline(tmp_path / "xl", seed=0)
    idx = json.loads((tmp_path / "xl" / "model_index.json").read_text())
    idx["text_encoder_2"] = ["transformers", "CLIPTextModelWithProjection"]
    (tmp_path / "xl" / "model_index.json").write_text(json.dumps(idx))
    with pytest.raises(ModelUnavailableError, match="SDXL"):
        load_pipeline(d, device="cpu")


def test_sdxl_hub_id_is_refused_from_the_cache(tmp_path, monkeypatch):
    """An SDXL repo in the HF cache is refused before loading (was: a misleading attention error)."""
    hub = tmp_path / "hub"
    snap = hub / "models--someone--xl" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline",
                                                       "text_encoder_2": ["transformers", "X"]}))
    (hub / "models--someone--xl" / "refs").mkdir()
    (hub / "models--someone--xl" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(hub))
    with pytest.raises(ModelUnavailableError, match="someone/xl holds an SDXL model"):
        load_pipeline("someone/xl", device="cpu")


def test_fp16_only_folder_loads_in_fp32_on_cpu(tmp_path):
    ref = build_tiny_pipeline(seed=3)
    half = build_tiny_pipeline(seed=3).to(torch.float16)
    d = str(tmp_path / "fp16")
    half.save_pretrained(d, safe_serialization=True, variant="fp16")
    assert all(".fp16." in f for f in os.listdir(os.path.join(d, "unet")) if f.endswith(".safetensors"))
    pipe = load_pipeline(d, device="cpu", dtype="fp32")
    assert pipe.unet.dtype == torch.float32 and pipe.vae.dtype == torch.float32
    assert torch.allclose(pipe.unet.conv_in.weight, ref.unet.conv_in.weight.half().float())


def test_cli_lora_file_as_model_is_one_line_exit_2(tmp_path, capsys):
    from PIL import Image

    from stabledrag.cli import main

    path = tmp_path / "style.safetensors"
    save_file({k: v.contiguous() for k, v in CASES["kohya_lora"][0].items()}, str(path))
    Image.new("RGB", (64, 64), (90, 120, 200)).save(tmp_path / "in.png")
    rc = main(["edit", "--model", str(path), "--image", str(tmp_path / "in.png"), "--drag", "20,20:30,20",
               "--out", str(tmp_path / "o.png"), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "is a LoRA file" in err and len(err.strip().splitlines()) == 1
