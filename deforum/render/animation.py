"""The 2D/3D render loop (spec 6): executes the render plan key frame by key frame.

Per diffused ("key") frame K the loop first writes the tween frames of the previous segment, then builds
K's init from the newest key warped up to K (warp -> colour -> contrast -> noise) and generates K. Frame j
of the output is key ``(j // N) * N`` warped up to j, made into frame j with the key before it by the run's
cadence strategy (``deforum.render.cadence``; v0.6's is the cross-fade, spec 6.7). Unlike v0.6 the frames
after the last key are written too, so every one of ``max_frames`` frames exists and every generated key is
shown.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from deforum.image.noise import PerlinParams
from deforum.plan import FrameRow, RenderPlan, rng_seed
from deforum.render import steps
from deforum.render.cadence import Tweener, tweener_for
from deforum.render.hybrid_video import HybridVideo, first_frame_init, hybrid_on
from deforum.render.output import FrameSink, depth_name, frame_name
from deforum.render.resume import (
    AnimationState,
    load_state,
    remove_stale_temps,
    save_state,
    shaping_settings,
    state_dir,
)

if TYPE_CHECKING:
    from PIL import Image

    from deforum.render.inputs import RunInputs
    from deforum.settings import RunIdentity, Settings

log = logging.getLogger(__name__)

# generate(row, init_sample or None, strength, mask uint8 HxW or None, overlay float 0..255 HxWx3 or None)
#   -> decoded sample, 1x3xHxW in [-1, 1]
KeyGenerator = Callable[..., torch.Tensor]
# depth(image uint8 HxWx3) -> HxW depth
DepthFn = Callable[[np.ndarray], torch.Tensor]
# save_depth(depth HxW, path, depth_range) writes one depth map
DepthWriter = Callable[[torch.Tensor, Path, dict], None]


@dataclass
class AnimationResult:
    outdir: Path
    timestring: str
    frames: list[Path]


def frame_path(outdir: Path, timestring: str, frame: int) -> Path:
    return Path(outdir) / frame_name(timestring, frame)


def depth_path(outdir: Path, timestring: str, frame: int) -> Path:
    return Path(outdir) / depth_name(timestring, frame)


class AnimationLoop:
    """One 2D/3D run: the plan, its settings and identity (where frames go), and the callables that
    generate keys, predict depth and make the frames between keys (``tweener``: ``tweener_for(settings)``
    unless given); ``hybrid``: the run's hybrid video (``HybridVideo``), when it uses one."""

    keeps_frames_on_device = False  # the generator may return its images on the CPU

    def __init__(self, plan: RenderPlan, settings: Settings, identity: RunIdentity, generate: KeyGenerator,
                 depth: DepthFn | None = None, save_depth: DepthWriter | None = None, device: str = "cpu",
                 on_frame: Callable[[int, Path], None] | None = None, mask: np.ndarray | None = None,
                 background_writes: bool = True, tweener: Tweener | None = None,
                 hybrid: HybridVideo | None = None):
        self.plan, self.settings, self.identity = plan, settings, identity
        self.outdir, self.timestring = Path(identity.outdir), identity.timestring
        self.generate, self.depth, self.save_depth = generate, depth, save_depth
        self.device, self.on_frame = device, on_frame
        self.mask = mask  # use_mask: uint8 HxW, white keeps the init (frame 0) and what it became
        self.tweener = tweener if tweener is not None else tweener_for(settings, device)
        self.hybrid = hybrid
        self.cadence = plan.cadence
        self.shaping = shaping_settings(settings, identity)  # state.json's settings: what a resume must keep
        self.state_folder = state_dir(self.outdir, self.timestring)
        # Frames and depth maps are named and written by the sink; with ``background_writes`` PNG
        # compression runs on its writer thread while the next frame is computed.
        self.sink = FrameSink(self.outdir, self.timestring, on_frame=on_frame)
        self.written = self.sink.written
        self.background_writes = background_writes
        self._depth_key: int | None = None  # next_idx of the image _depth_cache belongs to
        self._depth_cache: torch.Tensor | None = None
        self._depth_frame: int | None = None  # next_idx the cached depth was predicted at (depth_every)

    # -- one tween/output frame -------------------------------------------------------------------------
    def _depth_of_next(self, state: AnimationState) -> torch.Tensor | None:
        """Depth of the newest key image as it is now, predicted once per image: the frame's depth map, the
        tween warps and the next key's warp all share it (v0.6 predicted depth twice per frame). With
        ``depth_every`` N a map is reused until the image is N frames newer than the one it was predicted from."""
        if self.depth is None:
            return None
        if self._depth_key != state.next_idx and self._depth_stale(state):
            self._depth_cache, self._depth_frame = self.depth(self._depth_input(state)), state.next_idx
        self._depth_key = state.next_idx
        return self._depth_cache

    def _depth_input(self, state: AnimationState) -> np.ndarray:
        """The image depth is predicted from: the newest key as it is now, uint8."""
        return steps.to_uint8(state.next_img)

    def _depth_stale(self, state: AnimationState) -> bool:
        every = self.settings.depth.depth_every
        return self._depth_frame is None or abs(state.next_idx - self._depth_frame) >= every

    def _warps_with_depth(self) -> bool:
        return self.settings.animation.animation_mode == "3D" and self.settings.depth.use_depth_warping

    def _camera(self, image: np.ndarray, values, depth: torch.Tensor | None, frame: int) -> np.ndarray:
        """``steps.warp_image`` with this run's settings; a non-finite warp is a FrameError naming ``frame``."""
        return steps.warp_image(image, values, self.settings, depth, self.device, frame)

    def _warp(self, image: np.ndarray, values, depth: torch.Tensor | None, frame: int) -> np.ndarray:
        """One frame of motion: the camera, then the hybrid video's motion into ``frame`` (when on)."""
        warped = self._camera(image, values, depth, frame)
        return warped if self.hybrid is None else self.hybrid.move(warped, frame, values)

    def _cadence_image(self, state: AnimationState, name: str):
        """Key image ``name`` ("prev_img" or "next_img") as this loop holds it (the device loop: on the device)."""
        return getattr(state, name)

    def _set_cadence_image(self, state: AnimationState, name: str, image) -> None:
        setattr(state, name, image)

    def _tween(self, state: AnimationState, j: int):
        """Output frame ``j`` from the two newest keys, each warped up to ``j`` first (and kept so), made by the
        run's Tweener (not yet checked or truncated)."""
        row = self.plan.rows[j]
        role = row.cadence
        # The older key is only warped while it is still shown: at tween 1 it drops out for good.
        warp_prev = role.blended and state.prev_idx < j
        warp_next = state.next_idx < j
        depth = self._depth_of_next(state) if (warp_prev or warp_next) and self._warps_with_depth() else None
        for name, index, due in (("prev_img", "prev_idx", warp_prev), ("next_img", "next_idx", warp_next)):
            if due:
                self._set_cadence_image(state, name, self._warp(self._cadence_image(state, name), row.values, depth, j))
                setattr(state, index, j)
        prev = self._cadence_image(state, "prev_img") if role.blended else None
        return self.tweener(prev, self._cadence_image(state, "next_img"), role, row.values)

    def _write_frame(self, state: AnimationState, j: int) -> None:
        row = self.plan.rows[j]
        blended = self._tween(state, j)
        steps.check_finite(blended, j, "warped frame", row.values)
        image = steps.to_uint8(blended)
        depth_map = None
        if self.save_depth is not None and self.depth is not None:
            depth_map = (self.save_depth, self._depth_of_next(state), state.depth_range)
        self.sink.write_frame(j, image, depth=depth_map)

    def _save_state(self, state: AnimationState) -> None:
        """Resume state is saved only after every frame it counts as written is on disk."""
        self.sink.flush()
        save_state(self.state_folder, state, self.shaping)

    # -- one key frame ----------------------------------------------------------------------------------
    def _key_image(self, state: AnimationState, row: FrameRow):
        """The image key frame ``row.frame`` starts from, and the depth of its warp (spec 6.2 1-3): the newest
        key warped by the camera, the hybrid video's composites and motion, colour coherence and anti-blur."""
        source = steps.to_uint8(state.next_img)
        depth = self._depth_of_next(state) if self._warps_with_depth() else None
        warped = self._camera(source, row.values, depth, row.frame)
        if self.hybrid is not None:
            warped = self.hybrid.key_init(warped, row.frame, row.values)
        warped, state.color_ref = steps.match_colors(warped, state.color_ref,
                                                     self.settings.coherence.color_coherence)
        return steps.anti_blur(warped, row.values), depth

    def _init_sample(self, image: np.ndarray, row: FrameRow) -> torch.Tensor:
        """Contrast and noise (spec 6.2 4-6): the init sample of key frame ``row.frame`` from its image."""
        generator = torch.Generator().manual_seed(rng_seed(row.seed))
        init = steps.init_sample(image, row.values.contrast_schedule, row.values.noise_schedule, generator,
                                 *noise_settings(self.settings))
        steps.check_finite(init, row.frame, "init (warped, contrast, noise)", row.values)
        return init

    def _key_init(self, state: AnimationState, row: FrameRow):
        """Init sample, strength, the depth used for the warp of key frame ``row.frame`` and the image the
        init was made from (spec 6.2 1-6)."""
        if row.frame == 0 or state.next_img is None:
            return None, 0.0, None, None
        image, depth = self._key_image(state, row)
        strength = min(max(row.values.strength_schedule, 0.0), 1.0)
        return self._init_sample(image, row), strength, depth, image

    def _redo_init(self, row: FrameRow, image: np.ndarray, init: torch.Tensor, strength: float, mask, overlay):
        """``optical_flow_redo_generation``: generate once from ``init`` (with a seed drawn from the row's), take
        the flow from that image back to the init's ``image`` and move ``image`` along it by
        ``redo_flow_factor_schedule``; the init of the real generation is made from the moved image."""
        from deforum.motion.flow import estimate_flow, warp_by_flow

        method = self.settings.coherence.optical_flow_redo_generation
        scratch = dataclasses.replace(row, seed=redo_seed(row.seed))
        first = steps.to_uint8(steps.sample_to_float_image(self.generate(scratch, init, strength, mask, overlay)))
        flow = estimate_flow(first, steps.to_uint8(image), method, models_path=self.settings.model.models_path,
                             device=self.device)
        moved = warp_by_flow(image, flow * np.float32(row.values.redo_flow_factor_schedule))
        return self._init_sample(moved, row)

    def _key_masks(self, state: AnimationState, key: int, depth: torch.Tensor | None):
        """The mask and kept image of key ``key``, moved with the camera through every frame since the last
        key (v0.6 warped them with the key's motion once per tween and left the latent mask fixed, 12.1 #9)."""
        if self.mask is None:
            return None, None
        if state.mask_img is None:
            state.mask_img = np.repeat(self.mask[:, :, None], 3, axis=2).astype(np.float32)
        for j in range(state.mask_idx + 1, key + 1):
            values = self.plan.rows[j].values
            state.mask_img = self._warp(state.mask_img, values, depth, j)
            if state.overlay_img is not None:
                state.overlay_img = self._warp(state.overlay_img, values, depth, j)
        state.mask_idx = key
        # The kept image stays float: a uint8 round trip per key would darken it by a level each time.
        return steps.to_uint8(state.mask_img)[:, :, 0], state.overlay_img

    def load_resume_state(self) -> AnimationState:
        """The saved state of this run, validated against its settings and plan (see ``load_state``)."""
        return load_state(self.state_folder, self.shaping, width=self.settings.image.W,
                          height=self.settings.image.H, max_frames=self.plan.max_frames, cadence=self.cadence)

    def run(self, resume: bool = False, state: AnimationState | None = None) -> AnimationResult:
        """Render the run; ``resume`` continues from the saved state (``state`` when the caller already
        loaded and validated it, as the runner does before the model loads)."""
        self.outdir.mkdir(parents=True, exist_ok=True)
        if resume:
            state = state if state is not None else self.load_resume_state()
            remove_stale_temps(self.state_folder)
        else:
            # Saved before the first key, so a run killed while frame 0 is generated can be resumed too.
            state = AnimationState()
            save_state(self.state_folder, state, self.shaping)
        if state.complete:
            log.info("run %s is already complete", self.timestring)
            return AnimationResult(self.outdir, self.timestring, self._all_frames())
        if not self.background_writes:
            return self._run(state)
        with self.sink.background():
            result = self._run(state)
        return result

    def _run(self, state: AnimationState) -> AnimationResult:
        n, last = self.cadence, self.plan.max_frames
        for key in range(state.next_key, last, n):
            for j in range(max(0, key - n), key):
                self._write_frame(state, j)
            row = self.plan.rows[key]
            init, strength, depth, init_image = self._key_init(state, row)
            mask, overlay = self._key_masks(state, key, depth)
            if init is not None and self.settings.coherence.optical_flow_redo_generation != "None":
                init = self._redo_init(row, init_image, init, strength, mask, overlay)
            sample = self.generate(row, init, strength, mask, overlay)
            steps.check_finite(sample, key, "generated image", row.values)
            image = steps.sample_to_float_image(sample)
            if self.hybrid is not None:
                image = self.hybrid.after_generation(image, key, row.values)
            if self.mask is not None and key == 0:
                state.overlay_img = image.copy()  # what frame 0 became is kept under the mask from now on
            state.prev_img, state.prev_idx = state.next_img, state.next_idx
            state.next_img, state.next_idx = image, key
            state.next_key = key + n
            self._save_state(state)
        last_key = ((last - 1) // n) * n
        for j in range(last_key, last):  # the tail v0.6 never wrote
            self._write_frame(state, j)
        state.complete = True
        self._save_state(state)
        return AnimationResult(self.outdir, self.timestring, self._all_frames())

    def _all_frames(self) -> list[Path]:
        return self.sink.frame_paths(self.plan.max_frames)


def noise_settings(settings: Settings) -> tuple[str, PerlinParams | None]:
    """``noise_type`` and, for "perlin", its lattice (``perlin_w``, ``perlin_h``, octaves, persistence)."""
    c = settings.coherence
    if c.noise_type != "perlin":
        return c.noise_type, None
    return c.noise_type, PerlinParams(float(c.perlin_w), float(c.perlin_h), int(c.perlin_octaves),
                                      float(c.perlin_persistence))


def redo_seed(seed: int) -> int:
    """The seed of ``optical_flow_redo_generation``'s first, discarded image: drawn from the frame's seed, so a
    run stays reproducible and the two generations differ."""
    return random.Random(f"redo/{seed}").randint(0, 2**32 - 1)


def key_generator(generator: Any, settings: Settings, first_init: Image.Image | None = None, *,
                  keep_on_device: bool = False) -> KeyGenerator:
    """The loop's ``generate(row, init, strength, mask, overlay)`` on a ``deforum.generate.Generator``.

    Frame 0 is txt2img, or img2img of ``first_init`` (the run's init image, ``inputs.init.image``) with the
    global ``strength`` when ``use_init`` is on (spec 6.2); every later key is img2img of its warped,
    colour-matched, noised init. Each image is ``generation_request(settings, ...)`` with the row's seed,
    prompt and frame.
    """
    from PIL import Image

    from deforum.image.convert import image_to_sample

    base = steps.generation_request(settings, 0)  # every key replaces the seed with its row's
    base = dataclasses.replace(base, keep_on_device=keep_on_device)

    def generate(row: FrameRow, init: torch.Tensor | None, strength: float, mask: np.ndarray | None = None,
                 overlay: np.ndarray | None = None) -> torch.Tensor:
        request = dataclasses.replace(base, seed=row.seed, prompt=row.prompt, frame=row.frame)
        if mask is not None:
            request = dataclasses.replace(request, mask=Image.fromarray(mask))  # uint8 HxW: mode L
            if overlay is not None:
                request = dataclasses.replace(request, overlay_original=image_to_sample(overlay, torch.float32))
        if init is not None:
            request = dataclasses.replace(request, strength=strength, init_sample=init)
        elif row.frame == 0 and first_init is not None:
            request = dataclasses.replace(request, strength=settings.init.strength, init_image=first_init)
        else:
            request = dataclasses.replace(request, strength=0.0)
        return generator.generate(request)

    return generate


def frame0_mask(settings: Settings, inputs: RunInputs) -> np.ndarray | None:
    """``use_mask``: the mask of frame 0 as uint8 H x W: the init's alpha channel (``use_alpha_as_mask``, read
    at W x H), else ``mask_file`` resized to W x H."""
    if not settings.init.use_mask:
        return None
    from deforum.image.io import resize

    init = inputs.init
    mask = inputs.mask_of(init)
    if mask is None:
        return None
    if init is not None and mask is init.alpha:
        return np.asarray(mask.convert("L"))
    return np.asarray(resize(mask.convert("L"), settings.image.W, settings.image.H))


def depth_functions(settings: Settings, device: str) -> tuple[DepthFn | None, DepthWriter | None]:
    """The depth predictor (3D with depth warping, or ``save_depth_maps``) and the depth-map writer."""
    d = settings.depth
    needed = (settings.animation.animation_mode == "3D" and d.use_depth_warping) or d.save_depth_maps or (
        hybrid_on(settings) and settings.hybrid.hybrid_composite != "None"
        and settings.hybrid.hybrid_comp_mask_type in ("Depth", "Video Depth"))
    if not needed:
        return None, None
    from deforum.motion.depth import DepthModel, save_depth_map

    model = DepthModel(d.depth_model, models_path=settings.model.models_path, device=device,
                       midas_weight=float(d.midas_weight), half=None if settings.model.half_precision else False,
                       offload=d.offload_depth_model)
    return model.predict, (save_depth_map if d.save_depth_maps else None)


def render_animation(settings: Settings, identity: RunIdentity, generator: Any, plan: RenderPlan,
                     inputs: RunInputs, *, depth: tuple[DepthFn | None, DepthWriter | None] | None = None,
                     device: str | None = None, resume: bool = False, state: AnimationState | None = None,
                     on_frame: Callable[[int, Path], None] | None = None,
                     loop_class: type[AnimationLoop] | None = None) -> AnimationResult:
    """Render a 2D/3D animation: ``plan`` (``make_plan(settings, identity.seed)``) into ``identity.outdir``
    with ``generator`` (a ``deforum.generate.Generator``) in ``loop_class`` (default ``AnimationLoop``, the host
    loop; the runner picks ``deforum.render.device_loop.loop_class_for(settings, device)``).

    ``inputs`` are the run's images (``read_inputs(settings)``): frame 0's init is ``inputs.init`` and the
    mask ``inputs.mask_of(inputs.init)``. ``depth`` is ``depth_functions(settings, device)`` when the caller
    already made it (default: made here). ``resume`` continues the run ``identity`` names from its saved
    state (``state`` when the caller already loaded and validated it, see ``resume_state``). ``device`` is
    where depth is predicted and the 3D warp runs (default: the generator's model's device, else the CPU).
    """
    device = model_device(generator) if device is None else device
    loop_class = AnimationLoop if loop_class is None else loop_class
    depth_fn, save_depth = depth if depth is not None else depth_functions(settings, device)
    first_init = inputs.init.image if inputs.init is not None else None
    video = None
    if hybrid_on(settings):
        video = hybrid_video(settings, inputs, device, depth_fn)
        if first_frame_init(settings):
            from PIL import Image

            first_init = Image.fromarray(video.frame(0))
    generate = key_generator(generator, settings, first_init, keep_on_device=loop_class.keeps_frames_on_device)
    loop = loop_class(plan, settings, identity, generate, depth=depth_fn, save_depth=save_depth, device=device,
                      on_frame=on_frame, mask=frame0_mask(settings, inputs), hybrid=video)
    return loop.run(resume=resume, state=state)


def model_device(generator: Any) -> str:
    """Where a generator's model runs (the CPU for a generator without one): depth and the 3D warp run there."""
    return str(getattr(getattr(generator, "model", None), "device", "cpu"))


def hybrid_video(settings: Settings, inputs: RunInputs, device: str | None = None,
                 depth: DepthFn | None = None) -> HybridVideo:
    """The run's hybrid video from its extracted frames (``inputs.video``, extracted by ``runner.preflight``)."""
    from deforum.errors import MediaError

    if inputs.video is None:
        raise MediaError("video_init_path: hybrid video needs the video's frames; they are extracted before the "
                         "render (deforum.runner.preflight puts them in RunInputs.video)")
    return HybridVideo(inputs.video.frames, settings, device, depth)


def resume_state(settings: Settings, identity: RunIdentity, plan: RenderPlan) -> AnimationState:
    """The saved state of the run ``identity`` names, validated as untrusted data against these settings and
    plan (a ``StateError`` naming the file and the key); reads, never writes."""
    return load_state(state_dir(identity.outdir, identity.timestring), shaping_settings(settings, identity),
                      width=settings.image.W, height=settings.image.H, max_frames=plan.max_frames,
                      cadence=plan.cadence)
