"""deforum.motion.hybrid: the video's motion applied to the render, and the composite of the video frame."""

import cv2
import numpy as np
import pytest

from deforum.errors import MediaError, SettingsError
from deforum.motion.flow import CV2_METHODS
from deforum.motion.hybrid import (
    IDENTITY,
    HybridMotion,
    apply_motion,
    composite,
    composite_for_frame,
    composite_mask,
    motion_for_frame,
    normalized_depth,
    video_frame_index,
    video_frame_pair,
    video_motion,
)
from deforum.plan import make_plan
from deforum.testing import settings_for_test
from tests.helpers import measured_shift, shifted, texture

SIZE = 128
SHIFTS = [(3.4, -2.2), (-5.0, 1.5)]  # both axes over 1 px: a motion the wrong way round is off by > 2 px








def uniform(value, size: int = 4, dtype=np.uint8) -> np.ndarray:
    """A size x size RGB image of one colour (a number: grey)."""
    return np.broadcast_to(np.asarray(value, np.float32), (size, size, 3)).astype(dtype)


# --- which video frame ---------------------------------------------------------------------------------------


def test_video_frame_index_is_the_frame_then_the_last_one():
    assert [video_frame_index(j, 3) for j in range(6)] == [0, 1, 2, 2, 2, 2]
    assert [video_frame_pair(j, 3) for j in range(5)] == [(0, 0), (0, 1), (1, 2), (2, 2), (2, 2)]
    with pytest.raises(MediaError, match="no frames"):
        video_frame_index(0, 0)


# --- motion ----------------------------------------------------------------------------------------------------


MOTIONS = [("Optical Flow", method) for method in CV2_METHODS] + [("Perspective", None), ("Affine", None)]


@pytest.mark.parametrize(("kind", "method"), MOTIONS)
@pytest.mark.parametrize(("dx", "dy"), SHIFTS)
def test_the_render_moves_as_the_video_moved(kind, method, dx, dy):
    video = [texture(SIZE, seed=1), None]
    video[1] = shifted(video[0], dx, dy)
    motion = video_motion(video[0], video[1], kind, method or "DIS Medium")
    assert motion.kind == kind
    render = texture(SIZE, seed=2, sigma=1.5).astype(np.float32)  # another image: the loop's float32 frame
    moved = apply_motion(render, motion)
    assert moved.dtype == np.float32 and moved.shape == render.shape
    sx, sy = measured_shift(render, moved)
    assert abs(sx - dx) <= 1.0 and abs(sy - dy) <= 1.0, (kind, method, (dx, dy), (sx, sy))
    # and the motion itself is the video's, well within a pixel
    if kind == "Optical Flow":
        median = np.median(motion.flow[16:-16, 16:-16].reshape(-1, 2), axis=0)
        np.testing.assert_allclose(median, [-dx, -dy], atol=0.25)  # the backward flow: new frame -> previous
    else:
        np.testing.assert_allclose(motion.matrix, [[1, 0, dx], [0, 1, dy], [0, 0, 1]], atol=0.15)


def test_uint8_frames_and_images_keep_their_dtype():
    prev = texture(SIZE, seed=3)
    motion = video_motion(prev.astype(np.float32), shifted(prev, 2.0, 2.0).astype(np.float32), "Affine")
    out = apply_motion(texture(SIZE, seed=4), motion)
    assert out.dtype == np.uint8
    np.testing.assert_allclose(motion.matrix[:2, 2], [2.0, 2.0], atol=0.15)


