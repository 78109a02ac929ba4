"""Configurations and builders of the bundled toy-faces latent-diffusion model.

The model has Stable Diffusion 1.5's *shape* at a small width, so every StableDrag-Diff code path
(DDIM inversion, `up_blocks[2]` features, attention control over 16 `attn1` layers, LoRA) runs on
it exactly as on SD 1.5, on a plain CPU:

- VAE: `AutoencoderKL` with `len(vae_channels)` blocks; the bundled model has 3 (factor 4):
  128 x 128 x 3 images <-> 32 x 32 x 4 latents, so an eye (radius 4-6 px) covers several latent
  cells (with SD's factor 8 it was smaller than one). `scaling_factor` is measured on the data
  after VAE training (1 / std of the latent means). The pipeline's `vae_scale_factor` follows
  from the block count, and the editor reads it from there.
- UNet: `UNet2DConditionModel` with SD's four levels and its up/down block names, so `up_blocks[2]`
  (the drag features) and the decoder's self-attention layers (reference-latent control) exist as in
  SD 1.5. `unet_top_attention=False` (the bundled model) makes the outermost level attention-free
  (DownBlock2D / UpBlock2D at 32 x 32): self-attention over 1024 tokens made a training step 5x
  slower on a CPU; the inner levels keep SD's cross- and self-attention.
- Text: a small `CLIPTextModel` over the local byte-level CLIP tokenizer of
  `stabledrag.diffusion.tiny`, with whole-word merges for every word of the toy captions.
- Scheduler: `DDIMScheduler` with SD 1.5's configuration (epsilon prediction).

`ToySDConfig` holds the widths; `ToySDConfig.tiny()` is a minute version for tests.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

from stabledrag.diffusion.tiny import (SD15_SCHEDULER_CONFIG, SD15_TEXT_ENCODER_CONFIG, SD15_UNET_CONFIG,
                                       SD15_VAE_CONFIG, TOKENIZER_MAX_LENGTH, tiny_tokenizer_vocab)

# The bundled model's recommended edit settings (`DiffusionEditConfig.with_overrides` keys), written
# by the export to `stabledrag_settings.json` beside the weights, where the CLI, the benchmarks and
# the app read them (`stabledrag.diffusion.recommended`). Chosen on toy faces (README, "Bundled toy
# models"): the identity LoRA adds 0.17 dB to the invert -> denoise round trip for 5.6 s (20 steps)
# and 0.27 dB for 50 s (80 steps) on this model, trained on exactly this world, so it is off (a user
# can turn it on); 25 DDIM steps;
# drag lr 0.05, from a 3-drag check on an intermediate checkpoint (0.02 needed up to all 40 steps,
# 0.1 grew parts); stop within 1 feature px (2 image px at 128 px).
TOY_SD_RECOMMENDED: dict[str, float | int] = {"lr": 0.05, "stop_distance": 1.0, "lora.steps": 0,
                                              "inversion.num_steps": 25, "max_steps": 40}
TOY_SD_SETTINGS_ABOUT = ("Recommended StableDrag-Diff settings of the bundled toy-faces model, measured with "
                         "`python -m stabledrag bench toy --backend diffusion`; any key of "
                         "DiffusionEditConfig.with_overrides. The user's own settings win.")


# Every word the toy captions use (stabledrag.toy.dataset.caption + render.BACKGROUND_FAMILIES),
# so that each becomes one token and captions stay short sequences of meaningful ids.
CAPTION_WORDS: tuple[str, ...] = (
    "a", "an", "cartoon", "face", "smiling", "frowning", "with", "neutral", "expression", "open",
    "mouth", "looking", "straight", "ahead", "left", "right", "up", "down", "on", "background",
    "green", "teal", "purple", "pink", "grey", "light", "blue", "brown", "lime", "lavender",
)


@dataclass
class ToySDConfig:
    """Widths of the toy model. Images are `image_size` square (a multiple of 64)."""

    image_size: int = 128
    vae_channels: tuple[int, ...] = (24, 48, 64)
    vae_layers_per_block: int = 1
    vae_norm_groups: int = 8
    unet_channels: tuple[int, ...] = (32, 64, 96, 96)
    unet_layers_per_block: int = 2
    unet_norm_groups: int = 16
    unet_attention_head_dim: int = 8
    unet_top_attention: bool = False
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4

    @staticmethod
    def tiny() -> "ToySDConfig":
        """A minute configuration for tests (64 px images, a few thousand parameters per block)."""
        return ToySDConfig(image_size=64, vae_channels=(8, 8, 8), vae_norm_groups=4,
                           unet_channels=(16, 16, 16, 16), unet_norm_groups=4, unet_attention_head_dim=4,
                           text_hidden=16, text_layers=1, text_heads=2)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (lists for tuples) for checkpoints and JSON."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent cell: 2 ** (VAE blocks - 1), as diffusers' pipelines compute it."""
        return 2 ** (len(self.vae_channels) - 1)

    @property
    def latent_size(self) -> int:
        """Latent side `image_size / vae_scale_factor` (a multiple of 8: the UNet halves it 3 times)."""
        return self.image_size // self.vae_scale_factor

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "ToySDConfig":
        """Inverse of `to_dict`."""
        return ToySDConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def vae_config(cfg: ToySDConfig) -> dict[str, Any]:
    """`AutoencoderKL(**kwargs)` for `cfg`: `len(vae_channels)` blocks (factor 2 ** (blocks - 1)),
    4 latent channels. Raises ValueError when the latent side is not a multiple of 8."""
    if cfg.image_size % cfg.vae_scale_factor or cfg.latent_size % 8:
        raise ValueError(f"image_size {cfg.image_size} / VAE factor {cfg.vae_scale_factor} must be a multiple of 8")
    n = len(cfg.vae_channels)
    out = copy.deepcopy(SD15_VAE_CONFIG)
    out.update(block_out_channels=tuple(cfg.vae_channels), layers_per_block=cfg.vae_layers_per_block,
               down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
               norm_num_groups=cfg.vae_norm_groups, sample_size=cfg.image_size, scaling_factor=1.0)
    return out


