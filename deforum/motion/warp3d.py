"""3D motion: the v0.6 depth-warp camera in closed form, in torch (spec section 5).

Each output pixel's normalised position (u, v) is placed at its depth z, moved by the camera (rotation R,
translation tau, PyTorch3D's row-vector convention), re-projected with the field-of-view gain K, and the
image is sampled with ``grid_sample`` at the pixel-centre grid minus that flow. near/far planes only enter
the discarded z row of the projection, so they have no effect (kept in the signature for settings files).

``correct_aspect=False`` is v0.6 (x gain K*h/w on a [-1, 1] x [-1, 1] world, so z-zoom and roll are
stretched on non-square frames); ``correct_aspect=True`` puts the world x on the same pixel scale as y
(x = u*w/h), so zoom and roll are isotropic. Square frames are identical in both.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from deforum.errors import MediaError, SettingsError

TRANSLATION_SCALE = 1.0 / 200.0  # v0.6: "matches Disco"
SAMPLE_OFFSET = 1 / 512 - 0.0001  # added before sampling so an identity warp reproduces uint8 input exactly
PADDING_MODES = ("border", "reflection", "zeros")
SAMPLING_MODES = ("bicubic", "bilinear", "nearest")


def warp3d(
    image: np.ndarray | torch.Tensor,
    depth: np.ndarray | torch.Tensor | None,
    *,
    translation_x: float,
    translation_y: float,
    translation_z: float,
    rotation_3d_x: float,
    rotation_3d_y: float,
    rotation_3d_z: float,
    fov: float = 40,
    near_plane: float = 200,
    far_plane: float = 10000,
    padding_mode: str = "border",
    sampling_mode: str = "bicubic",
    device: str | torch.device = "cpu",
    correct_aspect: bool = False,
) -> np.ndarray | torch.Tensor:
    """Warp an HxWx3 image (uint8 or float32; numpy, or a torch tensor on any device) by one frame's camera.

    ``depth`` is an HxW map used as z (None: a flat plane at z = 1). Numpy in gives numpy out of the same
    dtype; a tensor in gives a tensor of the same dtype on the same device (frames can stay on the GPU).
    """
    del near_plane, far_plane  # no effect in v0.6 (spec 5.2); accepted so settings map one to one
    if padding_mode not in PADDING_MODES:
        raise SettingsError(f"padding_mode={padding_mode!r} is not allowed; use one of {list(PADDING_MODES)}")
    if sampling_mode not in SAMPLING_MODES:
        raise SettingsError(f"sampling_mode={sampling_mode!r} is not allowed; use one of {list(SAMPLING_MODES)}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise MediaError(f"3D warp needs an HxWx3 image; got shape {tuple(image.shape)}")
    height, width = image.shape[:2]
    is_tensor = isinstance(image, torch.Tensor)
    target = image.device if is_tensor else torch.device(device)
    if depth is not None:
        if depth.shape != (height, width):
            raise MediaError(f"depth map shape {tuple(depth.shape)} does not match the image ({height}, {width})")
        depth = torch.as_tensor(depth, dtype=torch.float32, device=target)

    grid = sampling_grid(
        height,
        width,
        depth,
        translation=(translation_x, translation_y, translation_z),
        rotation=(rotation_3d_x, rotation_3d_y, rotation_3d_z),
        fov=fov,
        correct_aspect=correct_aspect,
        device=target,
    )
    if is_tensor or target.type != "cpu":
        pixels = torch.as_tensor(image).to(target).to(torch.float32).permute(2, 0, 1).unsqueeze(0)
        warped = _sample(pixels + SAMPLE_OFFSET, grid, sampling_mode, padding_mode)
        warped = warped[0].clamp(0, 255).permute(1, 2, 0)
        if is_tensor:
            return warped.to(image.dtype)  # float -> uint8 truncates, as numpy's astype did in v0.6
        return warped.cpu().numpy().astype(image.dtype)
    # CPU, numpy in and out: only grid_sample runs in torch (its thread pool stalls when the CPU is busy).
    pixels = image.transpose(2, 0, 1)[None].astype(np.float32) + np.float32(SAMPLE_OFFSET)
    warped = _sample(torch.from_numpy(pixels), grid, sampling_mode, padding_mode).numpy()
    return np.clip(warped[0], 0, 255).transpose(1, 2, 0).astype(image.dtype)


def _sample(pixels: torch.Tensor, grid: torch.Tensor, mode: str, padding_mode: str) -> torch.Tensor:
    return F.grid_sample(pixels, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def rotation_matrix(
    rotation_3d_x: float, rotation_3d_y: float, rotation_3d_z: float, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """3x3 float32 R = Rx . Ry . Rz of the Euler angles in degrees ("XYZ", as v0.6 passed to PyTorch3D)."""
    angles = torch.tensor(
        [math.radians(a) for a in (rotation_3d_x, rotation_3d_y, rotation_3d_z)],
        dtype=torch.float32,
        device=device,
    )
    cos, sin = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(cos[0]), torch.zeros_like(cos[0])
    rx = torch.stack([one, zero, zero, zero, cos[0], -sin[0], zero, sin[0], cos[0]]).view(3, 3)
    ry = torch.stack([cos[1], zero, sin[1], zero, one, zero, -sin[1], zero, cos[1]]).view(3, 3)
    rz = torch.stack([cos[2], -sin[2], zero, sin[2], cos[2], zero, zero, zero, one]).view(3, 3)
    return rx @ ry @ rz


def sampling_grid(
    height: int,
    width: int,
    depth: torch.Tensor | None,
    *,
    translation: tuple[float, float, float],
    rotation: tuple[float, float, float],
    fov: float,
    correct_aspect: bool = False,
    device: str | torch.device = "cpu",
    numpy_on_cpu: bool = True,
) -> torch.Tensor:
    """The 1xHxWx2 ``grid_sample`` grid (v0.6 ``offset_coords_2d``): pixel centres minus the camera flow.

    On the CPU it is computed with numpy unless ``numpy_on_cpu`` is False (same float32 results).
    """
    # The formula below is plain arithmetic on float32 arrays and float32-valued scalars, so it runs on
    # numpy arrays on the CPU (no thread pool; identical float32 results) and on torch tensors elsewhere.
    device = torch.device(device)
    on_cpu = device.type == "cpu" and numpy_on_cpu
    tx, ty, tz = translation
    tau = [_f32(-tx * TRANSLATION_SCALE), _f32(ty * TRANSLATION_SCALE), _f32(-tz * TRANSLATION_SCALE)]
    r = rotation_matrix(*rotation).tolist()
    gain_y = 1.0 / math.tan(math.radians(fov) / 2)
    # v0.6's camera has aspect w/h on a world that spans [-1, 1] on both axes; the corrected camera
    # stretches the world's x to the same pixel scale as y instead.
    gain_x = _f32(gain_y * height / width)
    gain_y = _f32(gain_y)
    x_scale = width / height if correct_aspect else 1.0

    def line(n: int, scale: float = 1.0) -> torch.Tensor:
        values = torch.linspace(-1.0, 1.0, n, dtype=torch.float32, device=device) * scale
        return values.numpy() if on_cpu else values

    u, v = line(width, x_scale).reshape(1, width), line(height).reshape(height, 1)
    # Pixel centres (2j + 1)/w - 1, computed as affine_grid(align_corners=False) does.
    centre_x = line(width, (width - 1) / width).reshape(1, width)
    centre_y = line(height, (height - 1) / height).reshape(height, 1)
    if depth is None:
        z = np.ones((height, width), np.float32) if on_cpu else torch.ones_like(v * u)
    else:
        z = depth.cpu().numpy() if on_cpu else depth

    # (X, Y, Z) = (u, v, z) . R + tau, as row vectors; the u and v terms are a row plus a column.
    x_new = (u * r[0][0] + tau[0]) + v * r[1][0] + z * r[2][0]
    y_new = (u * r[0][1] + tau[1]) + v * r[1][1] + z * r[2][1]
    z_new = (u * r[0][2] + tau[2]) + v * r[1][2] + z * r[2][2]
    with np.errstate(divide="ignore", invalid="ignore"):  # a depth of 0 is reported as a FrameError, later
        grid_x = centre_x - gain_x * (x_new / z_new - u / z)
        grid_y = centre_y - gain_y * (y_new / z_new - v / z)
    if on_cpu:
        return torch.from_numpy(np.stack([grid_x, grid_y], axis=-1)[None])
    return torch.stack([grid_x, grid_y], dim=-1).unsqueeze(0)


def _f32(x: float) -> float:
    """x rounded to float32 (the precision of v0.6's camera tensors), kept as a Python scalar."""
    return float(np.float32(x))
