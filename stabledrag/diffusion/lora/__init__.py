"""Identity-LoRA fine-tuning for StableDrag-Diff (DragDiffusion's recipe, with peft), in diffusers'
LoRA format, with an on-disk cache.

Modules (one idea each):
  config   `IdentityLoraConfig` — rank 16, lr 5e-4, batch 4, 80 steps, seed 0, to_q/to_k/to_v/to_out.0
  train    `train_identity_lora(pipe, image, prompt, config, progress, cancel) -> state_dict`
  weights  `save_lora`, `load_lora` (fused), `unload_lora`, `active_lora`, `read_lora_state_dict`
  cache    `ensure_identity_lora(...) -> (path, trained)` (trains only on a cache miss),
           `default_cache_dir`, `cache_key`, `model_identity`

This is library code: the diffusion editor, the loader and the benchmarks import it from here. The
top-level `lora_tuning` package is the user-facing command (`python -m lora_tuning`) on top of it
and re-exports these names; nothing in `stabledrag` imports `lora_tuning` (tests/test_layering.py).
"""

from .cache import cache_key, default_cache_dir, ensure_identity_lora, model_identity
from .config import DEFAULT_TARGET_MODULES, IdentityLoraConfig
from .train import prepare_training_image, train_identity_lora
from .weights import WEIGHT_NAME, active_lora, load_lora, read_lora_state_dict, save_lora, unload_lora

__all__ = [
    "DEFAULT_TARGET_MODULES", "IdentityLoraConfig", "WEIGHT_NAME", "active_lora", "cache_key",
    "default_cache_dir", "ensure_identity_lora", "load_lora", "model_identity", "prepare_training_image",
    "read_lora_state_dict", "save_lora", "train_identity_lora", "unload_lora",
]
