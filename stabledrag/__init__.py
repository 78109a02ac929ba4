"""StableDrag Studio: stable point-based image editing (StableDrag-Diff and StableDrag-GAN).

The core (`points`, `tracking`, `supervision`, `drag`, `config`) depends only on torch; engines
live in `stabledrag.diffusion` and `stabledrag.gan`, the toy-faces world in `stabledrag.toy`.
"""

__version__ = "0.1.0"
