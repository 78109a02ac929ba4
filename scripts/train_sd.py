"""Train the bundled toy-faces latent-diffusion model on a CPU and export it in diffusers format
(`python -m scripts.train_sd [--stage ...] [--resume] [--run-dir runs/toy_sd]`; the model itself:
`stabledrag.toy.sd_model`).

Stages (`--stage`), all resumable from checkpoints in `--run-dir` (default runs/toy_sd):

- `vae`: AutoencoderKL (factor `ToySDConfig.vae_scale_factor`, 4 for the bundled model) on fresh
  procedural faces: L1 (part pixels weighted up) + L2 + L1 of the local mean colour (8 x 8 pooled
  error, so flat areas keep their exact colour) + a small KL. No GAN loss: the images are flat
  colours, L1 keeps edges sharp enough.
- `decoder`: continue training the VAE *decoder only* (encoder and its latent space frozen), so it
  can run at the same time as `unet`, which trains on the frozen encoder's latents.
- `unet`: encodes a pool of faces once with the frozen encoder (latents.pt; the latent
  `scaling_factor` = 1 / std of the latent means), then trains the UNet *and* the small CLIP text
  encoder jointly (epsilon MSE with min-SNR weighting, 10 % caption dropout so CFG works, EMA).
  Exports the pipeline every `--export-minutes`.
- `export`: write the pipeline (EMA UNet/text encoder, latest VAE) to `--out` with save_pretrained.
- `eval`: the issue's quality gates, printed as JSON (see `evaluate`).
- `all`: vae, then unet, then export and eval (sequential; the lead's one-command reproduction).

Budgets: `--minutes N` stops the stage after N minutes of wall time (checkpoint saved);
`--max-steps N` stops at a global step (tests). `--resume` continues from the run directory.
Log: `<run-dir>/log.txt`; sample grids: `<run-dir>/samples_*.png`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stabledrag.diffusion.recommended import SETTINGS_FILE
from stabledrag.toy.dataset import ToyFaces
from stabledrag.toy.render import EYE_COLOUR, HIGHLIGHT_COLOUR, MOUTH_COLOUR
from stabledrag.toy.sd_model import (TOY_SD_RECOMMENDED, TOY_SD_SETTINGS_ABOUT, ToySDConfig, assemble_pipeline,
                                     build_scheduler, build_text_encoder, build_tokenizer, build_unet, build_vae)
from stabledrag.visualize import tile

logger = logging.getLogger(__name__)

STAGES = ("vae", "decoder", "unet", "export", "eval", "all")


@dataclass
class TrainConfig:
    """Everything a training run depends on (recorded in checkpoints and the export's info file)."""

    run_dir: str = "runs/toy_sd"
    out: str = "assets/models/toy_sd"
    model: ToySDConfig = field(default_factory=ToySDConfig)
    data_seed: int = 0                 # training faces: ToyFaces(data_seed)
    eval_seed: int = 1_000_003         # fresh faces for the gates, never seen in training
    vae_batch: int = 16
    vae_lr: float = 1e-3
    vae_crop: int = 64                 # train on random crops (offsets multiple of 8): 4x cheaper at 128 px
    kl_weight: float = 1e-6
    part_weight: float = 4.0           # extra L1 weight on eye / mouth / highlight pixels
    colour_weight: float = 1.0         # L1 weight of the 8 x 8 mean-colour error
    unet_batch: int = 16
    unet_lr: float = 5e-4
    caption_dropout: float = 0.1
    min_snr_gamma: float = 5.0
    ema_decay: float = 0.999
    latent_pool: int = 2000
    warmup_steps: int = 100
    checkpoint_minutes: float = 5.0
    sample_minutes: float = 10.0
    export_minutes: float = 15.0
    export_eval_samples: int = 32      # quick gate estimate after each intermediate export
    sample_steps: int = 25             # DDIM steps for samples and the gate
    guidance_scale: float = 1.0
    threads: int = 1
    export_fp16: bool = True           # UNet/VAE weights stored in float16 (diffusers loads them as float32)

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d


# ----------------------------------------------------------------------------------------------
# Small helpers


def _save_atomic(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, then rename: a reader never sees half a checkpoint."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def _lr_factor(step: int, warmup: int, frac: float) -> float:
    """Linear warm-up over `warmup` steps; constant; cosine down to 0.1 over the last 40 % of the
    budget (`frac` = fraction of this run's budget used, time or steps)."""
    w = min(1.0, (step + 1) / max(warmup, 1))
    tail = max(0.0, (frac - 0.6) / 0.4)
    return w * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(tail, 1.0))))


