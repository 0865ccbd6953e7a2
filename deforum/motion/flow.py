"""Optical flow between two frames, the warp along it and a forward-backward consistency mask.

``estimate_flow(prev, next, method)`` returns an H x W x 2 float32 flow in OpenCV's convention:
``prev[y, x] ~ next[y + fy, x + fx]`` (``flow[..., 0]`` is fx, the x displacement). ``warp_by_flow(next, flow)``
samples ``next`` at the displaced pixel grid and so gives ``prev`` back.

Methods, with A1111 Deforum's value names:

- "DIS Medium", "DIS UltraFast": OpenCV's dense inverse search with its MEDIUM / ULTRAFAST presets;
- "DIS Fine": the MEDIUM preset down to full resolution (finest scale 0) with more gradient-descent iterations;
- "Farneback": OpenCV's polynomial-expansion flow;
- "RAFT": torchvision's RAFT (``raft_large`` by default, or ``raft_small``). The weights are torchvision's file
  (``raft_large_C_T_SKHT_V2-ff5fadd5.pth`` / ``raft_small_C_T_V2-01064c6d.pth``) in ``models_path``; a missing
  file is downloaded from download.pytorch.org into ``models_path`` (its sha256 checked against the prefix in the
  file name). Offline: a ModelError naming the file, the URL and where to put it. torchvision is imported only here.

The cv2 methods need no weights and run on the CPU.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import cv2
import numpy as np

from deforum.errors import DeforumError, ModelError, SettingsError

log = logging.getLogger(__name__)

CV2_METHODS = ("DIS Medium", "DIS Fine", "DIS UltraFast", "Farneback")
METHODS = (*CV2_METHODS, "RAFT")
# torchvision's RAFT weights (C+T+S+K+H / C+T, "V2"): URL and the sha256 prefix the file name carries
RAFT_WEIGHTS = {
    "raft_large": "https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth",
    "raft_small": "https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth",
}
RAFT_ITERATIONS = {"raft_large": 12, "raft_small": 12}
DOWNLOAD_TIMEOUT_S = 30.0

_raft_cache: dict[tuple[str, str], Any] = {}


def _check_frames(prev: np.ndarray, next: np.ndarray) -> None:
    for name, frame in (("prev", prev), ("next", next)):
        if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            got = getattr(frame, "shape", type(frame).__name__), getattr(frame, "dtype", "")
            raise DeforumError(f"estimate_flow: {name} must be an H x W x 3 uint8 RGB frame; got {got}")
    if prev.shape != next.shape:
        raise DeforumError(f"estimate_flow: the frames differ in size: {prev.shape[:2]} and {next.shape[:2]}")


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _dis(preset: int, fine: bool = False) -> Any:
    dis = cv2.DISOpticalFlow_create(preset)
    if fine:
        dis.setFinestScale(0)  # full resolution
        dis.setGradientDescentIterations(25)
        dis.setVariationalRefinementIterations(10)
    return dis


def _cv2_flow(prev_gray: np.ndarray, next_gray: np.ndarray, method: str) -> np.ndarray:
    if method == "Farneback":
        flow = cv2.calcOpticalFlowFarneback(prev_gray, next_gray, None, pyr_scale=0.5, levels=5, winsize=15,
                                            iterations=5, poly_n=7, poly_sigma=1.5, flags=0)
    else:
        preset = {"DIS Medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM, "DIS Fine": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
                  "DIS UltraFast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST}[method]
        flow = _dis(preset, fine=method == "DIS Fine").calc(prev_gray, next_gray, None)
    return np.ascontiguousarray(flow, dtype=np.float32)


def estimate_flow(prev: np.ndarray, next: np.ndarray, method: str = "DIS Medium", *,
                  models_path: str | os.PathLike = "models", raft_model: str = "raft_large",
                  device: str | None = None) -> np.ndarray:
    """The H x W x 2 float32 flow from ``prev`` to ``next`` (RGB uint8, same size): ``prev[y, x] ~ next[y+fy, x+fx]``.

    ``method``: "DIS Medium", "DIS Fine", "DIS UltraFast", "Farneback" (OpenCV) or "RAFT" (torchvision;
    ``raft_model`` "raft_large" or "raft_small", weights from ``models_path``, on ``device``: CUDA when there is
    one). An unknown method is a SettingsError naming the allowed ones.
    """
    if method not in METHODS:
        raise SettingsError(f"optical flow method {method!r} is not one of: {', '.join(METHODS)}")
    _check_frames(prev, next)
    if method == "RAFT":
        return _raft_flow(prev, next, models_path=models_path, raft_model=raft_model, device=device)
    return _cv2_flow(_gray(prev), _gray(next), method)


def pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) float32 coordinate maps of an H x W image."""
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return xs, ys


