"""One render, as the notebook's Run cell and ``deforum render`` start it (spec 1.4 order, DESIGN section 2).

cells (| settings file) -> typed settings (``deforum.settings.resolve``) -> RunIdentity (timestring, folder,
seed) -> render plan -> RunInputs (init images, mask, video frames: read once) -> model -> the mode's renderer
-> frames, settings file. Everything that can be wrong with the settings or the inputs is reported before a
model is loaded.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deforum import settings as fields
from deforum.errors import DeforumError
from deforum.plan import RenderPlan, check_values, make_plan
from deforum.settings import RunIdentity, Settings

if TYPE_CHECKING:
    from deforum.render.inputs import RunInputs
    from deforum.render.resume import AnimationState

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    outdir: Path
    timestring: str
    frames: list[Path]
    settings_path: Path | None = None
    fps_hint: float | None = None
    settings: Settings | None = None
    identity: RunIdentity | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Prepared:
    """A run resolved and planned, before anything is read, loaded or written."""

    settings: Settings
    identity: RunIdentity
    plan: RenderPlan | None  # None for the modes planned once their inputs are read (None, Video Input)
    state: AnimationState | None = None  # the run being resumed, checked against these settings
    sources: Mapping[str, str] = field(default_factory=dict)  # field -> where its values came from ("parseq")


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
            root: Any = None, *, settings_file: str | Path | None = None, now=None) -> Prepared:
    """The cells (and the settings file over them, then a Parseq manifest's per-frame values) resolved into
    typed settings, the run's identity and its plan. No model is loaded, and nothing is read but those files
    and a resumed run's state: every settings problem surfaces here, and so does every problem of the resume
    state (``deforum.errors.StateError``).
    """
    a, anim = fields.as_dict(args), fields.as_dict(anim_args)
    prompts = list(prompts if prompts is not None else fields.DEFAULT_PROMPTS)
    animation_prompts = dict(animation_prompts if animation_prompts is not None else
                             fields.DEFAULT_ANIMATION_PROMPTS)
    if settings_file:
        loaded = fields.apply_settings_file(fields.defaults("args") | a, fields.defaults("anim_args") | anim,
                                            settings_file, prompts, animation_prompts)
        for note in loaded.notes:  # values read with v0.6's meaning, or changed on the way in: said once
            log.warning("%s: note: %s", settings_file, note)
        a, anim = vars(loaded.args), vars(loaded.anim_args)
        prompts, animation_prompts = loaded.prompts, loaded.animation_prompts
    sources: dict[str, str] = {}
    if str(anim.get("parseq_manifest") or "").strip():  # a Parseq manifest's per-frame values over the schedules
        from deforum.sources.parseq import apply_manifest, read_manifest

        a, anim, animation_prompts, sources = apply_manifest(a, anim, animation_prompts,
                                                             read_manifest(anim["parseq_manifest"]))
    settings = fields.resolve(a, anim, root, prompts=prompts, animation_prompts=animation_prompts)
    identity = fields.identify(settings, now)
    mode = settings.animation.animation_mode
    resume = settings.resume.resume_from_timestring and mode in ("2D", "3D")
    if resume:
        identity = _resumed_identity(settings, identity)
    elif settings.resume.resume_from_timestring:
        warnings.warn(f"resume_from_timestring: resuming is for 2D and 3D runs; this {mode} run starts from the "
                      "beginning", UserWarning, stacklevel=2)
    plan = state = None
    if mode in ("2D", "3D", "Interpolation"):
        plan = make_plan(settings, identity.seed)  # checks that the values keep frames finite
    else:
        check_values(settings)  # the same check for the modes planned once their inputs are read
        if mode == "None" and not settings.prompts.prompts:
            raise DeforumError("prompts: the None mode needs at least one prompt in the prompts list")
    if resume:
        from deforum.render.resume import load_state, shaping_settings, state_dir

        state = load_state(state_dir(identity.outdir, identity.timestring), shaping_settings(settings, identity),
                           width=settings.image.W, height=settings.image.H, max_frames=plan.max_frames,
                           cadence=plan.cadence)
    return Prepared(settings, identity, plan, state, sources)


def _resumed_identity(settings: Settings, new: RunIdentity) -> RunIdentity:
    """The identity of the run being resumed: its folder (any month), its timestring and, for seed -1, the
    seed it started with."""
    from deforum.render.resume import find_run, saved_seed, state_dir

    timestring = settings.resume.resume_timestring
    outdir = find_run(settings.output.output_path, settings.output.batch_name, timestring, new.outdir)
    seed = saved_seed(state_dir(outdir, timestring)) if settings.image.seed == -1 else new.seed
    return RunIdentity(timestring, Path(outdir), seed)


def preflight(settings: Settings, identity: RunIdentity) -> RunInputs:
    """The I/O checks of a run before its model loads, with what they read: the LoRA files are there, the
    init images and the mask (``deforum.render.inputs.read_inputs``) and, for Video Input and hybrid video (2D,
    3D), the video probed and its frames extracted into the run's folder (held until
    ``RunInputs.video.release()``). A missing or
    unreadable input is a DeforumError naming the field; nothing is generated yet."""
    from deforum.models.lora import check_lora_files
    from deforum.render.device_loop import check_frame_loop
    from deforum.render.hybrid_video import hybrid_on
    from deforum.render.inputs import read_inputs

    check_lora_files(settings.model.lora, settings.model.models_path)  # each LoRA file is there
    check_frame_loop(settings)  # frame_loop 'device' with a feature only the host loop has
    inputs = read_inputs(settings)
    if settings.animation.animation_mode == "Video Input" or (
            settings.animation.animation_mode in ("2D", "3D") and hybrid_on(settings)):
        from deforum.render.video_input import prepare_video_input

        inputs = replace(inputs, video=prepare_video_input(settings, identity, hold=True))
    return inputs


def render(args: Any = None, anim_args: Any = None, prompts: list[str] | None = None,
           animation_prompts: Mapping | None = None, root: Any = None, *,
           settings_file: str | Path | None = None, display: Any = None, progress: bool = True,
           step_progress: bool = False, now=None) -> RunResult:
    """Render one run of any mode; ``root.model`` is loaded (once per process) when it is missing.

    ``progress`` shows a bar over frames (with ETA); ``step_progress`` adds one over each image's steps.
    """
    prepared = prepare(args, anim_args, prompts, animation_prompts, root, settings_file=settings_file, now=now)
    settings, identity = prepared.settings, prepared.identity
    resume = prepared.state is not None

    from deforum.image.io import ensure_output_folder
    ensure_output_folder(identity.outdir)  # an unwritable output folder is found before the model loads
    from deforum.render.resume import claim_timestring, release_claim
    if not resume:
        # A run owns its timestring: two runs started in the same second into this folder never share a file.
        claimed = claim_timestring(identity.outdir, identity.timestring)
        if claimed != identity.timestring:
            log.info("timestring %s is taken in %s; this run is %s", identity.timestring, identity.outdir, claimed)
            identity = replace(identity, timestring=claimed)

    inputs = None
    try:
        inputs = preflight(settings, identity)  # init images, mask, video frames: read before the model loads
        return render_prepared(prepared, identity, inputs, root, display=display, progress=progress,
                               step_progress=step_progress)
    finally:
        if inputs is not None and inputs.video is not None:
            inputs.video.release()  # other runs may extract into inputframes/ again
        if not resume:
            release_claim(identity.outdir, identity.timestring)  # only an empty claim: a 2D/3D run's state stays


def make_generator(settings: Settings, root: Any, progress: Any = None) -> Any:
    """The run's ``Generator``: the model kept in ``root.model`` (loaded once per process or notebook), this
    run's LoRAs and autoencoder, its guidance wrapper; ``progress(step, total)`` counts sampler steps."""
    from deforum.generate import Generator
    from deforum.guidance import make_denoiser_wrapper
    from deforum.models.lora import apply_loras
    from deforum.models.taesd import use_vae

    model = _root_model(root)
    if model is None:
        from deforum.models import load_root_model
        model = load_root_model(settings.model)
        if root is not None and not isinstance(root, Mapping):
            root.model = model  # keep it for the next run of the notebook cell
    apply_loras(model, settings.model.lora, models_path=settings.model.models_path)  # this run's LoRAs only
    use_vae(model, settings.model.vae, models_path=settings.model.models_path)  # this run's autoencoder
    return Generator(model, denoiser_wrapper=make_denoiser_wrapper(settings, model), progress=progress)


