"""2D warp against the v0.6 oracle (tests/data/warp2d.npz) and the worked numbers of spec section 4."""

import json

import cv2
import numpy as np
import pytest

from deforum.errors import MediaError, SettingsError
from deforum.motion import warp2d
from deforum.motion.warp2d import (
    BORDERS,
    _fixed_point_maps,
    flip_homography,
    flip_matrix,
    warp2d_matrix,
    warp_perspective_v4,
)

ORACLE = np.load("tests/data/warp2d.npz")
META = json.loads(str(ORACLE["meta_json"]))


def oracle_input(name):
    return ORACLE["input"].astype(np.float32) if name == "input_f32" else ORACLE[name]


def case_kwargs(case):
    v = case["values"]
    return dict(
        angle=v["angle"],
        zoom=v["zoom"],
        translation_x=v["translation_x"],
        translation_y=v["translation_y"],
        flip_2d_perspective=case["flip_2d_perspective"],
        perspective_flip_theta=v["perspective_flip_theta"],
        perspective_flip_phi=v["perspective_flip_phi"],
        perspective_flip_gamma=v["perspective_flip_gamma"],
        perspective_flip_fv=v["perspective_flip_fv"],
    )


def within_one_level(out, expected):
    return float((np.abs(out.astype(np.float64) - expected.astype(np.float64)) <= 1).mean())


@pytest.mark.parametrize("case", META["cases"], ids=lambda c: f"{c['index']:02}_{c['name']}")
def test_matches_v06_oracle(case):
    image = oracle_input(case["input"])
    out = warp2d(image, border=case["border"], **case_kwargs(case))
    expected = ORACLE[f"out_{case['index']:02}"]
    assert out.dtype == np.dtype(case["output_dtype"]) and out.shape == expected.shape
    assert within_one_level(out, expected) >= 0.999
    if out.dtype == np.uint8:  # OpenCV 4's fixed-point arithmetic, on OpenCV 4 and 5: bit-exact
        np.testing.assert_array_equal(out, expected)
    height, width = image.shape[:2]
    xform = warp2d_matrix(width, height, **case_kwargs(case))
    np.testing.assert_allclose(xform, ORACLE[f"xform_{case['index']:02}"], rtol=0, atol=1e-9)


# cv2.warpPerspective of OpenCV 4.14 (tools/record_warp2d_opencv4.py): v0.6's arithmetic. OpenCV 5 interpolates
# with exact fractions instead of 1/32-pixel steps; on the v0.6 oracle above its warpPerspective leaves only
# 0.9005 (angle10) and 0.8999 (flip_phi15) of the values equal, up to 4 levels apart.
OPENCV4 = np.load("tests/data/warp2d_opencv4.npz")
OPENCV4_CASES = json.loads(str(OPENCV4["meta_json"]))["cases"]


@pytest.mark.parametrize(
    "index",
    range(len(OPENCV4_CASES)),
    ids=[f"{i}_{c['matrix']}_{c['input']}_{c['border']}" for i, c in enumerate(OPENCV4_CASES)],
)
def test_warp_perspective_v4_is_opencv4_warp_perspective(index):
    case = OPENCV4_CASES[index]
    image, xform = OPENCV4[case["input"]], OPENCV4[f"xform_{case['matrix']}"]
    expected = OPENCV4[f"out_{index}"]
    out = warp_perspective_v4(image, xform, BORDERS[case["border"]])
    assert out.dtype == image.dtype
    np.testing.assert_array_equal(out, expected)
    if cv2.__version__.startswith("4."):  # the recording is what this OpenCV 4 gives today
        live = cv2.warpPerspective(image, xform, image.shape[1::-1], borderMode=BORDERS[case["border"]])
        np.testing.assert_array_equal(live, expected)


def test_fixed_point_maps_do_not_depend_on_the_row_band():
    inverse = np.linalg.inv(OPENCV4["xform_flip"]).ravel()
    whole = _fixed_point_maps(inverse, 150, 70, band=70)
    for band in (1, 7, 64):
        for got, want in zip(_fixed_point_maps(inverse, 150, 70, band=band), whole, strict=True):
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "call", META["warpMatrix"], ids=lambda c: f"{c['W']}x{c['H']}_{c['theta']}_{c['phi']}_{c['gamma']}"
)
def test_flip_homography_matches_v06_warp_matrix(call):
    homography, side = flip_homography(
        call["W"], call["H"], theta=call["theta"], phi=call["phi"], gamma=call["gamma"], fv=call["fV"]
    )
    assert side == pytest.approx(call["sideLength"], rel=1e-12)
    np.testing.assert_allclose(homography, np.array(call["M33"]), rtol=0, atol=1e-9)


# (angle, zoom, tx, ty, expected X) for 512x512, spec 4.1
AFFINE_EXAMPLES = [
    (0, 1.04, 10, 0, [[1.04, 0, 0.16], [0, 1.04, -10.24], [0, 0, 1]]),
    (5, 1.04, 10, -5, [[1.036042, 0.090642, -22.524006], [-0.090642, 1.036042, 7.890836], [0, 0, 1]]),
]


