"""Identity-LoRA fine-tuning for StableDrag-Diff (peft), in diffusers' LoRA format, with a cache.

Public API:
- `IdentityLoraConfig` — rank 16, lr 5e-4, batch 4, 80 steps, seed 0, to_q/to_k/to_v/to_out.0.
- `train_identity_lora(pipe, image, prompt, config, progress, cancel) -> state_dict`
- `save_lora(state_dict, dir, metadata)`, `load_lora(pipe, path, scale)`, `unload_lora(pipe)`,
  `active_lora(pipe)`
- `ensure_identity_lora(pipe, model_id, image, prompt, config, cache_dir, progress, cancel)
  -> (path, trained)` — trains only on a cache miss, then applies the LoRA to `pipe.unet`.
- `default_cache_dir()`, `cache_key(...)`.
Command line: `python -m lora_tuning --model M --image IMG --prompt P --out DIR`.
"""

from .cache import cache_key, default_cache_dir, ensure_identity_lora, model_identity
from .config import DEFAULT_TARGET_MODULES, IdentityLoraConfig
from .train import prepare_training_image, train_identity_lora
from .weights import WEIGHT_NAME, active_lora, load_lora, save_lora, unload_lora

__all__ = [
    "DEFAULT_TARGET_MODULES", "IdentityLoraConfig", "WEIGHT_NAME", "active_lora", "cache_key",
    "default_cache_dir", "ensure_identity_lora", "load_lora", "model_identity", "prepare_training_image",
    "save_lora", "train_identity_lora", "unload_lora",
]
