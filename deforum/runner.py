"""One render, as the notebook's Run cell and ``deforum render`` start it (spec 1.4 order, DESIGN section 2).

settings (cells | file) -> validated -> finalized (timestring, seed, outdir) -> render plan -> model ->
the mode's renderer -> frames, settings file. Everything that can be wrong with the settings is reported
before a model is loaded.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from deforum import settings as fields
from deforum.errors import DeforumError

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    outdir: Path
    timestring: str
    frames: list[Path]
    settings_path: Path | None = None
    fps_hint: float | None = None
    args: SimpleNamespace | None = None
    anim_args: SimpleNamespace | None = None
    extra: dict = field(default_factory=dict)


def _merged(group: str, values: Any) -> dict[str, Any]:
    return fields.defaults(group) | fields.as_dict(values)


def _root_namespace(root: Any) -> SimpleNamespace:
    """Root fields over their defaults, plus ``model`` (None until loaded)."""
    given = fields.as_dict(root)
    model = given.pop("model", None)
    return SimpleNamespace(**_merged("root", given), model=model)


class _StepBar:
    """A progress bar over the sampler steps of the image being generated (restarts for every image)."""

    def __init__(self):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=0, unit="step", desc="steps", leave=False)

    def __call__(self, step: int, total: int) -> None:
        if step == 1 or self.bar.total != total:
            self.bar.reset(total=total)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        self.bar.close()


class _Progress:
    """A frame progress bar (tqdm) plus the display hook's per-frame update."""

    def __init__(self, total: int, enabled: bool, display: Any):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=total, unit="frame", desc="frames")
        self.display = display

    def __call__(self, index: int, path: Path, show: bool = True) -> None:
        if self.bar is not None:
            self.bar.update(1)
        frame = getattr(self.display, "frame", None) or (self.display if callable(self.display) else None)
        if show and frame is not None:
            frame(path)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def prepare(args: Any, anim_args: Any, prompts: list[str] | None, animation_prompts: Mapping | None,
            root: Any = None, *, settings_file: str | Path | None = None, now=None):
    """Merge, override with the settings file, validate and finalize; returns everything a render needs:
    ``(args, anim_args, prompts, animation_prompts, root, plan)``.

    No model is loaded and nothing is written: every settings problem surfaces here, and so does every
    problem of the resume state of a run being resumed (``deforum.errors.StateError``).
    """
    return _prepare(args, anim_args, prompts, animation_prompts, root, settings_file=settings_file, now=now)[:6]


def _prepare(args: Any, anim_args: Any, prompts: list[str] | None, animation_prompts: Mapping | None,
             root: Any = None, *, settings_file: str | Path | None = None, now=None):
    """``prepare`` plus the validated resume state (an ``AnimationState``, or None when not resuming)."""
    from deforum.plan import check_values, make_plan
    from deforum.settings import apply_settings_file

    a, anim = _merged("args", args), _merged("anim_args", anim_args)
    prompts = list(prompts if prompts is not None else fields.DEFAULT_PROMPTS)
    animation_prompts = dict(animation_prompts if animation_prompts is not None else
                             fields.DEFAULT_ANIMATION_PROMPTS)
    if settings_file:
        loaded = apply_settings_file(a, anim, settings_file, prompts, animation_prompts)
        for note in loaded.notes:  # values read with v0.6's meaning, or changed on the way in: said once
            log.warning("%s: note: %s", settings_file, note)
        a, anim = vars(loaded.args), vars(loaded.anim_args)
        prompts, animation_prompts = loaded.prompts, loaded.animation_prompts
    root_ns = _root_namespace(root)
    fields.validate(a, anim, {k: v for k, v in vars(root_ns).items() if k != "model"}, prompts=prompts,
                    animation_prompts=animation_prompts)
    requested_seed = a["seed"]
    args_ns, anim_ns = fields.finalize(a, anim, vars(root_ns), now=now)
    if anim_ns.resume_from_timestring and anim_ns.animation_mode in ("2D", "3D"):
        _resume_target(args_ns, anim_ns, root_ns, requested_seed)
    elif anim_ns.resume_from_timestring:
        warnings.warn(f"resume_from_timestring: resuming is for 2D and 3D runs; this {anim_ns.animation_mode} "
                      "run starts from the beginning", UserWarning, stacklevel=2)
    plan = state = None
    if anim_ns.animation_mode in ("2D", "3D", "Interpolation"):
        plan = make_plan(args_ns, anim_ns, animation_prompts)  # checks that the values keep frames finite
    else:
        check_values(args_ns, anim_ns)  # the same check for the modes planned once their inputs are read
        if anim_ns.animation_mode == "None" and not prompts:
            raise DeforumError("prompts: the None mode needs at least one prompt in the prompts list")
    if anim_ns.resume_from_timestring and anim_ns.animation_mode in ("2D", "3D"):
        state = _resume_state(args_ns, anim_ns, animation_prompts, plan)
    return args_ns, anim_ns, prompts, animation_prompts, root_ns, plan, state


