import torch
import pytest

from stabledrag.bench.synthetic import add_object, make_case, shifted_field, smooth_field
from stabledrag.sampling import sample_features
from stabledrag.config import DragConfig
from stabledrag.sampling import square_offsets
from stabledrag.tracking import (PLATEAU_MAX_RIDGE_SHARE, DiscriminativeTracker, NearestNeighbourTracker, make_tracker,
                                 plateau_centroid,
                                 subpixel_peak)

# Whole-pixel trackers: a whole-pixel shift is recovered exactly (the sub-pixel refinement of
# the discriminative tracker is tested below, on fractional shifts).
TRACKERS = [lambda: NearestNeighbourTracker(radius=3), lambda: DiscriminativeTracker(radius=3, subpixel=False)]


def test_sample_features_matches_grid_sample_and_has_grad():
    f = torch.randn(5, 9, 11, requires_grad=True)
    p = torch.tensor([[0.0, 0.0], [10.0, 8.0], [3.3, 4.7], [-0.5, 2.0], [10.5, 3.0]])
    grid = (p * torch.tensor([2 / 10, 2 / 8]) - 1).view(1, 1, -1, 2)
    ref = torch.nn.functional.grid_sample(f[None], grid, align_corners=True)[0, :, 0].T
    out = sample_features(f, p)
    assert torch.allclose(out, ref, atol=1e-5)
    out.sum().backward()
    assert f.grad is not None and f.grad.abs().sum() > 0


@pytest.mark.parametrize("make", TRACKERS)
@pytest.mark.parametrize("shift", [(2, 0), (-1, 3), (3, -3), (0, -2)])
def test_recovers_known_shift_exactly(make, shift):
    g = torch.Generator().manual_seed(0)
    f0 = smooth_field(32, 48, g, scale=4) + 0.3 * torch.randn(32, 48, 48, generator=g)
    f1 = shifted_field(f0, *shift)
    handles = torch.tensor([[20.0, 24.0], [30.0, 17.0]])
    tracker = make()
    tracker.fit(f0, handles)
    found, conf = tracker.track(f1, handles)
    assert torch.equal(found, handles + torch.tensor(shift, dtype=torch.float32))
    # A clean re-find is confident; the discriminative tracker's margin is measured over a
    # training-size window around the new position, whose edges see a little new content.
    assert (conf > 0.85).all()


def test_discriminative_keeps_handle_where_nearest_jumps_to_lookalike():
    """The handle drifts in appearance while a look-alike (the other eye) differs only in a few cue
    channels: nearest neighbour lands elsewhere, the learned filter stays on the handle."""
    g = torch.Generator().manual_seed(7)
    nn_fail, disc_ok, n = 0, 0, 30
    for _ in range(n):
        case = make_case(g, distractor=True, drift=0.6)
        nn, disc = NearestNeighbourTracker(3), DiscriminativeTracker(3)
        for t in (nn, disc):
            t.fit(case.f0, case.handle)
        nn_found, _ = nn.track(case.f1, case.handle)
        disc_found, _ = disc.track(case.f1, case.handle)
        nn_fail += int((nn_found - case.truth).norm() > 1)
        disc_ok += int((disc_found - case.truth).norm() <= 1)
    assert disc_ok >= 0.95 * n
    assert nn_fail >= 0.4 * n


def test_confidence_drops_when_handle_is_removed():
    g = torch.Generator().manual_seed(1)
    bg = smooth_field(48, 48, g, amplitude=0.5)
    vec = torch.randn(48, generator=g)
    handle = torch.tensor([[24.0, 24.0]])
    with_obj = add_object(bg, (24.0, 24.0), vec)
    moved = add_object(bg, (25.0, 24.0), vec)
    tracker = DiscriminativeTracker(radius=3, subpixel=False)  # whole-pixel answer tested
    tracker.fit(with_obj, handle)
    found, conf_kept = tracker.track(moved, handle)
    assert torch.equal(found, torch.tensor([[25.0, 24.0]]))
    assert conf_kept.item() > 0.9
    _, conf_gone = tracker.track(bg, handle)  # object erased from the window
    assert conf_gone.item() < 0.3


