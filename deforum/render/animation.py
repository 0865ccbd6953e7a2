"""The 2D/3D render loop (spec 6): executes the render plan key frame by key frame.

Per diffused ("key") frame K the loop first writes the tween frames of the previous segment, then builds
K's init from the newest key warped up to K (warp -> colour -> contrast -> noise) and generates K. Frame j
of the output is key ``(j // N) * N`` warped up to j, cross-faded with the key before it (spec 6.7). Unlike
v0.6 the frames after the last key are written too, so every one of ``max_frames`` frames exists and every
generated key is shown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deforum.args import check_mask, get_value
from deforum.errors import FrameError
from deforum.plan import FrameRow, RenderPlan, rng_seed
from deforum.render import steps
from deforum.render.output import FrameSink, depth_name, frame_name
from deforum.render.resume import (
    AnimationState,
    load_state,
    remove_stale_temps,
    save_state,
    shaping_settings,
    state_dir,
)

log = logging.getLogger(__name__)

# generate(row, init_sample or None, strength, mask uint8 HxW or None, overlay float 0..255 HxWx3 or None)
#   -> decoded sample, 1x3xHxW in [-1, 1]
KeyGenerator = Callable[..., torch.Tensor]
# depth(image uint8 HxWx3) -> HxW depth
DepthFn = Callable[[np.ndarray], torch.Tensor]


@dataclass
class AnimationResult:
    outdir: Path
    timestring: str
    frames: list[Path]


def frame_path(outdir: Path, timestring: str, frame: int) -> Path:
    return Path(outdir) / frame_name(timestring, frame)


def depth_path(outdir: Path, timestring: str, frame: int) -> Path:
    return Path(outdir) / depth_name(timestring, frame)


def sample_to_float_image(sample: torch.Tensor) -> np.ndarray:
    """A decoded [-1,1] 1x3xHxW sample as a float32 HxWx3 image in 0..255 (spec 10.2, before truncation)."""
    x = sample.detach().float().cpu()[0].permute(1, 2, 0).numpy()
    return (np.clip(x * 0.5 + 0.5, 0.0, 1.0) * 255.0).astype(np.float32)


class AnimationLoop:
    """One 2D/3D run: the plan, where frames go, and the callables that generate and predict depth."""

    def __init__(self, plan: RenderPlan, args: Any, anim_args: Any, animation_prompts: dict,
                 outdir: Path, timestring: str, generate: KeyGenerator, depth: DepthFn | None = None,
                 save_depth: Callable[[torch.Tensor, Path, dict], None] | None = None,
                 device: str = "cpu", on_frame: Callable[[int, Path], None] | None = None,
                 mask: np.ndarray | None = None, background_writes: bool = True):
        self.plan, self.args, self.anim_args = plan, args, anim_args
        self.outdir, self.timestring = Path(outdir), timestring
        self.generate, self.depth, self.save_depth = generate, depth, save_depth
        self.device, self.on_frame = device, on_frame
        self.mask = mask  # use_mask: uint8 HxW, white keeps the init (frame 0) and what it became
        self.cadence = plan.cadence
        self.settings = shaping_settings(args, anim_args, animation_prompts)
        self.state_folder = state_dir(self.outdir, timestring)
        # Frames and depth maps are named and written by the sink; with ``background_writes`` PNG
        # compression runs on its writer thread while the next frame is computed.
        self.sink = FrameSink(self.outdir, timestring, on_frame=on_frame)
        self.written = self.sink.written
        self.background_writes = background_writes
        self._depth_key: int | None = None  # next_idx of the image _depth_cache belongs to
        self._depth_cache: torch.Tensor | None = None

    # -- one tween/output frame -------------------------------------------------------------------------
    def _depth_of_next(self, state: AnimationState) -> torch.Tensor | None:
        """Depth of the newest key image as it is now, predicted once per image: the frame's depth map, the
        tween warps and the next key's warp all share it (v0.6 predicted depth twice per frame)."""
        if self.depth is None:
            return None
        if self._depth_key != state.next_idx:
            self._depth_cache, self._depth_key = self.depth(steps.to_uint8(state.next_img)), state.next_idx
        return self._depth_cache

    def _warps_with_depth(self) -> bool:
        return self.anim_args.animation_mode == "3D" and bool(self.anim_args.use_depth_warping)

    def _warp(self, image: np.ndarray, values, depth: torch.Tensor | None, frame: int) -> np.ndarray:
        """``steps.warp_image`` with this run's settings; a non-finite warp is a FrameError naming ``frame``."""
        try:
            return steps.warp_image(image, values, self.anim_args, depth, self.device)
        except FrameError as error:
            if getattr(error, "frame", frame) is not None:
                raise
            raise steps.non_finite_error(frame, error.what, values) from None

    def _write_frame(self, state: AnimationState, j: int) -> None:
        row = self.plan.rows[j]
        role = row.cadence
        # The older key is only warped while it is still shown: at tween 1 it drops out for good.
        warp_prev = role.blended and state.prev_idx < j
        warp_next = state.next_idx < j
        depth = self._depth_of_next(state) if (warp_prev or warp_next) and self._warps_with_depth() else None
        if warp_prev:
            state.prev_img = self._warp(state.prev_img, row.values, depth, j)
            state.prev_idx = j
        if warp_next:
            state.next_img = self._warp(state.next_img, row.values, depth, j)
            state.next_idx = j
        blended = steps.blend(state.prev_img if role.blended else None, state.next_img, role.tween)
        steps.check_finite(blended, j, "warped frame", row.values)
        image = steps.to_uint8(blended)
        depth_map = None
        if self.save_depth is not None and self.depth is not None:
            depth_map = (self.save_depth, self._depth_of_next(state), state.depth_range)
        self.sink.write_frame(j, image, depth=depth_map)

    def _save_state(self, state: AnimationState) -> None:
        """Resume state is saved only after every frame it counts as written is on disk."""
        self.sink.flush()
        save_state(self.state_folder, state, self.settings)

    # -- one key frame ----------------------------------------------------------------------------------
    def _key_init(self, state: AnimationState, row: FrameRow):
        """Init sample, strength and the depth used for the warp of key frame ``row.frame`` (spec 6.2 1-6)."""
        if row.frame == 0 or state.next_img is None:
            return None, 0.0, None
        source = steps.to_uint8(state.next_img)
        depth = self._depth_of_next(state) if self._warps_with_depth() else None
        warped = self._warp(source, row.values, depth, row.frame)
        warped, state.color_ref = steps.match_colors(warped, state.color_ref, self.anim_args.color_coherence)
        generator = torch.Generator().manual_seed(rng_seed(row.seed))
        init = steps.init_sample(warped, row.values["contrast_schedule"], row.values["noise_schedule"], generator)
        steps.check_finite(init, row.frame, "init (warped, contrast, noise)", row.values)
        strength = min(max(row.values["strength_schedule"], 0.0), 1.0)
        return init, strength, depth

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
        return load_state(self.state_folder, self.settings, width=int(self.args.W), height=int(self.args.H),
                          max_frames=self.plan.max_frames, cadence=self.cadence)

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
            save_state(self.state_folder, state, self.settings)
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
            init, strength, depth = self._key_init(state, row)
            mask, overlay = self._key_masks(state, key, depth)
            sample = self.generate(row, init, strength, mask, overlay)
            steps.check_finite(sample, key, "generated image", row.values)
            image = sample_to_float_image(sample)
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


