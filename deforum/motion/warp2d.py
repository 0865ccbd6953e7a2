"""2D motion: zoom and rotation about the centre, translation, optional perspective flip (spec section 4).

The default reproduces Deforum v0.6 pixel for pixel (OpenCV 4's fixed-point ``warpPerspective``, on OpenCV 4
and 5 alike: see ``warp_perspective_v4``), including two defects of its perspective flip (spec 12.1 #4-5):
the translation is dropped while the flip is on, and the flip is not the identity at zero angles.
``corrected_flip=True`` keeps the translation and uses a true projection, so zero angles leave the frame
untouched.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from deforum.errors import MediaError, SettingsError

BORDERS = {"wrap": cv2.BORDER_WRAP, "replicate": cv2.BORDER_REPLICATE}


def warp2d(
    image: np.ndarray,
    *,
    angle: float,
    zoom: float,
    translation_x: float,
    translation_y: float,
    border: str = "replicate",
    flip_2d_perspective: bool = False,
    perspective_flip_theta: float = 0,
    perspective_flip_phi: float = 0,
    perspective_flip_gamma: float = 0,
    perspective_flip_fv: float = 53,
    corrected_flip: bool = False,
) -> np.ndarray:
    """Warp an HxWx3 uint8 or float32 image with one frame's 2D motion; the result has the input's dtype."""
    _check_image(image)
    if border not in BORDERS:
        raise SettingsError(f"border={border!r} is not allowed; use one of {sorted(BORDERS)}")
    height, width = image.shape[:2]
    xform = warp2d_matrix(
        width,
        height,
        angle=angle,
        zoom=zoom,
        translation_x=translation_x,
        translation_y=translation_y,
        flip_2d_perspective=flip_2d_perspective,
        perspective_flip_theta=perspective_flip_theta,
        perspective_flip_phi=perspective_flip_phi,
        perspective_flip_gamma=perspective_flip_gamma,
        perspective_flip_fv=perspective_flip_fv,
        corrected_flip=corrected_flip,
    )
    return warp_perspective_v4(image, xform, BORDERS[border])


# OpenCV 4's bilinear warps work in fixed point: each source position is rounded to 1/32 pixel
# (INTER_BITS = 5) and the four weights come from a precomputed 32x32 table. OpenCV 5's warpPerspective
# uses the exact fractional position instead, so on sharp edges it differs from v0.6 by up to 4 levels in
# ~10% of the pixels of a 10-degree rotation. cv2.remap with fixed-point maps (int16 positions plus a table
# index) still runs the table arithmetic on both versions, so the maps are computed here as OpenCV 4's
# WarpPerspectiveInvoker does (imgwarp.cpp), and the frame is v0.6's pixel for pixel on OpenCV 4 and 5.
_INTER_BITS = 5
_INTER_TAB_SIZE = 1 << _INTER_BITS
_BLOCK_SZ = 32


def warp_perspective_v4(image: np.ndarray, xform: np.ndarray, border_mode: int) -> np.ndarray:
    """``cv2.warpPerspective(image, xform, (W, H), borderMode=border_mode)`` with OpenCV 4's arithmetic.

    Bilinear, output the size of the input, ``xform`` maps source to destination (no WARP_INVERSE_MAP).
    """
    height, width = image.shape[:2]
    # As warpPerspective: invert in double with LU (a singular matrix gives zeros, so every pixel reads (0, 0)).
    inverse = cv2.invert(np.asarray(xform, dtype=np.float64), flags=cv2.DECOMP_LU)[1]
    positions, table_index = _fixed_point_maps(inverse.ravel(), width, height)
    return cv2.remap(image, positions, table_index, cv2.INTER_LINEAR, borderMode=border_mode)


def _fixed_point_maps(m: np.ndarray, width: int, height: int, band: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV 4's per-pixel source positions for the inverse matrix ``m`` (row-major, 9 values).

    Returns the integer positions (HxWx2 int16) and the 1/32-pixel fractions as a table index
    (HxW uint16, ``32 * frac_y + frac_x``): the CV_16SC2 + CV_16UC1 map pair that ``cv2.remap`` takes.
    OpenCV evaluates each row in blocks of ``block_w`` columns from the block's first column; the same
    double arithmetic in the same order is done here, so even a position on a 1/64 boundary rounds alike.
    Rows are done ``band`` at a time to stay in cache (the result does not depend on it).
    """
    block_h = min(_BLOCK_SZ // 2, height)
    block_w = min(_BLOCK_SZ * _BLOCK_SZ // block_h, width)
    columns = np.arange(width)
    x = (columns - columns % block_w).astype(np.float64)  # the block's first column
    x1 = (columns % block_w).astype(np.float64)  # the column within the block
    at_block = (m[0] * x, m[3] * x, m[6] * x)
    in_block = (m[0] * x1, m[3] * x1, m[6] * x1)
    int_range = (float(np.iinfo(np.int32).min), float(np.iinfo(np.int32).max))
    positions = np.empty((height, width, 2), dtype=np.int16)
    table_index = np.empty((height, width), dtype=np.uint16)
    for top in range(0, height, band):
        y = np.arange(top, min(top + band, height), dtype=np.float64)[:, None]
        w = at_block[2] + m[7] * y  # W0 = M[6]*x + M[7]*(y + y1) + M[8]
        w += m[8]
        w += in_block[2]  # W = W0 + M[6]*x1
        nonzero = w != 0
        np.divide(_INTER_TAB_SIZE, w, out=w, where=nonzero)  # W = W ? INTER_TAB_SIZE/W : 0
        w[~nonzero] = 0
        fixed = []
        for axis, (row_step, offset) in enumerate(((m[1], m[2]), (m[4], m[5]))):
            value = at_block[axis] + row_step * y  # X0 = M[0]*x + M[1]*(y + y1) + M[2]
            value += offset
            value += in_block[axis]
            value *= w  # (X0 + M[0]*x1)*W, clamped to int, rounded half to even (saturate_cast<int>)
            np.clip(value, *int_range, out=value)
            fixed.append(np.rint(value, out=value).astype(np.int32))
        fixed_x, fixed_y = fixed
        rows = slice(top, top + y.shape[0])
        positions[rows, :, 0] = np.clip(fixed_x >> _INTER_BITS, -32768, 32767)  # saturate_cast<short>
        positions[rows, :, 1] = np.clip(fixed_y >> _INTER_BITS, -32768, 32767)
        fraction = _INTER_TAB_SIZE - 1
        table_index[rows] = (fixed_y & fraction) * _INTER_TAB_SIZE + (fixed_x & fraction)
    return positions, table_index


def warp2d_matrix(
    width: int,
    height: int,
    *,
    angle: float,
    zoom: float,
    translation_x: float,
    translation_y: float,
    flip_2d_perspective: bool = False,
    perspective_flip_theta: float = 0,
    perspective_flip_phi: float = 0,
    perspective_flip_gamma: float = 0,
    perspective_flip_fv: float = 53,
    corrected_flip: bool = False,
) -> np.ndarray:
    """The 3x3 source-to-destination matrix that ``warp2d`` hands to ``cv2.warpPerspective``."""
    # v0.6 stores the translation in a float32 matrix; keep that rounding so matrices match bit for bit.
    translate = np.eye(3)
    translate[:2, 2] = np.float32([translation_x, translation_y])
    center = (width // 2, height // 2)
    rotate = np.vstack([cv2.getRotationMatrix2D(center, float(angle), float(zoom)), [0, 0, 1]])
    if not flip_2d_perspective:
        return rotate @ translate
    angles = dict(
        theta=perspective_flip_theta,
        phi=perspective_flip_phi,
        gamma=perspective_flip_gamma,
        fv=perspective_flip_fv,
    )
    if corrected_flip:
        return flip_matrix(width, height, **angles, corrected=True) @ rotate @ translate
    # v0.6 called np.matmul(bM, rot_mat, trans_mat): the third argument is numpy's output buffer, so the
    # translation never reaches the transform.
    return flip_matrix(width, height, **angles) @ rotate


def flip_matrix(
    width: int, height: int, *, theta: float, phi: float, gamma: float, fv: float, corrected: bool = False
) -> np.ndarray:
    """Homography of the perspective flip (spec 4.3): the frame tilted in 3D and seen through a camera.

    v0.6 leaves the projection's P33 at 1 and fits the homography to float32 corners; ``corrected`` uses the
    true projection (P33 = 0) in float64, which is exactly the identity at zero angles.
    """
    homography, side = flip_homography(width, height, theta=theta, phi=phi, gamma=gamma, fv=fv, corrected=corrected)
    post = np.eye(3)
    # v0.6 shifts by (W - side)/2 with a float32 matrix.
    shift = [(width - side) / 2, (height - side) / 2]
    post[:2, 2] = shift if corrected else np.float32(shift)
    return homography @ post


def flip_homography(
    width: int, height: int, *, theta: float, phi: float, gamma: float, fv: float, corrected: bool = False
) -> tuple[np.ndarray, float]:
    """The tilted frame's homography onto a square of ``side`` pixels, and ``side`` (v0.6 ``warpMatrix``)."""
    half_fov = math.radians(fv / 2.0)
    diagonal = math.sqrt(width * width + height * height)
    side = diagonal / math.cos(half_fov)
    h = diagonal / (2.0 * math.sin(half_fov))
    near, far = h - diagonal / 2.0, h + diagonal / 2.0

    to_camera = np.eye(4)
    to_camera[2, 3] = -h
    projection = np.eye(4)
    projection[0, 0] = projection[1, 1] = 1.0 / math.tan(half_fov)
    projection[2, 2] = -(far + near) / (far - near)
    projection[2, 3] = -(2.0 * far * near) / (far - near)
    projection[3, 2] = -1.0
    if corrected:
        projection[3, 3] = 0.0
    full = projection @ to_camera @ _rotation_xyz(phi, gamma, theta)

    if corrected:
        # Points of the plane z = 0 map through rows and columns (x, y, w) of the 4x4: an exact homography.
        plane = full[np.ix_([0, 1, 3], [0, 1, 3])]
        to_centred = np.array([[1.0, 0, -width / 2], [0, 1.0, -height / 2], [0, 0, 1]])
        to_square = np.array([[side / 2, 0, side / 2], [0, side / 2, side / 2], [0, 0, 1.0]])
        homography = to_square @ plane @ to_centred
        return homography / homography[2, 2], side  # normalised like getPerspectiveTransform

    corners = np.array(
        [
            [
                [-width / 2, height / 2, 0.0],
                [width / 2, height / 2, 0.0],
                [width / 2, -height / 2, 0.0],
                [-width / 2, -height / 2, 0.0],
            ]
        ]
    )
    projected = cv2.perspectiveTransform(corners, full)[0, :, :2]
    points_in = (corners[0, :, :2] + [width / 2.0, height / 2.0]).astype(np.float32)
    points_out = ((projected + [1.0, 1.0]) * (0.5 * side)).astype(np.float32)
    return cv2.getPerspectiveTransform(points_in, points_out), side


def _rotation_xyz(phi: float, gamma: float, theta: float) -> np.ndarray:
    """4x4 rotation Rx(phi) . Ry(gamma) . Rz(theta), angles in degrees."""
    rx, ry, rz = (math.radians(a) for a in (phi, gamma, theta))
    r = np.eye(4)
    r[:3, :3] = (
        np.array([[1, 0, 0], [0, math.cos(rx), -math.sin(rx)], [0, math.sin(rx), math.cos(rx)]])
        @ np.array([[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]])
        @ np.array([[math.cos(rz), -math.sin(rz), 0], [math.sin(rz), math.cos(rz), 0], [0, 0, 1]])
    )
    return r


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise MediaError(f"2D warp needs an HxWx3 image array; got {type(image).__name__} of shape {shape}")
    if image.dtype not in (np.uint8, np.float32):
        raise MediaError(f"2D warp needs a uint8 or float32 image; got dtype {image.dtype}")
