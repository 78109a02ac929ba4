"""Tiny, random-weight Stable-Diffusion-shaped pipelines built in code (nothing downloaded).

Why: real SD weights cannot be fetched in tests or CI, but every code path of StableDrag-Diff
(LoRA, DDIM inversion, UNet features, attention control, saving/loading) depends only on the
*shape* of SD 1.x, not on its weights. `build_tiny_pipeline` makes a `StableDiffusionPipeline`
with SD 1.5's block layout and conventions at a tiny width:

- UNet: 4 down blocks (CrossAttnDownBlock2D x3 + DownBlock2D), 4 up blocks (UpBlock2D +
  CrossAttnUpBlock2D x3), `layers_per_block=2` by default so there are 16 self-attention layers
  in execution order down 0-5, mid 6, up 7-15 exactly like SD 1.5 (attention control counts on it);
  the latent side must be a multiple of 8 (3 downsamples), i.e. image sides multiple of 64.
- VAE: 4 encoder/decoder blocks, hence the real VAE factor 8, 4 latent channels, scaling 0.18215.
- Text encoder: a 2-layer CLIPTextModel with a byte-level CLIP tokenizer built locally (real words
  become several distinct ids; `model_max_length` 77 like SD).
- Scheduler: DDIMScheduler with SD 1.5's configuration; no safety checker.

`sd15_configs()` gives the *real* SD 1.5 component configurations (full widths) so the speed
benchmark can instantiate random-weight full-size models. `save_tiny_pipeline` writes a normal
diffusers folder so loaders can be tested on "any diffusers folder".
"""

from __future__ import annotations

import copy
import os
from typing import Any, Iterable, Optional

import torch

# SD 1.5's scheduler configuration (scheduler/scheduler_config.json of the official repo).
SD15_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "trained_betas": None,
}

# SD 1.5's UNet (unet/config.json), full width.
SD15_UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": (320, 640, 1280, 1280),
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                         "DownBlock2D"),
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
}

# SD 1.5's VAE (vae/config.json), full width.
SD15_VAE_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "scaling_factor": 0.18215,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
}

# SD 1.5's text encoder: the text tower of CLIP ViT-L/14 (text_encoder/config.json).
SD15_TEXT_ENCODER_CONFIG: dict[str, Any] = {
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "projection_dim": 768,
    "vocab_size": 49408,
    "layer_norm_eps": 1e-5,
    "attention_dropout": 0.0,
    "dropout": 0.0,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}

TOKENIZER_MAX_LENGTH = 77

# Words that get whole-word BPE merges in the tiny tokenizer, so that common prompt words
# behave like real CLIP tokens (one id per word) while anything else falls back to bytes.
_TINY_WORDS = ("a", "photo", "of", "face", "cat", "dog", "cartoon", "yellow", "blue", "red",
               "eyes", "mouth", "head", "person", "the", "with", "and", "toy", "smiling")


def sd15_configs() -> dict[str, dict[str, Any]]:
    """The real SD 1.5 component configurations (full widths), as fresh copies.

    Returns {"unet": ..., "vae": ..., "text_encoder": ..., "scheduler": ...}: keyword
    dictionaries for `UNet2DConditionModel(**c)`, `AutoencoderKL(**c)`,
    `CLIPTextConfig(**c)` and `DDIMScheduler(**c)`. Random weights at this size are for timing
    only (`stabledrag.bench`); they are ~860 M (UNet) + 84 M (VAE) + 123 M (text) parameters.
    """
    return {
        "unet": copy.deepcopy(SD15_UNET_CONFIG),
        "vae": copy.deepcopy(SD15_VAE_CONFIG),
        "text_encoder": copy.deepcopy(SD15_TEXT_ENCODER_CONFIG),
        "scheduler": copy.deepcopy(SD15_SCHEDULER_CONFIG),
    }