def test_confidence_drops_for_ambiguous_twins():
    """Two identical copies of the handle in the window: the margin term lowers confidence."""
    g = torch.Generator().manual_seed(2)
    bg = smooth_field(48, 48, g, amplitude=0.5)
    vec = torch.randn(48, generator=g)
    f0 = add_object(bg, (24.0, 24.0), vec)
    tracker = DiscriminativeTracker(radius=4, train_radius=4)
    tracker.fit(f0, torch.tensor([[24.0, 24.0]]))
    _, clean = tracker.track(f0, torch.tensor([[24.0, 24.0]]))
    twins = add_object(f0, (28.0, 24.0), vec)
    _, ambiguous = tracker.track(twins, torch.tensor([[24.0, 24.0]]))
    assert clean.item() > 0.95
    assert ambiguous.item() < 0.5 * clean.item()


def test_vectorised_over_handles_and_border_safe():
    g = torch.Generator().manual_seed(3)
    f0 = smooth_field(16, 32, g, scale=4)
    handles = torch.tensor([[0.0, 0.0], [31.0, 31.0], [15.0, 3.0], [2.0, 29.0], [16.0, 16.0]])
    for make in TRACKERS:
        t = make()
        t.fit(f0, handles)
        found, conf = t.track(f0, handles)
        assert found.shape == (5, 2) and conf.shape == (5,)
        assert torch.equal(found, handles)
        assert ((found >= 0) & (found <= 31)).all()


def test_label_widens_on_upsampled_features_and_response_stays_calibrated():
    """Backends up-sample coarse feature maps (DragGAN resizes a block to the image): a 1 px
    label cannot be fitted there. The tracker widens its label to the features' resolution, so the
    learned response still peaks near 1 at the handle, and a clean re-find stays confident."""
    g = torch.Generator().manual_seed(4)
    coarse = torch.randn(16, 16, 16, generator=g)
    f0 = torch.nn.functional.interpolate(coarse[None], scale_factor=4, mode="bilinear", align_corners=False)[0]
    handles = torch.tensor([[30.0, 30.0], [41.0, 22.0]])
    tracker = DiscriminativeTracker(radius=3, subpixel=False)  # whole-pixel answer tested
    tracker.fit(f0, handles)
    assert (tracker.sigmas > 1.5).all()
    assert (tracker.peak0 > 0.5).all()
    found, conf = tracker.track(shifted_field(f0, 2, -1), handles)
    assert torch.equal(found, handles + torch.tensor([2.0, -1.0]))
    assert (conf > 0.6).all()


def test_near_lookalike_two_px_away_with_drift_is_told_apart():
    """A look-alike 2 feature px from the handle's new position, the handle's own look drifting by
    half its norm: the learned filter re-finds the handle (the label no longer widens over the
    twin, which is mined as a negative); nearest neighbour mostly lands on the twin."""
    g = torch.Generator().manual_seed(11)
    n, disc_ok, nn_ok = 20, 0, 0
    for _ in range(n):
        case = make_case(g, distractor=True, drift=0.5, distractor_distance=2.0)
        for tracker, counter in ((DiscriminativeTracker(3), "d"), (NearestNeighbourTracker(3), "n")):
            tracker.fit(case.f0, case.handle)
            found, _ = tracker.track(case.f1, case.handle)
            err = float((found - case.truth).norm())
            ok = err <= 1.0 and err < float((found - case.distractor).norm())
            disc_ok += int(ok and counter == "d")
            nn_ok += int(ok and counter == "n")
    assert disc_ok >= 0.9 * n
    assert nn_ok <= 0.5 * n


