"""3D warp against the v0.6 oracle (tests/data/warp3d.npz) and the camera facts of spec section 5."""

import json
import math

import numpy as np
import pytest
import torch

from deforum.errors import MediaError, SettingsError
from deforum.motion import warp3d
from deforum.motion.warp3d import rotation_matrix, sampling_grid

ORACLE = np.load("tests/data/warp3d.npz")
META = json.loads(str(ORACLE["meta_json"]))
MOTION_KEYS = (
    "translation_x",
    "translation_y",
    "translation_z",
    "rotation_3d_x",
    "rotation_3d_y",
    "rotation_3d_z",
)
STILL = dict.fromkeys(MOTION_KEYS, 0.0)


def oracle_input(name):
    return ORACLE["input"].astype(np.float32) if name == "input_f32" else ORACLE[name]


@pytest.mark.parametrize("case", META["cases"], ids=lambda c: f"{c['index']:02}_{c['name']}")
def test_matches_v06_oracle(case):
    i = case["index"]
    image = oracle_input(case["input"])
    depth = None if case["depth"] is None else ORACLE[case["depth"]]
    motion = {k: case["values"][k] for k in MOTION_KEYS}
    out = warp3d(
        image,
        depth,
        fov=case["fov"],
        near_plane=case["near_plane"],
        far_plane=case["far_plane"],
        padding_mode=case["padding_mode"],
        sampling_mode=case["sampling_mode"],
        **motion,
    )
    expected = ORACLE[f"out_{i:02}"]
    assert out.dtype == np.dtype(case["output_dtype"]) and out.shape == expected.shape
    close = float((np.abs(out.astype(np.float64) - expected) <= 1).mean())
    assert close >= 0.999, f"only {close:.5f} of values within one level"

    rot = rotation_matrix(*(case["values"][k] for k in MOTION_KEYS[3:])).numpy()
    np.testing.assert_allclose(rot, ORACLE[f"rot_mat_{i:02}"][0], rtol=0, atol=1e-7)
    if f"grid_{i:02}" in ORACLE:
        height, width = image.shape[:2]
        grid = sampling_grid(
            height,
            width,
            None if depth is None else torch.from_numpy(depth),
            translation=tuple(motion[k] for k in MOTION_KEYS[:3]),
            rotation=tuple(motion[k] for k in MOTION_KEYS[3:]),
            fov=case["fov"],
        )
        np.testing.assert_allclose(grid.numpy(), ORACLE[f"grid_{i:02}"], rtol=0, atol=2e-6)


def test_zero_motion_reproduces_input_exactly():
    for mode in ("bicubic", "bilinear", "nearest"):
        out = warp3d(ORACLE["input"], ORACLE["depth"], sampling_mode=mode, **STILL)
        np.testing.assert_array_equal(out, ORACLE["input"])


def flow(grid, height, width):
    """Sampling offset (NDC) at the centre of the frame: grid minus the pixel-centre grid."""
    centre_x = ((2 * np.arange(width) + 1) / width - 1)[None, :]
    centre_y = ((2 * np.arange(height) + 1) / height - 1)[:, None]
    g = grid[0].numpy().astype(np.float64)
    return g[..., 0] - centre_x, g[..., 1] - centre_y


# Spec 5.3, 512x512, fov 40 (K = 2.7475), flat depth: (motion, expected x offset, expected y offset) of the
# sampling position in NDC at the frame centre (positive x samples from the right: content moves left).
FLAT_FLOWS = [
    (dict(translation_x=10), 0.05 * 2.7475, 0.0),
    (dict(translation_y=10), 0.0, -0.05 * 2.7475),
    (dict(translation_z=10), 0.0, 0.0),
]


@pytest.mark.parametrize("motion, dx, dy", FLAT_FLOWS)
def test_translation_flows_spec_examples(motion, dx, dy):
    grid = sampling_grid(
        512,
        512,
        None,
        translation=tuple(motion.get(k, 0) for k in MOTION_KEYS[:3]),
        rotation=(0, 0, 0),
        fov=40,
    )
    fx, fy = flow(grid, 512, 512)
    assert fx.mean() == pytest.approx(dx, abs=2e-4) and fy.mean() == pytest.approx(dy, abs=2e-4)


def test_translation_z_is_a_zoom_scaled_by_the_fov_gain():
    # Flat z = 1, tz = 10 -> Z = 0.95: the offset is K*u*(1/0.95 - 1) (K = 2.7475 at fov 40), so the
    # sampling position is the pixel centre minus that and content grows about the centre.
    grid = sampling_grid(512, 512, None, translation=(0, 0, 10), rotation=(0, 0, 0), fov=40)
    u = np.linspace(-1, 1, 512)
    centre = (2 * np.arange(512) + 1) / 512 - 1
    expected = centre - 2.7475 * u * (1 / 0.95 - 1)
    np.testing.assert_allclose(grid[0, 256, :, 0].numpy(), expected, atol=1e-4)
    np.testing.assert_allclose(grid[0, :, 256, 1].numpy(), expected, atol=1e-4)


