"""Latent round trip of StableDrag-Diff: VAE encode/decode, prompt encoding, DDIM inversion to an
intermediate step and DDIM denoising back from it (DragDiffusion, Shi et al. 2024 §3).

Conventions:
- latents are `B x 4 x H/8 x W/8` tensors already multiplied by the VAE's scaling factor;
- images enter as `1 x 3 x H x W` in [-1, 1] and leave as `H x W x 3` uint8 arrays;
- prompt embeddings are `1 x 77 x D` (no classifier-free guidance: guidance scale 1 throughout).

Both schedulers are built from the pipeline's own scheduler config, so a model shipped with a
PNDM or Euler scheduler is still inverted with DDIM over the same noise schedule.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

from ..progress import CancelToken, ProgressCallback, report
from ..tensors import image_to_tensor, tensor_to_uint8  # noqa: F401 (re-exported)

from .unet import predict_noise

log = logging.getLogger(__name__)

#: Called after every denoising step with (step index, latents) — e.g. to preview.
StepCallback = Callable[[int, torch.Tensor], None]


@dataclass
class InversionConfig:
    """DDIM inversion settings.

    num_steps: DDIM steps of the full schedule (DragDiffusion: 50).
    strength: fraction of the schedule that is inverted; `round(strength * num_steps)` inverse
      steps are run (0.7 of 50 = 35, which lands on t = 681 for SD's scheduler).
    """

    num_steps: int = 50
    strength: float = 0.7

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if not 0.0 < self.strength <= 1.0:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")
        if self.inverse_steps < 1:
            raise ValueError(f"strength {self.strength} of {self.num_steps} steps inverts nothing")

    @property
    def inverse_steps(self) -> int:
        """Number of inverse (and later denoising) DDIM steps."""
        return int(round(self.strength * self.num_steps))


def make_schedulers(scheduler_config: Any, cfg: InversionConfig) -> tuple[DDIMScheduler, DDIMInverseScheduler]:
    """A forward DDIM and an inverse DDIM scheduler, both set to `cfg.num_steps` steps.

    `scheduler_config` is any diffusers scheduler config (e.g. `pipe.scheduler.config`).
    """
    # Latents exceed [-1, 1]: clipping the predicted x0 (some configs ask for it) would corrupt them.
    overrides: dict[str, Any] = {"clip_sample": False}
    if dict(scheduler_config).get("timestep_spacing", "leading") not in ("leading", "trailing"):
        overrides["timestep_spacing"] = "leading"  # the inverse scheduler knows only these two
    fwd = DDIMScheduler.from_config(scheduler_config, **overrides)
    # The inverse scheduler always steps with noise: `ddim_invert` converts v / sample predictions
    # itself, at the noise level the UNet was evaluated at (see `prediction_to_noise`).
    inv = DDIMInverseScheduler.from_config(scheduler_config, **overrides, prediction_type="epsilon")
    fwd.set_timesteps(cfg.num_steps)
    inv.set_timesteps(cfg.num_steps)
    return fwd, inv


def start_timestep(scheduler: DDIMScheduler, cfg: InversionConfig) -> int:
    """The diffusion timestep of the inverted latent (681 for SD 1.5 at 50 steps, strength 0.7)."""
    return int(scheduler.timesteps[cfg.num_steps - cfg.inverse_steps])


def denoise_timesteps(scheduler: DDIMScheduler, cfg: InversionConfig) -> list[int]:
    """The forward timesteps that take the inverted latent back to t = 0 (descending)."""
    return [int(t) for t in scheduler.timesteps[cfg.num_steps - cfg.inverse_steps:]]


@torch.no_grad()
def encode_prompt(pipe: Any, prompt: str) -> torch.Tensor:
    """Text embedding `1 x 77 x D` of `prompt` from the pipeline's CLIP tokenizer and encoder."""
    tok = pipe.tokenizer
    ids = tok(prompt, padding="max_length", max_length=tok.model_max_length, truncation=True,
              return_tensors="pt").input_ids
    enc = pipe.text_encoder
    return enc(ids.to(enc.device))[0].to(pipe.unet.dtype)


def run_vae(vae: Any, fn: Callable[[torch.dtype], torch.Tensor]) -> torch.Tensor:
    """`fn(dtype)` (a VAE call with its input cast to `dtype`), redone in fp32 when an fp16 VAE
    overflows (non-finite output: SD's VAE is known to, e.g. on bright or large images). The VAE
    is cast to fp32 for that call only and back to fp16 afterwards."""
    out = fn(vae.dtype)
    if vae.dtype == torch.float16 and not bool(torch.isfinite(out).all()):
        log.warning("the VAE overflowed in float16; running it in float32")
        vae.to(torch.float32)
        try:
            out = fn(torch.float32)
        finally:
            vae.to(torch.float16)
    return out


@torch.no_grad()
def encode_image(vae: Any, image: Any) -> torch.Tensor:
    """RGB image of a VAE-valid size -> latent `1 x 4 x H/8 x W/8` (mean of the posterior, scaled),
    float32 when the VAE fell back to fp32 (`run_vae`)."""
    x = image_to_tensor(image).to(vae.device)
    return run_vae(vae, lambda dt: vae.encode(x.to(dt)).latent_dist.mean) * vae.config.scaling_factor


def decode_latent(vae: Any, latent: torch.Tensor) -> torch.Tensor:
    """Latent `B x 4 x h x w` -> images `B x 3 x 8h x 8w` in [-1, 1] (gradients flow if enabled;
    fp32 fallback where an fp16 VAE overflows, `run_vae`)."""
    z = latent / vae.config.scaling_factor
    return run_vae(vae, lambda dt: vae.decode(z.to(dt)).sample)


def prediction_to_noise(model_output: torch.Tensor, sample: torch.Tensor, alpha_prod: float | torch.Tensor,
                        prediction_type: str) -> torch.Tensor:
    """The noise `eps` that a UNet output means, read at the noise level it was evaluated at.

    model_output: the UNet's output for input `sample` (`B x 4 x h x w`) at a timestep whose
    cumulative alpha is `alpha_prod` (a = alpha-bar). With `x = sqrt(a) x0 + sqrt(1 - a) eps` and
    `v = sqrt(a) eps - sqrt(1 - a) x0` (Salimans & Ho 2022):
      "epsilon":      eps = output
      "v_prediction": eps = sqrt(a) v + sqrt(1 - a) x
      "sample":       eps = (x - sqrt(a) x0) / sqrt(1 - a)
    In DDIM inversion the UNet is evaluated on the current (less noisy) latent at the *target*
    timestep, so `alpha_prod` must be the target's: then all three parameterisations of one model
    give the same noise and the same inverted latent (diffusers' `DDIMInverseScheduler` reads v and
    x0 with the current step's alpha instead). Raises ValueError for another prediction type.
    """
    a = torch.as_tensor(alpha_prod, dtype=torch.float64)
    sa, sb = float(a.sqrt()), float((1 - a).sqrt())
    if prediction_type == "epsilon":
        return model_output
    if prediction_type == "v_prediction":
        return sa * model_output + sb * sample
    if prediction_type == "sample":
        return (sample - sa * model_output) / sb
    raise ValueError(f"unknown prediction_type {prediction_type!r} (epsilon, v_prediction or sample)")


@torch.no_grad()
def ddim_invert(
    unet: Any,
    scheduler_config: Any,
    latent: torch.Tensor,
    emb: torch.Tensor,
    cfg: InversionConfig,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
) -> tuple[torch.Tensor, int]:
    """DDIM-invert a clean latent `1 x 4 x h x w` for `cfg.inverse_steps` steps (guidance 1).

    Each inverse step evaluates the UNet on the current latent at the *target* (noisier) timestep,
    as diffusers' inverse pipelines and DragDiffusion do, and reads its output as noise at that
    target's noise level (`prediction_to_noise`: epsilon, v_prediction and sample models alike).
    Reports phase "inversion". Returns `(z_t, t)` with `z_t` in float32 and `t` the timestep it
    sits at.
    """
    fwd, inv = make_schedulers(scheduler_config, cfg)
    prediction_type = fwd.config.prediction_type
    n = cfg.inverse_steps

    def inverse_step(z: torch.Tensor, t: Any) -> torch.Tensor:
        out = predict_noise(unet, z, int(t), emb).float()
        eps = prediction_to_noise(out, z, inv.alphas_cumprod[int(t)], prediction_type)
        return inv.step(eps, t, z).prev_sample

    z = _step_through("inversion", inv.timesteps[:n], n, latent.float(), inverse_step, progress, cancel)
    t_end = start_timestep(fwd, cfg)
    if int(inv.timesteps[n - 1]) != t_end:  # both schedules are built from one config: a bug if not
        raise RuntimeError(f"inverse schedule ends at {int(inv.timesteps[n - 1])}, forward starts at {t_end}")
    return z, t_end


@torch.no_grad()
def ddim_denoise(
    unet: Any,
    scheduler_config: Any,
    latents: torch.Tensor,
    emb: torch.Tensor,
    cfg: InversionConfig,
    progress: Optional[ProgressCallback] = None,
    cancel: Optional[CancelToken] = None,
    on_step: Optional[StepCallback] = None,
) -> torch.Tensor:
    """DDIM-denoise latents `B x 4 x h x w` (all at the inverted step) to t = 0, guidance 1.

    The batch is denoised together, so an attention processor that couples batch elements (the
    reference-latent control of `attention.reference_attention`) sees every branch. Reports phase
    "denoise". Returns float32 clean latents `B x 4 x h x w`.
    """
    fwd, _ = make_schedulers(scheduler_config, cfg)
    steps = denoise_timesteps(fwd, cfg)

    def denoise_step(z: torch.Tensor, t: int) -> torch.Tensor:
        eps = predict_noise(unet, z, t, emb).float()
        return fwd.step(eps, t, z, eta=0.0).prev_sample

    return _step_through("denoise", steps, len(steps), latents.float(), denoise_step, progress, cancel, on_step)


def _step_through(phase: str, timesteps: Sequence[Any], total: int, z: torch.Tensor,
                  step: Callable[[torch.Tensor, Any], torch.Tensor], progress: Optional[ProgressCallback],
                  cancel: Optional[CancelToken], on_step: Optional[StepCallback] = None) -> torch.Tensor:
    """The loop of `ddim_invert` and `ddim_denoise`: `z = step(z, t)` for each of `timesteps`, with
    `cancel` checked before each step (raises `Cancelled`), progress reported as `phase` step
    `i + 1` of `total` with `{"t": int(t)}` (and step 0 before the loop), and `on_step(i, z)` after
    each step. Returns the last `z`."""
    report(progress, phase, 0, total)
    for i, t in enumerate(timesteps):
        if cancel is not None:
            cancel.raise_if_cancelled()
        z = step(z, t)
        report(progress, phase, i + 1, total, {"t": int(t)})
        if on_step is not None:
            on_step(i, z)
    return z


def one_step(scheduler: DDIMScheduler, model_output: torch.Tensor, t: int, latent: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step from `t`, differentiable: returns `(x_{t-1}, predicted x_0)`.

    `scheduler` must have its timesteps set (see `make_schedulers`); shapes `B x 4 x h x w`.
    """
    out = scheduler.step(model_output, t, latent, eta=0.0)
    return out.prev_sample, out.pred_original_sample
