"""The device-resident 2D/3D frame loop (issue 27): the frames stay tensors on the model's device.

``DeviceAnimationLoop`` renders exactly what ``AnimationLoop`` renders (same plan, same order of steps, the
same numbers within one level of 255) but keeps the two cadence slots, the colour reference, the mask and
the image kept under it as tensors on the device: the 2D warp is ``warp2d_torch`` (OpenCV 4's fixed-point
arithmetic, gathered on the device), the 3D warp the same camera grid and ``grid_sample``, the colour match
``colors_torch``, contrast, noise and the cadence cross-fade tensor arithmetic. The init noise is still
drawn from the frame's CPU generator (so the stream is v0.6's on every device) and copied up without a sync.

What crosses back to the host is one packed copy per saved frame (into pinned memory on CUDA): the uint8
frame, its depth map when ``save_depth_maps`` is on, the NaN/inf flags of every check the host loop makes
(a non-finite frame is still a ``FrameError`` naming it, found one frame later) and, on the first frame of
each segment, the resume state (both cadence slots, the colour reference, the mask images). The copy of frame
j is finished while frame j + 1 is computed, then handed to the background writer. The resume state is
queued on the same writer after the frame, so it is written only after every frame it counts as written.

With ``use_mask`` the Generator takes the key's mask as a PIL image: that is one more copy per key.

Not supported (``device_loop_unsupported`` says which): optical-flow cadence and redo, hybrid video, Perlin
noise, anti-blur; ``frame_loop`` 'auto' then runs the host loop.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from deforum.errors import SettingsError
from deforum.image.colors_torch import maintain_colors_torch
from deforum.image.noise import PerlinParams, perlin_noise
from deforum.motion.warp2d_torch import warp2d_torch
from deforum.motion.warp3d import PADDING_MODES, SAMPLE_OFFSET, sampling_grid
from deforum.plan import FrameRow, rng_seed
from deforum.render import steps
from deforum.render.animation import AnimationLoop, AnimationResult, noise_settings
from deforum.render.resume import AnimationState, save_state

if TYPE_CHECKING:
    from deforum.settings import Settings

# The images of the resume state, in the order they are packed into a frame's host copy.
STATE_IMAGES = ("prev_img", "next_img", "color_ref", "mask_img", "overlay_img")


# ---------------------------------------------------------------------------------------------- choice


def device_loop_unsupported(settings: Settings) -> str | None:
    """Why the device loop cannot render this run (a feature only the host loop has), or None."""
    animation, coherence, hybrid = settings.animation, settings.coherence, settings.hybrid
    if animation.animation_mode not in ("2D", "3D"):
        return f"animation_mode is {animation.animation_mode!r} (the device loop renders 2D and 3D)"
    for name, value in (("optical_flow_cadence", coherence.optical_flow_cadence),
                        ("optical_flow_redo_generation", coherence.optical_flow_redo_generation),
                        ("hybrid_motion", hybrid.hybrid_motion), ("hybrid_composite", hybrid.hybrid_composite)):
        if value != "None":
            return f"{name} is {value!r}"
    kernel = _largest_blur_kernel(settings)
    if kernel // 2 >= min(settings.image.W, settings.image.H):
        return (f"anti-blur's kernel of {kernel} px is wider than the {settings.image.W} x {settings.image.H} "
                "frame (kernel_schedule)")
    return None


def _largest_blur_kernel(settings: Settings) -> int:
    """The widest anti-blur kernel of a frame whose amount is not 0 (1: anti-blur off)."""
    from deforum.image.sharpen import odd_kernel
    from deforum.keyframes import parse_schedule

    frames = max(1, int(settings.animation.max_frames))
    c = settings.coherence
    amount = parse_schedule(c.amount_schedule, frames, field="amount_schedule")
    kernel = parse_schedule(c.kernel_schedule, frames, field="kernel_schedule")
    return max((odd_kernel(k) for k in kernel[amount != 0]), default=1)


def check_frame_loop(settings: Settings) -> None:
    """``frame_loop`` 'device' with a feature only the host loop has: a ``SettingsError`` naming it (the runner
    calls this before the model loads)."""
    if settings.animation.frame_loop == "device":
        reason = device_loop_unsupported(settings)
        if reason is not None:
            raise SettingsError(f"frame_loop='device' cannot render this run: {reason}; the host loop can "
                                f"(frame_loop 'auto' or 'host')")


def use_device_loop(settings: Settings, device: str | torch.device) -> bool:
    """Whether this run renders in the device loop: ``frame_loop`` 'device', or 'auto' on CUDA when the run
    uses nothing the device loop lacks. 'device' with such a feature is a ``SettingsError`` naming it."""
    choice = settings.animation.frame_loop
    if choice == "host":
        return False
    check_frame_loop(settings)
    if choice == "device":
        return True
    return device_loop_unsupported(settings) is None and torch.device(device).type == "cuda"


def loop_class_for(settings: Settings, device: str | torch.device) -> type[AnimationLoop]:
    """The loop a run renders in (``use_device_loop``): ``DeviceAnimationLoop`` or the host ``AnimationLoop``."""
    return DeviceAnimationLoop if use_device_loop(settings, device) else AnimationLoop


# ------------------------------------------------------------------------------------------ host copies


def host_copy(packed: torch.Tensor) -> tuple[torch.Tensor, Any]:
    """Start the one device-to-host copy of a frame: a 1-D uint8 tensor into (pinned) host memory.

    Returns the host tensor and an event to wait on before reading it (None on the CPU: already there).
    """
    if packed.device.type != "cuda":
        return packed, None
    host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
    host.copy_(packed, non_blocking=True)
    event = torch.cuda.Event()
    event.record()
    return host, event


def _as_bytes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.contiguous().reshape(-1).view(torch.uint8)


@dataclasses.dataclass
class _Readback:
    """A frame whose host copy is in flight: what it holds and where, and what to do with it."""

    frame: int
    host: torch.Tensor
    event: Any
    layout: list[tuple[str, torch.dtype, tuple[int, ...], int, int]]  # name, dtype, shape, start, end
    checks: list[tuple[int, str, Any]]  # (frame, what, values) per flag byte
    snapshot: AnimationState | None  # the resume state whose images ride in this copy


# ------------------------------------------------------------------------------------------------- loop


class DeviceAnimationLoop(AnimationLoop):
    """``AnimationLoop`` with the frames kept on ``device`` (same constructor and ``run``).

    ``depth`` must accept an HxWx3 uint8 tensor on the device (``DepthModel.predict`` does); ``generate``
    gets its init sample on the device and returns the decoded sample there.
    """

    keeps_frames_on_device = True  # the generator returns its images on the device (keep_on_device)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.torch_device = torch.device(self.device)
        self._slots: dict[str, torch.Tensor | None] = dict.fromkeys(STATE_IMAGES)
        self._checks: list[tuple[int, str, Any, torch.Tensor]] = []
        self._pending: _Readback | None = None
        self._state_due = False
        self._saved: AnimationState | None = None  # the newest resume state queued (host images)

    # -- checks: flags on the device, read with the frame ------------------------------------------------
    def _check(self, tensor: torch.Tensor, frame: int, what: str, values: Any) -> None:
        self._checks.append((frame, what, values, (~torch.isfinite(tensor).all()).to(self.torch_device)))

    # -- depth --------------------------------------------------------------------------------------------
    def _depth_input(self, state: AnimationState) -> torch.Tensor:
        return _to_uint8(self._slots["next_img"])

    # -- warps --------------------------------------------------------------------------------------------
    def _warp(self, image: torch.Tensor, values, depth: torch.Tensor | None, frame: int) -> torch.Tensor:
        settings = self.settings
        if settings.animation.animation_mode == "2D":
            motion = settings.motion
            warped = warp2d_torch(
                image, angle=values.angle, zoom=values.zoom, translation_x=values.translation_x,
                translation_y=values.translation_y, border=motion.border,
                flip_2d_perspective=motion.flip_2d_perspective,
                perspective_flip_theta=values.perspective_flip_theta,
                perspective_flip_phi=values.perspective_flip_phi,
                perspective_flip_gamma=values.perspective_flip_gamma,
                perspective_flip_fv=values.perspective_flip_fv, corrected_flip=motion.correct_2d_flip)
            if warped.dtype != torch.uint8:
                self._check(warped, frame, "2D warp", values)
            return warped
        warped = warp3d_tensor(image.float(), depth if settings.depth.use_depth_warping else None, values, settings)
        self._check(warped, frame, "3D warp", values)
        return warped.to(torch.uint8) if image.dtype == torch.uint8 else warped

    # -- one tween/output frame ---------------------------------------------------------------------------
    def _cadence_image(self, state: AnimationState, name: str) -> torch.Tensor | None:
        return self._slots[name]

    def _set_cadence_image(self, state: AnimationState, name: str, image: torch.Tensor) -> None:
        self._slots[name] = image

    def _write_frame(self, state: AnimationState, j: int) -> None:
        snapshot = self._take_snapshot(state) if self._state_due and j == state.next_idx else None
        row = self.plan.rows[j]
        blended = self._tween(state, j)
        self._check(blended, j, "warped frame", row.values)
        parts = [("frame", _to_uint8(blended))]
        if self.save_depth is not None and self.depth is not None:
            parts.append(("depth", self._depth_of_next(state).float()))
        if snapshot is not None:
            parts += snapshot[1]
        self._read_back(j, parts, snapshot[0] if snapshot is not None else None)

    def _take_snapshot(self, state: AnimationState):
        """The resume state right after a key was generated: its numbers now, its images in the next copy."""
        self._state_due = False
        meta = dataclasses.replace(state, **dict.fromkeys(STATE_IMAGES))
        return meta, [(name, tensor) for name, tensor in self._slots.items() if tensor is not None]

    def _read_back(self, frame: int, parts: list[tuple[str, torch.Tensor]], snapshot: AnimationState | None) -> None:
        """Pack the frame, its flags and what rides with it into one tensor and start its host copy; then
        finish the previous frame's copy (so the device computes frame j + 1 while j is read)."""
        checks, self._checks = self._checks, []
        flags = [flag for *_, flag in checks]
        tensors = [("flags", torch.stack(flags).to(torch.uint8) if flags else None)] + parts
        layout, chunks, start = [], [], 0
        for name, tensor in tensors:
            if tensor is None:
                continue
            data = _as_bytes(tensor)
            layout.append((name, tensor.dtype, tuple(tensor.shape), start, start + data.numel()))
            padding = -data.numel() % 8  # each part starts 8-byte aligned, so it can be viewed as its dtype
            chunks += [data, data.new_zeros(padding)] if padding else [data]
            start += data.numel() + padding
        host, event = host_copy(torch.cat(chunks))
        previous = self._pending
        self._pending = _Readback(frame, host, event, layout, [c[:3] for c in checks], snapshot)
        if previous is not None:
            self._finish(previous)

    def _finish_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            self._finish(pending)

    def _finish(self, readback: _Readback) -> None:
        """Wait for a frame's host copy, raise a ``FrameError`` for its first non-finite check, and queue its
        files (frame, depth map, then the resume state) on the writer."""
        if readback.event is not None:
            readback.event.synchronize()
        arrays = {name: _from_bytes(readback.host, dtype, shape, start, end)
                  for name, dtype, shape, start, end in readback.layout}
        if "flags" in arrays:
            for (frame, what, values), bad in zip(readback.checks, arrays["flags"], strict=True):
                if bad:
                    raise steps.non_finite_error(frame, what, values)
        depth = None
        if "depth" in arrays:
            depth = (self.save_depth, arrays["depth"], self._depth_range)
        self.sink.write_frame(readback.frame, arrays["frame"], depth=depth)
        if readback.snapshot is not None:
            snapshot = dataclasses.replace(readback.snapshot, depth_range=self._depth_range,
                                           **{k: v for k, v in arrays.items() if k in STATE_IMAGES})
            self._saved = snapshot
            self.sink.submit(save_state, self.state_folder, snapshot, self.shaping)

    # -- one key frame ------------------------------------------------------------------------------------
    def _key_init(self, state: AnimationState, row: FrameRow):
        next_img = self._slots["next_img"]
        if row.frame == 0 or next_img is None:
            return None, 0.0, None
        source = _to_uint8(next_img)
        depth = self._depth_of_next(state) if self._warps_with_depth() else None
        warped = self._warp(source, row.values, depth, row.frame)
        mode = self.settings.coherence.color_coherence
        if mode != "None":
            if self._slots["color_ref"] is None:
                self._slots["color_ref"] = warped.clone()
            else:
                warped = maintain_colors_torch(warped, self._slots["color_ref"], mode)
        values = row.values
        warped = unsharp_mask_torch(warped, values.amount_schedule, values.kernel_schedule, values.sigma_schedule,
                                    values.threshold_schedule)
        generator = torch.Generator().manual_seed(rng_seed(row.seed))
        init = init_sample_torch(warped, values.contrast_schedule, values.noise_schedule, generator,
                                 *noise_settings(self.settings))
        self._check(init, row.frame, "init (warped, contrast, noise)", row.values)
        strength = min(max(row.values.strength_schedule, 0.0), 1.0)
        return init, strength, depth

    def _key_masks(self, state: AnimationState, key: int, depth: torch.Tensor | None):
        """As the host loop; the Generator takes the mask as a PIL image, so mask and kept image cross to
        the host here (one copy per key, only with ``use_mask``)."""
        if self.mask is None:
            return None, None
        slots = self._slots
        if slots["mask_img"] is None:
            mask = np.repeat(self.mask[:, :, None], 3, axis=2).astype(np.float32)
            slots["mask_img"] = torch.from_numpy(mask).to(self.torch_device)
        for j in range(state.mask_idx + 1, key + 1):
            values = self.plan.rows[j].values
            slots["mask_img"] = self._warp(slots["mask_img"], values, depth, j)
            if slots["overlay_img"] is not None:
                slots["overlay_img"] = self._warp(slots["overlay_img"], values, depth, j)
        state.mask_idx = key
        mask = _to_uint8(slots["mask_img"])[:, :, 0]
        overlay = slots["overlay_img"]
        if overlay is None:
            return mask.cpu().numpy(), None
        packed = torch.cat([_as_bytes(mask), _as_bytes(overlay)])
        host = packed.cpu()
        size = mask.numel()
        return (host[:size].numpy().reshape(mask.shape),
                host[size:].view(torch.float32).numpy().reshape(overlay.shape))

    # -- the run ------------------------------------------------------------------------------------------
    def _upload(self, state: AnimationState) -> None:
        """A resumed state's images (numpy) onto the device; the state keeps them as its last saved copy."""
        for name in STATE_IMAGES:
            array = getattr(state, name)
            self._slots[name] = None if array is None else torch.from_numpy(np.array(array)).to(self.torch_device)
        self._depth_range = state.depth_range
        self._saved = dataclasses.replace(state)

    def _run(self, state: AnimationState) -> AnimationResult:
        self._upload(state)
        try:
            return self._run_keys(state)
        except BaseException:
            self._pending = None  # a frame after the failure is not written; the saved state stays valid
            raise

    def _run_keys(self, state: AnimationState) -> AnimationResult:
        n, last = self.cadence, self.plan.max_frames
        for key in range(state.next_key, last, n):
            for j in range(max(0, key - n), key):
                self._write_frame(state, j)
            row = self.plan.rows[key]
            init, strength, depth = self._key_init(state, row)
            mask, overlay = self._key_masks(state, key, depth)
            sample = self.generate(row, init, strength, mask, overlay).to(self.torch_device)
            self._check(sample, key, "generated image", row.values)
            image = sample_to_float_tensor(sample)
            if self.mask is not None and key == 0:
                self._slots["overlay_img"] = image.clone()
            self._slots["prev_img"], state.prev_idx = self._slots["next_img"], state.next_idx
            self._slots["next_img"], state.next_idx = image, key
            state.next_key = key + n
            self._state_due = True  # saved with frame `key`'s host copy
        last_key = ((last - 1) // n) * n
        for j in range(last_key, last):
            self._write_frame(state, j)
        self._finish_pending()
        final = dataclasses.replace(self._saved, complete=True, depth_range=self._depth_range)
        self.sink.flush()
        save_state(self.state_folder, final, self.shaping)
        state.complete = True
        return AnimationResult(self.outdir, self.timestring, self._all_frames())


# ------------------------------------------------------------------------------------ per-frame steps


def _to_uint8(image: torch.Tensor) -> torch.Tensor:
    """``steps.to_uint8`` on a tensor: clip to 0..255 and truncate."""
    return image if image.dtype == torch.uint8 else image.clamp(0, 255).to(torch.uint8)


def _from_bytes(host: torch.Tensor, dtype: torch.dtype, shape: tuple[int, ...], start: int, end: int) -> np.ndarray:
    return host[start:end].view(dtype).reshape(shape).numpy()


def sample_to_float_tensor(sample: torch.Tensor) -> torch.Tensor:
    """``animation.sample_to_float_image`` on the device: [-1, 1] 1x3xHxW -> float32 HxWx3 in 0..255."""
    x = sample.detach().float()[0].permute(1, 2, 0)
    return (x * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0


def init_sample_torch(image: torch.Tensor, contrast: float, noise: float, generator: torch.Generator,
                      noise_type: str = "uniform", perlin: PerlinParams | None = None,
                      dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """``steps.init_sample`` on the device: contrast gain (float64), [-1, 1] as ``dtype`` (float16, v0.6's
    init precision), plus ``noise`` times normals drawn from ``generator`` on the CPU (the host loop's
    stream; into pinned memory and up without a sync on CUDA); "perlin" shapes them as ``add_noise`` does,
    from the same generator."""
    x = image.to(torch.float64) * float(contrast)
    sample = ((x / 255.0) * 2 - 1).permute(2, 0, 1).unsqueeze(0).contiguous().to(dtype)
    pinned = image.device.type == "cuda"
    normals = torch.empty(sample.shape, dtype=torch.float32, pin_memory=pinned)
    torch.randn(sample.shape, generator=generator, dtype=torch.float32, out=normals)
    if noise_type == "perlin":
        height, width = sample.shape[-2:]
        p = perlin_noise(height, width, perlin.res_w, perlin.res_h, perlin.octaves, perlin.persistence, generator)
        normals = normals * ((p + 1) / 2).to(torch.float32)
        normals = normals.pin_memory() if pinned else normals
    return sample + normals.to(image.device, non_blocking=pinned) * noise


def unsharp_mask_torch(image: torch.Tensor, amount: float, kernel: float, sigma: float,
                       threshold: float) -> torch.Tensor:
    """``deforum.image.sharpen.unsharp_mask`` of an H x W x 3 tensor on its device: OpenCV's Gaussian kernel
    (``cv2.getGaussianKernel``, computed on the CPU from the frame's values, no device read), its
    reflect-101 border, float64 arithmetic; the image itself when ``amount`` is 0."""
    if amount == 0:
        return image
    import cv2

    from deforum.image.sharpen import odd_kernel

    k = odd_kernel(kernel)
    weights = torch.from_numpy(cv2.getGaussianKernel(k, float(sigma), ktype=cv2.CV_64F)[:, 0]).to(image.device)
    source = image.to(torch.float64)
    x = source.permute(2, 0, 1).unsqueeze(1)  # 3 x 1 x H x W: each channel alone
    pad = k // 2
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")  # OpenCV's BORDER_REFLECT_101
    x = F.conv2d(x, weights.view(1, 1, 1, k))
    x = F.conv2d(x, weights.view(1, 1, k, 1))
    blurred = x.squeeze(1).permute(1, 2, 0)
    sharpened = (source * (1 + amount) - blurred * amount).clamp(0, 255)
    if threshold > 0:
        sharpened = torch.where((source - blurred).abs() < threshold, source, sharpened)
    if image.dtype == torch.uint8:
        return sharpened.round().to(torch.uint8)
    return sharpened.to(image.dtype)


def warp3d_tensor(image: torch.Tensor, depth: torch.Tensor | None, values, settings: Settings) -> torch.Tensor:
    """``warp3d`` of a float32 HxWx3 tensor with every step on its device (no numpy on the CPU either)."""
    d = settings.depth
    height, width = image.shape[:2]
    grid = sampling_grid(
        height, width, None if depth is None else depth.to(torch.float32),
        translation=(values.translation_x, values.translation_y, values.translation_z),
        rotation=(values.rotation_3d_x, values.rotation_3d_y, values.rotation_3d_z), fov=float(d.fov),
        correct_aspect=settings.motion.correct_3d_aspect, device=image.device, numpy_on_cpu=False)
    if d.padding_mode not in PADDING_MODES:
        raise SettingsError(f"padding_mode={d.padding_mode!r} is not allowed; use one of "
                            f"{list(PADDING_MODES)}")
    pixels = image.permute(2, 0, 1).unsqueeze(0) + SAMPLE_OFFSET
    warped = F.grid_sample(pixels, grid, mode=d.sampling_mode, padding_mode=d.padding_mode, align_corners=False)
    return warped[0].clamp(0, 255).permute(1, 2, 0)