def test_near_and_far_planes_have_no_effect():
    kwargs = dict(
        translation_x=3, translation_y=2, translation_z=15, rotation_3d_x=2, rotation_3d_y=-4, rotation_3d_z=6
    )
    a = warp3d(ORACLE["input"], ORACLE["depth"], **kwargs)
    b = warp3d(ORACLE["input"], ORACLE["depth"], near_plane=1, far_plane=50, **kwargs)
    np.testing.assert_array_equal(a, b)


def test_fov_is_a_gain_on_motion():
    grids = [sampling_grid(64, 64, None, translation=(10, 0, 0), rotation=(0, 0, 0), fov=fov) for fov in (40, 90)]
    dx40, dx90 = (flow(g, 64, 64)[0].mean() for g in grids)
    assert dx40 / dx90 == pytest.approx(1 / math.tan(math.radians(20)), rel=1e-4)


def disc_extent(out):
    ys, xs = np.nonzero(out[..., 0] > 127)
    return xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


def disc(height, width, radius):
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), np.uint8)
    image[(xx - (width - 1) / 2) ** 2 + (yy - (height - 1) / 2) ** 2 <= radius**2] = 255
    return image


@pytest.mark.parametrize(
    "motion",
    [dict(rotation_3d_z=90), dict(rotation_3d_z=30), dict(translation_z=20)],
    ids=["roll90", "roll30", "zoom"],
)
def test_correct_aspect_keeps_a_centred_disc_round_on_a_wide_frame(motion):
    image = disc(96, 192, 40)
    kwargs = dict(STILL, **motion, fov=90, padding_mode="zeros", sampling_mode="bilinear")
    width, height = disc_extent(warp3d(image, None, correct_aspect=True, **kwargs))
    assert abs(width - height) <= 1
    v06_width, v06_height = disc_extent(warp3d(image, None, **kwargs))
    assert abs(v06_width - v06_height) >= 6  # v0.6 stretches z-zoom and roll on non-square frames


def test_correct_aspect_changes_nothing_on_square_frames():
    kwargs = dict(
        translation_x=3, translation_y=2, translation_z=15, rotation_3d_x=2, rotation_3d_y=-4, rotation_3d_z=6
    )
    a = warp3d(ORACLE["input"], ORACLE["depth"], **kwargs)
    b = warp3d(ORACLE["input"], ORACLE["depth"], correct_aspect=True, **kwargs)
    np.testing.assert_array_equal(a, b)


def test_tensor_in_tensor_out():
    kwargs = dict(STILL, translation_z=10, rotation_3d_y=3)
    expected = warp3d(ORACLE["input"], ORACLE["depth"], **kwargs)
    out = warp3d(torch.from_numpy(ORACLE["input"]), torch.from_numpy(ORACLE["depth"]), **kwargs)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy(), expected)
    out_f = warp3d(torch.from_numpy(ORACLE["input"].astype(np.float32)), ORACLE["depth"], **kwargs)
    assert out_f.dtype == torch.float32 and np.abs(out_f.numpy() - expected).max() <= 1


def test_float32_input_is_not_truncated():
    out = warp3d(ORACLE["input"].astype(np.float32), ORACLE["depth"], **dict(STILL, translation_z=10))
    assert out.dtype == np.float32 and (out != np.floor(out)).any()


@pytest.mark.parametrize(
    "kwargs, depth, error, match",
    [
        (dict(padding_mode="wrap"), None, SettingsError, "padding_mode"),
        (dict(sampling_mode="area"), None, SettingsError, "sampling_mode"),
        ({}, np.ones((10, 10), np.float32), MediaError, "depth map shape"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, depth, error, match):
    with pytest.raises(error, match=match):
        warp3d(ORACLE["input"], depth, **STILL, **kwargs)


@pytest.mark.parametrize("depth", [None, ORACLE["depth_rect"]], ids=["flat", "depth"])
def test_torch_grid_equals_numpy_grid(depth):
    # The GPU path computes the same formula on torch tensors; on the CPU both must agree bit for bit.
    kwargs = dict(translation=(3, 2, 15), rotation=(2, -4, 6), fov=60, correct_aspect=False)
    depth = None if depth is None else torch.from_numpy(depth)
    for correct_aspect in (False, True):
        kwargs["correct_aspect"] = correct_aspect
        a = sampling_grid(192, 256, depth, **kwargs)
        b = sampling_grid(192, 256, depth, numpy_on_cpu=False, **kwargs)
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0, atol=0)
