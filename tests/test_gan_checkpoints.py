"""Checkpoints: official-style pickles load safely (and refuse code), native format round-trips.

The official-style fixtures are built here: small stand-ins for `torch_utils.persistence` and
`dnnlib.util` are registered in `sys.modules` only while a pickle is written, so the byte stream
carries the official global names and nesting (`_reconstruct_persistent_obj(meta)` with
`meta = {type, version, module_src, class_name, state}`), and are removed before loading.
"""

from __future__ import annotations

import builtins
import collections
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from stabledrag.errors import ModelUnavailableError, UserError
from stabledrag.gan import checkpoints
from stabledrag.gan.checkpoints import load_generator, load_native, save_native
from stabledrag.gan.networks import Generator, GeneratorConfig

CLASS_NAMES = {
    "Generator": "Generator", "MappingNetwork": "MappingNetwork", "SynthesisNetwork": "SynthesisNetwork",
    "SynthesisBlock": "SynthesisBlock", "SynthesisLayer": "SynthesisLayer", "ToRGBLayer": "ToRGBLayer",
    "FullyConnectedLayer": "FullyConnectedLayer", "Conv2dLayer": "Conv2dLayer",
}


def tiny_config(**kw) -> GeneratorConfig:
    base = dict(z_dim=16, w_dim=16, img_resolution=32, channel_base=256, channel_max=16, mapping_layers=2,
                conv_clamp=256, num_fp16_res=2)
    base.update(kw)
    return GeneratorConfig(**base)


def random_generator(cfg: GeneratorConfig) -> Generator:
    torch.manual_seed(1)
    G = Generator(cfg)
    with torch.no_grad():
        for p in G.parameters():
            p.normal_()
        G.mapping.w_avg.normal_()
    return G


@pytest.fixture
def official_names(monkeypatch):
    """Register stand-ins for the official `torch_utils.persistence` / `dnnlib.util` modules.

    Yields a function that builds a persistent-object stand-in; call `remove()` on the returned
    namespace to unregister them before loading."""
    persistence = types.ModuleType("torch_utils.persistence")
    torch_utils = types.ModuleType("torch_utils")
    torch_utils.persistence = persistence
    dnnlib = types.ModuleType("dnnlib")
    util = types.ModuleType("dnnlib.util")
    dnnlib.util = util

    def _reconstruct_persistent_obj(meta):  # never called: loading must not use it
        raise AssertionError("the stand-in reconstructor ran")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    util.EasyDict = EasyDict

    class Persistent:
        """Pickles exactly like a `@persistent_class` object: REDUCE of the reconstructor."""

        def __init__(self, meta):
            self.meta = meta

        def __reduce__(self):
            return (_reconstruct_persistent_obj, (self.meta,))

    names = {"torch_utils": torch_utils, "torch_utils.persistence": persistence, "dnnlib": dnnlib, "dnnlib.util": util}
    for k, v in names.items():
        monkeypatch.setitem(sys.modules, k, v)
    ns = types.SimpleNamespace(Persistent=Persistent, EasyDict=EasyDict)

    def remove():
        for k in names:
            monkeypatch.delitem(sys.modules, k, raising=False)

    ns.remove = remove
    return ns


def as_persistent(ns, module: torch.nn.Module, class_name: str, init_kwargs: dict, module_src: str,
                  kwargs_for=None):
    """A persistent stand-in for `module`, with children converted recursively."""
    children = collections.OrderedDict()
    for name, child in module.named_children():
        cls = type(child).__name__
        kw = kwargs_for(name, child) if kwargs_for else {}
        children[name] = as_persistent(ns, child, cls, kw, module_src, kwargs_for)
    params = collections.OrderedDict((k, torch.nn.Parameter(v.detach().clone(), requires_grad=False))
                                     for k, v in module._parameters.items())
    buffers = collections.OrderedDict((k, v.detach().clone()) for k, v in module._buffers.items())
    state = {
        "training": False,
        "_parameters": params,
        "_buffers": buffers,
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": collections.OrderedDict(),
        "_forward_hooks": collections.OrderedDict(),
        "_forward_pre_hooks": collections.OrderedDict(),
        "_state_dict_hooks": collections.OrderedDict(),
        "_load_state_dict_pre_hooks": collections.OrderedDict(),
        "_modules": children,
        "_init_args": (),
        "_init_kwargs": ns.EasyDict(init_kwargs),
    }
    # Attributes the official modules carry, numpy-typed as in real pickles.
    if hasattr(module, "weight_gain"):
        state["weight_gain"] = np.float64(module.weight_gain)
    if hasattr(module, "resolution"):
        state["resolution"] = np.int64(module.resolution)
    meta = dict(type="class", version=6, module_src=module_src, class_name=class_name, state=state)
    return ns.Persistent(meta)


