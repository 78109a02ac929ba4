"""The "draggan" and "dragdiffusion" presets reproduce the published algorithms step by step.

Each reference loop below is written from the paper's released algorithm (DragGAN's
`renderer._render_drag_impl`, DragDiffusion's `drag_utils.drag_diffusion_update`), in their own
conventions ((row, col) points, `linspace` grids, slices, `F.l1_loss`), and run beside our
`DragSession` on the same tiny model; trajectories, stop step and optimised latents must agree.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from stabledrag.diffusion.presets import diffusion_defaults, dragdiffusion_defaults
from stabledrag.gan.presets import draggan_defaults, gan_defaults
from stabledrag.drag import BackendOutput, DragSession
from stabledrag.gan.editor import GanEditor, draggan_feature_res
from stabledrag.gan.networks import Generator, GeneratorConfig
from stabledrag.points import from_pairs, scale_points, snap_points
from stabledrag.sampling import draggan_patch


# -- constants ----------------------------------------------------------------------------------

def test_draggan_constants_follow_its_code():
    # DragGAN: r = round(r1 / 512 * h) with r1 = 3, r2 = 12; stop when |d| <= max(2 / 512 * h, 2); lr 1e-3.
    for h, r_m, r_p, stop in [(128, 1, 3, 2.0), (256, 2, 6, 2.0), (512, 3, 12, 2.0), (1024, 6, 24, 4.0)]:
        c = draggan_defaults(h)
        assert (c.r_m, c.r_p, c.stop_distance) == (r_m, r_p, stop)
        assert (c.lr, c.lambda_mask, c.nn_metric, c.motion_reduction) == (1e-3, 20.0, "l2", "mean")
        assert (c.patch_shape, c.point_snap) == ("draggan", "pixel")
        assert (c.tracker, c.supervision) == ("nearest", "plain")
    assert gan_defaults("draggan", 512) == draggan_defaults(512)
    tuned = gan_defaults("baseline", 128)
    assert (tuned.lr, tuned.stop_distance, tuned.point_snap) == (2e-3, 1.0, "none")  # ours, not DragGAN's
    # StableDrag's sub-pixel, context-aware tracker stops at half the baseline's distance
    for h, stop in [(128, 0.5), (512, 1.0), (1024, 2.0)]:
        sd, base = gan_defaults("stabledrag", h), gan_defaults("baseline", h)
        assert sd.stop_distance == stop == base.stop_distance / 2
        same = dataclasses.replace(sd, method="baseline", tracker="", supervision="", stop_distance=base.stop_distance)
        assert same == base  # nothing else differs


def test_dragdiffusion_constants_follow_its_code():
    c = diffusion_defaults("dragdiffusion")
    assert c == dragdiffusion_defaults()
    assert (c.r_m, c.r_p, c.lr, c.max_steps, c.lambda_mask) == (1, 3, 0.01, 80, 0.1)
    assert (c.patch_shape, c.motion_reduction, c.nn_metric, c.point_snap) == ("square", "sum", "l1", "cell")
    # On whole cells the squared distance is an integer: "< 2" (stop) is "<= 1.5" and ">= 2" (push) is "> 1.5".
    for d2 in range(0, 30):
        if any(a * a + b * b == d2 for a in range(6) for b in range(6)):
            d = math.sqrt(d2)
            assert (d < 2.0) == (d <= c.stop_distance)
            assert (d >= 2.0) == (d > c.stop_distance)  # our one rule: motion loss beyond stop_distance
    assert diffusion_defaults("baseline").point_snap == "none"


def test_draggan_feature_block_is_its_sixth_block():
    def G(res):
        return Generator(GeneratorConfig(z_dim=8, w_dim=8, img_resolution=res, channel_base=4096, channel_max=2,
                                         mapping_layers=1))
    assert draggan_feature_res(G(128)) == 128
    assert draggan_feature_res(G(512)) == 128
    assert draggan_feature_res(G(32)) == 32  # DragGAN has no sixth block here: the last one
    ed = GanEditor(G(128))
    assert ed.feature_res_for("draggan") == 128 and ed.feature_res_for("baseline") is None


# -- DragGAN's patch and points -------------------------------------------------------------------

def _draggan_mask(point_rc, h, w, r):
    """DragGAN's own construction, verbatim in its conventions."""
    X = torch.linspace(0, h, h)
    Y = torch.linspace(0, w, w)
    xx, yy = torch.meshgrid(X, Y, indexing="ij")
    distance = ((xx - point_rc[0]) ** 2 + (yy - point_rc[1]) ** 2) ** 0.5
    return torch.where(distance < r)


