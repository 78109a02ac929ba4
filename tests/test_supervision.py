import torch

from stabledrag.supervision import (feature_mask_loss, latent_mask_loss, motion_loss, patch_offsets,
                                    resize_mask, template_patches)


def _field(seed=0, c=8, h=24, w=24):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(c, h, w, generator=g)


def test_patch_shapes():
    assert patch_offsets(1, "square").shape == (9, 2)
    disk = patch_offsets(3, "disk")
    assert disk.shape[0] == 29 and (disk.norm(dim=1) <= 3).all()


def test_motion_loss_is_shifted_patch_l1():
    f = _field().requires_grad_(True)
    h = torch.tensor([[10.0, 10.0]])
    t = torch.tensor([[15.0, 10.0]])  # direction (1, 0)
    loss = motion_loss(f, h, t, radius=1, shape="square")
    # by hand: sum over the 3x3 patch of the channel-mean |F(q + (1,0)) - F(q)|
    ref = sum((f[:, y, x + 1] - f[:, y, x]).abs().mean() for y in (9, 10, 11) for x in (9, 10, 11))
    assert torch.allclose(loss, ref, atol=1e-5)
    loss.backward()
    # gradient only through the shifted (target) side: the patch itself is detached
    assert f.grad[:, 10, 12].abs().sum() > 0


def test_template_source_replaces_drifted_patch_below_tau():
    f0 = _field(0)
    f = _field(1)  # the handle area has drifted completely
    h0 = torch.tensor([[8.0, 8.0]])
    h = torch.tensor([[12.0, 12.0]])
    t = torch.tensor([[20.0, 12.0]])
    tp = template_patches(f0, h0, radius=1)
    plain = motion_loss(f, h, t, radius=1, template=tp, template_mix=torch.tensor([0.0]))
    tmpl = motion_loss(f, h, t, radius=1, template=tp, template_mix=torch.tensor([1.0]))
    ref = sum((f[:, y + 4, x + 5] - f0[:, y, x]).abs().mean() for y in (7, 8, 9) for x in (7, 8, 9))
    assert torch.allclose(tmpl, ref, atol=1e-5)
    assert not torch.allclose(plain, tmpl)
    assert torch.allclose(plain, motion_loss(f, h, t, radius=1))
    doubled = motion_loss(f, h, t, radius=1, template=tp, template_mix=torch.tensor([1.0]), template_weight=2.0)
    assert torch.allclose(doubled, 2 * tmpl)


def test_template_mix_blends_the_source_linearly():
    """A share m of the template: the source is m * template + (1 - m) * current patch."""
    f0, f = _field(0), _field(1)
    h0, h, t = torch.tensor([[8.0, 8.0]]), torch.tensor([[12.0, 12.0]]), torch.tensor([[20.0, 12.0]])
    tp = template_patches(f0, h0, radius=1)
    half = motion_loss(f, h, t, radius=1, template=tp, template_mix=torch.tensor([0.25]))
    ref = sum((f[:, y + 4, x + 5] - (0.25 * f0[:, y, x] + 0.75 * f[:, y + 4, x + 4])).abs().mean()
              for y in (7, 8, 9) for x in (7, 8, 9))
    assert torch.allclose(half, ref, atol=1e-5)


def test_reached_handles_get_no_loss():
    f = _field().requires_grad_(True)
    h = torch.tensor([[10.0, 10.0], [5.0, 5.0]])
    t = torch.tensor([[10.5, 10.0], [9.0, 5.0]])
    both = motion_loss(f, h, t, radius=1, min_distance=1.0)
    only_second = motion_loss(f, h[1:], t[1:], radius=1, min_distance=1.0)
    assert torch.allclose(both, only_second)
    zero = motion_loss(f, h[:1], t[:1], radius=1, min_distance=1.0)
    assert zero.item() == 0 and zero.requires_grad


def test_mask_losses_only_count_kept_region():
    f0 = _field(0)
    f = f0.clone()
    f[:, :, 12:] += 1.0  # change the right half only
    keep_left = torch.zeros(24, 24)
    keep_left[:, :12] = 1
    assert feature_mask_loss(f, f0, keep_left).item() == 0
    assert feature_mask_loss(f, f0, 1 - keep_left).item() > 0
    lat0 = torch.zeros(1, 4, 6, 6)
    lat = lat0.clone()
    lat[..., 3:] = 2.0
    keep = torch.zeros(24, 24)
    keep[:, :12] = 1  # resized to 6 x 6 by nearest: left 3 columns
    assert latent_mask_loss(lat, lat0, keep).item() == 0
    assert latent_mask_loss(lat, lat0, 1 - keep).item() == 2.0 * 4 * 6 * 3
    assert resize_mask(keep, (6, 6))[:, :3].sum() == 18
