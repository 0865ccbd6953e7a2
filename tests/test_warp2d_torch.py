"""The 2D warp on tensors (issue 27) is ``warp2d``'s frame: OpenCV 4's fixed-point positions and weights."""

import numpy as np
import pytest
import torch

from deforum.errors import MediaError, SettingsError
from deforum.motion.warp2d import warp2d, warp2d_matrix
from deforum.motion.warp2d_torch import fixed_point_positions, inverse_matrix, warp2d_torch

MOTIONS = {
    "rotate+zoom+translate": dict(angle=7.3, zoom=1.07, translation_x=3.3, translation_y=-2.6),
    "zoom out": dict(angle=-3.0, zoom=0.93, translation_x=-5.5, translation_y=4.25),
    "large shift": dict(angle=0.0, zoom=1.0, translation_x=150.0, translation_y=-97.0),
    "v0.6 flip": dict(angle=2.0, zoom=1.02, translation_x=1.0, translation_y=2.0, flip_2d_perspective=True,
                      perspective_flip_theta=5, perspective_flip_phi=3, perspective_flip_gamma=-4),
    "corrected flip": dict(angle=2.0, zoom=1.02, translation_x=1.0, translation_y=2.0, flip_2d_perspective=True,
                           perspective_flip_theta=-6, perspective_flip_phi=8, perspective_flip_gamma=2,
                           corrected_flip=True),
}


def textured(height, width, dtype):
    rng = np.random.default_rng(height * width)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return image if dtype == np.uint8 else (image.astype(np.float32) * np.float32(0.97) + np.float32(0.3))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("border", ["wrap", "replicate"])
@pytest.mark.parametrize("motion", sorted(MOTIONS))
@pytest.mark.parametrize("size", [(64, 64), (40, 72)])
def test_the_tensor_warp_is_the_opencv_warp(size, motion, border, dtype):
    image = textured(*size, dtype)
    expected = warp2d(image, border=border, **MOTIONS[motion])
    got = warp2d_torch(torch.from_numpy(image), border=border, **MOTIONS[motion])
    assert got.dtype == torch.from_numpy(expected).dtype and got.shape == expected.shape
    difference = np.abs(got.numpy().astype(np.float64) - expected.astype(np.float64))
    assert difference.max() <= (1 if dtype == np.uint8 else 1e-3), (motion, border, difference.max())
    assert difference.mean() < 1e-3  # the same arithmetic: (almost) every pixel is identical


def test_the_borders_differ_where_the_frame_moves_in_from_outside():
    image = textured(64, 64, np.uint8)
    motion = MOTIONS["large shift"]
    wrap = warp2d_torch(torch.from_numpy(image), border="wrap", **motion).numpy()
    replicate = warp2d_torch(torch.from_numpy(image), border="replicate", **motion).numpy()
    # wrap shows the frame tiled (a shift by whole pixels is a roll); replicate repeats the edge pixel
    assert np.array_equal(wrap, np.roll(image, (-97, 150), axis=(0, 1)))
    assert (replicate[:, :3] == replicate[:, :1]).all()


def test_the_positions_are_opencv_4s_maps():
    from deforum.motion.warp2d import _fixed_point_maps

    xform = warp2d_matrix(72, 40, **MOTIONS["v0.6 flip"])
    m = inverse_matrix(xform)
    positions, table_index = _fixed_point_maps(np.asarray(m), 72, 40)
    ix, iy, fx, fy = fixed_point_positions(m, 72, 40, "cpu")
    assert np.array_equal(ix.numpy(), positions[..., 0]) and np.array_equal(iy.numpy(), positions[..., 1])
    assert np.array_equal((fy * 32 + fx).numpy(), table_index)


def test_a_singular_matrix_reads_the_top_left_pixel_as_opencv():
    image = textured(64, 64, np.uint8)
    motion = dict(angle=0.0, zoom=0.0, translation_x=0.0, translation_y=0.0)
    got = warp2d_torch(torch.from_numpy(image), **motion).numpy()
    assert np.array_equal(got, warp2d(image, **motion))
    assert (got == image[0, 0]).all()


def test_bad_input_names_the_problem():
    with pytest.raises(SettingsError, match="border='mirror'"):
        warp2d_torch(torch.zeros(8, 8, 3), angle=0, zoom=1, translation_x=0, translation_y=0, border="mirror")
    with pytest.raises(MediaError, match="HxWx3"):
        warp2d_torch(torch.zeros(8, 8), angle=0, zoom=1, translation_x=0, translation_y=0)
    with pytest.raises(MediaError, match="dtype"):
        warp2d_torch(torch.zeros(8, 8, 3, dtype=torch.float64), angle=0, zoom=1, translation_x=0, translation_y=0)