def test_mined_lookalike_gets_no_positive_label():
    """A twin 3 px away is mined (label 0, hard-negative weight); the handle's own fall-off on the
    other side is not."""
    g = torch.Generator().manual_seed(12)
    bg = smooth_field(32, 48, g, amplitude=0.5)
    vec = torch.randn(32, generator=g)
    cue = torch.zeros(32)
    cue[:6] = 2.0
    f0 = add_object(add_object(bg, (24.0, 24.0), vec), (27.0, 24.0), vec + cue)
    tracker = DiscriminativeTracker(radius=3)
    tracker.fit(f0, torch.tensor([[24.0, 24.0]]))
    side = 2 * int(tracker.train_radius) + 1
    mined = tracker.mined[0].view(side, side)
    c = side // 2
    assert bool(mined[c, c + 3])  # the twin
    assert not mined[:, : c + 1].any()  # nothing on the handle's other side



def test_large_strided_training_window_fits_and_tracks():
    """DragGAN's r_p = 12 at 512 px gives a 73 x 73 training window, sampled on a stride-3 lattice
    (some 1 px rings of the fall-off profile are empty)."""
    g = torch.Generator().manual_seed(14)
    f0 = smooth_field(16, 96, g, scale=8) + 0.2 * smooth_field(16, 96, g, scale=2)
    handles = torch.tensor([[40.0, 50.0], [60.0, 30.0]])
    tracker = DiscriminativeTracker(radius=12, subpixel=False)  # whole-pixel answer tested
    tracker.fit(f0, handles)
    found, conf = tracker.track(shifted_field(f0, 3, -2), handles)
    assert torch.equal(found, handles + torch.tensor([3.0, -2.0]))
    assert (conf > 0.5).all()


def test_subpixel_peak_finds_the_vertex_of_a_parabolic_score_and_stays_put_at_the_window_edge():
    off = square_offsets(3.0)  # 7 x 7 lattice
    vertex = torch.tensor([[0.3, -0.2], [-0.45, 0.1], [3.4, 0.0]])
    score = -((off[None] - vertex[:, None]) ** 2).sum(-1)
    idx = score.argmax(1)
    found = off[idx] + subpixel_peak(score, idx, 7)
    assert torch.allclose(found[:2], vertex[:2], atol=1e-5)
    # the third peak lies beyond the window: its x has no right neighbour, so no x refinement
    assert found[2, 0].item() == 3.0 and abs(found[2, 1].item()) < 1e-6
    # an invalid (-inf) neighbour also disables the refinement on that axis
    score[0, idx[0] + 1] = -float("inf")
    assert subpixel_peak(score, idx, 7)[0, 0].item() == 0.0


@pytest.mark.parametrize("shift", [(1.4, -0.6), (-2.3, 0.5), (0.35, 1.7)])
def test_subpixel_tracking_follows_a_fractional_move_that_whole_pixel_tracking_rounds(shift):
    """A blob moved by a fractional amount: the discriminative tracker's sub-pixel peak lands within
    0.25 px of it; the whole-pixel trackers (DragGAN / DragDiffusion) are off by the rounding."""
    g = torch.Generator().manual_seed(3)
    bg = smooth_field(16, 48, g, scale=12, amplitude=0.2)
    vec = torch.randn(16, generator=g)
    start = (20.0, 24.0)
    f0 = add_object(bg, start, vec, footprint=2.0)
    f1 = add_object(bg, (start[0] + shift[0], start[1] + shift[1]), vec, footprint=2.0)
    handles = torch.tensor([start])
    truth = handles + torch.tensor(shift)
    errors = {}
    for name, tracker in (("sub", DiscriminativeTracker(radius=3)),
                          ("whole", DiscriminativeTracker(radius=3, subpixel=False)),
                          ("nn", NearestNeighbourTracker(radius=3, metric="l2"))):
        tracker.fit(f0, handles)
        found, _ = tracker.track(f1, handles)
        errors[name] = (found - truth).norm().item()
    assert errors["sub"] < 0.25
    assert errors["whole"] > 0.3 and errors["nn"] > 0.3