def warp_by_flow(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``image`` sampled at the pixel grid plus ``flow`` (bilinear, border replicate).

    With ``flow = estimate_flow(prev, next)``, ``warp_by_flow(next, flow)`` is ``prev`` moved back from ``next``.
    Any dtype and channel count cv2.remap takes (uint8 frames, float flows).
    """
    if flow.ndim != 3 or flow.shape[2] != 2 or flow.shape[:2] != image.shape[:2]:
        raise DeforumError(f"warp_by_flow: the flow must be H x W x 2 for a {image.shape[:2]} image; "
                           f"got {flow.shape}")
    xs, ys = pixel_grid(*flow.shape[:2])
    map_x = xs + flow[..., 0].astype(np.float32, copy=False)
    map_y = ys + flow[..., 1].astype(np.float32, copy=False)
    return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


# flow(a, b) -> H x W x 2 float32, OpenCV's convention: a[y, x] ~ b[y + fy, x + fx]
FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def flow_error(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """H x W float32: how far ``backward`` fails to bring each pixel home, ``|forward(p) + backward(p + forward(p))|``.

    Small where the pixel is seen in both frames; large where it is hidden in the second one (occluded) or
    lands outside it (infinite there).
    """
    back_at_q = warp_by_flow(backward, forward)
    error = np.linalg.norm(forward + back_at_q, axis=2)
    height, width = forward.shape[:2]
    xs, ys = pixel_grid(height, width)
    qx, qy = xs + forward[..., 0], ys + forward[..., 1]
    error[(qx < 0) | (qx > width - 1) | (qy < 0) | (qy > height - 1)] = np.inf
    return error.astype(np.float32, copy=False)


def sampling_map(flow: np.ndarray, amount: float, error: np.ndarray | None = None) -> np.ndarray:
    """The map that moves an image ``amount`` of the way along ``flow``, for ``warp_by_flow``.

    Each pixel p of the image goes to ``p + amount * flow(p)``; ``warp_by_flow`` samples the source at
    ``q + map(q)``, so the map at the pixel q where p lands is ``-amount * flow(p)`` (read at p, the pixel
    that moves, not at q: read at q, the leading edge of a moving object would stay behind). Where several
    pixels land on one q the one with the smallest ``error`` (``flow_error``: seen in both frames) wins, so a
    moving object covers the background it moves over. Where none lands (background uncovered behind an
    object) the map is ``-amount * flow(q)``, which there samples the background beside the object.
    """
    move = (amount * flow).astype(np.float32)
    height, width = flow.shape[:2]
    xs, ys = pixel_grid(height, width)
    tx = np.rint(xs + move[..., 0])
    ty = np.rint(ys + move[..., 1])
    inside = np.isfinite(tx) & np.isfinite(ty) & (tx >= 0) & (tx < width) & (ty >= 0) & (ty < height)
    source = np.flatnonzero(inside)
    target = (ty.ravel()[source].astype(np.int64) * width + tx.ravel()[source].astype(np.int64))
    rank = np.zeros(source.size, np.float32) if error is None else error.ravel()[source].astype(np.float32)
    # Errors are >= 0 (or inf), and such float32s order as their bit patterns do: one uint64 key per pixel,
    # (error bits, source index), whose minimum per target is the pixel with the smallest error (ties: the
    # first pixel), found in one pass (np.minimum.at) instead of a sort.
    key = (rank.view(np.uint32).astype(np.uint64) << np.uint64(32)) | source.astype(np.uint64)
    none = np.iinfo(np.uint64).max
    best = np.full(height * width, none, np.uint64)
    np.minimum.at(best, target, key)
    landed = np.flatnonzero(best != none)
    winner = (best[landed] & np.uint64(0xFFFFFFFF)).astype(np.int64)
    flat = move.reshape(-1, 2)
    result = -flat  # a copy: where nothing lands
    result[landed] = -flat[winner]
    return result.reshape(height, width, 2)


def flow_tween(prev: np.ndarray, next_: np.ndarray, tween: float, factor: float, flow: FlowFn) -> np.ndarray:
    """The frame ``tween`` of the way from ``prev`` to ``next_`` (float H x W x 3), made along their optical flow.

    Sign convention: ``F = flow(prev, next_)`` says ``prev[p] ~ next_[p + F(p)]`` (OpenCV's), so what is at p
    in prev is at ``p + t * F(p)`` at time t. ``prev`` is moved forward ``tween * factor`` of the way along F,
    ``next_`` back ``(1 - tween) * factor`` of the way along ``B = flow(next_, prev)`` (where it was), and the
    two are cross-faded with weight ``tween``: at tween 1 the frame is ``next_``; with ``factor`` 0 it is the
    plain cross-fade; with factor 1 a thing that moved by d between the keys is shown once, moved by
    ``tween * d``.
    """
    if tween >= 1.0:
        return next_
    if factor == 0.0:
        return prev * (1.0 - tween) + next_ * tween
    a, b = _uint8(prev), _uint8(next_)
    forward, backward = flow(a, b), flow(b, a)
    moved_prev = _moved(prev, forward, tween * factor, flow_error(forward, backward))
    moved_next = _moved(next_, backward, (1.0 - tween) * factor, flow_error(backward, forward))
    return moved_prev * (1.0 - tween) + moved_next * tween


def _moved(image: np.ndarray, flow: np.ndarray, amount: float, error: np.ndarray) -> np.ndarray:
    if amount == 0.0:
        return image
    return warp_by_flow(image.astype(np.float32, copy=False), sampling_map(flow, amount, error))


def _uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image, 0, 255).astype(np.uint8)


def consistency_mask(forward: np.ndarray, backward: np.ndarray, threshold: float = 1.0,
                     relative: float = 0.05) -> np.ndarray:
    """H x W bool: where the forward flow (prev -> next) and the backward flow (next -> prev) agree.

    For a pixel p of prev, q = p + forward(p) and the backward flow there should bring it home:
    ``|forward(p) + backward(q)| <= threshold + relative * (|forward(p)| + |backward(q)|)`` (pixels).
    False where that fails (occluded or badly estimated) and where q falls outside the frame.
    """
    if forward.shape != backward.shape or forward.ndim != 3 or forward.shape[2] != 2:
        raise DeforumError(f"consistency_mask: forward and backward must be H x W x 2 of one size; "
                           f"got {forward.shape} and {backward.shape}")
    forward = forward.astype(np.float32, copy=False)
    back_at_q = warp_by_flow(backward.astype(np.float32, copy=False), forward)
    error = np.linalg.norm(forward + back_at_q, axis=2)
    allowed = threshold + relative * (np.linalg.norm(forward, axis=2) + np.linalg.norm(back_at_q, axis=2))
    height, width = forward.shape[:2]
    xs, ys = pixel_grid(height, width)
    qx, qy = xs + forward[..., 0], ys + forward[..., 1]
    inside = (qx >= 0) & (qx <= width - 1) & (qy >= 0) & (qy <= height - 1)
    return (error <= allowed) & inside


# --- RAFT -----------------------------------------------------------------------------------------------------


def raft_weights_file(raft_model: str, models_path: str | os.PathLike) -> Path:
    """Where the torchvision weights of ``raft_model`` live: models_path/<torchvision's file name>."""
    if raft_model not in RAFT_WEIGHTS:
        raise SettingsError(f"RAFT model {raft_model!r} is not one of: {', '.join(RAFT_WEIGHTS)}")
    return Path(models_path) / RAFT_WEIGHTS[raft_model].rsplit("/", 1)[1]


def _download(url: str, dest: Path) -> None:
    """The one network call: stream ``url`` into dest (through a .part file, renamed when complete)."""
    part = dest.with_name(dest.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "deforum"})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, open(part, "wb") as f:  # noqa: S310
            while chunk := response.read(1 << 20):
                f.write(chunk)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)


