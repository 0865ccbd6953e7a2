"""Depth models on tiny random transformers networks saved locally, and depth-map files."""

import numpy as np
import pytest
import torch
from PIL import Image

from deforum.errors import ModelError
from deforum.motion import depth as depth_module
from deforum.motion.depth import (
    DEPTH_ANYTHING,
    MIDAS,
    DepthModel,
    depth_map_image,
    dpt_forward_any_shape,
    network_size,
    prepare_input,
    save_depth_map,
)
from deforum.testing import tiny_depth_model


@pytest.fixture(scope="module")
def tiny_dpt(tmp_path_factory):
    return str(tiny_depth_model(tmp_path_factory.mktemp("tiny-dpt"), "dpt"))


@pytest.fixture(scope="module")
def tiny_depth_anything(tmp_path_factory):
    return str(tiny_depth_model(tmp_path_factory.mktemp("tiny-depth-anything"), "depth_anything"))


def test_every_depth_model_choice_of_the_settings_is_known():
    from deforum.settings import DEPTH_MODELS as CHOICES

    assert set(CHOICES) <= set(depth_module.DEPTH_MODELS)


def make_image(height=64, width=64):
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 4 % 256, yy * 4 % 256, (xx + yy) * 2 % 256], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("shape", [(64, 64), (48, 80)])
def test_midas_dpt_predicts_an_hxw_float32_map(tiny_dpt, shape):
    model = DepthModel(tiny_dpt)
    image = make_image(*shape)
    depth = model.predict(image)
    assert depth.shape == shape and depth.dtype == torch.float32 and torch.isfinite(depth).all()
    assert depth.std() > 0
    # v0.6's mapping: (50 - MiDaS)/19 of the bicubic-upsampled network output
    with torch.no_grad():
        inverse = dpt_forward_any_shape(model.network, prepare_input(image, MIDAS))
    upsampled = torch.nn.functional.interpolate(inverse[:, None], size=shape, mode="bicubic", align_corners=False)
    torch.testing.assert_close(depth, (50 - upsampled[0, 0]) / 19)


def test_non_square_path_equals_the_model_on_square_input(tiny_dpt):
    model = DepthModel(tiny_dpt)
    pixels = prepare_input(make_image(), MIDAS)
    with torch.no_grad():
        torch.testing.assert_close(
            dpt_forward_any_shape(model.network, pixels), model.network(pixel_values=pixels).predicted_depth
        )


def test_depth_anything_predicts_an_hxw_float32_map(tiny_depth_anything):
    model = DepthModel(tiny_depth_anything)
    assert model.family is DEPTH_ANYTHING
    depth = model.predict(make_image(40, 72))
    assert depth.shape == (40, 72) and depth.dtype == torch.float32 and torch.isfinite(depth).all()


def test_network_is_loaded_once_per_process(tiny_dpt):
    assert DepthModel(tiny_dpt).network is DepthModel(tiny_dpt).network


# (h, w) -> network input (h', w'), generation spec 9.2
@pytest.mark.parametrize(
    "size, expected",
    [((512, 512), (384, 384)), ((512, 768), (384, 576)), ((576, 1024), (384, 672)), ((384, 640), (384, 640))],
)
def test_midas_input_size(size, expected):
    assert network_size(*size, MIDAS) == expected


def test_depth_anything_input_size_is_a_multiple_of_14_at_least_518():
    h, w = network_size(512, 768, DEPTH_ANYTHING)
    assert h % 14 == 0 and w % 14 == 0 and min(h, w) >= 518 and abs(w / h - 1.5) < 0.05


def test_offline_without_the_model_is_a_clear_model_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match=r"Intel/dpt-large.*dpt-large") as info:
        DepthModel("midas", models_path=tmp_path)
    assert str(tmp_path) in str(info.value) and "config.json" in str(info.value)


def test_unknown_name_is_a_clear_model_error(tmp_path):
    with pytest.raises(ModelError, match="not-a-model"):
        DepthModel("not-a-model", models_path=tmp_path)


def test_midas_weight_below_one_warns_once(tiny_dpt, monkeypatch):
    monkeypatch.setattr(depth_module, "_warned_adabins", False)
    with pytest.warns(UserWarning, match="AdaBins"):
        DepthModel(tiny_dpt, midas_weight=0.3)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DepthModel(tiny_dpt, midas_weight=0.3)


# A stable scale (fixes spec 12.1 #20): the first map's range, kept for the whole run.
def test_depth_map_scale_is_fixed_by_the_first_map():
    state = {}
    first = depth_map_image(np.array([[1.0, 2.0], [3.0, 3.0]], np.float32), state)
    assert state == {"dmin": 1.0, "dmax": 3.0}
    np.testing.assert_array_equal(first[..., 0], [[0, 127], [255, 255]])
    assert (first[..., 0] == first[..., 1]).all() and (first[..., 0] == first[..., 2]).all()
    second = depth_map_image(torch.tensor([[2.0, 2.5]]), state)
    np.testing.assert_array_equal(second[..., 0], [[127, 191]])  # same depth, same grey as before
    third = depth_map_image(np.array([[0.0, 2.0, 5.0]], np.float32), state)
    assert state == {"dmin": 1.0, "dmax": 3.0}  # a wider later map does not move the scale
    np.testing.assert_array_equal(third[..., 0], [[0, 127, 255]])  # ... it is clipped, and 2.0 stays 127


def test_save_depth_map_writes_a_png(tmp_path):
    path = tmp_path / "20221115120000_depth_00001.png"
    state = {}
    assert save_depth_map(torch.linspace(1, 4, 12).reshape(3, 4), path, state) is state
    saved = np.asarray(Image.open(path))
    assert saved.shape == (3, 4, 3) and saved[0, 0, 0] == 0 and saved[-1, -1, 0] == 255
    assert state == {"dmin": 1.0, "dmax": 4.0}
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