@pytest.mark.parametrize("angle, zoom, tx, ty, expected", AFFINE_EXAMPLES)
def test_affine_matrix_spec_examples(angle, zoom, tx, ty, expected):
    xform = warp2d_matrix(512, 512, angle=angle, zoom=zoom, translation_x=tx, translation_y=ty)
    np.testing.assert_allclose(xform, expected, atol=2e-6)


# (source point, destination point) for a=+30 deg, zoom 1 about (256, 256): counter-clockwise on screen
def test_positive_angle_rotates_counter_clockwise():
    xform = warp2d_matrix(512, 512, angle=30, zoom=1, translation_x=0, translation_y=0)
    x, y, w = xform @ [300, 100, 1]
    assert (x / w, y / w) == pytest.approx((216.1, 98.9), abs=0.05)


def test_flip_matrices_spec_examples():
    b = flip_matrix(512, 512, theta=0, phi=0, gamma=0, fv=53)
    np.testing.assert_allclose(b, [[0.998769, 0, 0.497964], [0, 0.998769, 0.497964], [0, 0, 1]], atol=2e-6)
    xform = warp2d_matrix(
        512,
        512,
        angle=0,
        zoom=1.04,
        translation_x=0,
        translation_y=0,
        flip_2d_perspective=True,
        perspective_flip_phi=10,
    )
    expected = [[0.984830, -0.085264, 24.781258], [0, 0.884604, 30.748446], [0, -0.000210768, 1.032179]]
    np.testing.assert_allclose(xform / xform[2, 2] * 1.032179, expected, rtol=2e-5, atol=2e-5)


# A move with a perspective flip, and the same without its translation.
FLIPPED_MOVE = dict(angle=5, zoom=1.1, translation_x=10, translation_y=-6, flip_2d_perspective=True,
                    perspective_flip_theta=10, perspective_flip_gamma=20)
FLIPPED_STILL = dict(FLIPPED_MOVE, translation_x=0, translation_y=0)


def test_v06_flip_drops_translation_and_is_not_identity():
    image = ORACLE["input"]
    moved, still = FLIPPED_MOVE, FLIPPED_STILL
    assert np.array_equal(warp2d(image, **moved), warp2d(image, **still))
    flat = warp2d(image, angle=0, zoom=1, translation_x=0, translation_y=0, flip_2d_perspective=True)
    assert not np.array_equal(flat, image)


def test_corrected_flip_keeps_translation():
    image = ORACLE["input"]
    moved, still = dict(FLIPPED_MOVE, corrected_flip=True), dict(FLIPPED_STILL, corrected_flip=True)
    assert not np.array_equal(warp2d(image, **moved), warp2d(image, **still))
    # With zero flip angles, the corrected flip is exactly the plain warp, translation included.
    plain = dict(angle=5, zoom=1.1, translation_x=10, translation_y=-6)
    flipped = warp2d(image, **plain, flip_2d_perspective=True, corrected_flip=True)
    assert np.array_equal(flipped, warp2d(image, **plain))


@pytest.mark.parametrize(
    "image",
    [ORACLE["input"], ORACLE["input_rect"], ORACLE["input"].astype(np.float32)],
    ids=["square", "rect", "float32"],
)
def test_corrected_flip_at_zero_angles_is_identity(image):
    out = warp2d(
        image,
        angle=0,
        zoom=1,
        translation_x=0,
        translation_y=0,
        flip_2d_perspective=True,
        corrected_flip=True,
    )
    np.testing.assert_array_equal(out, image)
    np.testing.assert_allclose(
        flip_matrix(256, 192, theta=0, phi=0, gamma=0, fv=53, corrected=True), np.eye(3), atol=1e-12
    )


def test_float32_input_stays_float32_and_agrees_with_uint8():
    kwargs = dict(angle=7.5, zoom=1.05, translation_x=-4.25, translation_y=2.5)
    out_f = warp2d(ORACLE["input"].astype(np.float32), **kwargs)
    out_u = warp2d(ORACLE["input"], **kwargs)
    assert out_f.dtype == np.float32
    assert np.abs(out_f - out_u).max() <= 1.0


def test_wrap_border_brings_content_round():
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, 0] = 255
    out = warp2d(image, angle=0, zoom=1, translation_x=-1, translation_y=0, border="wrap")
    assert (out[:, 7] == 255).all() and (out[:, :7] == 0).all()
    out = warp2d(image, angle=0, zoom=1, translation_x=-1, translation_y=0, border="replicate")
    assert (out[:, 7] == 0).all()


@pytest.mark.parametrize(
    "image, kwargs, error",
    [
        (ORACLE["input"], dict(border="mirror"), SettingsError),
        (ORACLE["input"][..., 0], {}, MediaError),
        (ORACLE["input"].astype(np.float64), {}, MediaError),
    ],
)
def test_bad_input_is_a_clear_error(image, kwargs, error):
    with pytest.raises(error, match="border|HxWx3|dtype"):
        warp2d(image, angle=0, zoom=1, translation_x=0, translation_y=0, **kwargs)