@pytest.mark.parametrize("h,r", [(128, 1), (512, 3), (64, 2)])
def test_draggan_patch_is_its_linspace_grid_disk(h, r):
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, h, (40,), generator=g).tolist() + [0, h - 1, h // 2]
    cols = torch.randint(0, h, (40,), generator=g).tolist() + [h - 1, 0, h // 2]
    handles = torch.tensor([[c, r_] for r_, c in zip(rows, cols)], dtype=torch.float32)
    pos, valid = draggan_patch(handles, (h, h), r)
    sizes = []
    for n, (r_, c) in enumerate(zip(rows, cols)):
        relis, reljs = _draggan_mask((r_, c), h, h, r)
        ours = pos[n][valid[n]]
        assert ours[:, 1].long().tolist() == relis.tolist() and ours[:, 0].long().tolist() == reljs.tolist()
        sizes.append(len(relis))
    if (h, r) == (128, 1):
        # "3-4 px at 128 px" (fewer at the borders), never the centred 5-px disk
        assert max(sizes) == 4 and sorted(sizes)[len(sizes) // 2] >= 3


def test_snap_points_pixel_and_cell():
    pts = from_pairs([((40.4, 60.6), (45.5, 60.2))])
    snapped = snap_points(pts, "pixel", (128, 128), (128, 128))
    assert snapped.handles.tolist() == [[40.0, 61.0]] and snapped.targets.tolist() == [[46.0, 60.0]]
    # DragDiffusion: round(p / full * sup) on a half-size map, then our loop must see those cells.
    pts = from_pairs([((3, 7), (101, 10))])
    cell = snap_points(pts, "cell", (128, 128), (64, 64))
    feat = scale_points(cell.handles, (128, 128), (64, 64))
    assert feat.tolist() == [[2.0, 4.0]]  # round(1.5) = 2, round(3.5) = 4 (half to even)
    assert scale_points(cell.targets, (128, 128), (64, 64)).tolist() == [[50.0, 5.0]]  # round(50.5) = 50
    assert snap_points(pts, "none", (128, 128), (64, 64)) is pts


# -- DragGAN step by step -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def G128() -> Generator:
    torch.manual_seed(3)
    return Generator(GeneratorConfig(z_dim=16, w_dim=16, img_resolution=128, channel_base=2048, channel_max=8,
                                     mapping_layers=2))


def _draggan_reference(G, w0, points_rc, targets_rc, mask_fixed, steps, r1_px, r2_px, lr, lambda_mask,
                       patch="draggan"):
    """DragGAN's drag loop (`_render_drag_impl`), with its radii already scaled to this model.

    points/targets: lists of [row, col]. mask_fixed: H x W float (1 = keep) or None.
    Returns (tracked points per iteration, the step at which it stopped or None, final ws).
    """
    h = w = G.img_resolution
    res = draggan_feature_res(G)
    w_opt = w0.detach().clone().requires_grad_(True)
    optim = torch.optim.Adam([w_opt], lr=lr)
    X = torch.linspace(0, h, h)
    Y = torch.linspace(0, w, w)
    xx, yy = torch.meshgrid(X, Y, indexing="ij")
    points = [list(p) for p in points_rc]
    feat_refs, feat0_resize, history, stopped = None, None, [], None
    for it in range(steps):
        ws = torch.cat([w_opt[:, :6, :], w0[:, 6:, :]], dim=1)
        _, _, feats = G.synthesis.run_blocks(ws, None, None, 0, res, noise_mode="const", feature_res=[res])
        feat_resize = F.interpolate(feats[res], [h, w], mode="bilinear")
        if feat_refs is None:
            feat0_resize = F.interpolate(feats[res].detach(), [h, w], mode="bilinear")
            feat_refs = [feat0_resize[:, :, round(p[0]), round(p[1])] for p in points]
        with torch.no_grad():
            for j, point in enumerate(points):
                r = r2_px
                up, down = max(point[0] - r, 0), min(point[0] + r + 1, h)
                left, right = max(point[1] - r, 0), min(point[1] + r + 1, w)
                feat_patch = feat_resize[:, :, up:down, left:right]
                L2 = torch.linalg.norm(feat_patch - feat_refs[j].reshape(1, -1, 1, 1), dim=1)
                _, idx = torch.min(L2.view(1, -1), -1)
                width = right - left
                points[j] = [idx.item() // width + up, idx.item() % width + left]
        history.append([list(p) for p in points])
        loss_motion = 0
        stop = True
        for j, point in enumerate(points):
            direction = torch.Tensor([targets_rc[j][1] - point[1], targets_rc[j][0] - point[0]])
            if torch.linalg.norm(direction) > max(2 / 512 * h, 2):
                stop = False
            if torch.linalg.norm(direction) > 1:
                if patch == "draggan":
                    distance = ((xx - point[0]) ** 2 + (yy - point[1]) ** 2) ** 0.5
                    relis, reljs = torch.where(distance < r1_px)
                else:  # our centred disk: integer offsets of norm <= r
                    k = int(r1_px)
                    offs = [(a, b) for a in range(-k, k + 1) for b in range(-k, k + 1) if a * a + b * b <= r1_px ** 2]
                    relis = torch.tensor([point[0] + a for a, b in offs])
                    reljs = torch.tensor([point[1] + b for a, b in offs])
                direction = direction / (torch.linalg.norm(direction) + 1e-7)
                gridh = (relis + direction[1]) / (h - 1) * 2 - 1
                gridw = (reljs + direction[0]) / (w - 1) * 2 - 1
                grid = torch.stack([gridw, gridh], dim=-1).unsqueeze(0).unsqueeze(0)
                target = F.grid_sample(feat_resize.float(), grid, align_corners=True).squeeze(2)
                loss_motion += F.l1_loss(feat_resize[:, :, relis, reljs].detach(), target)
        loss = loss_motion
        if mask_fixed is not None:
            m = mask_fixed[None, None]
            loss = loss + lambda_mask * F.l1_loss(feat_resize * m, feat0_resize * m)
        if stop:
            stopped = it
            break
        optim.zero_grad()
        loss.backward()
        optim.step()
    ws = torch.cat([w_opt[:, :6, :], w0[:, 6:, :]], dim=1)
    return history, stopped, ws.detach()


def _compare_with_draggan(G, patch):
    ed = GanEditor(G)
    ed.generate(5, truncation_psi=0.7)
    w0 = ed.latent()
    h = G.img_resolution
    clicks = [((40.4, 60.6), (47.0, 57.0)), ((90.0, 30.0), (86.0, 36.0))]  # (x, y); the first is snapped
    mask = torch.zeros(h, h, dtype=torch.bool)
    mask[20:110, 20:110] = True  # editable
    steps = 12
    cfg = draggan_defaults(h, max_steps=steps, r_p=3.0)
    if patch != "draggan":
        cfg = cfg.replace(patch_shape="disk")
    sess = ed.session(from_pairs(clicks), cfg, mask=mask.numpy())
    result = sess.run()
    pts_rc = [[round(y), round(x)] for (x, y), _ in clicks]
    tgt_rc = [[round(y), round(x)] for _, (x, y) in clicks]
    history, stopped, ws_ref = _draggan_reference(G, w0, pts_rc, tgt_rc, (~mask).float(), steps, int(cfg.r_m),
                                                  int(cfg.r_p), cfg.lr, cfg.lambda_mask, patch)
    ours = [[[round(y), round(x)] for x, y in step] for step in result.trajectory.tolist()]
    # Our trajectory: the snapped start, then the tracked handles of every later step (+ a final re-track).
    assert ours[0] == history[0]
    assert ours[1:len(history)] == history[1:]
    assert result.steps == (stopped if stopped is not None else steps)
    assert torch.allclose(result.state.ws(), ws_ref, atol=1e-5)
    assert not torch.equal(ws_ref, w0)  # the latent did move
    assert history[-1] != history[0]  # and so did the handles


def test_draggan_preset_reproduces_draggan_with_a_centred_disk(G128):
    """Everything but the patch (block, resize, L2 tracking, mean loss, thresholds, lr, W+ layers, mask)."""
    _compare_with_draggan(G128, patch="disk")


def test_draggan_preset_reproduces_draggan_exactly(G128):
    _compare_with_draggan(G128, patch="draggan")


# -- DragDiffusion step by step -------------------------------------------------------------------

class _LatentConvBackend:
    """A stand-in for the UNet features: z (1 x 4 x 16 x 16) -> fixed conv net -> bilinear to the
    H/2 x W/2 feature map (DragDiffusion's `sup_res`) of a 128 px "image"."""

    image_size = (128, 128)

    def __init__(self, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.z0 = torch.randn(1, 4, 16, 16, generator=g)
        self.w1 = torch.randn(16, 4, 3, 3, generator=g) * 0.4
        self.w2 = torch.randn(12, 16, 3, 3, generator=g) * 0.2

    def feats(self, z):
        x = F.silu(F.conv2d(z, self.w1, padding=1))
        x = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), self.w2, padding=1)
        return F.interpolate(x, (64, 64), mode="bilinear")

    def initial_state(self):
        return self.z0.clone().requires_grad_(True)

    def parameters(self, state):
        return [state]

    def features(self, state):
        return BackendOutput(features=self.feats(state)[0])

    def mask_loss(self, state, out, ref):
        return None

    def preview(self, state, out):
        return None


def _dragdiffusion_reference(be, points_xy, full, sup, steps, r_m=1, r_p=3, lr=0.01):
    """DragDiffusion's `drag_diffusion_update` (no mask: its mask term is then 0), points as (row, col)."""
    handle_points, target_points = [], []
    for idx, point in enumerate(points_xy):
        cur = torch.round(torch.tensor([point[1] / full * sup, point[0] / full * sup]))
        (handle_points if idx % 2 == 0 else target_points).append(cur)
    init = [p.clone() for p in handle_points]
    z = be.z0.clone().requires_grad_(True)
    optim = torch.optim.Adam([z], lr=lr)
    with torch.no_grad():
        F0 = be.feats(z)
    history, stopped = [], None
    for step_idx in range(steps):
        F1 = be.feats(z)
        if step_idx != 0:
            with torch.no_grad():
                _, _, max_r, max_c = F0.shape
                for i in range(len(handle_points)):
                    pi0, pi = init[i], handle_points[i]
                    f0 = F0[:, :, int(pi0[0]), int(pi0[1])]
                    r1, r2 = max(0, int(pi[0]) - r_p), min(max_r, int(pi[0]) + r_p + 1)
                    c1, c2 = max(0, int(pi[1]) - r_p), min(max_c, int(pi[1]) + r_p + 1)
                    all_dist = (f0.unsqueeze(-1).unsqueeze(-1) - F1[:, :, r1:r2, c1:c2]).abs().sum(dim=1)
                    all_dist = all_dist.squeeze(dim=0)
                    row, col = divmod(all_dist.argmin().item(), all_dist.shape[-1])
                    handle_points[i][0] = r1 + row
                    handle_points[i][1] = c1 + col
        history.append([[int(p[0]), int(p[1])] for p in handle_points])
        dist = [(p - q).norm() for p, q in zip(handle_points, target_points)]
        if (torch.tensor(dist) < 2.0).all():
            stopped = step_idx
            break
        loss = 0.0
        for i in range(len(handle_points)):
            pi, ti = handle_points[i], target_points[i]
            if (ti - pi).norm() < 2.0:
                continue
            di = (ti - pi) / (ti - pi).norm()
            f0_patch = F1[:, :, int(pi[0]) - r_m:int(pi[0]) + r_m + 1, int(pi[1]) - r_m:int(pi[1]) + r_m + 1].detach()
            f1_patch = _interpolate_patch(F1, pi[0] + di[0], pi[1] + di[1], r_m)
            loss = loss + ((2 * r_m + 1) ** 2) * F.l1_loss(f0_patch, f1_patch)
        optim.zero_grad()
        loss.backward()
        optim.step()
    return history, stopped, z.detach()


def _interpolate_patch(feat, y, x, r):
    """DragDiffusion's `interpolate_feature_patch`: bilinear patch at (y, x) from the 4 floor/ceil corners."""
    x0, y0 = torch.floor(x).long(), torch.floor(y).long()
    x1, y1 = x0 + 1, y0 + 1
    wa = (x1.float() - x) * (y1.float() - y)
    wb = (x1.float() - x) * (y - y0.float())
    wc = (x - x0.float()) * (y1.float() - y)
    wd = (x - x0.float()) * (y - y0.float())
    Ia = feat[:, :, y0 - r:y0 + r + 1, x0 - r:x0 + r + 1]
    Ib = feat[:, :, y1 - r:y1 + r + 1, x0 - r:x0 + r + 1]
    Ic = feat[:, :, y0 - r:y0 + r + 1, x1 - r:x1 + r + 1]
    Id = feat[:, :, y1 - r:y1 + r + 1, x1 - r:x1 + r + 1]
    return Ia * wa + Ib * wb + Ic * wc + Id * wd


def test_dragdiffusion_preset_reproduces_dragdiffusion():
    be = _LatentConvBackend()
    clicks = [((41.0, 61.0), (53.0, 57.0)), ((87.0, 33.0), (80.0, 41.0))]  # odd px: "cell" rounding matters
    flat = [c for pair in clicks for c in pair]
    steps = 25
    ref_hist, ref_stop, z_ref = _dragdiffusion_reference(be, flat, full=128, sup=64, steps=steps)
    cfg = dragdiffusion_defaults(max_steps=steps)
    pts = snap_points(from_pairs(clicks), cfg.point_snap, be.image_size, (64, 64))
    sess = DragSession(be, pts, cfg)
    result = sess.run()
    ours = [[[round(y), round(x)] for x, y in scale_points(step, (128, 128), (64, 64)).tolist()]
            for step in result.trajectory]
    assert ours[:len(ref_hist)] == ref_hist
    assert result.steps == (ref_stop if ref_stop is not None else steps)
    assert torch.allclose(result.state, z_ref, atol=1e-5)
    assert len({tuple(map(tuple, h)) for h in ref_hist}) > 2  # the handles did move
    # Our tuned baseline keeps the sub-pixel points and so takes another path from step 1.
    tuned = DragSession(be, from_pairs(clicks), diffusion_defaults("baseline", max_steps=steps)).run()
    assert not torch.allclose(tuned.state, z_ref, atol=1e-5)


# -- CLI ------------------------------------------------------------------------------------------

def test_cli_draggan_on_the_toy_gan_and_method_backend_mismatch(tmp_path, capsys):
    import json

    from stabledrag.cli import main

    report = tmp_path / "r.json"
    rc = main(["edit", "--backend", "gan", "--method", "draggan", "--drag", "60.4,70:66,70", "--steps", "2",
               "--out", str(tmp_path / "o.png"), "--report", str(report), "--quiet"])
    assert rc == 0
    data = json.loads(report.read_text())
    assert data["config"]["method"] == "draggan" and data["config"]["lr"] == 1e-3
    assert data["feature_res"] == 128 and data["initial_handles"] == [[60.0, 70.0]]  # b128, whole pixels
    rc = main(["edit", "--backend", "gan", "--method", "dragdiffusion", "--drag", "60,70:66,70",
               "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert rc == 2 and "--method dragdiffusion is for --backend diffusion" in err and "Traceback" not in err
