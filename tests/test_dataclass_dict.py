"""`to_dict` / `from_dict` of the settings dataclasses, written once (`stabledrag.dataclass_dict`)."""

import dataclasses

import pytest

from stabledrag.config import DragConfig
from stabledrag.gan.networks import GeneratorConfig
from stabledrag.gan.projection import ProjectionConfig


@pytest.mark.parametrize("config, what", [
    (DragConfig(method="draggan", r_m=2.5), "drag settings"),
    (ProjectionConfig(w_steps=3, start_space="z"), "projection settings"),
    (GeneratorConfig(img_resolution=64, feature_res=32), "generator settings"),
])
def test_round_trip_and_unknown_keys(config, what):
    d = config.to_dict()
    assert d == dataclasses.asdict(config) and "settings_name" not in d
    assert type(config).from_dict(d) == config
    with pytest.raises(ValueError, match=rf"^unknown {what}: \['a', 'zz'\]$"):
        type(config).from_dict({**d, "zz": 1, "a": 2})


def test_the_class_checks_still_apply():
    with pytest.raises(ValueError, match="start_space"):
        ProjectionConfig.from_dict({"start_space": "q"})
