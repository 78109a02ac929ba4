"""Test-wide settings: offline, deterministic, one torch thread (tiny models; the CI machine has 2 cores)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(1)  # tiny test models: a second thread mostly spins

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(client factory, folder) for the app served in-process on tiny random models saved to a
    temporary folder (the app's model paths are arguments); one server for each test module that
    asks for it (`app_server.serve`; gradio_client is needed)."""
    pytest.importorskip("gradio_client")
    from app_server import serve

    from stabledrag.testing import save_tiny_gan, save_tiny_sd

    root = tmp_path_factory.mktemp("app")
    gan, sd = save_tiny_gan(root, resolution=32), save_tiny_sd(root, image_size=64)
    with serve(["--gan-model", gan, "--diffusion-model", sd, "--models-dir", str(root / "none"),
                "--lora-cache-dir", str(root / "lora"), "--device", "cpu"]) as new_client:
        yield new_client, root