def official_snapshot(ns, G: Generator, module_src: str = "", flat_kwargs: bool = False) -> dict:
    """`{G, D, G_ema, training_set_kwargs, augment_pipe}` shaped like a stylegan2-ada-pytorch pickle
    (or, with flat_kwargs, like the stylegan3 repository's networks_stylegan2 layout)."""
    c = G.config
    syn_kwargs = dict(channel_base=c.channel_base, channel_max=c.channel_max, num_fp16_res=c.num_fp16_res,
                      conv_clamp=c.conv_clamp, architecture=c.architecture)
    map_kwargs = dict(num_layers=c.mapping_layers)
    top = dict(z_dim=c.z_dim, c_dim=c.c_dim, w_dim=c.w_dim, img_resolution=c.img_resolution, img_channels=3)
    if flat_kwargs:
        top.update(mapping_kwargs=ns.EasyDict(map_kwargs), fused_modconv_default="inference_only", **syn_kwargs)
    else:
        top.update(mapping_kwargs=ns.EasyDict(map_kwargs), synthesis_kwargs=ns.EasyDict(syn_kwargs))

    def kwargs_for(name, child):
        if name == "synthesis":
            return dict(w_dim=c.w_dim, img_resolution=c.img_resolution, img_channels=3, **syn_kwargs)
        if name == "mapping":
            return dict(z_dim=c.z_dim, c_dim=c.c_dim, w_dim=c.w_dim, num_ws=G.num_ws, **map_kwargs)
        return {}

    g = as_persistent(ns, G, "Generator", top, module_src, kwargs_for)
    return {"G": g, "D": None, "G_ema": g, "augment_pipe": None,
            "training_set_kwargs": ns.EasyDict(path="~/datasets/x.zip", resolution=c.img_resolution, use_labels=False)}


def write_pickle(path, obj, protocol=4):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


@pytest.mark.parametrize("protocol,flat", [(4, False), (3, False), (2, True)])
def test_official_style_pickle_loads_architecture_and_weights(tmp_path, official_names, protocol, flat):
    G = random_generator(tiny_config())
    marker = tmp_path / "module_src_ran"
    src = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nprint('module_src executed')\n"
    path = write_pickle(tmp_path / "net.pkl", official_snapshot(official_names, G, src, flat_kwargs=flat), protocol)
    official_names.remove()

    loaded = load_generator(path, "cpu", cache=False)
    assert not marker.exists(), "the stored module source must never run"
    assert loaded.config.to_dict() == G.config.to_dict()
    a, b = G.state_dict(), loaded.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    z = G.seed_to_z(0)
    assert torch.equal(G(z, truncation_psi=0.7), loaded(z, truncation_psi=0.7))
    assert "torch_utils" not in sys.modules and "dnnlib" not in sys.modules


def test_pickle_loading_never_calls_torch_load(tmp_path, official_names, monkeypatch):
    G = random_generator(tiny_config(img_resolution=16))
    path = write_pickle(tmp_path / "net.pkl", official_snapshot(official_names, G))
    official_names.remove()

    def forbidden(*a, **k):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", forbidden)
    loaded = checkpoints.load_pickle(path)
    assert torch.equal(loaded.synthesis.b16.torgb.weight, G.synthesis.b16.torgb.weight)


class _Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return (self.fn, (self.arg,))


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec", "nested_in_snapshot"])
def test_code_executing_pickles_are_refused_and_run_nothing(tmp_path, official_names, kind):
    marker = tmp_path / "pwned"
    if kind == "os.system":
        payload = _Evil(os.system, f"touch {marker}")
    elif kind == "builtins.exec":
        payload = _Evil(builtins.exec, f"open({str(marker)!r}, 'w').write('x')")
    else:
        snap = official_snapshot(official_names, random_generator(tiny_config(img_resolution=8)))
        snap["augment_pipe"] = _Evil(builtins.exec, f"open({str(marker)!r}, 'w').write('x')")
        payload = snap
    path = write_pickle(tmp_path / "evil.pkl", payload)
    official_names.remove()
    with pytest.raises(ModelUnavailableError) as info:
        load_generator(path, "cpu", cache=False)
    msg = str(info.value)
    assert "Refused to load evil.pkl" in msg and ("system" in msg or "exec" in msg)
    assert isinstance(info.value, UserError)
    assert not marker.exists()


def test_code_hidden_in_a_tensor_storage_is_refused(tmp_path):
    """`torch.storage._load_from_bytes` normally runs torch.load(weights_only=False) on its bytes;
    an inner pickle naming any other global must be refused too."""
    marker = tmp_path / "pwned"
    inner = pickle.dumps(_Evil(os.system, f"touch {marker}"), protocol=2)

    class FakeStorage:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (inner,))

    path = write_pickle(tmp_path / "evil.pkl", {"G_ema": FakeStorage()})
    with pytest.raises(ModelUnavailableError):
        load_generator(path, "cpu", cache=False)
    assert not marker.exists()


