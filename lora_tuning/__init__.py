"""`python -m lora_tuning`: train an identity LoRA on one image and save it (diffusers format).

A thin user-facing package on top of the library: the training, weights and cache code lives in
`stabledrag.diffusion.lora` (the editor needs it, and the library must not import this package).
The dependency runs one way only, `lora_tuning -> stabledrag` (tests/test_layering.py checks it).

Public names (re-exported from `stabledrag.diffusion.lora`, so old imports keep working):
- `IdentityLoraConfig` — rank 16, lr 5e-4, batch 4, 80 steps, seed 0, to_q/to_k/to_v/to_out.0.
- `train_identity_lora(pipe, image, prompt, config, progress, cancel) -> state_dict`
- `save_lora(state_dict, dir, metadata)`, `load_lora(pipe, path, scale)`, `unload_lora(pipe)`,
  `active_lora(pipe)`
- `ensure_identity_lora(pipe, model_id, image, prompt, config, cache_dir, progress, cancel)
  -> (path, trained)` — trains only on a cache miss, then applies the LoRA to `pipe.unet`.
- `default_cache_dir()`, `cache_key(...)`.
- the library modules under their old names: `lora_tuning.cache`, `.config`, `.train`, `.weights`
  (attributes bound to the same module objects, so patching one patches the library).
Command line: `python -m lora_tuning --model M --image IMG --prompt P --out DIR`.
"""

from stabledrag.diffusion.lora import (DEFAULT_TARGET_MODULES, WEIGHT_NAME, IdentityLoraConfig, active_lora,
                                       cache, cache_key, config, default_cache_dir, ensure_identity_lora,
                                       load_lora, model_identity, prepare_training_image, save_lora, train,
                                       train_identity_lora, unload_lora, weights)

__all__ = [
    "DEFAULT_TARGET_MODULES", "IdentityLoraConfig", "WEIGHT_NAME", "active_lora", "cache", "cache_key", "config",
    "default_cache_dir", "ensure_identity_lora", "load_lora", "model_identity", "prepare_training_image",
    "save_lora", "train", "train_identity_lora", "unload_lora", "weights",
]
