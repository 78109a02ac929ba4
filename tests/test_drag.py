import torch
import pytest

from stabledrag.bench.synthetic import TranslatingTextureBackend, smooth_field
from stabledrag.config import DragConfig
from stabledrag.diffusion.presets import diffusion_defaults
from stabledrag.gan.presets import gan_defaults
from stabledrag.drag import DragSession, drag
from stabledrag.points import from_pairs
from stabledrag.progress import CancelToken


def _texture(seed=0, c=16, size=48):
    g = torch.Generator().manual_seed(seed)
    return smooth_field(c, size, g, scale=6) + 0.2 * smooth_field(c, size, g, scale=2)


def _config(method="stabledrag", **kw):
    base = dict(method=method, r_m=2, r_p=3, lr=0.3, max_steps=80, stop_distance=1.0,
                lambda_mask=0.0)
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


def test_finite_but_huge_state_is_not_a_good_state():
    # issue 13 #12: lr = 1e20 kept a finite but huge latent that decoded to an all-black image
    backend = TranslatingTextureBackend(_texture())
    result = drag(backend, from_pairs([((20, 20), (40, 20))]), _config(lr=1e20))
    assert result.status == "diverged"
    assert "grew more than 10 times" in result.error and "last good state" in result.error
    assert torch.isfinite(result.state).all() and result.state.detach().norm() < 1e3
    assert torch.equal(result.state.detach(), torch.zeros(2))  # the only good state was the start


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
    free = drag(TranslatingTextureBackend(_texture()), from_pairs([((20, 20), (30, 20))]),
                _config(lr=0.05, max_steps=10))
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


class _MorphingBlob:
    """A static background and one blob at `p0 + state` whose feature vector drifts by
    `drift_per_px` of its norm per pixel moved: the handle's look changes as it is dragged (a
    stretched mouth corner), so the tracker's confidence falls below tau on the way."""

    def __init__(self, drift_per_px: float, seed: int = 0, c: int = 16, size: int = 48):
        g = torch.Generator().manual_seed(seed)
        self.bg = smooth_field(c, size, g, amplitude=0.5)
        self.vec = torch.randn(c, generator=g)
        d = torch.randn(c, generator=g)
        self.dvec = d / d.norm() * self.vec.norm()
        self.k = drift_per_px
        self.p0 = torch.tensor([16.0, 24.0])
        self.image_size = (size, size)
        self.ys = torch.arange(size, dtype=torch.float32)[:, None]
        self.xs = torch.arange(size, dtype=torch.float32)[None, :]

    def initial_state(self):
        return torch.zeros(2, requires_grad=True)

    def parameters(self, state):
        return [state]

    def features(self, state):
        from stabledrag.drag import BackendOutput

        c = self.p0 + state
        blob = torch.exp(-((self.xs - c[0]) ** 2 + (self.ys - c[1]) ** 2) / 8.0)
        v = self.vec + self.k * state.norm() * self.dvec
        return BackendOutput(self.bg + v[:, None, None] * blob[None], {})

    def mask_loss(self, *args):
        return None

    def preview(self, *args):
        return None


def _morph_drag(**cfg):
    base = dict(r_m=2, r_p=3, lr=0.2, max_steps=120, stop_distance=1.5, lambda_mask=0.0)
    result = drag(_MorphingBlob(0.08), from_pairs([((16, 24), (28, 24))]), DragConfig(**{**base, **cfg}))
    true_distance = float((result.state.detach() - torch.tensor([12.0, 0.0])).norm())
    return result, true_distance


def test_confident_supervision_does_not_stall_when_the_handle_changes_look():
    """The paper's switch (the step-0 template wholly, below tau) keeps pushing the original look
    and stalls short of the target; blending by confidence with a template refreshed while
    tracking is confident arrives."""
    paper, paper_dist = _morph_drag(template_blend=False, template_refresh=False)
    ours, ours_dist = _morph_drag()
    assert min(min(c) for c in ours.confidences.tolist()) < ours.config.tau  # the template was needed
    assert any(any(u) for u in ours.template_used)
    assert paper.status == "max_steps" and paper_dist > 3.0
    assert ours.status == "reached" and ours_dist <= 2.0


def test_template_share_follows_confidence():
    """Below tau the template's share is 1 - conf / tau (blend) or 1 (paper's switch); above, 0."""
    backend = TranslatingTextureBackend(_texture())
    sess = DragSession(backend, from_pairs([((20, 22), (30, 22)), ((30, 30), (36, 30))]), _config())
    feats = backend.features(sess.state).features
    sess.steps_done = 1
    sess._conf = torch.tensor([0.9, 0.3])
    assert sess._template_mix(feats).tolist() == pytest.approx([0.0, 0.5])
    sess.config = sess.config.replace(template_blend=False)
    assert sess._template_mix(feats).tolist() == [0.0, 1.0]
    sess.config = sess.config.replace(method="baseline")
    assert sess._template_mix(feats) is None


def test_template_refreshes_only_while_confident():
    backend = TranslatingTextureBackend(_texture())
    sess = DragSession(backend, from_pairs([((20, 22), (30, 22)), ((30, 30), (36, 30))]), _config())
    before = sess._template.clone()
    sess._handles = sess._handles + torch.tensor([[3.0, 0.0], [3.0, 0.0]])
    sess.steps_done, sess._conf = 1, torch.tensor([0.9, 0.3])
    sess._template_mix(backend.features(sess.state).features)
    assert not torch.allclose(sess._template[0], before[0])  # confident: now the current patch
    assert torch.equal(sess._template[1], before[1])  # not confident: the last sure look is kept
    sess.config = sess.config.replace(template_refresh=False)
    sess._template = before.clone()
    sess._template_mix(backend.features(sess.state).features)
    assert torch.equal(sess._template, before)


def test_one_rule_stops_and_unsupervises_at_the_stop_distance():
    """A handle within stop_distance gets no motion loss, and every optimiser step that ran pushed
    some handle: a drag never idles with no loss while it is not stopped."""
    backend = TranslatingTextureBackend(_texture())
    result = drag(backend, from_pairs([((20, 22), (26, 25))]), _config("baseline", stop_distance=1.5))
    assert result.status == "reached"
    assert result.pushed_steps == result.steps
    assert result.to_dict()["pushed_steps"] == result.steps


def test_push_distance_never_exceeds_the_stop_distance():
    """A push threshold above the stop distance (the old toy-SD setting: push beyond 2, stop within
    1) would leave handles 1-2 px away unsupervised but unstopped; it is capped. DragGAN's smaller
    push threshold (1 px, stop 2 px) is kept."""
    assert DragConfig(stop_distance=1.0, supervise_min_distance=2.0).push_distance == 1.0
    assert DragConfig(stop_distance=2.0, supervise_min_distance=1.0).push_distance == 1.0
    assert DragConfig(stop_distance=1.5).push_distance == 1.5
    backend = TranslatingTextureBackend(_texture())
    result = drag(backend, from_pairs([((20, 22), (26, 25))]),
                  _config("baseline", stop_distance=1.0, supervise_min_distance=2.0))
    assert result.status == "reached" and result.pushed_steps == result.steps
