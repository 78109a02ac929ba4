"""Fine-tune an identity LoRA on one image (DragDiffusion's recipe, with peft).

The UNet learns to denoise the single input image at random timesteps, conditioned on the
user's prompt, so that DDIM inversion + denoising reproduces that image faithfully and the
drag edits *this* image rather than a generic look-alike. Only the LoRA matrices train
(rank r on to_q/to_k/to_v/to_out.0 of every attention); the VAE and text encoder are frozen
and used once (latent distribution and prompt embedding are computed up front).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, Optional

import torch
import torch.nn.functional as F
from PIL import Image

from ..images import model_resolution, prepare_image, size_multiple
from ..inversion import encode_prompt
from ..unet import predict_noise
from ...tensors import image_to_tensor
from ...progress import CancelToken, ProgressCallback, report

from .config import IdentityLoraConfig
from .weights import TRAIN_ADAPTER, unload_lora

log = logging.getLogger(__name__)

PHASE = "lora"


def prepare_training_image(pipe: Any, image: Image.Image, config: IdentityLoraConfig) -> Image.Image:
    """The RGB image the LoRA is trained on: `prepare_image` at `config.resolution` or the
    model's native resolution (idempotent: an already prepared image comes back unchanged)."""
    target = config.resolution or model_resolution(pipe)
    return prepare_image(image, target, size_multiple(pipe))[0]


def _lora_peft_config(config: IdentityLoraConfig):
    from peft import LoraConfig

    # Gaussian A (std 1/r) and zero B, alpha = r: the initial LoRA is a no-op and has scale 1,
    # matching DragDiffusion's LoRA layers.
    return LoraConfig(r=config.rank, lora_alpha=config.rank, init_lora_weights="gaussian",
                      target_modules=list(config.target_modules))


def train_identity_lora(pipe: Any, image: Image.Image, prompt: str,
                        config: Optional[IdentityLoraConfig] = None,
                        progress: Optional[ProgressCallback] = None,
                        cancel: Optional[CancelToken] = None) -> dict[str, torch.Tensor]:
    """Train an identity LoRA on `image` and return its weights in diffusers' LoRA format.

    pipe: a StableDiffusionPipeline (any device/dtype; LoRA weights train in fp32).
    image: any PIL image; it is converted/resized with `prepare_training_image`.
    prompt: the text the image is paired with (may be empty).
    Returns the UNet LoRA weights in diffusers naming, without the "unet." prefix
    ({"down_blocks.0.attentions.0...attn1.to_q.lora.down.weight": tensor, ...}; CPU, fp32),
    ready for `save_lora`.
    Progress: `Progress("lora", step, total, info={"loss": ...})` after every step (and step 0
    at the start). Cancellation raises `stabledrag.progress.Cancelled` at a step boundary.
    The pipeline is left without any LoRA (previously loaded adapters are removed first, so the
    new LoRA is trained against the base model).
    """
    from diffusers import DDPMScheduler
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    config = config or IdentityLoraConfig()
    unet, vae = pipe.unet, pipe.vae
    device, dtype = unet.device, unet.dtype
    img = prepare_training_image(pipe, image, config)
    report(progress, PHASE, 0, config.steps, info={"size": f"{img.width}x{img.height}"})
    t0 = time.perf_counter()

    unload_lora(pipe)
    gen = torch.Generator("cpu").manual_seed(config.seed)
    with torch.no_grad():
        dist = vae.encode(image_to_tensor(img, device, vae.dtype)).latent_dist
        mean, std = dist.mean.float(), dist.std.float()
        text = encode_prompt(pipe, prompt)
    text = text.expand(config.batch_size, -1, -1)
    scaling = float(vae.config.scaling_factor)
    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    n_train = int(noise_sched.config.num_train_timesteps)
    prediction = noise_sched.config.prediction_type

    was_training = unet.training
    unet.requires_grad_(False)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        unet.add_adapter(_lora_peft_config(config), adapter_name=TRAIN_ADAPTER)
    params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:  # train the adapter in fp32 even when the base weights are half precision
        p.data = p.data.float()
        p.requires_grad_(True)
    optimiser = torch.optim.AdamW(params, lr=config.lr, betas=(0.9, 0.999), weight_decay=config.weight_decay,
                                  eps=1e-8)
    # fp16 gradients through the frozen UNet can underflow; bf16/fp32 need no scaler.
    scaler = torch.amp.GradScaler(device.type, enabled=(dtype == torch.float16 and device.type == "cuda"))
    try:
        unet.train()
        for step in range(1, config.steps + 1):
            if cancel is not None:
                cancel.raise_if_cancelled()
            shape = (config.batch_size,) + tuple(mean.shape[1:])
            eps_latent = torch.randn(shape, generator=gen).to(device)
            latents = (mean + std * eps_latent) * scaling
            noise = torch.randn(shape, generator=gen).to(device)
            t = torch.randint(0, n_train, (config.batch_size,), generator=gen).to(device)
            noisy = noise_sched.add_noise(latents, noise, t)
            target = noise if prediction == "epsilon" else noise_sched.get_velocity(latents, noise, t)
            with _autocast(device, dtype):
                pred = predict_noise(unet, noisy, t, text, dtype=dtype)
            loss = F.mse_loss(pred.float(), target.float())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"LoRA training loss became {loss.item()} at step {step}")
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            report(progress, PHASE, step, config.steps, info={"loss": float(loss.detach())})
        state = get_peft_model_state_dict(unet, adapter_name=TRAIN_ADAPTER)
        state = convert_state_dict_to_diffusers(state)
        state = {k: v.detach().float().cpu().contiguous() for k, v in state.items()}
    finally:
        unet.train(was_training)
        unload_lora(pipe)
    log.info("identity LoRA: %d steps in %.1f s", config.steps, time.perf_counter() - t0)
    return state


def _autocast(device: torch.device, dtype: torch.dtype):
    """Autocast to the weights' half precision on CUDA (fp32 LoRA inputs meet half weights);
    nothing on CPU/fp32."""
    if device.type == "cuda" and dtype in (torch.float16, torch.bfloat16):
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()
