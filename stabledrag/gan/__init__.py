"""StableDrag-GAN: a StyleGAN2 generator of our own, safe checkpoint loading, and live dragging.

- `networks`: the generator (official parameter names and semantics, plain PyTorch).
- `checkpoints`: `load_generator` for official `.pkl` files (never executed) and the native
  safetensors format (`save_native` / `load_native`).
- `backend` / `editor`: `GanBackend` (the drag `Backend` on W+) and `GanEditor` for the UI/CLI.
"""

from .checkpoints import load_generator, load_native, load_pickle, save_native
from .networks import Generator, GeneratorConfig

__all__ = ["Generator", "GeneratorConfig", "load_generator", "load_native", "load_pickle", "save_native"]