def key_generator(generator: Any, args: Any, first_init: Any = None) -> KeyGenerator:
    """The loop's ``generate(row, init, strength, mask, overlay)`` on a ``deforum.generate.Generator``.

    Frame 0 is txt2img, or img2img of ``init_image`` with the global ``strength`` when ``use_init`` is on
    (spec 6.2); every later key is img2img of its warped, colour-matched, noised init.
    """
    from PIL import Image

    from deforum.generate import generation_kwargs
    from deforum.image.convert import image_to_sample

    call = generation_kwargs(args)

    def generate(row: FrameRow, init: torch.Tensor | None, strength: float, mask: np.ndarray | None = None,
                 overlay: np.ndarray | None = None) -> torch.Tensor:
        kwargs = dict(call, seed=row.seed, prompt=row.prompt, frame=row.frame)
        if mask is not None:
            kwargs["mask"] = Image.fromarray(mask)  # uint8 HxW: mode L
            if overlay is not None:
                kwargs["overlay_original"] = image_to_sample(overlay, torch.float32)
        if init is not None:
            return generator(**kwargs | {"strength": strength}, init_sample=init)
        if row.frame == 0 and first_init is not None:
            return generator(**kwargs | {"strength": args.strength}, init_image=first_init)
        return generator(**kwargs | {"strength": 0.0})

    return generate