def download_raft(raft_model: str, models_path: str | os.PathLike) -> Path:
    """The RAFT weights file in models_path: used when present, else downloaded (sha256 prefix checked)."""
    from deforum.models.download import sha256_file

    dest = raft_weights_file(raft_model, models_path)
    if dest.is_file():
        return dest
    url = RAFT_WEIGHTS[raft_model]
    where = f"download {url} and put it at {dest}"
    from deforum.models.download import host_unreachable

    reason = host_unreachable(url)
    if reason:
        raise ModelError(f"optical flow 'RAFT': the weights {dest.name} are not in {dest.parent} and "
                         f"{urlparse(url).hostname} cannot be reached ({reason}); {where}")
    log.info("Downloading the %s weights from %s to %s", raft_model, url, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        _download(url, dest)
    except urllib.error.HTTPError as e:
        raise ModelError(f"optical flow 'RAFT': {url} answered HTTP {e.code} {e.reason}; {where}") from e
    except (urllib.error.URLError, OSError) as e:
        why = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise ModelError(f"optical flow 'RAFT': downloading {dest.name} failed ({why}); nothing was kept; "
                         f"{where}") from e
    prefix = dest.stem.rsplit("-", 1)[-1].lower()
    digest = sha256_file(dest)
    if not digest.startswith(prefix):
        dest.unlink(missing_ok=True)
        raise ModelError(f"optical flow 'RAFT': {dest.name} downloaded from {url} has sha256 {digest}, not "
                         f"{prefix}...; it was deleted; {where}")
    return dest


def _import_torchvision() -> Any:
    try:
        from torchvision.models import optical_flow
    except ImportError as e:
        raise DeforumError("optical flow 'RAFT' needs torchvision, which is not installed: "
                           "pip install torchvision (the build matching your torch), or choose one of "
                           f"{', '.join(CV2_METHODS)}") from e
    return optical_flow


def load_raft(raft_model: str = "raft_large", models_path: str | os.PathLike = "models",
              device: str | None = None) -> Any:
    """torchvision's RAFT with its weights (downloaded when missing), in eval mode on ``device``; cached."""
    import torch

    optical_flow = _import_torchvision()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    path = download_raft(raft_model, models_path)
    key = (str(path.resolve()), str(device))
    if key not in _raft_cache:
        model = getattr(optical_flow, raft_model)(weights=None, progress=False)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state, strict=True)
        except Exception as e:
            raise ModelError(f"optical flow 'RAFT': {path} is not torchvision's {raft_model} weights ({e}); "
                             f"delete it and run again to download {RAFT_WEIGHTS[raft_model]}") from e
        _raft_cache[key] = model.eval().requires_grad_(False).to(device)
    return _raft_cache[key]


def _raft_flow(prev: np.ndarray, next: np.ndarray, *, models_path: str | os.PathLike, raft_model: str,
               device: str | None) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    model = load_raft(raft_model, models_path, device)
    dev = _device_of(model)
    height, width = prev.shape[:2]
    # RAFT works on sizes divisible by 8 (at least 128 for its correlation pyramid): pad by replication
    pad_h, pad_w = max(-height % 8, 128 - height), max(-width % 8, 128 - width)
    pad_h += -(height + pad_h) % 8
    pad_w += -(width + pad_w) % 8

    def tensor(frame: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(frame).to(dev).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        return F.pad(t, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else t

    with torch.inference_mode():
        flows = model(tensor(prev), tensor(next), num_flow_updates=RAFT_ITERATIONS[raft_model])
    flow = flows[-1][0, :, :height, :width].permute(1, 2, 0)
    return np.ascontiguousarray(flow.float().cpu().numpy(), dtype=np.float32)


def _device_of(model: Any) -> Any:
    return next(iter(model.parameters())).device