class Budget:
    """When a stage stops: after `minutes` of wall time and/or at global step `max_steps`."""

    def __init__(self, minutes: Optional[float], max_steps: Optional[int], start_step: int) -> None:
        self.t0 = time.time()
        self.seconds = None if minutes is None else 60.0 * minutes
        self.max_steps = max_steps
        self.start_step = start_step

    def elapsed(self) -> float:
        return time.time() - self.t0

    def frac(self, step: int) -> float:
        """Fraction of the budget used (the larger of time and steps)."""
        fr = 0.0
        if self.seconds:
            fr = max(fr, self.elapsed() / self.seconds)
        if self.max_steps is not None and self.max_steps > self.start_step:
            fr = max(fr, (step - self.start_step) / (self.max_steps - self.start_step))
        return fr

    def done(self, step: int) -> bool:
        if self.max_steps is not None and step >= self.max_steps:
            return True
        return self.seconds is not None and self.elapsed() >= self.seconds


class Every:
    """True once every `minutes` of wall time (never when minutes <= 0)."""

    def __init__(self, minutes: float) -> None:
        self.seconds = 60.0 * minutes
        self.last = time.time()

    def __call__(self) -> bool:
        if self.seconds <= 0 or time.time() - self.last < self.seconds:
            return False
        self.last = time.time()
        return True


_PART_COLOURS = torch.tensor([EYE_COLOUR, MOUTH_COLOUR, HIGHLIGHT_COLOUR]) / 127.5 - 1.0


def part_weights(x: torch.Tensor, part_weight: float, tolerance: float = 70.0) -> torch.Tensor:
    """Per-pixel loss weights `N x 1 x H x W`: 1, plus `part_weight` on (dilated) eye, mouth and
    highlight pixels, the small parts whose position the gates measure. `x`: N x 3 x H x W in [-1, 1]."""
    d2 = ((x[:, None] - _PART_COLOURS.to(x)[None, :, :, None, None]) ** 2).sum(2)  # N x 3 x H x W
    mask = (d2.min(1, keepdim=True).values <= (tolerance / 127.5) ** 2).float()
    mask = F.max_pool2d(mask, 3, stride=1, padding=1)  # anti-aliased borders count too
    return 1.0 + part_weight * mask


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """N x 3 x H x W in [-1, 1] -> N x H x W x 3 uint8."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def _save_grid(images: Sequence[np.ndarray], path: Path, columns: Optional[int] = None) -> None:
    from PIL import Image

    Image.fromarray(tile(list(images), columns=columns)).save(path)
    logger.info("wrote %s", path)


def _model_config(cfg: TrainConfig, ckpt: Optional[dict[str, Any]]) -> ToySDConfig:
    """The model widths: those of an existing checkpoint win over the command line."""
    if ckpt is not None and "model_config" in ckpt:
        mc = ToySDConfig.from_dict(ckpt["model_config"])
        if mc != cfg.model:
            logger.info("using the checkpoint's model config %s", mc)
        cfg.model = mc
    return cfg.model


def _tokenize(tokenizer, captions: Sequence[str]) -> torch.Tensor:
    """Token ids `N x 77`, padded like StableDiffusionPipeline does."""
    return tokenizer(list(captions), padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


# ----------------------------------------------------------------------------------------------
# VAE


def load_vae(cfg: TrainConfig, required: bool = True):
    """(vae in eval mode, checkpoint dict or None) from `<run_dir>/vae.pt`."""
    path = cfg.run_path / "vae.pt"
    if not path.exists():
        if required:
            raise FileNotFoundError(f"{path} not found: train the VAE first (--stage vae)")
        return None, None
    ckpt = _load(path)
    vae = build_vae(_model_config(cfg, ckpt))
    vae.load_state_dict(ckpt["vae"])
    vae.eval()
    return vae, ckpt


def random_crops(x: torch.Tensor, size: int, generator: Optional[torch.Generator] = None,
                 grid: int = 8) -> torch.Tensor:
    """One random `size x size` crop per image of `x` (N x C x H x W), at offsets that are
    multiples of `grid` (the VAE factor) so the crop's latent grid lines up with the full image's.
    The VAE is convolutional, so crops teach it the same local reconstruction at a quarter of the cost."""
    n, _, h, w = x.shape
    if size <= 0 or size >= min(h, w):
        return x
    ys = torch.randint(0, (h - size) // grid + 1, (n,), generator=generator) * grid
    xs = torch.randint(0, (w - size) // grid + 1, (n,), generator=generator) * grid
    return torch.stack([x[i, :, y:y + size, xx:xx + size] for i, (y, xx) in enumerate(zip(ys.tolist(), xs.tolist()))])


def vae_loss(vae, x: torch.Tensor, cfg: TrainConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Reconstruction loss of a batch `x` (N x 3 x H x W in [-1, 1]) and its parts for the log."""
    post = vae.encode(x).latent_dist
    rec = vae.decode(post.sample()).sample
    err = rec - x
    l1 = (part_weights(x, cfg.part_weight) * err.abs()).mean()
    l2 = err.pow(2).mean()
    colour = F.avg_pool2d(err, 8).abs().mean()
    kl = post.kl().mean()
    loss = l1 + l2 + cfg.colour_weight * colour + cfg.kl_weight * kl
    return loss, {"l1w": l1.item(), "l2": l2.item(), "colour": colour.item(), "kl": kl.item()}