@pytest.mark.parametrize("kind", ["Perspective", "Affine"])
def test_a_rotation_and_zoom_of_the_video_is_fitted(kind):
    prev = texture(SIZE, seed=5, sigma=1.5)
    true = np.vstack([cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), 4.0, 1.05), [0, 0, 1]])
    true[:2, 2] += [1.5, -2.0]
    frame = cv2.warpPerspective(prev, true, (SIZE, SIZE), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    motion = video_motion(prev, frame, kind)
    corners = np.float32([[[16, 16]], [[112, 16]], [[112, 112]], [[16, 112]]])
    np.testing.assert_allclose(cv2.perspectiveTransform(corners, motion.matrix),
                               cv2.perspectiveTransform(corners, true), atol=0.5)


@pytest.mark.parametrize(("kind", "method"), MOTIONS)
def test_a_flat_video_is_the_identity(kind, method):
    flat = uniform(120, SIZE)
    motion = video_motion(flat, flat.copy(), kind, method or "DIS Medium")
    if kind != "Optical Flow":
        assert motion is IDENTITY  # no features to match: the identity, not an error
    render = texture(SIZE, seed=6).astype(np.float32)
    np.testing.assert_allclose(apply_motion(render, motion), render, atol=0.5)


def test_the_flow_factor_scales_the_motion():
    prev = texture(SIZE, seed=7)
    motion = video_motion(prev, shifted(prev, 4.0, -4.0), "Optical Flow", "DIS Medium")
    render = texture(SIZE, seed=8, sigma=1.5)
    np.testing.assert_array_equal(apply_motion(render, motion, flow_factor=0.0), render)
    sx, sy = measured_shift(render, apply_motion(render, motion, flow_factor=0.5))
    assert abs(sx - 2.0) <= 1.0 and abs(sy + 2.0) <= 1.0, (sx, sy)


def test_border_mode_fills_what_moves_in():
    image = texture(32, seed=9)
    move = HybridMotion("Affine", matrix=np.array([[1.0, 0, 2], [0, 1, 0], [0, 0, 1]]))  # 2 px right
    replicate = apply_motion(image, move, border="replicate")
    wrap = apply_motion(image, move, border="wrap")
    np.testing.assert_array_equal(replicate[:, 2:], image[:, :-2])
    np.testing.assert_array_equal(replicate[:, :2], image[:, :1].repeat(2, axis=1))
    np.testing.assert_array_equal(wrap[:, :2], image[:, -2:])
    flow = np.zeros((32, 32, 2), np.float32)
    flow[..., 0] = -2  # the same move as a backward flow
    np.testing.assert_array_equal(apply_motion(image, HybridMotion("Optical Flow", flow=flow), border="wrap"), wrap)
    with pytest.raises(SettingsError, match="border"):
        apply_motion(image, move, border="reflect")


def test_use_prev_img_pulls_the_previous_image_toward_the_video_frame():
    settings = settings_for_test(animation_mode="2D", max_frames=2, hybrid_motion="Optical Flow",
                                 hybrid_motion_use_prev_img=True, hybrid_flow_method="DIS Medium")
    values = make_plan(settings, 1).rows[1].values
    prev_image = texture(SIZE, seed=10).astype(np.float32)
    video_frame = shifted(prev_image.astype(np.uint8), 3.0, -2.0)
    unrelated_prev_video = texture(SIZE, seed=11)  # not used: the flow is prev image -> video frame
    out = motion_for_frame(prev_image, unrelated_prev_video, video_frame, settings.hybrid, values)
    before = np.abs(prev_image - video_frame).mean()
    after = np.abs(out[16:-16, 16:-16] - video_frame[16:-16, 16:-16]).mean()
    assert after < before / 4, (before, after)


def test_unknown_motion_is_a_settings_error():
    frame = texture(32)
    with pytest.raises(SettingsError, match="Optical Flow, Perspective, Affine"):
        video_motion(frame, frame, "Homography")
    with pytest.raises(MediaError, match="differ in size"):
        video_motion(frame, texture(64), "Affine")
    assert video_motion(frame, texture(64), "None") is IDENTITY


# --- composite -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_composite_none_mask_blends_by_alpha(dtype):
    image, video = uniform(100, dtype=dtype), uniform(200, dtype=dtype)
    mask = composite_mask("None", image, video)
    np.testing.assert_array_equal(mask, np.ones((4, 4), np.float32))
    out = composite(image, video, 0.25, mask)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, uniform(125, dtype=dtype))  # 100 * 0.75 + 200 * 0.25
    np.testing.assert_array_equal(composite(image, video, 0.0, mask), image)
    np.testing.assert_array_equal(composite(image, video, 1.0, mask), video)
    np.testing.assert_array_equal(composite(image, video, 1.7), video)  # clamped to 1
    np.testing.assert_array_equal(composite(image, video, -0.5), image)  # clamped to 0


