"""`DiffusionBackend` under the core drag loop: features, cut forward, mask loss, previews, reuse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stabledrag.diffusion.presets import diffusion_defaults
from stabledrag.diffusion.backend import DiffusionBackend
from stabledrag.diffusion.inversion import InversionConfig, encode_prompt, make_schedulers, start_timestep
from stabledrag.diffusion.tiny import build_tiny_pipeline
from stabledrag.drag import Backend, DragSession, drag
from stabledrag.points import from_pairs


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_pipeline(seed=0, image_size=64)


def _backend(pipe, mask=None, **kw):
    cfg = InversionConfig(num_steps=10, strength=0.5)
    sched, _ = make_schedulers(pipe.scheduler.config, cfg)
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5
    return DiffusionBackend(pipe, sched, latent, start_timestep(sched, cfg), encode_prompt(pipe, "a face"),
                            image_size=(64, 64), mask=mask, **kw)


def test_features_are_half_size_float_with_grad_and_cut_without_mask(pipe):
    backend = _backend(pipe)
    assert isinstance(backend, Backend)
    state = backend.initial_state()
    assert state.is_leaf and state.requires_grad and state.dtype == torch.float32
    out = backend.features(state)
    c = pipe.unet.config.block_out_channels[1]
    assert out.features.shape == (c, 32, 32) and out.features.dtype == torch.float32
    assert out.features.requires_grad
    assert out.extras == {} and backend.mask_loss(state, out, out) is None
    assert backend.extractor.counts == {"cut": 1, "full": 0}


def test_mask_loss_is_l1_sum_of_one_step_latent_outside_the_mask(pipe):
    mask = np.zeros((64, 64), bool)
    mask[:, :32] = True  # left half editable
    backend = _backend(pipe, mask=mask)
    state = backend.initial_state()
    with torch.no_grad():
        ref = backend.features(state)
    assert ref.extras["x_prev"].shape == (1, 4, 8, 8) and backend.extractor.counts["full"] == 1
    with torch.no_grad():
        state.add_(torch.randn(state.shape, generator=torch.Generator().manual_seed(1)) * 0.1)
    out = backend.features(state)
    loss = backend.mask_loss(state, out, ref)
    keep = torch.zeros(8, 8)
    keep[:, 4:] = 1.0  # mask resized to the latent grid; the right half must stay
    expected = ((out.extras["x_prev"] - ref.extras["x_prev"]).abs() * keep).sum()
    assert torch.allclose(loss, expected) and loss > 0
    loss.backward()
    assert state.grad is not None and state.grad.abs().sum() > 0
    # the one-step latent is the DDIM step of the UNet's noise prediction
    step = backend.scheduler.step(out.extras["eps"].detach(), backend.t, state.detach()).prev_sample
    assert torch.allclose(out.extras["x_prev"].detach(), step)


@pytest.mark.parametrize("method", ["stabledrag", "baseline"])
def test_drag_loop_optimises_the_latent(pipe, method):
    backend = _backend(pipe)
    points = from_pairs([((30, 30), (40, 30))])
    events = []
    config = diffusion_defaults(method, max_steps=3)
    result = drag(backend, points, config, progress=events.append)
    assert result.status in ("max_steps", "reached")
    assert result.trajectory.shape[1:] == (1, 2) and torch.equal(result.trajectory[0], points.handles)
    assert not torch.equal(result.state.detach(), backend.latent)  # z_t was optimised
    assert all(np.isfinite(result.losses))
    assert backend.extractor.counts["full"] == 0  # no mask: every forward was cut
    assert events and all(e.phase == "drag" for e in events)


def test_cached_reference_replaces_the_first_forward(pipe):
    first = _backend(pipe)
    session = DragSession(first, from_pairs([((30, 30), (40, 30))]), diffusion_defaults(max_steps=1))
    assert first.reference is not None and first.extractor.counts["cut"] == 1
    second = _backend(pipe, reference=first.reference)
    DragSession(second, from_pairs([((30, 30), (40, 30))]), diffusion_defaults(max_steps=1))
    assert second.reference_reused and second.extractor.counts == {"cut": 0, "full": 0}
    session.run()
    # once the state moved, the cache is not used any more
    state = second.initial_state()
    with torch.no_grad():
        state.add_(0.01)
        second.features(state)
    assert second.extractor.counts["cut"] == 1


def test_preview_decodes_predicted_image(pipe):
    backend = _backend(pipe)
    state = backend.initial_state()
    with torch.no_grad():
        out = backend.features(state)
        img = backend.preview(state, out)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert _backend(pipe, preview_decode=False).preview(state, out) is None