def test_stylegan3_and_tf_pickles_get_a_clear_message(tmp_path, official_names, monkeypatch):
    G = random_generator(tiny_config(img_resolution=8))
    snap = official_snapshot(official_names, G)
    syn = snap["G_ema"].meta["state"]["_modules"]["synthesis"]
    syn.meta["state"]["_modules"]["input"] = official_names.Persistent(dict(
        type="class", version=6, module_src="", class_name="SynthesisInput",
        state={"_parameters": {}, "_buffers": {}, "_modules": {}, "_init_kwargs": official_names.EasyDict(
            w_dim=16, channels=16, size=8, sampling_rate=8, bandwidth=2)}))
    syn.meta["state"]["_modules"]["L0_8_16"] = official_names.Persistent(dict(
        type="class", version=6, module_src="", class_name="SynthesisLayer",
        state={"_parameters": {}, "_buffers": {}, "_modules": {},
               "_init_kwargs": official_names.EasyDict(use_radial_filters=False, magnitude_ema_beta=0.999)}))
    path3 = write_pickle(tmp_path / "sg3.pkl", snap)

    tflib = types.ModuleType("dnnlib.tflib.network")

    class Network:
        pass

    Network.__module__ = "dnnlib.tflib.network"
    Network.__qualname__ = "Network"
    tflib.Network = Network
    monkeypatch.setitem(sys.modules, "dnnlib.tflib", types.ModuleType("dnnlib.tflib"))
    monkeypatch.setitem(sys.modules, "dnnlib.tflib.network", tflib)
    path_tf = write_pickle(tmp_path / "tf.pkl", {"G_ema": Network()})
    official_names.remove()

    with pytest.raises(ModelUnavailableError, match="StyleGAN3"):
        load_generator(path3, "cpu", cache=False)
    with pytest.raises(ModelUnavailableError, match="TensorFlow"):
        load_generator(path_tf, "cpu", cache=False)


def test_unknown_settings_and_wrong_shapes_are_reported(tmp_path, official_names):
    G = random_generator(tiny_config(img_resolution=8))
    snap = official_snapshot(official_names, G)
    snap["G_ema"].meta["state"]["_modules"]["synthesis"].meta["state"]["_init_kwargs"]["square"] = False
    path = write_pickle(tmp_path / "odd.pkl", snap)
    snap2 = official_snapshot(official_names, G)
    snap2["G_ema"].meta["state"]["_modules"]["synthesis"].meta["state"]["_init_kwargs"]["channel_max"] = 8
    path2 = write_pickle(tmp_path / "bad.pkl", snap2)
    official_names.remove()
    with pytest.raises(ModelUnavailableError, match="synthesis.square"):
        load_generator(path, "cpu", cache=False)
    with pytest.raises(ModelUnavailableError, match="wrong shapes"):
        load_generator(path2, "cpu", cache=False)


@pytest.mark.parametrize("target", ["folder", "model.safetensors"])
def test_native_round_trip_is_bit_exact(tmp_path, target):
    G = random_generator(tiny_config(feature_res=16))
    path = save_native(G, tmp_path / target if target != "folder" else tmp_path / "toy")
    src = tmp_path / target if target != "folder" else tmp_path / "toy"
    if target == "folder":
        assert (src / "config.json").is_file() and path == src / "model.safetensors"
    loaded = load_native(src)
    assert loaded.config == G.config and loaded.config.drag_feature_res == 16
    a, b = G.state_dict(), loaded.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    z = G.seed_to_z(3)
    assert torch.equal(G(z), loaded(z))
    again = load_generator(src, "cpu")
    assert load_generator(src, "cpu") is again  # cached per process


def test_missing_models_give_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "TOY_MODEL_DIR", tmp_path / "toy_gan")
    with pytest.raises(ModelUnavailableError, match="toy GAN is missing"):
        load_generator(None, "cpu")
    with pytest.raises(ModelUnavailableError, match="No model"):
        load_generator(tmp_path / "nope.pkl", "cpu")
    (tmp_path / "weights.bin").write_bytes(b"0")
    with pytest.raises(ModelUnavailableError, match="Do not know"):
        load_generator(tmp_path / "weights.bin", "cpu")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(ModelUnavailableError):
        load_generator(tmp_path / "junk.pkl", "cpu")


def test_toy_model_is_loaded_when_present(tmp_path, monkeypatch):
    G = random_generator(tiny_config(img_resolution=8))
    save_native(G, tmp_path / "toy_gan")
    monkeypatch.setattr(checkpoints, "TOY_MODEL_DIR", tmp_path / "toy_gan")
    loaded = load_generator(None, "cpu", cache=False)
    assert torch.equal(loaded.synthesis.b8.conv1.weight, G.synthesis.b8.conv1.weight)