def test_composite_with_a_mask_weights_each_pixel():
    image, video = uniform(0, 2, np.float32), uniform(200, 2, np.float32)
    mask = np.array([[0.0, 0.5], [1.0, 0.25]], np.float32)
    out = composite(image, video, 0.5, mask)
    np.testing.assert_allclose(out[..., 0], [[0, 50], [100, 25]])  # 200 * 0.5 * mask
    np.testing.assert_allclose(out[..., 1], out[..., 2])


def test_depth_mask_is_the_normalized_depth_farther_brighter():
    image, video = uniform(0, 2, np.float32), uniform(200, 2, np.float32)
    depth = np.array([[1.0, 2.0], [3.0, 5.0]], np.float32)  # larger = farther (deforum.motion.depth)
    mask = composite_mask("Depth", image, video, depth=depth)
    np.testing.assert_allclose(mask, [[0, 0.25], [0.5, 1.0]])
    np.testing.assert_allclose(composite(image, video, 1.0, mask)[..., 0], [[0, 50], [100, 200]])
    np.testing.assert_allclose(normalized_depth(np.full((2, 2), 7.0), (2, 2)), np.zeros((2, 2)))  # flat: black


def test_depth_masks_call_the_depth_function_with_their_own_image():
    image, video = uniform(10, 2), uniform(20, 2, np.float32)
    seen = []

    def depth_of(frame):
        seen.append((frame.dtype, int(frame[0, 0, 0])))
        return np.array([[0.0, 1.0], [2.0, 4.0]]) if frame[0, 0, 0] == 10 else np.array([[4.0, 2.0], [1.0, 0.0]])

    np.testing.assert_allclose(composite_mask("Depth", image, video, depth=depth_of, video_depth=depth_of),
                               [[0, 0.25], [0.5, 1.0]])
    np.testing.assert_allclose(composite_mask("Video Depth", image, video, depth=depth_of, video_depth=depth_of),
                               [[1.0, 0.5], [0.25, 0]])
    assert seen == [(np.uint8, 10), (np.uint8, 20)]  # the image, then the (uint8-converted) video frame
    with pytest.raises(SettingsError, match="'Video Depth' needs a depth map"):
        composite_mask("Video Depth", image, video, depth=depth_of)
    with pytest.raises(MediaError, match="one size"):
        composite_mask("Depth", image, video, depth=np.zeros((3, 3)))


def test_blend_mask_is_the_grey_of_the_blend():
    image, video = uniform(100), uniform(200)
    np.testing.assert_allclose(composite_mask("Blend", image, video, blend_alpha=0.25), 125 / 255, atol=1e-6)
    np.testing.assert_allclose(composite_mask("Blend", image, video, blend_alpha=1.5), 200 / 255, atol=1e-6)
    red, black = uniform((255, 0, 0)), uniform(0)
    np.testing.assert_allclose(composite_mask("Blend", red, black, blend_alpha=0.0), 0.299, atol=1e-6)  # BT.601


def test_difference_mask_is_the_grey_of_the_absolute_difference():
    image = np.zeros((1, 2, 3), np.uint8)
    image[0, 1] = (0, 255, 0)
    video = np.full((1, 2, 3), 0, np.uint8)
    video[0, 0] = (50, 50, 50)
    np.testing.assert_allclose(composite_mask("Difference", image, video), [[50 / 255, 0.587]], atol=1e-6)
    np.testing.assert_allclose(composite_mask("Difference", uniform(230), uniform(50)), 180 / 255, atol=1e-6)