def unet_config(cfg: ToySDConfig) -> dict[str, Any]:
    """`UNet2DConditionModel(**kwargs)` for `cfg` with SD 1.5's block layout."""
    out = copy.deepcopy(SD15_UNET_CONFIG)
    out.update(block_out_channels=tuple(cfg.unet_channels), layers_per_block=cfg.unet_layers_per_block,
               cross_attention_dim=cfg.text_hidden, norm_num_groups=cfg.unet_norm_groups,
               attention_head_dim=cfg.unet_attention_head_dim, sample_size=cfg.latent_size)
    if not cfg.unet_top_attention:
        down, up = list(out["down_block_types"]), list(out["up_block_types"])
        down[0], up[-1] = "DownBlock2D", "UpBlock2D"
        out.update(down_block_types=tuple(down), up_block_types=tuple(up))
    return out


def text_config(cfg: ToySDConfig, vocab_size: int) -> dict[str, Any]:
    """`CLIPTextConfig(**kwargs)` for `cfg` (bos/eos/pad ids are set from the tokenizer later)."""
    out = copy.deepcopy(SD15_TEXT_ENCODER_CONFIG)
    out.update(hidden_size=cfg.text_hidden, intermediate_size=4 * cfg.text_hidden,
               num_attention_heads=cfg.text_heads, num_hidden_layers=cfg.text_layers,
               projection_dim=cfg.text_hidden, vocab_size=vocab_size,
               max_position_embeddings=TOKENIZER_MAX_LENGTH)
    return out


def build_tokenizer():
    """The local byte-level `CLIPTokenizer` with one token per caption word (no files, no hub)."""
    from transformers import CLIPTokenizer

    vocab, merges = tiny_tokenizer_vocab(CAPTION_WORDS)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=TOKENIZER_MAX_LENGTH)


def build_vae(cfg: ToySDConfig):
    """A fresh (random) `AutoencoderKL` for `cfg`."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**vae_config(cfg))


def build_unet(cfg: ToySDConfig):
    """A fresh (random) `UNet2DConditionModel` for `cfg`."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**unet_config(cfg))


def build_text_encoder(cfg: ToySDConfig, tokenizer):
    """A fresh (random) `CLIPTextModel` matching `tokenizer`'s vocabulary and special ids."""
    from transformers import CLIPTextConfig, CLIPTextModel

    tc = text_config(cfg, len(tokenizer))
    tc.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
              pad_token_id=tokenizer.pad_token_id)
    return CLIPTextModel(CLIPTextConfig(**tc))


def build_scheduler():
    """`DDIMScheduler` with SD 1.5's configuration."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**SD15_SCHEDULER_CONFIG)


def assemble_pipeline(vae, text_encoder, tokenizer, unet, scheduler=None):
    """A `StableDiffusionPipeline` from the parts (no safety checker, progress bar off)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler or build_scheduler(), safety_checker=None,
                                   feature_extractor=None, image_encoder=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe
