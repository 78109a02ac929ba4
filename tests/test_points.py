import math

import pytest
import torch

from stabledrag.errors import UserError
from stabledrag.points import (DragPoints, from_clicks, parse_drags, parse_pair, scale_points,
                               validate)


def test_parse_pair_forms():
    assert parse_pair("120,80:140,80") == ((120.0, 80.0), (140.0, 80.0))
    assert parse_pair(" (1.5, 2) -> (3, 4.25) ") == ((1.5, 2.0), (3.0, 4.25))


def test_parse_drags_several_and_roundtrip():
    pts = parse_drags(["10,20:30,40", "1,2:3,4; 5,6:7,8"])
    assert len(pts) == 3
    assert pts.handles.tolist() == [[10, 20], [1, 2], [5, 6]]
    assert parse_drags([pts.to_string()]).to_list() == pts.to_list()


@pytest.mark.parametrize("bad", ["10,20", "a,b:c,d", "10 20:30 40", ""])
def test_parse_errors_say_the_form(bad):
    with pytest.raises(UserError, match="x,y:x,y|No drag"):
        parse_drags([bad])


def test_from_clicks_pairs_and_incomplete():
    pts = from_clicks([(1, 2), (3, 4), (5, 6), (7, 8)])
    assert pts.targets.tolist() == [[3, 4], [7, 8]]
    with pytest.raises(UserError, match="Handle 2 has no target"):
        from_clicks([(1, 2), (3, 4), (5, 6)])
    with pytest.raises(UserError, match="No drag points"):
        from_clicks([])


def test_validate_messages():
    ok = from_clicks([(0, 0), (63, 47)])
    assert validate(ok, (64, 48)) is ok
    with pytest.raises(UserError, match=r"Pair 1: the target \(64, 10\) is outside the 64x48 image"):
        validate(from_clicks([(1, 1), (64, 10)]), (64, 48))
    with pytest.raises(UserError, match="Pair 2: the target .* is on its handle"):
        validate(from_clicks([(1, 1), (5, 5), (9, 9), (9.2, 9)]), (64, 48))
    with pytest.raises(UserError, match="not a number"):
        validate(DragPoints(torch.tensor([[math.nan, 1.0]]), torch.tensor([[2.0, 2.0]])), (64, 48))


def test_scale_points_centres_and_inverse():
    pts = torch.tensor([[255.5, 255.5], [0.0, 0.0], [511.0, 100.0]])
    half = scale_points(pts, (512, 512), (256, 256))
    assert torch.allclose(half[0], torch.tensor([127.5, 127.5]))  # centre stays the centre
    back = scale_points(half, (256, 256), (512, 512))
    assert torch.allclose(back, pts, atol=1e-5)
    # anisotropic
    assert torch.allclose(scale_points(torch.tensor([[9.5, 4.5]]), (20, 10), (40, 40)), torch.tensor([[19.5, 19.5]]))
