import torch
import pytest

from stabledrag.bench.synthetic import TranslatingTextureBackend, smooth_field
from stabledrag.config import DragConfig, diffusion_defaults, gan_defaults
from stabledrag.drag import DragSession, drag
from stabledrag.points import from_pairs
from stabledrag.progress import CancelToken


def _texture(seed=0, c=16, size=48):
    g = torch.Generator().manual_seed(seed)
    return smooth_field(c, size, g, scale=6) + 0.2 * smooth_field(c, size, g, scale=2)


def _config(method="stabledrag", **kw):
    base = dict(method=method, r_m=2, r_p=3, lr=0.3, max_steps=80, stop_distance=1.0,
                supervise_min_distance=0.5, lambda_mask=0.0)
    base.update(kw)
    return DragConfig(**base)


@pytest.mark.parametrize("method", ["stabledrag", "baseline"])
def test_drag_moves_handle_onto_target_and_stops(method):
    backend = TranslatingTextureBackend(_texture())
    pts = from_pairs([((20, 22), (26, 25))])
    events = []
    result = drag(backend, pts, _config(method), progress=events.append)
    assert result.status == "reached", result.error
    assert result.steps < 80
    assert result.distances.max() <= 1.0
    # the optimised offset is (close to) the true displacement: the content really moved
    assert torch.allclose(result.state.detach(), torch.tensor([6.0, 3.0]), atol=1.5)
    assert result.trajectory.shape[1:] == (1, 2)
    assert torch.equal(result.trajectory[0], pts.handles)
    assert result.confidences.shape == (result.steps, 1)
    assert len(result.losses) == result.steps
    assert result.config.method == method
    assert events and events[-1].phase == "drag"
    d = result.to_dict()
    assert d["status"] == "reached" and d["config"]["tracker"] == result.config.tracker


def test_two_handles_move_together():
    backend = TranslatingTextureBackend(_texture(1))
    pts = from_pairs([((12, 12), (16, 14)), ((30, 30), (34, 32))])
    result = drag(backend, pts, _config())
    assert result.status == "reached"
    assert (result.distances <= 1.0).all()


def test_cancellation_stops_and_keeps_state():
    backend = TranslatingTextureBackend(_texture())
    token = CancelToken()
    seen = []

    def on_progress(p):
        seen.append(p.step)
        if p.step == 3:
            token.cancel()

    result = drag(backend, from_pairs([((20, 20), (40, 20))]), _config(lr=0.05), progress=on_progress, cancel=token)
    assert result.status == "cancelled"
    assert result.steps == 3
    assert result.state.detach().abs().sum() > 0  # the work done so far is kept


def test_nan_guard_keeps_last_good_state():
    backend = TranslatingTextureBackend(_texture(), poison_at_step=4)
    result = drag(backend, from_pairs([((20, 20), (40, 20))]), _config(lr=0.05))
    assert result.status == "diverged"
    assert "last good state" in result.error
    assert torch.isfinite(result.state).all()
    assert result.steps == 3  # calls: 1 reference + 3 good steps, the 4th step's forward is NaN


def test_pause_and_resume_with_frames():
    backend = TranslatingTextureBackend(_texture())
    session = DragSession(backend, from_pairs([((20, 22), (27, 22))]), _config(lr=0.2), preview_every=2)
    frames = session.frames(every=2)
    first = next(frames)
    assert first.step == 2
    frames.close()  # the UI pressed Stop
    paused_at = session.steps_done
    assert session.status == "running" and paused_at == 2
    assert session.last_preview is not None and session.last_preview.shape == (48, 48, 3)
    rest = list(session.frames(every=5))  # Start again: continues, does not restart
    assert rest and rest[0].step > paused_at
    assert session.result().status == "reached"


def test_max_steps_status_and_final_retrack():
    backend = TranslatingTextureBackend(_texture())
    result = drag(backend, from_pairs([((10, 20), (40, 20))]), _config(lr=0.01, max_steps=3))
    assert result.status == "max_steps"
    assert result.steps == 3
    assert result.trajectory.shape[0] == 4  # start, two tracked steps, final re-track


def test_mask_loss_is_used_when_weighted():
    keep = torch.ones(48, 48)
    backend = TranslatingTextureBackend(_texture(), keep=keep)
    # everything is "keep": a strong mask term resists the motion
    free = drag(TranslatingTextureBackend(_texture()), from_pairs([((20, 20), (30, 20))]), _config(lr=0.05, max_steps=10))
    held = drag(backend, from_pairs([((20, 20), (30, 20))]), _config(lr=0.05, max_steps=10, lambda_mask=100.0))
    assert held.state.detach().norm() < free.state.detach().norm()


def test_confident_supervision_switches_to_template_below_tau():
    backend = TranslatingTextureBackend(_texture())
    always = drag(backend, from_pairs([((20, 22), (26, 22))]), _config(tau=1.01, max_steps=5))
    assert all(all(step) for step in always.template_used[1:])
    never = drag(TranslatingTextureBackend(_texture()), from_pairs([((20, 22), (26, 22))]),
                 _config(tau=0.0, max_steps=5))
    assert not any(any(step) for step in never.template_used)
    plain = drag(TranslatingTextureBackend(_texture()), from_pairs([((20, 22), (26, 22))]),
                 _config("baseline", tau=1.01, max_steps=5))
    assert not any(any(step) for step in plain.template_used)


def test_presets():
    assert DragConfig("stabledrag").tracker == "discriminative"
    assert DragConfig("baseline").supervision == "plain"
    c = diffusion_defaults("baseline")
    assert (c.r_m, c.r_p, c.lr, c.max_steps, c.lambda_mask) == (1, 3, 0.01, 80, 0.1)
    g = gan_defaults(image_height=256)
    assert (g.r_m, g.r_p, g.lr, g.lambda_mask) == (2, 6, 2e-3, 20)
    assert g.replace(method="baseline").tracker == "nearest"
    assert DragConfig.from_dict(g.to_dict()) == g
    with pytest.raises(ValueError):
        DragConfig(method="magic")
    with pytest.raises(ValueError):
        DragConfig.from_dict({"nonsense": 1})