def _byte_unicode_table() -> dict[int, str]:
    """Map every byte 0..255 to a printable unicode character (byte-level BPE convention).

    Printable Latin-1 bytes map to themselves; the others are shifted above U+0100 so that no
    byte becomes whitespace or a control character.
    """
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table: dict[int, str] = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def tiny_tokenizer_vocab(words: Iterable[str] = _TINY_WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A small byte-level CLIP vocabulary and merges list.

    Returns (vocab token->id, merges as (left, right) pairs in priority order). Vocabulary: the 256 byte characters, the
    same with the end-of-word suffix `</w>`, whole-word merges for `words`, then
    `<|startoftext|>` and `<|endoftext|>`. Any text can be encoded (bytes are the fallback).
    """
    chars = list(_byte_unicode_table().values())
    tokens: list[str] = chars + [c + "</w>" for c in chars]
    merges: list[tuple[str, str]] = []
    seen = set(tokens)
    for word in words:
        if len(word) < 2:
            continue
        # Merge left to right: "c a" -> "ca", "ca t</w>" -> "cat</w>".
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        left = parts[0]
        for right in parts[1:]:
            merged = left + right
            merge = (left, right)
            if merge not in merges:
                merges.append(merge)
            if merged not in seen:
                tokens.append(merged)
                seen.add(merged)
            left = merged
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def build_tiny_tokenizer():
    """A `CLIPTokenizer` built from the in-memory tiny vocabulary (no files, no hub).

    Uses `vocab=`/`merges=` keywords: transformers 5 silently ignores the v4 names
    `vocab_file=`/`merges_file=` and would give a 2-token tokenizer.
    """
    from transformers import CLIPTokenizer

    vocab, merges = tiny_tokenizer_vocab()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=TOKENIZER_MAX_LENGTH)


def tiny_unet_config(image_size: int = 64, channels: tuple[int, ...] = (32, 32, 64, 64),
                     layers_per_block: int = 2, cross_attention_dim: int = 32) -> dict[str, Any]:
    """UNet2DConditionModel kwargs with SD 1.5's block layout and tiny widths.

    `image_size` is the image side in pixels (latent side = image_size // 8).
    """
    cfg = copy.deepcopy(SD15_UNET_CONFIG)
    cfg.update(block_out_channels=tuple(channels), layers_per_block=layers_per_block,
               cross_attention_dim=cross_attention_dim, norm_num_groups=8, attention_head_dim=4,
               sample_size=image_size // 8)
    return cfg


def tiny_vae_config(image_size: int = 64, channels: tuple[int, ...] = (8, 16, 16, 16)) -> dict[str, Any]:
    """AutoencoderKL kwargs with 4 blocks (VAE factor 8) and tiny widths."""
    cfg = copy.deepcopy(SD15_VAE_CONFIG)
    cfg.update(block_out_channels=tuple(channels), layers_per_block=1, norm_num_groups=4,
               sample_size=image_size)
    return cfg


def tiny_text_encoder_config(vocab_size: int, hidden_size: int = 32) -> dict[str, Any]:
    """CLIPTextConfig kwargs for a 2-layer text encoder matching the tiny tokenizer."""
    cfg = copy.deepcopy(SD15_TEXT_ENCODER_CONFIG)
    cfg.update(hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_attention_heads=4,
               num_hidden_layers=2, projection_dim=hidden_size, vocab_size=vocab_size)
    return cfg


def _check_size(image_size: int) -> None:
    if image_size <= 0 or image_size % 64:
        raise ValueError(f"image_size must be a positive multiple of 64 (VAE /8, UNet /8), got {image_size}")


def build_tiny_pipeline(seed: int = 0, image_size: int = 64,
                        unet_channels: tuple[int, ...] = (32, 32, 64, 64), layers_per_block: int = 2,
                        cross_attention_dim: int = 32, vae_channels: tuple[int, ...] = (8, 16, 16, 16),
                        dtype: torch.dtype = torch.float32, device: Optional[str | torch.device] = None):
    """Build a random-weight `StableDiffusionPipeline` with SD 1.5's layout at a tiny width.

    seed: weights are a deterministic function of it (the global RNG state is left untouched).
    image_size: native image side in pixels (a multiple of 64); the UNet's `sample_size` is
    image_size // 8 so `pipe(...)` without height/width generates image_size x image_size.
    Returns the pipeline (eval mode, progress bar disabled) on `device` (default CPU) in `dtype`.
    Building takes well under a second on a CPU.
    """
    _check_size(image_size)
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**tiny_unet_config(image_size, unet_channels, layers_per_block,
                                                       cross_attention_dim))
        vae = AutoencoderKL(**tiny_vae_config(image_size, vae_channels))
        text_encoder = CLIPTextModel(CLIPTextConfig(**tiny_text_encoder_config(
            len(tokenizer), hidden_size=cross_attention_dim)))
    scheduler = DDIMScheduler(**SD15_SCHEDULER_CONFIG)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   image_encoder=None, requires_safety_checker=False)
    for module in (unet, vae, text_encoder):
        module.eval()
    pipe.set_progress_bar_config(disable=True)
    if device is not None or dtype != torch.float32:
        pipe.to(device=device, dtype=dtype)
    return pipe


def save_tiny_pipeline(directory: str | os.PathLike, seed: int = 0, image_size: int = 64,
                       pipe=None, **kwargs: Any) -> str:
    """Write a tiny pipeline (built with `build_tiny_pipeline(seed, image_size, **kwargs)` unless
    `pipe` is given) as a standard diffusers folder (model_index.json, unet/, vae/, text_encoder/,
    tokenizer/, scheduler/; safetensors). Returns the folder path as a string."""
    if pipe is None:
        pipe = build_tiny_pipeline(seed=seed, image_size=image_size, **kwargs)
    directory = os.fspath(directory)
    pipe.save_pretrained(directory, safe_serialization=True)
    return directory
