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

from deforum import args as fields
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
    """Merge, override with the settings file, validate and finalize; returns everything a render needs.

    No model is loaded and nothing is written: every settings problem surfaces here.
    """
    from deforum.plan import make_plan
    from deforum.settings import apply_settings_file

    a, anim = _merged("args", args), _merged("anim_args", anim_args)
    prompts = list(prompts if prompts is not None else fields.DEFAULT_PROMPTS)
    animation_prompts = dict(animation_prompts if animation_prompts is not None else
                             fields.DEFAULT_ANIMATION_PROMPTS)
    if settings_file:
        loaded = apply_settings_file(a, anim, settings_file, prompts, animation_prompts)
        a, anim = vars(loaded.args), vars(loaded.anim_args)
        prompts, animation_prompts = loaded.prompts, loaded.animation_prompts
    root_ns = _root_namespace(root)
    fields.validate(a, anim, {k: v for k, v in vars(root_ns).items() if k != "model"})
    requested_seed = a["seed"]
    args_ns, anim_ns = fields.finalize(a, anim, vars(root_ns), now=now)
    if anim_ns.resume_from_timestring and anim_ns.animation_mode in ("2D", "3D"):
        _resume_target(args_ns, anim_ns, root_ns, requested_seed)
    elif anim_ns.resume_from_timestring:
        warnings.warn(f"resume_from_timestring: resuming is for 2D and 3D runs; this {anim_ns.animation_mode} "
                      "run starts from the beginning", UserWarning, stacklevel=2)
    plan = None
    if anim_ns.animation_mode in ("2D", "3D", "Interpolation"):
        plan = make_plan(args_ns, anim_ns, animation_prompts)
    elif anim_ns.animation_mode == "None" and not prompts:
        raise DeforumError("prompts: the None mode needs at least one prompt in the prompts list")
    return args_ns, anim_ns, prompts, animation_prompts, root_ns, plan


def _resume_target(args: SimpleNamespace, anim: SimpleNamespace, root: SimpleNamespace, requested_seed: int):
    """Point ``args`` at the run being resumed: its folder (any month), timestring and, for -1, its seed."""
    import json

    from deforum.render.resume import find_run, state_dir

    outdir = find_run(root.output_path, args.batch_name, anim.resume_timestring, args.outdir)
    args.outdir, args.timestring = str(outdir), anim.resume_timestring
    if requested_seed == -1:
        saved = json.loads((state_dir(outdir, args.timestring) / "state.json").read_text(encoding="utf-8"))
        args.seed = saved["settings"]["seed"]


def render(args: Any = None, anim_args: Any = None, prompts: list[str] | None = None,
           animation_prompts: Mapping | None = None, root: Any = None, *,
           settings_file: str | Path | None = None, display: Any = None, progress: bool = True,
           step_progress: bool = False, now=None) -> RunResult:
    """Render one run of any mode; ``root.model`` is loaded (once per process) when it is missing.

    ``progress`` shows a bar over frames (with ETA); ``step_progress`` adds one over each image's steps.
    """
    args_ns, anim_ns, prompts, animation_prompts, root_ns, plan = prepare(
        args, anim_args, prompts, animation_prompts, root, settings_file=settings_file, now=now)
    mode = anim_ns.animation_mode
    resume = bool(anim_ns.resume_from_timestring) and mode in ("2D", "3D")
    outdir = Path(args_ns.outdir)

    video = None
    from deforum.image.io import ensure_output_folder
    ensure_output_folder(outdir)  # an unwritable output folder is found before the model loads
    if mode == "Video Input":  # extraction validates the video before the model loads
        from deforum.render.video_input import prepare_video_input
        video = prepare_video_input(args_ns, anim_ns)
        anim_ns.max_frames = len(video.frames)

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
    guidance = make_denoiser_wrapper(args_ns, root_ns.model, models_path=root_ns.models_path)
    steps_bar = _StepBar() if step_progress else None
    generator = Generator(root_ns.model, denoiser_wrapper=guidance, progress=steps_bar)

    settings_path = None
    if mode != "None" and not resume:
        from deforum.settings import save_settings
        settings_path = save_settings(outdir / f"{args_ns.timestring}_settings.txt", args_ns, anim_ns,
                                      animation_prompts=animation_prompts)

    total = anim_ns.max_frames if mode != "Interpolation" else len(plan)
    bar = _Progress(total if mode != "None" else len(prompts) * args_ns.n_batch, progress, display)
    try:
        frames, fps_hint = _dispatch(mode, args_ns, anim_ns, prompts, animation_prompts, root_ns, generator,
                                     plan, video if mode == "Video Input" else inputs, resume, bar, display)
    finally:
        bar.close()
        if steps_bar is not None:
            steps_bar.close()
    if mode == "None" and args_ns.save_settings:
        settings_path = outdir / f"{args_ns.timestring}_settings.txt"
    return RunResult(outdir, args_ns.timestring, frames, settings_path, fps_hint, args_ns, anim_ns)


def _dispatch(mode: str, args, anim, prompts, animation_prompts, root, generator, plan, inputs, resume,
              bar: _Progress, display: Any) -> tuple[list[Path], float | None]:
    if mode in ("2D", "3D"):
        from deforum.render.animation import render_animation
        result = render_animation(args, anim, animation_prompts, root, generator=generator, plan=plan,
                                  resume=resume, on_frame=bar, inputs=inputs)
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