def _resume_state(args: SimpleNamespace, anim: SimpleNamespace, animation_prompts: Mapping, plan):
    """The state of the run being resumed, read as untrusted data and checked against these settings and
    this plan (schema, paths inside its own folder, regular files, W x H), before any model loads."""
    from deforum.render.resume import load_state, shaping_settings, state_dir

    return load_state(state_dir(args.outdir, args.timestring), shaping_settings(args, anim, dict(animation_prompts)),
                      width=int(args.W), height=int(args.H), max_frames=plan.max_frames, cadence=plan.cadence)


def _resume_target(args: SimpleNamespace, anim: SimpleNamespace, root: SimpleNamespace, requested_seed: int):
    """Point ``args`` at the run being resumed: its folder (any month), timestring and, for -1, its seed."""
    from deforum.render.resume import find_run, saved_seed, state_dir

    outdir = find_run(root.output_path, args.batch_name, anim.resume_timestring, args.outdir)
    args.outdir, args.timestring = str(outdir), anim.resume_timestring
    if requested_seed == -1:
        args.seed = saved_seed(state_dir(outdir, args.timestring))


def render(args: Any = None, anim_args: Any = None, prompts: list[str] | None = None,
           animation_prompts: Mapping | None = None, root: Any = None, *,
           settings_file: str | Path | None = None, display: Any = None, progress: bool = True,
           step_progress: bool = False, now=None) -> RunResult:
    """Render one run of any mode; ``root.model`` is loaded (once per process) when it is missing.

    ``progress`` shows a bar over frames (with ETA); ``step_progress`` adds one over each image's steps.
    """
    args_ns, anim_ns, prompts, animation_prompts, root_ns, plan, state = _prepare(
        args, anim_args, prompts, animation_prompts, root, settings_file=settings_file, now=now)
    mode = anim_ns.animation_mode
    resume = bool(anim_ns.resume_from_timestring) and mode in ("2D", "3D")
    outdir = Path(args_ns.outdir)

    from deforum.image.io import ensure_output_folder
    ensure_output_folder(outdir)  # an unwritable output folder is found before the model loads
    from deforum.render.resume import claim_timestring, release_claim
    if not resume:
        # A run owns its timestring: two runs started in the same second into this folder never share a file.
        claimed = claim_timestring(outdir, args_ns.timestring)
        if claimed != args_ns.timestring:
            log.info("timestring %s is taken in %s; this run is %s", args_ns.timestring, outdir, claimed)
            args_ns.timestring = claimed

    video = None
    try:
        if mode == "Video Input":  # extraction validates the video before the model loads
            from deforum.render.video_input import prepare_video_input
            video = prepare_video_input(args_ns, anim_ns, hold=True)  # ours until the run ends
            anim_ns.max_frames = len(video.frames)
        return _render_prepared(args_ns, anim_ns, prompts, animation_prompts, root, root_ns, plan, state, video,
                                resume, display, progress, step_progress)
    finally:
        if video is not None:
            video.release()  # other runs may extract into inputframes/ again
        if not resume:
            release_claim(outdir, args_ns.timestring)  # only an empty claim: a 2D/3D run's state stays


