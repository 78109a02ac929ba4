"""The contract every `stabledrag.drag.Backend` must keep, checked on each backend we ship plus the
test texture: a third engine's backend is added to `BACKENDS` and must pass the same checks.

1. `initial_state()` is fresh each call and its `parameters` are float leaves that require grad;
2. `features` gives a finite float32 `C x H x W` map whose gradient reaches every parameter;
3. the same state gives the same features (deterministic: the drag's reference is step 0);
4. `preview` is an `H x W x 3` uint8 image at `image_size` (or None);
5. `mask_loss` is None without a mask, and a finite scalar with one, zero at the reference;
6. `image_size` is `(W, H)` of the clicked image, and one drag step through `DragSession` runs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stabledrag.config import DragConfig
from stabledrag.drag import Backend, DragSession
from stabledrag.points import from_pairs


def _texture(mask):
    from stabledrag.bench.synthetic import TranslatingTextureBackend, smooth_field

    g = torch.Generator().manual_seed(0)
    tex = smooth_field(8, 32, g, scale=4)
    keep = None if mask is None else torch.from_numpy(~mask).float()
    return TranslatingTextureBackend(tex, keep=keep)


def _diffusion(mask):
    from stabledrag.diffusion.backend import DiffusionBackend
    from stabledrag.diffusion.inversion import InversionConfig, encode_prompt, make_schedulers, start_timestep
    from stabledrag.diffusion.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline(seed=0, image_size=64)
    cfg = InversionConfig(num_steps=10, strength=0.5)
    sched, _ = make_schedulers(pipe.scheduler.config, cfg)
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5
    return DiffusionBackend(pipe, sched, latent, start_timestep(sched, cfg), encode_prompt(pipe, "a face"),
                            image_size=(64, 64), mask=mask)


def _gan(mask):
    from stabledrag.gan.editor import GanEditor
    from stabledrag.gan.networks import Generator, GeneratorConfig

    torch.manual_seed(0)
    G = Generator(GeneratorConfig(z_dim=32, w_dim=32, img_resolution=32, channel_base=512, channel_max=32,
                                  mapping_layers=2))
    ed = GanEditor(G)
    ed.generate(1, truncation_psi=0.7)
    return ed.backend(mask=mask)


BACKENDS = {"texture": (_texture, (32, 32)), "diffusion": (_diffusion, (64, 64)), "gan": (_gan, (32, 32))}


def _mask(size):
    w, h = size
    m = np.zeros((h, w), bool)
    m[:, : w // 2] = True  # left half editable
    return m


@pytest.fixture(params=list(BACKENDS), scope="module")
def kind(request):
    return request.param


def test_state_parameters_features_and_gradients(kind):
    make, size = BACKENDS[kind]
    be = make(None)
    assert isinstance(be, Backend) and tuple(be.image_size) == size
    s1, s2 = be.initial_state(), be.initial_state()
    params = be.parameters(s1)
    assert params and all(p.is_leaf and p.requires_grad and p.is_floating_point() for p in params)
    assert all(p is not q for p, q in zip(params, be.parameters(s2)))  # a fresh state each call
    out = be.features(s1)
    f = out.features
    assert f.dim() == 3 and f.dtype == torch.float32 and torch.isfinite(f).all()
    (f * torch.linspace(0, 1, f.numel()).reshape(f.shape)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    with torch.no_grad():
        again = be.features(be.initial_state()).features
    assert torch.allclose(again, f.detach(), atol=1e-5)  # deterministic: step 0 is the reference
    prev = be.preview(s1, out)
    if prev is not None:
        prev = np.asarray(prev)
        assert prev.dtype == np.uint8 and prev.ndim == 3 and prev.shape[2] == 3
    assert be.mask_loss(s1, out, out) is None  # no mask, no mask loss


def test_mask_loss_is_zero_at_the_reference_and_a_finite_scalar(kind):
    make, size = BACKENDS[kind]
    be = make(_mask(size))
    state = be.initial_state()
    with torch.no_grad():
        ref = be.features(state)
    out = be.features(state)
    loss = be.mask_loss(state, out, ref)
    assert loss is not None and loss.dim() == 0 and torch.isfinite(loss)
    assert float(loss.detach()) == pytest.approx(0, abs=1e-5)


def test_one_drag_step_runs_through_the_session(kind):
    make, size = BACKENDS[kind]
    be = make(None)
    w, h = size
    pts = from_pairs([((w * 0.4, h * 0.5), (w * 0.6, h * 0.5))])
    sess = DragSession(be, pts, DragConfig(method="baseline", r_m=1, r_p=2, lr=0.01, max_steps=1,
                                           stop_distance=0.5, lambda_mask=0.0))
    res = sess.run()
    assert res.steps == 1 and res.status == "max_steps" and res.trajectory.shape == (2, 1, 2)