def train_vae(cfg: TrainConfig, minutes: Optional[float] = None, max_steps: Optional[int] = None,
              resume: bool = False, decoder_only: bool = False) -> dict[str, Any]:
    """Train the VAE (or, with `decoder_only`, its decoder with the encoder frozen).

    Faces of step s are items [s*B, (s+1)*B) of ToyFaces(data_seed), so a resumed run sees the
    same stream. Returns a summary (steps, seconds per step, last losses).
    """
    run = cfg.run_path
    run.mkdir(parents=True, exist_ok=True)
    path = run / "vae.pt"
    ckpt = _load(path) if (resume or decoder_only) and path.exists() else None
    if decoder_only and ckpt is None:
        raise FileNotFoundError(f"{path} not found: --stage decoder continues a trained VAE")
    if not decoder_only and (run / "latents.pt").exists():
        raise RuntimeError(f"{run / 'latents.pt'} exists: the UNet trains on this encoder's latents; "
                           "use --stage decoder (encoder frozen) or delete latents.pt and unet.pt")
    frozen = decoder_only or bool(ckpt and ckpt.get("encoder_frozen"))
    vae = build_vae(_model_config(cfg, ckpt))
    step, seconds = 0, 0.0
    if ckpt is not None:
        vae.load_state_dict(ckpt["vae"])
        step, seconds = int(ckpt["step"]), float(ckpt.get("train_seconds", 0.0))
    if frozen:
        for module in (vae.encoder, vae.quant_conv):
            module.requires_grad_(False)
            module.eval()
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.vae_lr, betas=(0.9, 0.99), weight_decay=0.0)
    opt_kind = "decoder" if frozen else "all"
    if ckpt is not None and ckpt.get("opt_kind") == opt_kind and "opt" in ckpt:
        opt.load_state_dict(ckpt["opt"])
    if ckpt is not None and "rng" in ckpt:
        torch.set_rng_state(ckpt["rng"])
    vae.train()
    if frozen:
        vae.encoder.eval()
    data = ToyFaces(cfg.data_seed, size=cfg.model.image_size)
    budget = Budget(minutes, max_steps, step)
    ckpt_timer, sample_timer = Every(cfg.checkpoint_minutes), Every(cfg.sample_minutes)
    name = "decoder" if frozen else "vae"
    logger.info("%s: start at step %d (%.1f min trained), %.2f M trainable params", name, step, seconds / 60,
                sum(p.numel() for p in params) / 1e6)

    def save() -> None:
        _save_atomic({"model_config": cfg.model.to_dict(), "vae": vae.state_dict(), "opt": opt.state_dict(),
                      "opt_kind": opt_kind, "step": step, "train_seconds": seconds, "encoder_frozen": frozen,
                      "rng": torch.get_rng_state(), "train_config": cfg.to_dict()}, path)

    logs: dict[str, float] = {}
    run_t0, run_step0 = time.time(), step
    while not budget.done(step):
        t0 = time.time()
        x = random_crops(data.batch(range(step * cfg.vae_batch, (step + 1) * cfg.vae_batch)), cfg.vae_crop,
                         grid=cfg.model.vae_scale_factor)
        for g in opt.param_groups:
            g["lr"] = cfg.vae_lr * _lr_factor(step, cfg.warmup_steps, budget.frac(step))
        loss, logs = vae_loss(vae, x, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        seconds += time.time() - t0
        if step % 20 == 0 or step == 1:
            logger.info("%s step %d loss %.4f %s lr %.2e (%.2f s/step)", name, step, loss.item(),
                        " ".join(f"{k} {v:.4f}" for k, v in logs.items()), opt.param_groups[0]["lr"],
                        (time.time() - run_t0) / max(step - run_step0, 1))
        if ckpt_timer():
            save()
        if sample_timer():
            vae_sample_grid(vae, cfg, run / f"samples_{name}_{step:06d}.png")
            vae.train()
            if frozen:
                vae.encoder.eval()
    save()
    vae.eval()
    vae_sample_grid(vae, cfg, run / f"samples_{name}_{step:06d}.png")
    per_step = (time.time() - run_t0) / max(step - run_step0, 1)
    logger.info("%s: stopped at step %d; %.2f s/step this run, %.1f min trained in all", name, step, per_step,
                seconds / 60)
    return {"stage": name, "step": step, "seconds_per_step": per_step, "train_minutes": seconds / 60, **logs}


@torch.no_grad()
def vae_sample_grid(vae, cfg: TrainConfig, path: Path, n: int = 8) -> None:
    """Originals (top row) over reconstructions from the latent mean (bottom row) of eval faces."""
    vae.eval()
    x = ToyFaces(cfg.eval_seed, size=cfg.model.image_size).batch(range(n))
    rec = vae.decode(vae.encode(x).latent_dist.mode()).sample
    _save_grid(list(_to_uint8(x)) + list(_to_uint8(rec)), path, columns=n)


# ----------------------------------------------------------------------------------------------
# Latent pool


@torch.no_grad()
def latent_pool(cfg: TrainConfig, vae=None, tokenizer=None) -> dict[str, Any]:
    """Load or make `<run_dir>/latents.pt`: posterior mean/std (N x 4 x h x w) of the first
    `latent_pool` training faces, their caption token ids (N x 77) and the scaling factor
    (1 / std of the means). Made once per encoder: the UNet must always see the same latent space.
    """
    path = cfg.run_path / "latents.pt"
    if path.exists():
        return _load(path)
    if vae is None:
        vae, _ = load_vae(cfg)
    tokenizer = tokenizer or build_tokenizer()
    data = ToyFaces(cfg.data_seed, size=cfg.model.image_size)
    means, stds = [], []
    t0 = time.time()
    chunk = 32
    for start in range(0, cfg.latent_pool, chunk):
        idx = range(start, min(start + chunk, cfg.latent_pool))
        dist = vae.encode(data.batch(idx)).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
        if (start // chunk) % 20 == 0:
            logger.info("encoding latents %d / %d (%.0f s)", start, cfg.latent_pool, time.time() - t0)
    mean, std = torch.cat(means), torch.cat(stds)
    pool = {"mean": mean, "std": std, "ids": _tokenize(tokenizer, data.captions(range(cfg.latent_pool))),
            "scaling_factor": float(1.0 / mean.std()), "latent_std_mean": float(std.mean())}
    _save_atomic(pool, path)
    logger.info("latent pool: %d faces in %.0f s, scaling_factor %.4f, mean posterior std %.4f",
                cfg.latent_pool, time.time() - t0, pool["scaling_factor"], pool["latent_std_mean"])
    return pool


# ----------------------------------------------------------------------------------------------
# UNet + text encoder


def _ema_update(ema: dict[str, torch.Tensor], model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for name, p in model.state_dict().items():
            if p.dtype.is_floating_point:
                ema[name].mul_(decay).add_(p, alpha=1.0 - decay)
            else:
                ema[name].copy_(p)


def _clone_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def load_unet(cfg: TrainConfig, tokenizer, ema: bool = True):
    """(unet, text_encoder, checkpoint) from `<run_dir>/unet.pt`, EMA weights by default, eval mode."""
    path = cfg.run_path / "unet.pt"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: train the UNet first (--stage unet)")
    ckpt = _load(path)
    mc = _model_config(cfg, ckpt)
    unet, text = build_unet(mc), build_text_encoder(mc, tokenizer)
    unet.load_state_dict(ckpt["ema_unet" if ema else "unet"])
    text.load_state_dict(ckpt["ema_text" if ema else "text_encoder"])
    unet.eval()
    text.eval()
    return unet, text, ckpt


def train_unet(cfg: TrainConfig, minutes: Optional[float] = None, max_steps: Optional[int] = None,
               resume: bool = False) -> dict[str, Any]:
    """Train UNet + text encoder on the latent pool (epsilon prediction, min-SNR weights, EMA).

    Writes checkpoints, sample grids and (every `export_minutes`) an export to `cfg.out`.
    Returns a summary (steps, seconds per step, last loss).
    """
    run = cfg.run_path
    run.mkdir(parents=True, exist_ok=True)
    path = run / "unet.pt"
    tokenizer = build_tokenizer()
    vae, _ = load_vae(cfg)
    pool = latent_pool(cfg, vae, tokenizer)
    ckpt = _load(path) if resume and path.exists() else None
    mc = _model_config(cfg, ckpt)
    unet, text = build_unet(mc), build_text_encoder(mc, tokenizer)
    step, seconds = 0, 0.0
    if ckpt is not None:
        unet.load_state_dict(ckpt["unet"])
        text.load_state_dict(ckpt["text_encoder"])
        step, seconds = int(ckpt["step"]), float(ckpt.get("train_seconds", 0.0))
    ema_unet = ckpt["ema_unet"] if ckpt is not None else _clone_state(unet)
    ema_text = ckpt["ema_text"] if ckpt is not None else _clone_state(text)
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.unet_lr, betas=(0.9, 0.99), weight_decay=1e-2)
    if ckpt is not None:
        opt.load_state_dict(ckpt["opt"])
        if "rng" in ckpt:
            torch.set_rng_state(ckpt["rng"])
    unet.train()
    text.train()
    sched = build_scheduler()
    acp = sched.alphas_cumprod
    snr = acp / (1 - acp)
    weight_t = torch.clamp(snr, max=cfg.min_snr_gamma) / snr  # min-SNR-gamma for epsilon targets
    empty_ids = _tokenize(tokenizer, [""])[0]
    sf = pool["scaling_factor"]
    n_pool = pool["mean"].shape[0]
    budget = Budget(minutes, max_steps, step)
    ckpt_timer, sample_timer = Every(cfg.checkpoint_minutes), Every(cfg.sample_minutes)
    export_timer = Every(cfg.export_minutes)
    logger.info("unet: start at step %d (%.1f min trained), unet %.2f M + text %.2f M params, pool %d, "
                "scaling_factor %.4f", step, seconds / 60, sum(p.numel() for p in unet.parameters()) / 1e6,
                sum(p.numel() for p in text.parameters()) / 1e6, n_pool, sf)

    def save() -> None:
        _save_atomic({"model_config": mc.to_dict(), "unet": unet.state_dict(), "text_encoder": text.state_dict(),
                      "ema_unet": ema_unet, "ema_text": ema_text, "opt": opt.state_dict(), "step": step,
                      "train_seconds": seconds, "rng": torch.get_rng_state(), "scaling_factor": sf,
                      "train_config": cfg.to_dict()}, path)

    run_t0, run_step0, loss_avg = time.time(), step, None
    while not budget.done(step):
        t0 = time.time()
        idx = torch.randint(n_pool, (cfg.unet_batch,))
        z0 = (pool["mean"][idx] + pool["std"][idx] * torch.randn_like(pool["mean"][idx])) * sf
        ids = pool["ids"][idx].clone()
        drop = torch.rand(cfg.unet_batch) < cfg.caption_dropout
        ids[drop] = empty_ids
        t = torch.randint(0, sched.config.num_train_timesteps, (cfg.unet_batch,))
        noise = torch.randn_like(z0)
        zt = sched.add_noise(z0, noise, t)
        for g in opt.param_groups:
            g["lr"] = cfg.unet_lr * _lr_factor(step, cfg.warmup_steps, budget.frac(step))
        pred = unet(zt, t, text(ids)[0]).sample
        per = (pred - noise).pow(2).mean(dim=(1, 2, 3))
        loss = (weight_t[t] * per).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        _ema_update(ema_unet, unet, decay)
        _ema_update(ema_text, text, decay)
        seconds += time.time() - t0
        loss_avg = loss.item() if loss_avg is None else 0.95 * loss_avg + 0.05 * loss.item()
        if step % 20 == 0 or step == 1:
            logger.info("unet step %d loss %.4f (avg %.4f) lr %.2e (%.2f s/step)", step, loss.item(), loss_avg,
                        opt.param_groups[0]["lr"], (time.time() - run_t0) / max(step - run_step0, 1))
        if ckpt_timer():
            save()
        if sample_timer():
            save()
            unet_sample_grid(cfg, run / f"samples_unet_{step:06d}.png")
        if export_timer():
            save()
            export(cfg)
            if cfg.export_eval_samples > 0:
                evaluate(cfg, n_vae=0, n_diffusion=cfg.export_eval_samples)
    save()
    per_step = (time.time() - run_t0) / max(step - run_step0, 1)
    logger.info("unet: stopped at step %d; %.2f s/step this run, %.1f min trained in all", step, per_step,
                seconds / 60)
    unet_sample_grid(cfg, run / f"samples_unet_{step:06d}.png")
    return {"stage": "unet", "step": step, "seconds_per_step": per_step, "train_minutes": seconds / 60,
            "loss_avg": loss_avg}


# ----------------------------------------------------------------------------------------------
# Pipeline, export, sampling


def build_trained_pipeline(cfg: TrainConfig):
    """The pipeline from the run directory: latest VAE (with the pool's scaling factor), EMA UNet
    and text encoder, local tokenizer, SD 1.5 DDIM scheduler."""
    tokenizer = build_tokenizer()
    vae, _ = load_vae(cfg)
    unet, text, ckpt = load_unet(cfg, tokenizer)
    vae.register_to_config(scaling_factor=float(ckpt["scaling_factor"]))
    return assemble_pipeline(vae, text, tokenizer, unet)


def export(cfg: TrainConfig, out: Optional[str] = None) -> str:
    """Write the pipeline to `out` (default `cfg.out`) with save_pretrained (safetensors), plus
    `toy_sd_info.json` (steps, training minutes, configs). Replaces an older export atomically
    enough for a reader: the new folder is written beside it and swapped in. Returns the path."""
    out_path = Path(out or cfg.out)
    pipe = build_trained_pipeline(cfg)
    if cfg.export_fp16:
        # Halves the files; diffusers' from_pretrained upcasts UNet and VAE to float32 again (without
        # torch_dtype). The text encoder stays float32: transformers would keep it in float16.
        pipe.unet.to(torch.float16)
        pipe.vae.to(torch.float16)
    tmp = out_path.with_name(out_path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    pipe.save_pretrained(tmp, safe_serialization=True)
    vae_ckpt = _load(cfg.run_path / "vae.pt")
    unet_ckpt = _load(cfg.run_path / "unet.pt")
    info = {"what": "toy-faces latent diffusion model of StableDrag Studio (python -m scripts.train_sd)",
            "vae_step": int(vae_ckpt["step"]), "vae_train_minutes": round(vae_ckpt["train_seconds"] / 60, 1),
            "unet_step": int(unet_ckpt["step"]), "unet_train_minutes": round(unet_ckpt["train_seconds"] / 60, 1),
            "scaling_factor": float(unet_ckpt["scaling_factor"]), "model_config": cfg.model.to_dict(),
            "train_config": cfg.to_dict(), "text_encoder": "trained jointly with the UNet (EMA weights)"}
    (tmp / "toy_sd_info.json").write_text(json.dumps(info, indent=2) + "\n")
    (tmp / SETTINGS_FILE).write_text(json.dumps({"about": TOY_SD_SETTINGS_ABOUT, "edit": TOY_SD_RECOMMENDED},
                                                indent=2) + "\n")
    (tmp / "README.md").write_text(
        "# toy_sd: StableDrag Studio's bundled toy-faces latent diffusion model\n\n"
        f"Stable Diffusion 1.5's layout at a small width (VAE factor {cfg.model.vae_scale_factor}: "
        f"{cfg.model.image_size} px <-> {cfg.model.latent_size} x {cfg.model.latent_size} x 4 latents;\n"
        "UNet with SD's four levels, up_blocks.2 and decoder self-attention as in SD 1.5; a 2-layer CLIP text\n"
        "encoder with a local byte-level tokenizer; SD 1.5's DDIM scheduler), trained from scratch on a CPU on the\n"
        "procedural faces of `stabledrag.toy` only. Load it offline with\n"
        "`StableDiffusionPipeline.from_pretrained(<this folder>, local_files_only=True)`.\n"
        "Training details: `toy_sd_info.json`; reproduce with `python -m scripts.train_sd`.\n")
    old = out_path.with_name(out_path.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if out_path.exists():
        os.replace(out_path, old)
    os.replace(tmp, out_path)
    if old.exists():
        shutil.rmtree(old)
    size = sum(f.stat().st_size for f in out_path.rglob("*") if f.is_file())
    logger.info("exported %s (unet step %d, vae step %d, %.1f MB)", out_path, info["unet_step"], info["vae_step"],
                size / 1e6)
    return str(out_path)


@torch.no_grad()
def generate(pipe, captions: Sequence[str], steps: int, guidance: float, seed: int,
             batch: int = 50) -> np.ndarray:
    """Images `N x H x W x 3` uint8 for `captions` with the pipeline's DDIM scheduler."""
    out = []
    g = torch.Generator().manual_seed(seed)
    for start in range(0, len(captions), batch):
        res = pipe(list(captions[start:start + batch]), num_inference_steps=steps, guidance_scale=guidance,
                   generator=g, output_type="np")
        out.append((np.clip(res.images, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(out)


def unet_sample_grid(cfg: TrainConfig, path: Path, n: int = 16) -> None:
    """16 samples (EMA weights, DDIM `sample_steps`, `guidance_scale`) for eval captions."""
    pipe = build_trained_pipeline(cfg)
    captions = ToyFaces(cfg.eval_seed, size=cfg.model.image_size).captions(range(n))
    _save_grid(list(generate(pipe, captions, cfg.sample_steps, cfg.guidance_scale, seed=0)), path)


# ----------------------------------------------------------------------------------------------
# Quality gates


def _vae_gate(cfg: TrainConfig, n: int) -> dict[str, Any]:
    """Reconstruct `n` fresh faces (latent mean) and compare them with the originals
    (`stabledrag.toy.fidelity`: PSNR, mean-colour error, detected parts within 1.5 / 2 px)."""
    from stabledrag.toy.fidelity import compare, summarise_fidelity

    vae, ckpt = load_vae(cfg)
    data = ToyFaces(cfg.eval_seed, size=cfg.model.image_size)
    scores = []
    for start in range(0, n, 25):
        x = data.batch(range(start, min(start + 25, n)))
        with torch.no_grad():
            rec = _to_uint8(vae.decode(vae.encode(x).latent_dist.mode()).sample)
        scores += [compare(orig, r) for orig, r in zip(_to_uint8(x), rec)]
    return {"vae_step": int(ckpt["step"]), **summarise_fidelity(scores)}


def _diffusion_gate(cfg: TrainConfig, n: int, guidance: float, grid_path: Optional[Path]) -> dict[str, Any]:
    """Sample `n` faces for fresh captions and count complete detections (head, 2 eyes, mouth)."""
    from stabledrag.toy.detect import detect

    pipe = build_trained_pipeline(cfg)
    captions = ToyFaces(cfg.eval_seed + 1, size=cfg.model.image_size).captions(range(n))
    t0 = time.time()
    images = generate(pipe, captions, cfg.sample_steps, guidance, seed=1234)
    secs = time.time() - t0
    dets = [detect(im) for im in images]
    reasons: dict[str, int] = {}
    for d in dets:
        for r in d.reasons:
            key = r.split("(")[0].strip()
            reasons[key] = reasons.get(key, 0) + 1
    if grid_path is not None:
        _save_grid(list(images[:36]), grid_path)
    ckpt = _load(cfg.run_path / "unet.pt")
    return {"n": n, "unet_step": int(ckpt["step"]), "guidance_scale": guidance, "ddim_steps": cfg.sample_steps,
            "complete_face": sum(d.complete for d in dets) / n, "failure_reasons": reasons,
            "seconds_per_image": secs / n}


def evaluate(cfg: TrainConfig, n_vae: int = 200, n_diffusion: int = 200,
             guidances: Sequence[float] = ()) -> dict[str, Any]:
    """The issue's gates on fresh faces, as a dict (also logged as JSON):

    - `vae`: PSNR (dB), mean-colour error (1/255) and the share of reconstructions whose six
      detected keypoints (head, eyes, mouth centroid, mouth corners) all lie within 1.5 / 2 px of
      the original's with no part grown or lost (gates: >= 32 dB, <= 2/255, >= 95 % within 1.5 px);
    - `diffusion.complete_face`: share of samples where the detector finds head, two eyes and a
      mouth (gate: >= 0.9), for each guidance scale in `guidances` (default: `cfg.guidance_scale`).
    """
    result: dict[str, Any] = {}
    if n_vae > 0:
        result["vae"] = _vae_gate(cfg, n_vae)
    if n_diffusion > 0:
        result["diffusion"] = [
            _diffusion_gate(cfg, n_diffusion, g,
                            cfg.run_path / f"samples_eval_g{g:g}.png" if n_diffusion >= 36 else None)
            for g in (guidances or (cfg.guidance_scale,))]
    logger.info("eval: %s", json.dumps(result))
    return result


# ----------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scripts.train_sd", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=STAGES, default="all")
    p.add_argument("--minutes", type=float, default=None, help="wall-time budget of a training stage")
    p.add_argument("--vae-minutes", type=float, default=25.0, help="VAE budget in --stage all")
    p.add_argument("--unet-minutes", type=float, default=90.0, help="UNet budget in --stage all")
    p.add_argument("--max-steps", type=int, default=None, help="stop a training stage at this global step")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoints in --run-dir")
    p.add_argument("--run-dir", default="runs/toy_sd")
    p.add_argument("--out", default="assets/models/toy_sd")
    p.add_argument("--tiny", action="store_true", help="minute model and 64 px images (tests)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core machine)")
    p.add_argument("--vae-batch", type=int, default=None)
    p.add_argument("--vae-crop", type=int, default=None, help="VAE training crop side (0: full images)")
    p.add_argument("--vae-lr", type=float, default=None)
    p.add_argument("--part-weight", type=float, default=None, help="extra L1 weight on eye/mouth pixels")
    p.add_argument("--colour-weight", type=float, default=None, help="L1 weight of the 8 x 8 mean-colour error")
    p.add_argument("--unet-lr", type=float, default=None)
    p.add_argument("--unet-batch", type=int, default=None)
    p.add_argument("--latent-pool", type=int, default=None)
    p.add_argument("--checkpoint-minutes", type=float, default=None)
    p.add_argument("--sample-minutes", type=float, default=None)
    p.add_argument("--export-minutes", type=float, default=None)
    p.add_argument("--eval-vae", type=int, default=200, help="faces for the VAE gate")
    p.add_argument("--eval-samples", type=int, default=200, help="samples for the diffusion gate")
    p.add_argument("--guidance", type=float, nargs="*", default=None, help="guidance scale(s) for eval")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps for samples and eval")
    p.add_argument("--fp32", action="store_true", help="export UNet/VAE weights in float32 (default float16)")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """TrainConfig from parsed command-line arguments."""
    cfg = TrainConfig(run_dir=args.run_dir, out=args.out, threads=args.threads, export_fp16=not args.fp32)
    if args.tiny:
        cfg.model = ToySDConfig.tiny()
        cfg.latent_pool, cfg.vae_batch, cfg.unet_batch, cfg.sample_steps, cfg.vae_crop = 16, 2, 4, 3, 32
        cfg.warmup_steps = 1
    for name in ("vae_batch", "vae_crop", "vae_lr", "part_weight", "colour_weight", "unet_lr", "unet_batch",
                 "latent_pool", "checkpoint_minutes", "sample_minutes", "export_minutes"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    if args.steps is not None:
        cfg.sample_steps = args.steps
    if args.guidance:
        cfg.guidance_scale = args.guidance[0]
    return cfg


def _setup_logging(run_dir: str) -> list[logging.Handler]:
    """Log INFO to `<run_dir>/log.txt` (appended) and stderr; returns the handlers added."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [logging.FileHandler(Path(run_dir) / "log.txt"), logging.StreamHandler()]
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    for noisy in ("diffusers", "transformers", "PIL"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    return handlers


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of `python -m scripts.train_sd`; prints a JSON summary of what it did."""
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(max(1, args.threads))
    handlers = _setup_logging(args.run_dir)
    try:
        result = _run_stages(args)
    finally:
        for handler in handlers:  # main() may be called again in one process (tests)
            logging.getLogger().removeHandler(handler)
            handler.close()
    print(json.dumps(result, indent=2))
    return 0


def _run_stages(args: argparse.Namespace) -> dict[str, Any]:
    cfg = config_from_args(args)
    guidances = tuple(args.guidance) if args.guidance else ()
    result: dict[str, Any] = {}
    if args.stage == "all" and (cfg.run_path / "latents.pt").exists():
        logger.info("latents.pt exists: the VAE encoder is frozen, skipping the vae stage")
    elif args.stage in ("vae", "all"):
        minutes = args.minutes if args.stage == "vae" else args.vae_minutes
        result["vae"] = train_vae(cfg, minutes, args.max_steps, resume=args.resume or args.stage == "all")
    if args.stage == "decoder":
        result["decoder"] = train_vae(cfg, args.minutes, args.max_steps, resume=True, decoder_only=True)
    if args.stage in ("unet", "all"):
        minutes = args.minutes if args.stage == "unet" else args.unet_minutes
        result["unet"] = train_unet(cfg, minutes, args.max_steps, resume=args.resume or args.stage == "all")
    if args.stage in ("export", "all"):
        result["export"] = export(cfg)
    if args.stage in ("eval", "all"):
        result["eval"] = evaluate(cfg, args.eval_vae, args.eval_samples, guidances)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