def first_frame_init(args: Any):
    """Frame 0's init image (PIL RGB, W x H) when ``use_init`` is on, else None."""
    if not (args.use_init and args.init_image):
        return None
    from deforum.image.io import load_init_image

    image, _alpha = load_init_image(args.init_image, args.W, args.H)
    return image


def animation_mask(args: Any) -> np.ndarray | None:
    """``use_mask``: the mask of frame 0 as uint8 W x H (``mask_file``, or the init's alpha channel)."""
    if not args.use_mask:
        return None
    from deforum.image.io import load_init_image, open_image, resize

    check_mask(args)
    if args.use_alpha_as_mask:
        _image, alpha = load_init_image(args.init_image, args.W, args.H, use_alpha_as_mask=True)
        return np.asarray(alpha.convert("L"))
    return np.asarray(resize(open_image(args.mask_file, field="mask_file").convert("L"), args.W, args.H))


def depth_functions(anim_args: Any, root: Any, device: str) -> tuple[DepthFn | None, Callable | None]:
    """The depth predictor (3D with depth warping, or ``save_depth_maps``) and the depth-map writer."""
    needed = (anim_args.animation_mode == "3D" and anim_args.use_depth_warping) or anim_args.save_depth_maps
    if not needed:
        return None, None
    from deforum.motion.depth import DepthModel, save_depth_map

    model = DepthModel(anim_args.depth_model, models_path=get_value(root, "models_path", "models"), device=device,
                       midas_weight=float(anim_args.midas_weight),
                       half=None if get_value(root, "half_precision", True) else False,
                       offload=bool(get_value(root, "offload_depth_model", False)))
    return model.predict, (save_depth_map if anim_args.save_depth_maps else None)


def render_animation(args: Any, anim_args: Any, animation_prompts: dict, root: Any, *, generator: Any = None,
                     plan: RenderPlan | None = None, resume: bool = False,
                     on_frame: Callable[[int, Path], None] | None = None,
                     inputs: tuple[Any, np.ndarray | None] | None = None,
                     state: AnimationState | None = None) -> AnimationResult:
    """Render a 2D/3D animation from finalized settings (v0.6 signature plus keywords).

    ``args``/``anim_args`` come from ``deforum.args.finalize`` (timestring, outdir and seed resolved).
    ``generator`` defaults to a ``Generator`` on ``root.model``. ``resume`` continues the run named by
    ``args.timestring`` in ``args.outdir`` from its saved state. ``inputs`` is ``animation_inputs(args)``
    when the caller already read them (the runner does, before it loads the model); ``state`` is the resume
    state when the caller already loaded and validated it (``resume_state``).
    """
    from deforum.generate import Generator
    from deforum.plan import make_plan

    plan = plan or make_plan(args, anim_args, animation_prompts)
    first_init, mask = inputs if inputs is not None else animation_inputs(args)
    generator = generator or Generator(root.model)
    device = str(getattr(generator.model, "device", "cpu")) if hasattr(generator, "model") else "cpu"
    depth, save_depth = depth_functions(anim_args, root, device)
    loop = AnimationLoop(plan, args, anim_args, animation_prompts, Path(args.outdir), args.timestring,
                         key_generator(generator, args, first_init), depth=depth, save_depth=save_depth,
                         device=device, on_frame=on_frame, mask=mask)
    return loop.run(resume=resume, state=state)


def resume_state(args: Any, anim_args: Any, animation_prompts: dict, plan: RenderPlan) -> AnimationState:
    """The saved state of the run named by ``args.timestring`` in ``args.outdir``, validated as untrusted data
    against these settings and plan (a ``StateError`` naming the file and the key); reads, never writes."""
    return load_state(state_dir(args.outdir, args.timestring), shaping_settings(args, anim_args, animation_prompts),
                      width=int(args.W), height=int(args.H), max_frames=plan.max_frames, cadence=plan.cadence)


def animation_inputs(args: Any) -> tuple[Any, np.ndarray | None]:
    """Frame 0's init image and the mask, read (from disk or a URL) before anything is generated."""
    return first_frame_init(args), animation_mask(args)
