"""The StyleGAN2 generator: official parameter layout, determinism, truncation, features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stabledrag.gan.networks import Generator, GeneratorConfig, to_uint8


def tiny(res: int = 32, **kw) -> Generator:
    torch.manual_seed(0)
    base = dict(z_dim=16, w_dim=16, img_resolution=res, channel_base=256, channel_max=16, mapping_layers=2)
    base.update(kw)
    G = Generator(GeneratorConfig(**base))
    with torch.no_grad():  # non-zero noise strengths and w_avg, so noise and truncation matter
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.5)
        G.mapping.w_avg.normal_()
    return G


def expected_keys(res: int, mapping_layers: int, c_dim: int = 0) -> set[str]:
    """The official G_ema.state_dict() names, written out from the documented layout."""
    keys = set()
    r = 4
    while r <= res:
        b = f"synthesis.b{r}"
        keys.add(f"{b}.resample_filter")
        if r == 4:
            keys.add(f"{b}.const")
        convs = ["conv1"] if r == 4 else ["conv0", "conv1"]
        for c in convs:
            for n in ("weight", "bias", "noise_strength", "resample_filter", "noise_const", "affine.weight",
                      "affine.bias"):
                keys.add(f"{b}.{c}.{n}")
        for n in ("weight", "bias", "affine.weight", "affine.bias"):
            keys.add(f"{b}.torgb.{n}")
        r *= 2
    for i in range(mapping_layers):
        keys |= {f"mapping.fc{i}.weight", f"mapping.fc{i}.bias"}
    keys.add("mapping.w_avg")
    if c_dim:
        keys |= {"mapping.embed.weight", "mapping.embed.bias"}
    return keys


def test_state_dict_names_and_shapes_match_the_official_layout():
    G = tiny(32, c_dim=3)
    sd = G.state_dict()
    assert set(sd) == expected_keys(32, 2, c_dim=3)
    assert list(sd)[0].startswith("synthesis.")  # synthesis registers before mapping, as officially
    assert sd["synthesis.b4.const"].shape == (16, 4, 4)
    assert sd["synthesis.b32.conv0.weight"].shape == (8, 16, 3, 3)  # min(256 // 32, 16) = 8 out, 16 in
    assert sd["synthesis.b32.conv0.noise_const"].shape == (32, 32)
    assert sd["synthesis.b32.torgb.weight"].shape == (3, 8, 1, 1)
    assert sd["synthesis.b8.resample_filter"].shape == (4, 4)
    assert sd["mapping.fc0.weight"].shape == (16, 32)  # z_dim + embed_features
    assert G.num_ws == G.config.num_ws == 2 * 5 - 2


def test_seed_to_z_is_numpy_randomstate():
    G = tiny()
    z = G.seed_to_z(7)
    ref = np.random.RandomState(7).randn(1, 16)
    assert torch.allclose(z, torch.from_numpy(ref).float())


def test_deterministic_given_seed_and_noise_mode():
    G = tiny()
    z = G.seed_to_z(3)
    a = G(z, noise_mode="const")
    b = G(z, noise_mode="const")
    assert torch.equal(a, b)
    assert not torch.equal(a, G(G.seed_to_z(4), noise_mode="const"))
    assert not torch.allclose(a, G(z, noise_mode="none"))  # noise strengths are 0.5 here
    r1 = G(z, noise_mode="random", generator=torch.Generator().manual_seed(1))
    r2 = G(z, noise_mode="random", generator=torch.Generator().manual_seed(1))
    r3 = G(z, noise_mode="random", generator=torch.Generator().manual_seed(2))
    assert torch.equal(r1, r2) and not torch.allclose(r1, r3)


def test_truncation_moves_towards_w_avg_and_respects_cutoff():
    G = tiny()
    z = G.seed_to_z(1)
    w1 = G.mapping(z)
    w0 = G.mapping(z, truncation_psi=0.0)
    assert torch.allclose(w0, G.mapping.w_avg.expand_as(w0))
    wh = G.mapping(z, truncation_psi=0.5)
    assert torch.allclose(wh, 0.5 * (w1 + G.mapping.w_avg), atol=1e-6)
    wc = G.mapping(z, truncation_psi=0.0, truncation_cutoff=3)
    assert torch.allclose(wc[:, :3], w0[:, :3]) and torch.equal(wc[:, 3:], w1[:, 3:])


def test_mapping_normalises_z():
    G = tiny()
    z = G.seed_to_z(2)
    assert torch.allclose(G.mapping(z), G.mapping(z * 10.0), atol=1e-5)


def test_block_features_and_early_stop_agree_with_the_full_pass():
    G = tiny(32)
    ws = G.mapping(G.seed_to_z(5))
    img, feats = G.synthesis(ws, feature_res=G.synthesis.block_resolutions)
    assert sorted(feats) == [4, 8, 16, 32]
    assert feats[16].shape == (1, G.config.channels(16), 16, 16)
    none_img, early = G.synthesis(ws, feature_res=[16], render=False)
    assert none_img is None and torch.equal(early[16], feats[16])
    # finishing from the b16 block gives the full image
    x, partial, _ = G.synthesis.run_blocks(ws, None, None, 0, 16)
    _, finished, _ = G.synthesis.run_blocks(ws, x, partial, 16, 32)
    assert torch.allclose(finished, img, atol=1e-6)


def test_conv_clamp_bounds_every_block_output():
    G = tiny(32, conv_clamp=0.05)
    _, feats = G.synthesis(G.mapping(G.seed_to_z(0)), feature_res=[4, 8, 16, 32])
    assert all(float(f.abs().max()) <= 0.05 + 1e-7 for f in feats.values())
    _, unclamped = tiny(32).synthesis(G.mapping(G.seed_to_z(0)), feature_res=[32])
    assert float(unclamped[32].abs().max()) > 0.05


@pytest.mark.parametrize("arch", ["orig", "resnet"])
def test_other_architectures_build_and_run(arch):
    G = tiny(16, architecture=arch)
    img = G(G.seed_to_z(0))
    assert img.shape == (1, 3, 16, 16) and torch.isfinite(img).all()
    has_torgb = [k for k in G.state_dict() if "torgb" in k]
    if arch == "orig":
        assert all(k.startswith("synthesis.b16.") for k in has_torgb)
    else:
        assert "synthesis.b8.skip.weight" in G.state_dict()


def test_default_feature_block():
    assert GeneratorConfig(img_resolution=512).drag_feature_res == 128
    assert GeneratorConfig(img_resolution=1024).drag_feature_res == 128
    assert GeneratorConfig(img_resolution=256).drag_feature_res == 128
    assert GeneratorConfig(img_resolution=128).drag_feature_res == 64
    assert GeneratorConfig(img_resolution=128, feature_res=128).drag_feature_res == 128
    with pytest.raises(ValueError):
        GeneratorConfig(img_resolution=128, feature_res=256)


def test_to_uint8_rounding_matches_generate_py():
    img = torch.tensor([-1.0, 0.0, 0.999, 1.0]).reshape(1, 1, 1, 4).expand(1, 3, 1, 4)
    out = to_uint8(img)
    assert out.shape == (1, 4, 3) and out.dtype == np.uint8
    assert out[0, :, 0].tolist() == [0, 128, 255, 255]