def render_prepared(prepared: Prepared, identity: RunIdentity, inputs: RunInputs, root: Any, *, display: Any = None,
                    progress: bool = True, step_progress: bool = False) -> RunResult:
    """Load the model, write the settings and run the mode's renderer (a prepared, preflighted run: the
    runner's ``render`` and a Ray worker's task)."""
    settings, plan = prepared.settings, prepared.plan
    mode = settings.animation.animation_mode
    if display is not None and hasattr(display, "plan"):
        display.plan(plan, settings)  # the size of the run (plan None: the None mode, Video Input)

    steps_bar = _StepBar() if step_progress else None
    generator = make_generator(settings, root, progress=steps_bar)
    if display is not None and hasattr(display, "generation_started"):
        display.generation_started()  # the model is loaded: time from here on is rendering

    settings_path = identity.outdir / f"{identity.timestring}_settings.txt"
    if mode != "None" and prepared.state is None:
        from deforum.settings import save_run_settings
        save_run_settings(settings_path, settings, identity,
                          max_frames=len(inputs.video.frames) if inputs.video is not None else None)

    if mode == "Interpolation":
        total = len(plan)
    elif mode == "Video Input":
        total = len(inputs.video.frames)
    elif mode == "None":
        total = len(settings.prompts.prompts) * settings.output.n_batch
    else:
        total = settings.animation.max_frames
    bar = _Progress(total, progress, display)
    try:
        frames, fps_hint = _dispatch(prepared, identity, inputs, generator, bar, display)
    finally:
        bar.close()
        if steps_bar is not None:
            steps_bar.close()
    if mode == "None" and not settings.output.save_settings:
        settings_path = None
    return RunResult(identity.outdir, identity.timestring, frames, settings_path, fps_hint, settings, identity)