def test_contrast_auto_contrast_and_inverse_in_that_order():
    image, video = np.zeros((1, 3, 3), np.float32), np.zeros((1, 3, 3), np.float32)
    depth = np.array([[0.0, 0.6, 1.0]])  # normalized: 0, 0.6, 1
    np.testing.assert_allclose(composite_mask("Depth", image, video, depth=depth, contrast=2.0),
                               [[0.0, 0.7, 1.0]])  # (m - 0.5) * 2 + 0.5, clipped
    np.testing.assert_allclose(composite_mask("Depth", image, video, depth=depth, contrast=0.5),
                               [[0.25, 0.55, 0.75]])
    np.testing.assert_allclose(composite_mask("Depth", image, video, depth=depth, contrast=0.5, auto_contrast=True),
                               [[0.0, 0.6, 1.0]])  # 0.25..0.75 stretched back to 0..1
    np.testing.assert_allclose(composite_mask("Depth", image, video, depth=depth, contrast=0.5, inverse=True),
                               [[0.75, 0.45, 0.25]])
    np.testing.assert_allclose(composite_mask("Depth", image, video, depth=depth, contrast=0.5, auto_contrast=True,
                                              inverse=True), [[1.0, 0.4, 0.0]], atol=1e-6)
    flat = composite_mask("Blend", uniform(40, 2), uniform(40, 2), auto_contrast=True)
    np.testing.assert_allclose(flat, 40 / 255, atol=1e-6)  # a flat mask is not stretched


def test_inverse_of_a_difference_mask_keeps_the_image_where_they_differ():
    image = np.zeros((1, 2, 3), np.uint8)
    video = np.zeros((1, 2, 3), np.uint8)
    video[0, 1] = 255
    mask = composite_mask("Difference", image, video, inverse=True)
    np.testing.assert_allclose(mask, [[1.0, 0.0]], atol=1e-6)
    np.testing.assert_array_equal(composite(image, video, 1.0, mask), image)


def test_composite_for_frame_reads_the_settings_and_the_frame_values():
    settings = settings_for_test(animation_mode="2D", max_frames=3, hybrid_composite="Normal",
                                 hybrid_comp_mask_type="Blend", hybrid_comp_alpha_schedule="0:(0), 2:(1)",
                                 hybrid_comp_mask_blend_alpha_schedule="0:(0.5)",
                                 hybrid_comp_mask_contrast_schedule="0:(2)", hybrid_comp_mask_inverse=True)
    rows = make_plan(settings, 1).rows
    image, video = uniform(100, 2, np.float32), uniform(200, 2, np.float32)
    # Blend mask: grey 150/255; contrast 2: (150/255 - 0.5) * 2 + 0.5; inverse: 1 - that
    mask = 1 - ((150 / 255 - 0.5) * 2 + 0.5)
    expected = [100 * (1 - a * mask) + 200 * a * mask for a in (0.0, 0.5, 1.0)]
    got = [composite_for_frame(image, video, settings.hybrid, row.values)[0, 0, 0] for row in rows]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_composite_checks_the_images():
    with pytest.raises(MediaError, match="resize the video frame"):
        composite(uniform(0, 4), uniform(0, 8), 0.5)
    with pytest.raises(MediaError, match="uint8 or float32"):
        composite(uniform(0, 4, np.float64), uniform(0, 4, np.float64), 0.5)
    with pytest.raises(SettingsError, match="None, Depth, Video Depth, Blend, Difference"):
        composite_mask("Luma", uniform(0), uniform(0))


def test_the_names_are_the_field_tables():
    from deforum.motion import hybrid
    from deforum.settings import fields

    assert hybrid.MOTIONS == fields.HYBRID_MOTIONS
    assert hybrid.MASK_TYPES == fields.HYBRID_MASK_TYPES