def test_subpixel_refinement_stays_within_half_a_pixel_on_upsampled_maps():
    """On a x4 bilinear up-sampled map (a backend's coarse block resized) the score is not a
    parabola near its peak, so the refinement is biased; it must never leave the whole-pixel
    answer's cell (|offset| <= 0.5 per axis) nor lose the handle."""
    g = torch.Generator().manual_seed(4)
    coarse = torch.randn(16, 16, 16, generator=g)
    f0 = torch.nn.functional.interpolate(coarse[None], scale_factor=4, mode="bilinear", align_corners=False)[0]
    handles = torch.tensor([[30.0, 30.0], [41.0, 22.0]])
    truth = handles + torch.tensor([2.0, -1.0])
    tracker = DiscriminativeTracker(radius=3)
    tracker.fit(f0, handles)
    found, conf = tracker.track(shifted_field(f0, 2, -1), handles)
    assert ((found - truth).abs() <= 0.5).all()
    assert (conf > 0.8).all()


def test_config_turns_subpixel_on_for_stabledrag_only_unless_asked():
    assert make_tracker(DragConfig(method="stabledrag")).subpixel is True
    assert make_tracker(DragConfig(method="baseline")).subpixel is False
    assert make_tracker(DragConfig(method="baseline", subpixel=True)).subpixel is True
    assert make_tracker(DragConfig(method="stabledrag", subpixel=False)).subpixel is False


def _edge_map(c: int = 16, size: int = 32, row: float = 16.0, seed: int = 0) -> torch.Tensor:
    """`c x size x size` features of a horizontal edge at `row` (feature px): two colours joined by
    a logistic step one px wide, the same along x (an outline seen by a 1x1 filter), on a faint
    smooth texture (the same for every `row`)."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(c, generator=g), torch.randn(c, generator=g)
    y = torch.arange(size).float()[:, None].expand(size, size)
    s = torch.sigmoid(y - row)
    return a[:, None, None] * (1 - s) + b[:, None, None] * s + smooth_field(c, size, g, scale=4, amplitude=0.05)


def test_ridge_share_is_zero_on_a_blob_and_high_on_an_edge():
    h = torch.tensor([[16.0, 16.0]])
    case = make_case(torch.Generator().manual_seed(3))
    t = DiscriminativeTracker(radius=3)
    t.fit(case.f0, case.handle)
    assert float(t.ridge_share[0]) < 0.02
    t.fit(_edge_map(), h)
    # the filter answers like the handle along the edge: the 4 positions of the edge row beyond
    # 1.5 px (x +-2, +-3) of the 40 such positions in the 7 x 7 search window
    assert float(t.ridge_share[0]) == pytest.approx(4 / 40)


def test_a_handle_on_an_edge_leans_on_its_template_instead_of_sliding_along_the_filter_plateau():
    """The edge moves down 1 px; at the true place the content changed a little (the filter's
    answer falls), while 2-3 px along the edge the answer rises past the trained peak (capped) and
    the template match gets worse. Nearest neighbour holds the true place; the filter alone slides
    along the edge; with the ridge gain the handle's template decides."""
    f0, h = _edge_map(), torch.tensor([[16.0, 16.0]])
    moved = {}
    for gain in (0.0, 40.0):
        t = DiscriminativeTracker(radius=3, fusion_ridge_gain=gain, subpixel=False)
        t.fit(f0, h)
        up = t.filters[0] * t.scales[0] / t.filters[0].square().sum()  # raw-space step: response +1
        f1 = shifted_field(f0, 0, 1)
        f1[:, 17, 16] -= 0.1 * float(t.peak0[0]) * up
        f1[:, 17, 18:20] += 0.3 * float(t.peak0[0]) * up[:, None]
        moved[gain], _ = t.track(f1, h)
    nn = NearestNeighbourTracker(radius=3)
    nn.fit(f0, h)
    assert nn.track(f1, h)[0][0].tolist() == [16.0, 17.0]
    assert moved[0.0][0, 1] == 17.0 and moved[0.0][0, 0] > 16.0  # on the edge, but slid along it
    assert moved[40.0][0].tolist() == [16.0, 17.0]