def _root_model(root: Any) -> Any:
    """The model the notebook keeps in ``root.model`` (None until loaded)."""
    if root is None:
        return None
    return root.get("model") if isinstance(root, Mapping) else vars(root).get("model")


def _dispatch(prepared: Prepared, identity: RunIdentity, inputs: RunInputs, generator: Any, bar: _Progress,
              display: Any) -> tuple[list[Path], float | None]:
    settings, plan = prepared.settings, prepared.plan
    mode = settings.animation.animation_mode
    if mode in ("2D", "3D"):
        from deforum.render.animation import model_device, render_animation
        from deforum.render.device_loop import loop_class_for

        device = model_device(generator)
        result = render_animation(settings, identity, generator, plan, inputs, resume=prepared.state is not None,
                                  state=prepared.state, on_frame=bar, device=device,
                                  loop_class=loop_class_for(settings, device))
        return result.frames, None
    if mode == "Video Input":
        from deforum.render.video_input import render_input_video
        return render_input_video(settings, identity, generator, inputs, on_frame=bar), inputs.video.fps_hint
    if mode == "Interpolation":
        from deforum.render.interpolation import render_interpolation
        return render_interpolation(settings, identity, generator, plan, inputs, on_frame=bar), None
    from deforum.render.stills import render_image_batch
    show = getattr(display, "image", None) or (display if callable(display) else None)
    written = render_image_batch(settings, identity, generator, inputs, display=show)
    images = [p for p in written if p.suffix == ".png"]
    for index, path in enumerate(images):
        bar(index, path, show=False)  # render_image_batch displayed them as they came
    return images, None
