"""Where things are: the repository's folders, the bundled toy models and the default hub id.

Defined once here; engine modules and the web app import these names (tests may monkeypatch the
imported names in the module that reads them). Paths are absolute `pathlib.Path`s rooted at the
checkout (`REPO_ROOT`: the folder holding `stabledrag/`).
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ASSETS_DIR = REPO_ROOT / "assets"
MODELS_DIR = ASSETS_DIR / "models"
TOY_GAN_DIR = MODELS_DIR / "toy_gan"  # the bundled toy-faces StyleGAN2 (`model.safetensors` + `config.json`)
TOY_SD_DIR = MODELS_DIR / "toy_sd"  # the bundled toy-faces SD pipeline (diffusers folder)
EXAMPLES_DIR = ASSETS_DIR / "examples"
SCREENSHOTS_DIR = ASSETS_DIR / "screenshots"
RUNS_DIR = REPO_ROOT / "runs"

SD15_HUB_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # Stable Diffusion 1.5 on the Hugging Face hub
