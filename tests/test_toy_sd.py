"""The bundled toy-faces diffusion model: its exported folder, and the training program
(`scripts/train_sd.py`, tiny config)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from scripts.train_sd import TrainConfig, _load, export, latent_pool, main, part_weights, train_unet, train_vae
from stabledrag.toy.sd_model import CAPTION_WORDS, ToySDConfig, build_tokenizer

ASSET = Path(__file__).resolve().parents[1] / "assets" / "models" / "toy_sd"

SD_DOWN = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
SD_UP = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")


def _tiny_cfg(tmp_path: Path) -> TrainConfig:
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), out=str(tmp_path / "out"), model=ToySDConfig.tiny(),
                      vae_batch=2, unet_batch=4, latent_pool=8, warmup_steps=1, sample_steps=2,
                      checkpoint_minutes=0, sample_minutes=0, export_minutes=0, export_eval_samples=0)
    return cfg


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tokenizer_gives_one_token_per_caption_word() -> None:
    tok = build_tokenizer()
    for word in CAPTION_WORDS:
        ids = tok(word).input_ids
        assert len(ids) == 3, (word, ids)  # <start> word <end>
    caption = "a cartoon face smiling, looking left, on a light blue background"
    assert len(tok(caption).input_ids) == 2 + 11 + 2  # 11 words + 2 commas


def test_part_weights_mark_eyes_and_mouth_only() -> None:
    x = (torch.tensor([60.0, 170.0, 80.0]) / 127.5 - 1).view(1, 3, 1, 1).repeat(1, 1, 8, 8)  # green background
    x[0, :, 1, 1] = torch.tensor([30.0, 40.0, 120.0]) / 127.5 - 1  # an eye pixel
    x[0, :, 6, 6] = torch.tensor([250.0, 200.0, 40.0]) / 127.5 - 1  # a head pixel: not weighted
    w = part_weights(x, part_weight=4.0)
    assert w.shape == (1, 1, 8, 8)
    assert w[0, 0, 1, 1] == 5.0 and w[0, 0, 2, 2] == 5.0   # the eye and its dilated border
    assert w[0, 0, 6, 6] == 1.0 and w[0, 0, 4, 4] == 1.0


@pytest.mark.slow
def test_training_stages_run_resume_and_export(tmp_path: Path) -> None:
    cfg = _tiny_cfg(tmp_path)
    run = Path(cfg.run_dir)

    # VAE: 2 steps, then a resume that has nothing left to do must keep the weights exactly.
    assert train_vae(cfg, max_steps=2)["step"] == 2
    first = _load(run / "vae.pt")
    assert train_vae(cfg, max_steps=2, resume=True)["step"] == 2
    assert _states_equal(first["vae"], _load(run / "vae.pt")["vae"])
    assert train_vae(cfg, max_steps=3, resume=True)["step"] == 3
    third = _load(run / "vae.pt")
    assert not _states_equal(first["vae"], third["vae"])

    # UNet: latent pool from the frozen encoder, 2 steps, resume to 3.
    assert train_unet(cfg, max_steps=2)["step"] == 2
    pool = latent_pool(cfg)
    side = cfg.model.latent_size
    assert pool["mean"].shape == (8, 4, side, side) and pool["ids"].shape == (8, 77)
    assert pool["scaling_factor"] == pytest.approx(1.0 / float(pool["mean"].std()))
    u2 = _load(run / "unet.pt")
    assert train_unet(cfg, max_steps=3, resume=True)["step"] == 3
    u3 = _load(run / "unet.pt")
    assert not _states_equal(u2["unet"], u3["unet"])
    assert not _states_equal(u2["ema_unet"], u3["ema_unet"])

    # Once latents exist the encoder may not change: the VAE stage refuses, the decoder stage works
    # and leaves the encoder untouched.
    with pytest.raises(RuntimeError, match="latents.pt"):
        train_vae(cfg, max_steps=5, resume=True)
    assert train_vae(cfg, max_steps=4, decoder_only=True)["step"] == 4
    dec = _load(run / "vae.pt")
    for k, v in third["vae"].items():
        same = torch.equal(v, dec["vae"][k])
        assert same == (k.startswith("encoder.") or k.startswith("quant_conv.")), k

    # Export and load it back like the app does.
    from diffusers import StableDiffusionPipeline

    out = export(cfg)
    pipe = StableDiffusionPipeline.from_pretrained(out, local_files_only=True)
    assert pipe.vae.config.scaling_factor == pytest.approx(u3["scaling_factor"])
    # The EMA weights, stored in float16 and loaded back as float32.
    assert pipe.unet.dtype == torch.float32
    for k, v in pipe.unet.state_dict().items():
        assert torch.equal(v, u3["ema_unet"][k].half().float()), k
    pipe.set_progress_bar_config(disable=True)
    img = pipe("a cartoon face smiling", num_inference_steps=2, output_type="np").images
    assert img.shape == (1, cfg.model.image_size, cfg.model.image_size, 3)


def test_command_line_runs_a_stage(tmp_path: Path) -> None:
    rc = main(["--tiny", "--stage", "vae", "--max-steps", "1", "--run-dir", str(tmp_path / "r"),
               "--out", str(tmp_path / "o"), "--sample-minutes", "0"])
    assert rc == 0
    assert _load(tmp_path / "r" / "vae.pt")["step"] == 1
    assert (tmp_path / "r" / "log.txt").exists()


@pytest.mark.skipif(not (ASSET / "model_index.json").exists(),
                    reason="assets/models/toy_sd not exported yet (python -m scripts.train_sd)")
def test_exported_model_loads_offline_with_sd_layout() -> None:
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    os.environ["HF_HUB_OFFLINE"] = "1"
    pipe = StableDiffusionPipeline.from_pretrained(str(ASSET), local_files_only=True)
    assert pipe.safety_checker is None
    # SD's four levels and names; the outermost level (32 x 32) without attention (ToySDConfig)
    assert tuple(pipe.unet.config.down_block_types) == ("DownBlock2D",) + SD_DOWN[1:]
    assert tuple(pipe.unet.config.up_block_types) == SD_UP[:-1] + ("UpBlock2D",)
    assert len(pipe.unet.up_blocks) == 4 and pipe.unet.config.layers_per_block == 2
    # VAE factor 4: an eye (radius 4-6 px) covers several latent cells
    assert pipe.vae_scale_factor == 4 and pipe.vae.config.latent_channels == 4
    assert pipe.unet.config.sample_size * 4 == pipe.vae.config.sample_size == 128
    assert isinstance(pipe.scheduler, DDIMScheduler)
    sc = pipe.scheduler.config
    assert (sc.beta_schedule, sc.beta_start, sc.beta_end) == ("scaled_linear", 0.00085, 0.012)
    assert (sc.clip_sample, sc.set_alpha_to_one, sc.steps_offset, sc.prediction_type) == (False, False, 1, "epsilon")
    assert pipe.unet.dtype == torch.float32
    # self-attention in the decoder's up_blocks.2 and after, where reference-latent control starts
    from stabledrag.diffusion.attention import self_attention_layers

    assert len(self_attention_layers(pipe.unet, "up_blocks.2")) == 3
    assert (ASSET / "stabledrag_settings.json").exists()
    pipe.set_progress_bar_config(disable=True)
    feats = {}
    hook = pipe.unet.up_blocks[2].register_forward_hook(lambda m, i, o: feats.setdefault("up2", o))
    img = pipe("a cartoon face smiling", num_inference_steps=2, output_type="np").images
    hook.remove()
    assert img.shape == (1, 128, 128, 3)
    assert feats["up2"].shape[-1] == 32  # up_blocks[2] at latent resolution (128 / 4)