def test_config_ridge_gain_reaches_the_tracker_and_is_checked():
    t = make_tracker(DragConfig(method="stabledrag", fusion_ridge_gain=7.0))
    assert t.fusion_ridge_gain == 7.0
    assert make_tracker(DragConfig(method="stabledrag")).fusion_ridge_gain == DragConfig.fusion_ridge_gain > 0
    assert DiscriminativeTracker().fusion_ridge_gain == DragConfig.fusion_ridge_gain  # `bench tracking` builds it
    with pytest.raises(ValueError):
        DragConfig(method="stabledrag", fusion_ridge_gain=-1.0)
    with pytest.raises(ValueError):
        DiscriminativeTracker(fusion_ridge_gain=-1.0)


def _lattice_score(values: dict[tuple[int, int], float], radius: float = 3.0, base: float = 0.0):
    """A 1-handle score on the square lattice of `radius`: `base` everywhere, `values` at (x, y)."""
    off = square_offsets(radius)
    score = torch.full((1, len(off)), base)
    for (x, y), v in values.items():
        score[0, ((off[:, 0] == x) & (off[:, 1] == y)).nonzero()[0, 0]] = v
    return score, off[None], torch.ones_like(score, dtype=torch.bool)


def test_plateau_centroid_takes_the_middle_of_a_smeared_peak_and_ignores_a_separate_lookalike():
    # a part smeared over x = -1..1 (peak at its leading edge x = 1), a look-alike at x = -3
    score, pos, valid = _lattice_score({(-1, 0): 0.95, (0, 0): 0.97, (1, 0): 1.0, (-3, 0): 1.0 - 1e-3})
    idx = score.argmax(1)
    peak = pos[0, idx]
    assert peak[0, 0].item() == 1.0
    got = plateau_centroid(score, valid, pos, idx, peak, 0.2)
    w = torch.tensor([0.15, 0.17, 0.2])  # heights above the floor 1.0 - 0.2 * (1.0 - 0.0)
    assert torch.allclose(got[0], torch.tensor([(w * torch.tensor([-1.0, 0.0, 1.0])).sum() / w.sum(), 0.0]))
    # the plateau may reach farther behind the peak than ahead: the same smear seen at the
    # window's edge (peak x = 2) keeps all three positions
    edge, _, _ = _lattice_score({(0, 0): 0.95, (1, 0): 0.97, (2, 0): 1.0})
    e_idx = edge.argmax(1)
    got = plateau_centroid(edge, valid, pos, e_idx, pos[0, e_idx], 0.2)
    assert torch.allclose(got[0], torch.tensor([(0.17 * 1 + 0.2 * 2) / 0.52, 0.0]))
    # ... but near the map's border a position whose mirror through the peak is off the map does
    # not count: window centred at x = 1 on a 5 px wide map, peak at x = 3: x = 1 (mirror 5) is out
    shifted = pos + torch.tensor([1.0, 5.0])
    got = plateau_centroid(edge, valid, shifted, e_idx, shifted[0, e_idx], 0.2, size=(5, 10))
    assert torch.allclose(got[0], torch.tensor([1 + (0.17 * 1 + 0.2 * 2) / 0.37, 5.0]))
    # a plateau of one position is the peak itself; so is any level below the first neighbour's gap
    assert torch.equal(plateau_centroid(score, valid, pos, idx, peak, 0.02), peak)
    # invalid positions never join the plateau
    valid[0, ((pos[0, :, 0] == 0) & (pos[0, :, 1] == 0)).nonzero()[0, 0]] = False
    assert torch.equal(plateau_centroid(score.clone(), valid, pos, idx, peak, 0.2), peak)