def _render_prepared(args_ns, anim_ns, prompts, animation_prompts, root, root_ns, plan, state, video, resume,
                     display, progress, step_progress) -> RunResult:
    """Read the inputs, load the model, write the settings and run the mode's renderer."""
    mode = anim_ns.animation_mode
    outdir = Path(args_ns.outdir)

    inputs = None
    if mode in ("2D", "3D"):  # init image and mask are read before the model loads
        from deforum.render.animation import animation_inputs
        inputs = animation_inputs(args_ns)

    if plan is not None and display is not None and hasattr(display, "plan"):
        display.plan(plan, anim_ns)

    from deforum.generate import Generator
    if root_ns.model is None:
        from deforum.models import load_root_model
        root_ns.model = load_root_model(root_ns)
        if root is not None and not isinstance(root, Mapping):
            root.model = root_ns.model  # keep it for the next run of the notebook cell
    from deforum.guidance import make_denoiser_wrapper
    settings = fields.typed({"root": {k: v for k, v in vars(root_ns).items() if k != "model"}, "args": vars(args_ns),
                             "anim_args": vars(anim_ns), "video": fields.defaults("video"),
                             "load": fields.defaults("load")}, prompts, animation_prompts)
    guidance = make_denoiser_wrapper(settings, root_ns.model)
    steps_bar = _StepBar() if step_progress else None
    generator = Generator(root_ns.model, denoiser_wrapper=guidance, progress=steps_bar)
    if display is not None and hasattr(display, "generation_started"):
        display.generation_started()  # the model is loaded: time from here on is rendering

    settings_path = None
    if mode != "None" and not resume:
        from deforum.settings import save_settings
        settings_path = save_settings(outdir / f"{args_ns.timestring}_settings.txt", args_ns, anim_ns,
                                      animation_prompts=animation_prompts)

    total = anim_ns.max_frames if mode != "Interpolation" else len(plan)
    bar = _Progress(total if mode != "None" else len(prompts) * args_ns.n_batch, progress, display)
    try:
        frames, fps_hint = _dispatch(mode, args_ns, anim_ns, prompts, animation_prompts, root_ns, generator,
                                     plan, video if mode == "Video Input" else inputs, resume, bar, display,
                                     state)
    finally:
        bar.close()
        if steps_bar is not None:
            steps_bar.close()
    if mode == "None" and args_ns.save_settings:
        settings_path = outdir / f"{args_ns.timestring}_settings.txt"
    return RunResult(outdir, args_ns.timestring, frames, settings_path, fps_hint, args_ns, anim_ns)


def _dispatch(mode: str, args, anim, prompts, animation_prompts, root, generator, plan, inputs, resume,
              bar: _Progress, display: Any, state=None) -> tuple[list[Path], float | None]:
    if mode in ("2D", "3D"):
        from deforum.render.animation import render_animation
        result = render_animation(args, anim, animation_prompts, root, generator=generator, plan=plan,
                                  resume=resume, on_frame=bar, inputs=inputs, state=state)
        return result.frames, None
    if mode == "Video Input":
        from deforum.render.video_input import render_input_video
        return render_input_video(args, anim, animation_prompts, generator, inputs, on_frame=bar), inputs.fps_hint
    if mode == "Interpolation":
        from deforum.render.interpolation import render_interpolation
        return render_interpolation(args, anim, animation_prompts, generator, plan=plan, on_frame=bar), None
    from deforum.render.stills import render_image_batch
    show = getattr(display, "image", None) or (display if callable(display) else None)
    written = render_image_batch(args, prompts, generator, display=show, root=root)
    images = [p for p in written if p.suffix == ".png"]
    for index, path in enumerate(images):
        bar(index, path, show=False)  # render_image_batch displayed them as they came
    return images, None