def test_plateau_level_reaches_the_tracker_is_checked_and_keeps_a_clean_blob_where_it_is():
    assert make_tracker(DragConfig(method="stabledrag", plateau_level=0.3)).plateau_level == 0.3
    assert DiscriminativeTracker().plateau_level == DragConfig.plateau_level  # `bench tracking` builds it
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError):
            DragConfig(method="stabledrag", plateau_level=bad)
        with pytest.raises(ValueError):
            DiscriminativeTracker(plateau_level=bad)
    # a whole-pixel shift of a textured field: the plateau is the peak's own blob, so the handle
    # lands within a fraction of a pixel of where the content went, confidently
    g = torch.Generator().manual_seed(0)
    f0 = smooth_field(32, 48, g, scale=4) + 0.3 * torch.randn(32, 48, 48, generator=g)
    handles = torch.tensor([[20.0, 24.0], [30.0, 17.0]])
    t = DiscriminativeTracker(radius=3.0, plateau_level=0.3)
    t.fit(f0, handles)
    found, conf = t.track(shifted_field(f0, 2, -1), handles)
    assert (found - (handles + torch.tensor([2.0, -1.0]))).norm(dim=1).max() < 0.35 and (conf > 0.85).all()


def test_the_plateau_moves_the_handle_only_and_only_for_a_subpixel_tracker():
    g = torch.Generator().manual_seed(5)
    f0 = smooth_field(32, 48, g, scale=4) + 0.3 * torch.randn(32, 48, 48, generator=g)
    handles = torch.tensor([[20.0, 24.0], [30.0, 17.0], [0.0, 0.0]])
    moved = shifted_field(f0, 1, 2) + 0.2 * torch.randn(32, 48, 48, generator=g)
    out = {}
    for level in (0.0, 0.3):
        for sub in (False, True):
            t = DiscriminativeTracker(radius=3.0, plateau_level=level, subpixel=sub)
            t.fit(f0, handles)
            out[level, sub] = t.track(moved, handles)
    assert torch.equal(out[0.0, False][0], out[0.3, False][0])  # whole-pixel: on the lattice
    assert not torch.equal(out[0.0, True][0], out[0.3, True][0])  # sub-pixel: the plateau's centroid
    for sub in (False, True):
        assert torch.equal(out[0.0, sub][1], out[0.3, sub][1])  # the confidence is the peak's


def test_a_peak_on_the_window_edge_is_not_pulled_back_by_a_one_sided_plateau():
    """A 3 px move with r_p 3: the peak lands on the window's edge, where the part's far side is
    out of sight; the centroid of what is seen would drag the handle back towards its old place."""
    g = torch.Generator().manual_seed(1)
    f0 = smooth_field(32, 48, g, scale=8)
    handles = torch.tensor([[20.0, 24.0], [26.0, 20.0]])
    found = {}
    for level in (0.0, 0.2):
        t = DiscriminativeTracker(radius=3.0, plateau_level=level)
        t.fit(f0, handles)
        found[level], _ = t.track(shifted_field(f0, 3, 0), handles)
    assert torch.allclose(found[0.0], handles + torch.tensor([3.0, 0.0]), atol=0.15)
    assert torch.equal(found[0.2], found[0.0])


def _blob_with_core(centre, core, c: int = 16, size: int = 40, radius: float = 5.0, seed: int = 0) -> torch.Tensor:
    """`c x size x size`: a soft disk (an eye) of `radius` px at `centre` on a background, plus a
    small 'core' feature (the handle's own look, 1.5 px wide) at `core` (x, y)."""
    g = torch.Generator().manual_seed(seed)
    a, b, e = (torch.randn(c, generator=g) for _ in range(3))
    ys, xs = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    disk = torch.sigmoid((radius - ((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2).sqrt()) / 0.8)
    spot = torch.exp(-((xs - core[0]) ** 2 + (ys - core[1]) ** 2) / (2 * 1.5 ** 2))
    return a[:, None, None] * disk + b[:, None, None] * (1 - disk) + 0.5 * e[:, None, None] * spot


@pytest.mark.parametrize("shift,lead", [((1.0, 0.0), (1.5, 0.0)), ((1.0, 1.0), (1.2, 1.2)), ((0.5, -1.0), (0.5, -1.5))])
def test_context_keeps_a_handle_inside_a_flat_part_on_the_part_when_its_own_feature_runs_ahead(shift, lead):
    """Motion supervision pushes the handle's own feature towards the target ahead of the part
    (what the toy GAN's eyes show on long drags): the disk moved by `shift`, the core feature by
    `shift + lead`. Every 1 x 1 match (the filter, nearest neighbour) follows the core; the context
    ring, which sees the disk's outline, holds the handle on the disk's centre."""
    h = torch.tensor([[20.0, 20.0]])
    f0 = _blob_with_core((20.0, 20.0), (20.0, 20.0))
    truth = h[0] + torch.tensor(shift)
    f1 = _blob_with_core(truth.tolist(), (truth + torch.tensor(lead)).tolist())
    err = {}
    for weight in (0.0, 1.0, 2.0):
        t = DiscriminativeTracker(radius=3.0, context_weight=weight)
        t.fit(f0, h)
        assert float(t.flat_share[0]) == 1.0  # the disk is flat all round the handle
        found, conf = t.track(f1, h)
        err[weight] = float((found[0] - truth).norm())
        assert float(conf[0]) > 0.8  # the part is there, only displaced
    nn = NearestNeighbourTracker(radius=3.0, metric="l2", subpixel=True)
    nn.fit(f0, h)
    assert float((nn.track(f1, h)[0][0] - truth).norm()) > 1.2
    assert err[0.0] > 1.2 and err[2.0] < 0.65
    assert DragConfig.context_weight == 1.0 and err[1.0] < 0.9 and err[1.0] < err[0.0] - 0.4  # the default helps


def test_context_is_off_for_handles_that_are_not_inside_a_flat_part():
    """A handle on texture (the synthetic fields of `bench tracking`) has no flat sector around it,
    so the context term, and its cost, are skipped; the result is the plain tracker's bit for bit."""
    case = make_case(torch.Generator().manual_seed(3))
    plain = DiscriminativeTracker(radius=3.0, context_weight=0.0)
    ctx = DiscriminativeTracker(radius=3.0, context_weight=2.0)
    for t in (plain, ctx):
        t.fit(case.f0, case.handle)
    assert float(ctx.flat_share[0]) == 0.0
    a, b = plain.track(case.f1, case.handle), ctx.track(case.f1, case.handle)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_config_context_weight_reaches_the_tracker_and_is_checked():
    assert make_tracker(DragConfig(method="stabledrag", context_weight=0.7)).context_weight == 0.7
    assert DiscriminativeTracker().context_weight == DragConfig.context_weight > 0  # `bench tracking` builds it
    with pytest.raises(ValueError):
        DragConfig(method="stabledrag", context_weight=-1.0)
    with pytest.raises(ValueError):
        DiscriminativeTracker(context_weight=-1.0)


def test_a_handle_on_a_ridge_keeps_its_peak_instead_of_the_plateau_centroid_along_the_ridge():
    """The edge moved down 1 px and the content 2-3 px along it became more handle-like (a mouth
    corner being stretched along the mouth's band): the score's top plateau runs along the edge, so
    its centroid would pull the handle along it; a handle with a ridge share keeps the sub-pixel
    peak, nearer the true place. A blob-like handle (ridge share 0) would take the centroid."""
    f0, h = _edge_map(), torch.tensor([[16.0, 16.0]])
    t = DiscriminativeTracker(radius=3, plateau_level=0.2)
    t.fit(f0, h)
    assert float(t.ridge_share[0]) > PLATEAU_MAX_RIDGE_SHARE
    up = t.filters[0] * t.scales[0] / t.filters[0].square().sum()
    f1 = shifted_field(f0, 0, 1)
    f1[:, 17, 18:20] += 0.3 * float(t.peak0[0]) * up[:, None]
    kept, _ = t.track(f1, h)
    # the sub-pixel peak leans 0.7 px towards the brighter side; the centroid would go 1.1 px along
    assert float(kept[0, 0]) < 16.8 and abs(float(kept[0, 1]) - 17.0) < 0.05
    t.ridge_share = torch.zeros(1)  # the same handle treated as a blob
    pulled, _ = t.track(f1, h)
    assert float(pulled[0, 0]) > 17.1


def test_context_reads_only_the_rings_box_and_at_most_64_channels_with_the_same_result():
    """The context similarity is computed on the part of the map the rings cover, on the
    CONTEXT_CHANNELS channels that vary most over the rings (wide maps only): the same values as
    reading the whole map, also for handles at the map's border (corners off the map are zeros)."""
    from stabledrag.sampling import inside
    from stabledrag.tracking import CONTEXT_CHANNELS

    g = torch.Generator().manual_seed(2)
    f0 = torch.randn(100, 40, 40, generator=g).cumsum(1) / 5
    f1 = f0.roll(1, 2)
    # interior handles (the box is a strict part of the map) and handles at the border
    for h in (torch.tensor([[12.3, 14.7], [20.2, 20.9], [25.6, 22.1]]), torch.tensor([[1.4, 2.6], [38.6, 37.1]])):
        t = DiscriminativeTracker(radius=3.0)
        t.fit(f0, h)
        assert t.ctx_channels is not None and len(t.ctx_channels) == CONTEXT_CHANNELS < 100
        pos = h[:, None, :] + square_offsets(3.0)[None]
        valid = inside(pos, (40, 40))
        got = t._context_sim(f1, pos, valid, torch.arange(len(h)))
        pts = pos[:, :, None, :] + t.ctx_offsets[:, None]
        ok = inside(pts, (40, 40)) & t.ctx_valid[:, None]
        d = (sample_features(f1[t.ctx_channels], pts) - t.ctx_templates[:, None]).norm(dim=-1)
        d = (d * ok).sum(-1) / ok.sum(-1).clamp_min(1)
        ref = 1 - d / d.masked_fill(~valid, 0).amax(1, keepdim=True)
        assert torch.allclose(got, ref, atol=1e-5)


def test_flat_share_counts_only_directions_seen_on_the_map():
    """A textured handle at the map's corner is not 'flat' because half its directions leave the map."""
    case = make_case(torch.Generator().manual_seed(3))
    size = case.f0.shape[-1]
    t = DiscriminativeTracker(radius=3.0)
    t.fit(case.f0, torch.tensor([[0.0, 0.0], [size - 1.0, size - 1.0], [size / 2, size / 2]]))
    assert float(t.flat_share.max()) <= 0.5 and float(t.flat_share[2]) == 0.0  # unseen directions were "flat": 1.0
    # inside a disk (an eye) a handle is flat in every direction it sees, and only those count
    t.fit(_blob_with_core((20.0, 20.0), (20.0, 20.0)), torch.tensor([[20.0, 20.0]]))
    assert t.flat_share.tolist() == [1.0]
    t.fit(_blob_with_core((0.0, 20.0), (0.0, 20.0)), torch.tensor([[0.0, 20.0]]))
    assert t.flat_share.tolist() == [5 / 8]  # the 3 directions off the map's left edge are not seen
