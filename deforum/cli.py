"""The ``deforum`` command (also ``python -m deforum``): render, plan, preview, video, audio, settings, models.

Exit codes: 0 success; 1 a run, model or media failure; 2 bad settings or usage (argparse's own code
for usage errors). With several settings files the code is that of the first failure, after every file
has been tried. A DeforumError is one readable line (or one block listing every settings problem), never
a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import re
import sys
import textwrap
import time
import traceback
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from deforum import __version__
from deforum import device as devices
from deforum import settings as A
from deforum.errors import DeforumError, MediaError, SettingsError
from deforum.log import hide_progress_messages, show_progress_messages
from deforum.settings import docs as settings_docs

EXIT_OK, EXIT_FAILED, EXIT_SETTINGS = 0, 1, 2
SET_GROUPS = ("args", "anim_args", "root", "video")  # where an unprefixed --set key is looked up, in order
FILE_VIDEO_KEYS = ("fps", "make_gif", "add_soundtrack", "soundtrack_path")  # video-cell fields a file may carry
NULL_WORDS = ("null", "none")
TRUE_WORDS, FALSE_WORDS = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
GRID_NAME = re.compile(r"\d{14}_\d{5}_grid_\d+\.png")  # a None-mode batch's grid (not a frame of the contact sheet)

log = logging.getLogger("deforum.cli")


# ------------------------------------------------------------------------------------------ --set values


def parse_value(f: A.Field, text: str) -> Any:
    """A ``--set`` value as the field's type; text that does not fit is kept for validation to report."""
    lowered = text.strip().lower()
    if f.nullable and lowered in NULL_WORDS:
        return None
    if f.type == "bool":
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
        return text
    if f.type in ("int", "float"):
        for convert in (int, float):
            try:
                return convert(text)
            except ValueError:
                continue
        return text
    if f.type in ("inject_timing", "runtime"):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text  # str, schedule, intstr: the text itself


def field_for_key(key: str) -> A.Field:
    """The field a ``--set`` key names: 'name' (looked up in args, anim_args, root, video) or 'group.name'."""
    group, _, name = key.rpartition(".")
    groups = (group,) if group else SET_GROUPS
    if group and group not in A.FIELDS:
        raise SettingsError(f"--set {key}: unknown group {group!r}; groups are {', '.join(A.FIELDS)}")
    for g in groups:
        if name in A.FIELDS[g]:
            return A.FIELDS[g][name]
    names = sorted({n for g in groups for n in A.FIELDS[g]})
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise SettingsError(f"--set {key}: {name!r} is not a setting{hint}; `deforum settings fields` lists them")


def parse_sets(items: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    """``["W=64", "anim_args.max_frames=5"]`` -> {"args": {"W": 64}, "anim_args": {"max_frames": 5}}."""
    out: dict[str, dict[str, Any]] = {g: {} for g in A.FIELDS}
    for item in items or ():
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"--set {item!r}: expected key=value, e.g. --set max_frames=10")
        f = field_for_key(key.strip())
        out[f.group][f.name] = parse_value(f, text)
    return out


# --------------------------------------------------------------------------------------- settings files


@dataclass
class Job:
    """One settings file with the command line's overrides applied, normalized and (unless loaded with
    ``check=False``) checked: every problem of the file was raised at once."""

    path: Path
    args: dict[str, Any]
    anim_args: dict[str, Any]
    prompts: list[str]
    animation_prompts: dict[int, str]
    video: dict[str, Any]  # the video-cell fields given by the file or --set (defaults: video_setting)
    notes: list[str] = field(default_factory=list)  # values used differently from how they were given
    unknown_keys: list[str] = field(default_factory=list)
    dialect: Any = None  # deforum.settings.dialects.Dialect: which program wrote the file

    def video_setting(self, name: str) -> Any:
        return self.video.get(name, A.FIELDS["video"][name].default)


def load_job(path: str | os.PathLike[str], sets: Mapping[str, Mapping[str, Any]] | None = None,
             check: bool = True, *, unknown_keys: str = "warn") -> Job:
    """A settings file (v0.6 .txt/.json or ours) over the v0.6 defaults, then the ``--set`` values.

    With ``check`` every problem of the result (keys given twice, fields, schedules, prompts, sizes, the
    video fields) is raised in one SettingsError naming the file. ``unknown_keys``: "warn" (one line) or
    "problem" (``deforum settings check``).
    """
    from deforum.settings import finish_settings, merge_settings, read_settings_file

    found: list[str] = []
    data = dict(read_settings_file(path, found))
    video: dict[str, Any] = {}  # only the video fields the file or --set give
    for key in FILE_VIDEO_KEYS:  # video-cell fields are not args: take them out before the settings apply
        if key in data:
            video[key] = data.pop(key)
    merged = merge_settings(A.defaults("args"), A.defaults("anim_args"), data, A.DEFAULT_PROMPTS,
                            A.DEFAULT_ANIMATION_PROMPTS, where=str(path))
    video.update(merged.video)  # an imported file's video-cell values (A1111's add_soundtrack, ...)
    merged.video = {}  # checked here with the --set ones
    sets = sets or {}
    vars(merged.args).update(sets.get("args", {}))
    vars(merged.anim_args).update(sets.get("anim_args", {}))
    video, video_notes = A.normalized("video", {**video, **sets.get("video", {})})
    merged.problems[:0] = found
    if check:
        merged.problems += A.problems("video", video, present_only=True)
    merged.notes += video_notes
    loaded = finish_settings(merged, check=check, unknown_keys=unknown_keys, require_prompts=check)
    return Job(Path(path), vars(loaded.args), vars(loaded.anim_args), loaded.prompts, loaded.animation_prompts,
               video, loaded.notes, loaded.unknown_keys, loaded.dialect)


def make_root(ns: argparse.Namespace, sets: Mapping[str, Mapping[str, Any]]) -> SimpleNamespace:
    """Root (model and paths) from the options; the model is loaded by the first render and kept."""
    root = A.defaults("root")
    root.update(mount_google_drive=False, map_location=devices.best_device())
    if getattr(ns, "output", None):
        root["output_path"] = str(ns.output)
    checkpoint = getattr(ns, "checkpoint", None)
    if checkpoint:
        if os.path.isfile(checkpoint):
            root.update(model_checkpoint="custom", custom_checkpoint_path=os.path.abspath(checkpoint))
        else:
            root["model_checkpoint"] = checkpoint
    config = getattr(ns, "config", None)
    if checkpoint and not config and "model_config" not in sets.get("root", {}):
        root["model_config"] = ""  # detected from the checkpoint's keys (the catalogue's config for its names)
    if config:
        if os.path.isfile(config):
            root.update(model_config="custom", custom_config_path=os.path.abspath(config))
        else:
            root["model_config"] = config
    root.update(sets.get("root", {}))
    found = A.problems("root", A.normalize("root", root))
    if found:
        raise A.settings_error(found, "the command-line Root settings")
    return SimpleNamespace(**root, model=None)


def located(path: Any, exc: BaseException) -> str:
    """The error's message naming ``path`` once: prefixed unless the message names its file already."""
    if not path or getattr(exc, "where", None):
        return str(exc)
    return f"{path}: {exc}"


def _failure(path: Any, exc: BaseException) -> int:
    """Report one failed item on stderr; the exit code it stands for."""
    if isinstance(exc, DeforumError):
        print(f"deforum: error: {located(path, exc)}", file=sys.stderr)
        return EXIT_SETTINGS if isinstance(exc, SettingsError) else EXIT_FAILED
    print(f"deforum: internal error: {f'{path}: ' if path else ''}{type(exc).__name__}: {exc}", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)
    return EXIT_FAILED


# --------------------------------------------------------------------------------------------- render


def cmd_render(ns: argparse.Namespace) -> int:
    sets = parse_sets(ns.set)
    root = make_root(ns, sets)
    if getattr(ns, "ray", None) is not None and os.path.isfile(ns.ray):
        ns.settings.insert(0, ns.ray)  # `render --ray A.txt B.txt`: A.txt is a settings file, not an address
        ns.ray = "local"
    codes, _ = render_files(ns.settings, ns, sets, root)
    return exit_code(codes)


def render_files(paths: Sequence[str], ns: argparse.Namespace, sets: Mapping[str, Mapping[str, Any]],
                 root: SimpleNamespace) -> tuple[list[int], list[Any]]:
    """Render settings files one after another (or on Ray with ``ns.ray``); each file's exit code and its
    RunResult (None where it failed). A failure is reported and the next file still renders."""
    if getattr(ns, "ray", None) is not None:
        return render_on_ray(paths, ns, sets, root)
    codes, results = [], []
    for path in paths:
        try:
            results.append(render_one(path, ns, sets, root))
            codes.append(EXIT_OK)
        except BrokenPipeError:
            raise
        except Exception as exc:  # reported; even a bug in one file's run must not stop the next file
            results.append(None)
            codes.append(_failure(path, exc))
    return codes, results


def exit_code(codes: Sequence[int]) -> int:
    """The first failure's code (0 when all succeeded); with several files, how many rendered."""
    failed = [c for c in codes if c != EXIT_OK]
    if len(codes) > 1:
        print(f"{len(codes) - len(failed)} of {len(codes)} settings files rendered", file=sys.stderr)
    return failed[0] if failed else EXIT_OK


def render_one(path: str, ns: argparse.Namespace, sets: Mapping[str, Mapping[str, Any]],
               root: SimpleNamespace) -> Any:
    """Render one settings file, then make its video (animation modes, unless --no-video); its RunResult.

    Before the model loads: the notes (values used differently from how they were given), one line each,
    and the size of the run (frames x sampler steps); once frames come, an estimate of the time left.
    """
    from deforum.runner import render

    job = load_render_job(path, ns, sets)
    note = cpu_note(str(root.map_location))
    if note:
        print(f"deforum: note: {note}", file=sys.stderr)
    report = RenderReport(str(path))
    result = render(job.args, job.anim_args, job.prompts, job.animation_prompts, root, progress=not ns.quiet,
                    step_progress=bool(getattr(ns, "verbose", False)) and not ns.quiet, display=report)
    print(finish_run(path, job, result, ns))
    return result


def finish_run(path: Any, job: Job, result: Any, ns: argparse.Namespace) -> str:
    """After a run: its video (animation modes, unless --no-video) and the lines that say what was written."""
    lines = [f"{path}: {len(result.frames)} frame(s) in {result.outdir}"]
    if result.settings_path is not None:
        lines.append(f"  settings: {result.settings_path}")
    mode = result.settings.animation.animation_mode
    if mode != "None" and not ns.no_video and result.frames:
        from deforum.video import video_cell

        fps = ns.fps or job.video.get("fps") or result.fps_hint or job.video_setting("fps")
        made = video_cell(outdir=result.outdir, timestring=result.timestring, fps=float(fps),
                          make_gif=bool(ns.gif or job.video_setting("make_gif")),
                          add_soundtrack=job.video_setting("add_soundtrack"),
                          soundtrack_path=job.video_setting("soundtrack_path"),
                          video_init_path=str(result.settings.video_input.video_init_path or ""))
        if made is not None:
            lines.append(f"  video: {made.mp4_path} ({made.frame_count} frames at {made.fps:g} fps)")
            if made.gif_path is not None:
                lines.append(f"  gif: {made.gif_path}")
    return "\n".join(lines)


def load_render_job(path: str, ns: argparse.Namespace, sets: Mapping[str, Mapping[str, Any]]) -> Job:
    """A settings file as ``deforum render`` renders it (``--resume`` applied), its notes said on stderr."""
    job = load_job(path, sets)
    if getattr(ns, "resume", None):
        job.anim_args.update(resume_from_timestring=True, resume_timestring=ns.resume)
    for note in job.notes:
        print(f"deforum: note: {path}: {note}", file=sys.stderr)
    return job


def render_on_ray(paths: Sequence[str], ns: argparse.Namespace, sets: Mapping[str, Mapping[str, Any]],
                  root: SimpleNamespace) -> tuple[list[int], list[Any]]:
    """``--ray [local|ADDRESS]``: every settings file resolved and its run claimed here, then one Ray task
    each (deforum.scale.ray_render); each run's lines and video as it finishes. Returns what
    ``render_files`` does."""
    import datetime

    from deforum.scale import require_ray
    from deforum.scale.ray_render import render_on_ray as dispatch
    from deforum.scale.tasks import plan_task

    require_ray()  # before anything is resolved or claimed: the message naming the extra
    now = datetime.datetime.now()
    codes: dict[int, int] = {}
    results: list[Any] = [None] * len(paths)
    tasks, jobs, where = [], [], []
    for index, path in enumerate(paths):
        try:
            job = load_render_job(path, ns, sets)
            tasks.append(plan_task(str(path), job.args, job.anim_args, job.prompts, job.animation_prompts, root,
                                   now=now))
            jobs.append(job)
            where.append(index)
        except Exception as exc:  # reported; the other files still render
            codes[index] = _failure(path, exc)

    def reported(task_index: int, result: Any) -> None:
        index = where[task_index]
        path = paths[index]
        if isinstance(result, BaseException):
            codes[index] = _failure(path, result)
            return
        results[index] = result
        try:
            print(finish_run(path, jobs[task_index], result, ns), flush=True)
            codes[index] = EXIT_OK
        except Exception as exc:  # the video of one run must not stop the report of the others
            codes[index] = _failure(path, exc)

    if tasks:
        dispatch(tasks, root, address=ns.ray, workers=getattr(ns, "workers", None), progress=not ns.quiet,
                 on_result=reported, device_from_driver="map_location" in sets.get("root", {}))
    return [codes.get(index, EXIT_FAILED) for index in range(len(paths))], results


# ---------------------------------------------------------------------------------------------- sweep


def cmd_sweep(ns: argparse.Namespace) -> int:
    """``deforum sweep SETTINGS --vary NAME=VALUES ...``: every variant loaded and checked, written as a
    settings file into ``sweep_{timestring}/`` in the output folder, rendered (one after another, or on Ray),
    then the contact sheet and sweep.json beside those files (deforum.scale.sweep)."""
    import datetime

    from deforum.runner import prepare
    from deforum.scale.contact_sheet import SheetRow, save_contact_sheet
    from deforum.scale.sweep import (
        file_name,
        label,
        parse_vary,
        sweep_folder,
        variant_sets,
        variants,
        write_manifest,
        write_variant,
    )
    from deforum.settings import output_folder

    if ns.ray is not None:
        from deforum.scale import require_ray

        require_ray()
    sets = parse_sets(ns.set)
    root = make_root(ns, sets)
    varies = [parse_vary(text) for text in ns.vary]
    combos = variants(varies)
    jobs = []
    for values in combos:  # every variant loaded, checked and planned before anything is written or rendered
        try:
            job = load_job(ns.settings, variant_sets(sets, varies, values))
            prepare(job.args, job.anim_args, job.prompts, job.animation_prompts, root)
        except DeforumError as exc:
            kind = SettingsError if isinstance(exc, SettingsError) else DeforumError
            raise kind(f"--vary {label(values)}: {located(ns.settings, exc)}") from None
        jobs.append(job)
    for note in jobs[0].notes:
        print(f"deforum: note: {ns.settings}: {note}", file=sys.stderr)
    now = datetime.datetime.now()
    outdir = Path(output_folder(root.output_path, jobs[0].args["batch_name"], now))
    folder, _ = sweep_folder(outdir, now.strftime("%Y%m%d%H%M%S"))
    files = [write_variant(folder / file_name(i, values), job)
             for i, (values, job) in enumerate(zip(combos, jobs, strict=True))]
    print(f"sweep: {len(files)} variant(s) of {ns.settings} in {folder}", file=sys.stderr)
    codes, results = render_files([str(f) for f in files], argparse.Namespace(**{**vars(ns), "resume": None}),
                                  parse_sets([]), root)
    rows, manifest = [], []
    for values, path, result in zip(combos, files, results, strict=True):
        frames = [f for f in result.frames if not GRID_NAME.fullmatch(f.name)] if result is not None else []
        rows.append(SheetRow(label(values), frames))
        manifest.append({"file": path.name, "values": values, **({"error": True} if result is None else {
            "timestring": result.timestring, "outdir": str(result.outdir), "frames": len(result.frames)})})
    sheet = save_contact_sheet(rows, folder / "contact_sheet.png")
    write_manifest(folder, str(ns.settings), varies, manifest)
    print(f"sweep: contact sheet {sheet}")
    return exit_code(codes)


def cpu_note(device: str) -> str | None:
    """The note a render on the CPU gets: it works, but Deforum is made for a GPU."""
    if device != "cpu":
        return None
    return ("no GPU found: rendering on the CPU, which takes minutes for each 512 x 512 frame (Deforum "
            "expects a CUDA GPU; this run is fine for trying small settings)")


def first_strength(settings: Any) -> float:
    """The strength of an image made from the init image (0 without one: text to image)."""
    return settings.init.strength if settings.init.use_init and settings.init.init_image else 0.0


def frame_steps(plan: Any, settings: Any) -> dict[int, int]:
    """Frame -> the sampler steps the run spends on it (v0.6's strength truncation int((1 - strength) *
    steps)); frames that are only warped or blended spend none."""
    from deforum.sampling.run import steps_to_run

    out = {}
    for row in plan.rows:
        if row.seed is None:
            continue
        if plan.animation_mode in ("2D", "3D") and row.frame > 0:
            strength = min(max(row.values.strength_schedule, 0.0), 1.0)
        else:
            strength = first_strength(settings)
        out[row.frame] = steps_to_run(settings.image.steps, strength)
    return out


def duration_text(seconds: float) -> str:
    """'40 s', '12 min', '3.5 h', '2.1 days'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class RenderReport:
    """The display hook ``deforum render`` gives the runner: one line with the size of the run before the
    model loads (``plan``), and one with an estimate of the time left from the first frames' speed
    (``frame``). The progress bar, when shown, keeps counting after that."""

    def __init__(self, label: str, *, out: Any = None, clock: Callable[[], float] = time.monotonic):
        self.label = label
        self.out = out
        self.clock = clock
        self.done_before: list[int] = []  # steps of the frames before index i (a cumulative sum)
        self.total = 0
        self.origin: tuple[float, int | None] | None = None  # (time, steps done then) the rate counts from
        self.estimated = False
        self.calls = 0

    def say(self, text: str) -> None:
        print(f"{self.label}: {text}", file=self.out or sys.stderr, flush=True)

    def plan(self, plan: Any, settings: Any) -> None:
        """The runner's hook before the model loads: the size of the run (``plan`` is None for the modes
        planned once their inputs are read: the None mode's batch and Video Input)."""
        if plan is None:
            self._unplanned_size(settings)
            return
        steps = frame_steps(plan, settings)
        cumulative, total = [], 0
        for frame in range(len(plan.rows)):
            cumulative.append(total)
            total += steps.get(frame, 0)
        self.done_before, self.total = cumulative, total
        diffused = len(steps)
        frames = len(plan.rows)
        shape = f"{frames:,} frames" + (f" ({diffused:,} diffused, diffusion_cadence {plan.cadence})"
                                         if diffused != frames else "")
        most = max(steps.values(), default=0)
        self.say(f"{plan.animation_mode} mode, {shape} x up to {most:,} sampler steps = {total:,} steps in all")

    def _unplanned_size(self, settings: Any) -> None:
        from deforum.sampling.run import steps_to_run

        mode, steps = settings.animation.animation_mode, settings.image.steps
        if mode == "None":
            each = steps_to_run(steps, first_strength(settings))
            images = len(settings.prompts.prompts) * settings.output.n_batch
            self.say(f"None mode, {images:,} image(s) x {each:,} sampler steps = {images * each:,} steps")
        elif mode == "Video Input":
            self.say(f"Video Input mode: every frame of video_init_path (every "
                     f"{settings.video_input.extract_nth_frame} taken) is diffused, up to {steps:,} sampler steps "
                     "each; the frame count comes from the video")

    def generation_started(self) -> None:
        """Optional runner hook once the model is loaded: the estimate can then come after the first frame."""
        self.origin = (self.clock(), None)

    def frame(self, path: Any, label: str | None = None) -> None:
        """The runner's hook after each frame is written: the estimate, once."""
        now = self.clock()
        self.calls += 1
        if self.estimated or not self.done_before:
            return
        index = _frame_index(path, self.calls - 1)
        if not 0 <= index < len(self.done_before):
            return
        done = self.done_before[index + 1] if index + 1 < len(self.done_before) else self.total
        if self.origin is None:  # the first frame's time includes loading the model: measure from it
            self.origin = (now, done)
            return
        start, base = self.origin
        if base is None:
            base = self.done_before[index]
            self.origin = (start, base)
        if done <= base or now <= start or done >= self.total:
            return
        rate = (done - base) / (now - start)
        left = (self.total - done) / rate
        self.estimated = True
        self.say(f"about {duration_text(left)} left ({done:,} of {self.total:,} sampler steps done, "
                 f"{rate:.3g} steps/s)")


def _frame_index(path: Any, fallback: int) -> int:
    """The frame number at the end of a frame file's name (``{timestring}_00012.png``)."""
    match = re.search(r"(\d+)\.png$", str(path))
    return int(match.group(1)) if match else fallback


# ----------------------------------------------------------------------------------------------- plan


def _prepared(path: str, sets: Mapping[str, Mapping[str, Any]], *, unknown_keys: str = "warn"):
    """The job of one file and its ``Prepared`` run: typed settings, identity and plan (no model)."""
    from deforum.runner import prepare

    job = load_job(path, sets, unknown_keys=unknown_keys)
    root_values = {"map_location": "cpu", "mount_google_drive": False, **(sets.get("root") or {})}
    try:
        prepared = prepare(job.args, job.anim_args, job.prompts, job.animation_prompts, root_values)
    except SettingsError as exc:
        problems = getattr(exc, "problems", None)
        raise (A.settings_error(problems, path) if problems else exc) from None
    return job, prepared


def cmd_plan(ns: argparse.Namespace) -> int:
    from deforum.outputs import check_output_path
    from deforum.plan import make_plan

    if ns.csv:  # output paths first: nothing is computed for a path that is refused
        check_output_path(ns.csv, "csv", "--csv")
    if ns.plot:
        check_output_path(ns.plot, "plot", "--plot")
    sets = parse_sets(ns.set)
    job, prepared = _prepared(ns.settings, sets)
    settings = prepared.settings
    plan = prepared.plan or make_plan(settings, prepared.identity.seed)
    if ns.csv:
        plan.to_csv(ns.csv)
    print(f"# {ns.settings}: {plan.animation_mode} mode, W x H {settings.image.W} x {settings.image.H}, "
          f"{len(plan)} row(s), seed {plan.start_seed} ({settings.image.seed_behavior})"
          + (", random seed drawn for this plan" if settings.image.seed == -1 else "")
          + (f", diffusion_cadence {plan.cadence}" if plan.animation_mode in ("2D", "3D") else ""))
    for note in job.notes:
        print(f"# note: {note}")
    parseq = [name for name, source in prepared.sources.items() if source == "parseq"]
    if parseq:  # the values a Parseq manifest gave (parseq_manifest); the rest come from the settings
        print(f"# parseq: {', '.join(parseq)}")
    if plan.animation_mode == "Video Input":
        print("# Video Input: the frame count here is max_frames; a render takes it from the video")
    print(format_table(plan))
    if ns.csv:
        print(f"# wrote {ns.csv}", file=sys.stderr)
    if ns.plot:
        from deforum.notebook import plot_schedules

        fig = plot_schedules(plan, settings)
        if fig is None:
            print(f"# no schedule of the {plan.animation_mode} mode changes over the frames; "
                  f"{ns.plot} not written", file=sys.stderr)
        else:
            from deforum.outputs import save_plot

            save_plot(fig, ns.plot, "--plot", dpi=100)
            print(f"# wrote {ns.plot}", file=sys.stderr)
    return EXIT_OK


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def _cut_prompt(text: str, width: int) -> str:
    """A frame's full prompt cut to ``width``; a negative part (after ``--neg``) keeps its share, so it shows."""
    from deforum.prompts import NEG

    if len(text) <= width or text.count(NEG) != 1:
        return _cut(text, width)
    positive, negative = (part.strip() for part in text.split(NEG))
    room = width - len(NEG) - 2
    neg_room = max(min(len(negative), room // 2), min(room, 8))
    pos_room = room - min(len(negative), neg_room)
    return f"{_cut(positive, pos_room)} {NEG} {_cut(negative, room - min(len(positive), pos_room))}".strip()


def format_table(plan: Any, prompt_width: int = 40) -> str:
    """The plan as an aligned text table, one line per frame (prompts cut to ``prompt_width``, the negative
    part after ``--neg`` keeping its share)."""
    names = plan.column_names()
    rows = []
    for record in plan.table():
        cells = []
        for name in names:
            text = _cell(record.get(name))
            if name == "prompt":
                text = _cut_prompt(text, prompt_width)
            elif name == "init_image" and len(text) > prompt_width:
                text = text[: prompt_width - 3] + "..."
            cells.append(text)
        rows.append(cells)
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    left = {"role", "prompt", "init_image"}

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if n in left else c.rjust(w)
                         for c, w, n in zip(cells, widths, names, strict=True)).rstrip()

    return "\n".join([line(names)] + [line(r) for r in rows])


# -------------------------------------------------------------------------------------------- preview


def cmd_preview(ns: argparse.Namespace) -> int:
    from deforum.render.preview import choose_depth, preview_video, render_preview, start_image

    sets = parse_sets(ns.set)
    if ns.frames is not None:
        sets["anim_args"]["max_frames"] = ns.frames
    job, prepared = _prepared(ns.settings, sets)
    settings, identity, plan = prepared.settings, prepared.identity, prepared.plan
    mode = settings.animation.animation_mode
    if mode not in ("2D", "3D"):
        raise SettingsError(f"{ns.settings}: animation_mode={mode!r}: preview shows camera motion, so it needs "
                            "'2D' or '3D'")
    out = Path(ns.output) if ns.output else identity.outdir
    mp4, frames_dir = preview_outputs(out, identity.timestring, ns.png, len(plan.rows))  # before any work
    W, H = settings.image.W, settings.image.H
    first = start_image(W, H, ns.image or settings.init.init_image)  # init_image is None without use_init
    depth = choose_depth(settings, W, H, ns.depth)
    hybrid = preview_video(settings, mp4.parent / f"{identity.timestring}_preview_inputframes")  # hybrid_motion
    fps = ns.fps or job.video_setting("fps")
    bar = None
    if not ns.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan), unit="frame", desc="preview")
    try:
        result = render_preview(plan, settings, first, mp4_path=mp4, fps=float(fps), frames_dir=frames_dir,
                                depth=depth, on_frame=(lambda _i: bar.update(1)) if bar else None, hybrid=hybrid)
    finally:
        if bar is not None:
            bar.close()
    print(f"{ns.settings}: preview of {result.frame_count} {mode} frame(s), depth "
          f"{result.depth}, {result.seconds:.1f} s")
    print(f"  video: {result.mp4_path} ({result.fps:g} fps)")
    if hybrid is not None:
        print(f"  moved with the video's motion too ({settings.hybrid.hybrid_motion}): "
              f"{settings.video_input.video_init_path}")
    if result.frames_dir is not None:
        print(f"  frames: {result.frames_dir}")
        print(f"  another fps or a gif: {video_command(result.frames_dir, result.fps)}")
    else:
        print("  frames: not kept (--no-png)")
    return EXIT_OK


def preview_outputs(out: Path, timestring: str, png: bool, frame_count: int) -> tuple[Path, Path | None]:
    """The preview's mp4 and PNG folder for ``--output`` ``out`` (a folder, or a file ending in .mp4);
    MediaError if either would overwrite a file deforum did not write (``deforum.outputs``)."""
    from deforum.outputs import check_output_path
    from deforum.render.preview import check_preview_outputs

    if out.suffix.lower() == ".mp4" or (os.path.lexists(out) and not out.is_dir()):
        mp4 = check_output_path(out, "mp4", "--output")  # an existing file that is not an mp4 is refused
    else:
        mp4 = out / f"{timestring}_preview.mp4"
    frames_dir = (mp4.parent / f"{timestring}_preview") if png else None  # numbered PNGs for `video`
    check_preview_outputs(mp4, frames_dir, frame_count, field="--output", frames_field="--png")
    return mp4, frames_dir


def video_command(frames_dir: Path, fps: float) -> str:
    """The ``deforum video`` call that encodes the numbered frames in ``frames_dir`` (a shell line)."""
    import shlex

    return f"deforum video {shlex.quote(str(frames_dir))} --fps {fps:g}"


# ---------------------------------------------------------------------------------------------- video


def cmd_video(ns: argparse.Namespace) -> int:
    from deforum.video import make_video

    folder = Path(ns.frames_dir)
    if not folder.is_dir():
        raise SettingsError(f"FRAMES_DIR {str(folder)!r} is not a folder")
    pattern = ns.pattern or detect_pattern(folder)
    name = pattern.split('%')[0].rstrip('_') or 'video'
    if ns.interpolate is not None:
        name += f"_x{ns.interpolate}"  # beside the plain video, not over it
    mp4 = Path(ns.output) if ns.output else folder / f"{name}.mp4"
    field = "--output" if ns.output else "the default video path"
    if ns.keep_fps and ns.interpolate is None:
        raise SettingsError("--keep-fps needs --interpolate N")
    if ns.interpolate is not None:
        from deforum.video import interpolated_video

        frames = mp4.with_suffix("")  # <prefix>_xN/ beside <prefix>_xN.mp4
        result = interpolated_video(folder, mp4, float(ns.fps), ns.interpolate, pattern=pattern,
                                    keep_fps=ns.keep_fps, out_folder=frames, method=ns.flow, make_gif=ns.gif,
                                    max_frames=ns.max_frames, field=field, gif_field="--gif", audio=ns.audio,
                                    audio_field="--audio")
        print(f"video: {result.mp4_path} ({result.frame_count} frames at {result.fps:g} fps, {ns.interpolate}x "
              f"interpolated along the {ns.flow} flow; frames in {frames})")
        if ns.gif:
            print(f"gif: {result.gif_path}")
        return EXIT_OK
    path = make_video(folder, mp4, float(ns.fps), pattern=pattern, make_gif=ns.gif, max_frames=ns.max_frames,
                      field=field, gif_field="--gif", audio=ns.audio, audio_field="--audio")
    print(f"video: {path}" + (f" (sound: {ns.audio})" if ns.audio else ""))
    if ns.gif:
        print(f"gif: {path.with_suffix('.gif')}")
    return EXIT_OK


def detect_pattern(folder: Path) -> str:
    """The numbered-frame pattern of a run folder: ``{timestring}_%05d.png`` of its newest run."""
    import re

    runs: dict[str, int] = {}
    for p in folder.glob("*.png"):
        match = re.fullmatch(r"(.*?)(\d{5,})\.png", p.name)
        if match:
            runs[match.group(1)] = runs.get(match.group(1), 0) + 1
    runs = {prefix: n for prefix, n in runs.items() if not prefix.endswith("depth_")}
    if not runs:
        raise MediaError(f"no numbered frames like 20220903000939_00000.png in {str(folder)!r}; "
                            "give --pattern, e.g. --pattern '%05d.png'")
    prefix = max(runs, key=lambda p: (p, runs[p]))  # timestrings sort by time: the newest run
    return f"{prefix}%05d.png"


# ---------------------------------------------------------------------------------------------- audio


def cmd_audio(ns: argparse.Namespace) -> int:
    """A schedule from a sound file (deforum.sources.audio): printed, or written into a settings file's field."""
    from deforum.sources import audio

    if (ns.field is None) != (ns.into is None):
        raise SettingsError("--field and --into go together: --field NAME --into SETTINGS writes the schedule "
                            "into that field of the file; without both it is printed")
    if ns.field is not None:  # the field and the file before the audio is decoded
        audio.schedule_field(ns.field)
        A.read_settings_file(ns.into)
    audio.parse_band(ns.band)
    schedule = audio.audio_schedule(ns.file, ns.fps, ns.expr, feature=ns.feature, band=ns.band, smooth=ns.smooth,
                                    frames=ns.frames)
    if ns.into is None:
        print(schedule)
        return EXIT_OK
    path, notes = audio.write_into_settings(ns.into, ns.field, schedule)
    print(f"{path}: {ns.field} = {schedule.count(':(')} frame(s) of {ns.feature} from {ns.file}")
    for note in notes:
        print(f"  note: {note}")
    return EXIT_OK


# ------------------------------------------------------------------------------------------- settings


def cmd_settings_check(ns: argparse.Namespace) -> int:
    """Every problem of each file at once (unknown keys included: each names the closest setting), exit 2
    if any; otherwise ``ok`` and the notes (values used differently from how the file gave them)."""
    sets = parse_sets(ns.set)
    code = EXIT_OK
    for path in ns.settings:
        try:
            job, prepared = _prepared(path, sets, unknown_keys="problem")
        except DeforumError as exc:
            code = code or (EXIT_SETTINGS if isinstance(exc, SettingsError) else EXIT_FAILED)
            print(located(path, exc), file=sys.stderr)
            continue
        frames = f", {len(prepared.plan)} frame(s)" if prepared.plan is not None else ""
        print(f"{path}: ok ({prepared.settings.animation.animation_mode} mode{frames})")
        if job.dialect is not None and job.dialect.name != "v06_partial":  # a partial file names nothing more
            print(f"  dialect: {job.dialect.describe()}")
            for line in job.dialect.mappings:  # an imported file: one line per mapping rule used
                print(f"  mapped: {line}")
            if job.dialect.ignored:
                print(f"  {job.dialect.ignored_line()}")
        for note in job.notes:
            print(f"  note: {note}")
    return code


def settings_diff(a: Job, b: Job, include_computed: bool = False) -> list[tuple[str, Any, Any]]:
    """(field, value in a, value in b) for every setting that differs, prompts included."""
    out = []
    for group, left, right in (("args", a.args, b.args), ("anim_args", a.anim_args, b.anim_args)):
        for f in A.GROUPS[group]:
            if not include_computed and f.kind in ("runtime", "computed"):
                continue
            if left.get(f.name) != right.get(f.name):
                out.append((f.name, left.get(f.name), right.get(f.name)))
    for key in FILE_VIDEO_KEYS:
        if a.video_setting(key) != b.video_setting(key):
            out.append((key, a.video_setting(key), b.video_setting(key)))
    if a.prompts != b.prompts:
        out.append(("prompts", a.prompts, b.prompts))
    for frame in sorted(set(a.animation_prompts) | set(b.animation_prompts)):
        left, right = a.animation_prompts.get(frame), b.animation_prompts.get(frame)
        if left != right:
            out.append((f"animation_prompts[{frame}]", left, right))
    return out


def cmd_settings_diff(ns: argparse.Namespace) -> int:
    a, b = load_job(ns.a, check=False), load_job(ns.b, check=False)
    diff = settings_diff(a, b, ns.all)
    for name, left, right in diff:
        print(f"{name}: {json.dumps(left, ensure_ascii=False)} -> {json.dumps(right, ensure_ascii=False)}")
    print(f"# {len(diff)} setting(s) differ between {ns.a} and {ns.b}", file=sys.stderr)
    return EXIT_OK


def fields_text(groups: Sequence[str] | None = None, *, with_help: bool = True) -> str:
    """Every settable field by group, with its help, allowed values and default (from deforum/settings/fields.py)."""
    blocks = []
    for group in groups or SET_GROUPS:
        fields = [f for f in A.GROUPS[group] if f.kind not in ("runtime", "computed")]
        if with_help:
            lines = [f"{A.GROUP_TITLES[group]} ({group}):"]
            for f in fields:
                lines.append(f"  {f.name}")
                lines += textwrap.wrap(settings_docs.cli_help(f), width=96, initial_indent="      ",
                                       subsequent_indent="      ")
        else:
            lines = [f"{A.GROUP_TITLES[group]} ({group}):"]
            lines += textwrap.wrap(", ".join(f.name for f in fields), width=96, initial_indent="  ",
                                   subsequent_indent="  ")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def cmd_settings_fields(ns: argparse.Namespace) -> int:
    unknown = [g for g in ns.groups if g not in A.GROUPS]
    if unknown:
        raise SettingsError(f"unknown group(s) {', '.join(map(repr, unknown))}; groups are {', '.join(A.GROUPS)}")
    print(fields_text(ns.groups or None))
    return EXIT_OK


# --------------------------------------------------------------------------------------------- models


def models_table(models_path: str | os.PathLike[str], kind: str | None = None) -> str:
    """The catalogue as an aligned table: name, family, kind, size, licence, and whether the file is in
    models_path (a vae: its folder with config.json and the weights)."""
    from deforum.models import catalogue

    rows = [("name", "family", "kind", "size", "present", "licence")]
    for e in catalogue.entries(kind=kind):
        licence = e.licence + (" [NON-COMMERCIAL]" if e.commercial is False else "")
        rows.append((e.name, e.family, e.kind, e.size_label(), "yes" if e.present(models_path) else "no", licence))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def cmd_models_list(ns: argparse.Namespace) -> int:
    from deforum.models import catalogue

    models_path = ns.models_path or A.FIELDS["root"]["models_path"].default
    print(models_table(models_path, ns.kind))
    notes = [e for e in catalogue.entries(kind=ns.kind) if e.commercial is False]
    print(f"# models_path: {os.path.abspath(models_path)}; a missing checkpoint is downloaded by the first render "
          "that names it (vae/lora: see docs/models.md)", file=sys.stderr)
    for e in notes:
        print(f"# {e.name}: {e.note}", file=sys.stderr)
    return EXIT_OK


def safetensors_path(text: str) -> str:
    """``--out`` of ``deforum models tiny``: a path ending in .safetensors (the only format it writes)."""
    if not text.endswith(".safetensors"):
        raise argparse.ArgumentTypeError(f"{text!r}: a tiny checkpoint is written as .safetensors; give a path "
                                         "ending in .safetensors")
    return text


def cmd_models_tiny(ns: argparse.Namespace) -> int:
    from deforum.models.tiny import write_tiny_checkpoint

    path = write_tiny_checkpoint(ns.family, ns.out, seed=ns.seed)
    size = path.stat().st_size
    print(f"{path}: a tiny random {ns.family} checkpoint ({size / 1e6:.1f} MB, seed {ns.seed}); render with "
          f"`deforum render SETTINGS --checkpoint {path}` (no yaml needed)")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- parser


def fps_value(text: str) -> float:
    """An ``--fps`` option: a number in the video cell's fps range (the same rule as the field)."""
    f = A.FIELDS["video"]["fps"]
    value = parse_value(f, text)
    problem = A.problems("video", {"fps": value}, present_only=True)
    if problem:
        raise argparse.ArgumentTypeError(problem[0])
    return float(value)


SET_HELP = ("override one setting, applied after the settings file: KEY=VALUE, KEY is a field name or "
            "group.name (e.g. --set max_frames=10 --set video.fps=24); repeat for more")


def _add_common(p: argparse.ArgumentParser, *, quiet: bool = True) -> None:
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[], help=SET_HELP)
    if quiet:
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (for logs)")
        p.add_argument("-v", "--verbose", action="store_true", help="debug logging and a bar over each image's steps")


def _add_ray_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray", nargs="?", const="local", metavar="local|ADDRESS",
                   help="render the runs as Ray tasks, one per GPU (needs the ray extra: pip install "
                        "'deforum-stable-diffusion[ray]'): 'local' (the default) starts Ray on this machine, "
                        "ADDRESS joins a cluster (auto, HOST:6379, ray://HOST:10001); docs/scale.md")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="with --ray: at most N workers (default: one per GPU, or per CPU without GPUs)")


def positive_int(text: str) -> int:
    """A count of 1 or more (``--workers``)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number of 1 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deforum", description="Deforum Stable Diffusion: render settings files, plan and preview motion.",
        epilog="Exit codes: 0 ok, 1 a render/model/media failure, 2 bad settings or usage.")
    parser.add_argument("--version", action="version", version=f"deforum {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("render", help="render settings files (frames, settings file, video)",
                       formatter_class=raw,
                       description="Render each settings file (v0.6 .txt/.json or ours) one after another, or "
                                   "with --ray as Ray tasks over the GPUs of this machine or a cluster "
                                   "(docs/scale.md). A failure in one file is reported and the next still runs.",
                       epilog="--set keys (`deforum settings fields` prints each with its help):\n\n"
                              + fields_text(with_help=False))
    p.add_argument("settings", nargs="+", metavar="SETTINGS", help="settings file(s)")
    p.add_argument("--checkpoint", metavar="PATH|NAME",
                   help="checkpoint file, or a catalogue name in models_path (downloaded if missing)")
    p.add_argument("--config", metavar="YAML", help="LDM yaml file, or a config name (default: detected)")
    p.add_argument("--output", metavar="DIR", help="output root (frames go to DIR/YYYY-MM/batch_name)")
    p.add_argument("--resume", metavar="TIMESTRING", help="continue the interrupted 2D/3D run TIMESTRING")
    p.add_argument("--no-video", action="store_true", help="do not make the mp4")
    p.add_argument("--fps", type=fps_value, help="video frames per second (default: the settings' fps, or 12)")
    p.add_argument("--gif", action="store_true", help="also write a gif")
    _add_ray_options(p)
    _add_common(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("sweep", help="render variations of a settings file (--vary) and a contact sheet",
                       description="Render the cartesian product of the --vary values over one settings file: "
                                   "each variant is written as a settings file into sweep_{timestring}/ in the "
                                   "output folder, rendered like `deforum render` (or on Ray with --ray), and "
                                   "shown in contact_sheet.png there (first and last frame of each run).")
    p.add_argument("settings", metavar="SETTINGS", help="the settings file to vary")
    p.add_argument("--vary", action="append", required=True, metavar="NAME=VALUES",
                   help="a field and its values: a range a..b of whole numbers (both included) or a comma list "
                        "(| between values that hold commas), e.g. --vary seed=1..8 --vary cfg_scale=5,7,9; NAME "
                        "is a field (`deforum settings fields`) or A1111 Deforum's name for it; repeat for more")
    p.add_argument("--checkpoint", metavar="PATH|NAME",
                   help="checkpoint file, or a catalogue name in models_path (downloaded if missing)")
    p.add_argument("--config", metavar="YAML", help="LDM yaml file, or a config name (default: detected)")
    p.add_argument("--output", metavar="DIR", help="output root (frames go to DIR/YYYY-MM/batch_name)")
    p.add_argument("--no-video", action="store_true", help="do not make the mp4s")
    p.add_argument("--fps", type=fps_value, help="video frames per second (default: the settings' fps, or 12)")
    p.add_argument("--gif", action="store_true", help="also write gifs")
    _add_ray_options(p)
    _add_common(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("plan", help="print the render plan (no model)",
                       description="Print every frame's role, prompt, seed, cadence and schedule values.")
    p.add_argument("settings", metavar="SETTINGS")
    p.add_argument("--csv", metavar="FILE", help="also write the plan as CSV")
    p.add_argument("--plot", metavar="FILE.png", help="plot the schedules that move in this mode")
    _add_common(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("preview", help="camera motion only: warp a test card or image, write an mp4 and frames",
                       description="Warp a built-in test card (or --image) through the 2D/3D schedules and "
                                   "write an mp4 and its numbered PNG frames (`deforum video` re-encodes them: "
                                   "the preview prints the command); no diffusion, no model.")
    p.add_argument("settings", metavar="SETTINGS")
    p.add_argument("--image", metavar="PATH", help="start image (default: init_image if use_init, else the "
                                                   "test card)")
    p.add_argument("--depth", metavar="MODEL|flat|synthetic",
                   help="3D depth: flat, synthetic (a tilted ground plane) or a depth model name/folder "
                        "(default: the configured depth_model if it is on disk, else flat)")
    p.add_argument("--output", metavar="DIR|FILE.mp4", help="where the mp4 goes (default: the run's folder)")
    p.add_argument("--frames", type=int, metavar="N", help="number of frames (default: max_frames)")
    p.add_argument("--fps", type=fps_value, help="video frames per second (default 12)")
    p.add_argument("--png", action=argparse.BooleanOptionalAction, default=True,
                   help="also write the frames as numbered PNGs next to the mp4, for `deforum video` "
                        "(default: on; --no-png for the mp4 only)")
    _add_common(p)
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("video", help="make an mp4 (and gif) from numbered frames",
                       description="The notebook's video cell: numbered frames in a folder -> mp4.")
    p.add_argument("frames_dir", metavar="FRAMES_DIR")
    p.add_argument("--fps", type=fps_value, default=12, help="frames per second (default 12)")
    p.add_argument("--gif", action="store_true", help="also write a gif")
    p.add_argument("--pattern", help="frame file pattern in the folder, e.g. '20220903000939_%%05d.png' "
                                     "(default: the newest run's frames)")
    p.add_argument("--output", metavar="FILE.mp4", help="video path (default: FRAMES_DIR/<prefix>.mp4)")
    p.add_argument("--max-frames", type=int, metavar="N", help="use only the first N frames")
    p.add_argument("--audio", metavar="FILE", help="mux this file's sound (wav, flac, ogg, mp3, a video...) into "
                                                   "the mp4 as AAC, cut or padded with silence to the video's length")
    p.add_argument("--interpolate", type=int, metavar="N",
                   help="make N-1 frames between each two along their optical flow (2 to 16; docs/motion.md); the "
                        "video plays at fps x N (default name: <prefix>_xN.mp4)")
    p.add_argument("--keep-fps", action="store_true",
                   help="with --interpolate: keep --fps (N times longer: slow motion) instead of fps x N")
    p.add_argument("--flow", default="DIS Medium", choices=A.FLOW_METHODS,
                   help="the optical flow of --interpolate (default 'DIS Medium'; RAFT needs its weights)")
    p.set_defaults(func=cmd_video)

    p = sub.add_parser("audio", help="a schedule from a sound file: one value a frame (docs/audio.md)",
                       description="Decode FILE (wav, flac, ogg, mp3; needs the audio extra: pip install "
                                   "'deforum-stable-diffusion[audio]'), measure a feature in each frame's "
                                   "window [i/fps, (i+1)/fps), scale it to 0..1 as x, map it by EXPR and print "
                                   "the schedule '0:(v0), 1:(v1), ...', or write it into a field of a settings file.")
    p.add_argument("file", metavar="FILE", help="the audio file")
    p.add_argument("--fps", type=fps_value, required=True, help="frames per second of the video")
    p.add_argument("--expr", default="x", metavar="EXPR",
                   help="numexpr expression of x (the feature, 0..1) and t (the frame), as in schedules, e.g. "
                        "'1 + 0.05*x' for zoom or '0.65 - 0.3*x' for strength (default: x)")
    p.add_argument("--feature", choices=("rms", "onset", "beat"), default="rms",
                   help="rms: loudness; onset: onset strength (attacks); beat: librosa's beat tracker, 1 on "
                        "each beat and decaying (default: rms)")
    p.add_argument("--band", metavar="LOW-HIGH", help="band-pass the audio first, in Hz, e.g. 20-150 for the kick")
    p.add_argument("--smooth", type=int, default=1, metavar="N", help="moving average over N frames (default 1)")
    p.add_argument("--frames", type=int, metavar="N", help="number of frames (default: the audio's length)")
    p.add_argument("--field", metavar="NAME", help="with --into: the schedule field to set, e.g. zoom, "
                                                   "strength_schedule")
    p.add_argument("--into", metavar="SETTINGS", help="with --field: the settings file to write it into")
    p.set_defaults(func=cmd_audio)

    p = sub.add_parser("settings", help="check, compare or list settings")
    ssub = p.add_subparsers(dest="settings_command", metavar="ACTION", required=True)
    c = ssub.add_parser("check", help="validate settings files (every problem at once)")
    c.add_argument("settings", nargs="+", metavar="SETTINGS")
    c.add_argument("--set", action="append", metavar="KEY=VALUE", default=[], help=SET_HELP)
    c.set_defaults(func=cmd_settings_check)
    d = ssub.add_parser("diff", help="the settings that differ between two files (each over the defaults)")
    d.add_argument("a", metavar="A")
    d.add_argument("b", metavar="B")
    d.add_argument("--all", action="store_true", help="include computed fields (timestring)")
    d.set_defaults(func=cmd_settings_diff)
    f = ssub.add_parser("fields", help="every --set key with its help, by group")
    f.add_argument("groups", nargs="*", metavar="GROUP", help=f"only these groups ({', '.join(A.GROUPS)})")
    f.set_defaults(func=cmd_settings_fields)

    p = sub.add_parser("models", help="the model catalogue; tiny random checkpoints for offline tries",
                       description="List the catalogue (checkpoints, LoRA, TAESD) or write a tiny random "
                                   "checkpoint. docs/models.md says which file goes where.")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    m = msub.add_parser("list", help="the catalogue: name, family, kind, size, present in models_path, licence")
    m.add_argument("--models-path", metavar="DIR",
                   help=f"where the files are looked for (default: {A.FIELDS['root']['models_path'].default!r})")
    m.add_argument("--kind", choices=("checkpoint", "lora", "vae"), help="only this kind")
    m.set_defaults(func=cmd_models_list)
    t = msub.add_parser("tiny", help="write a tiny random checkpoint in a family's original key layout",
                        description="A few-MB random checkpoint that `deforum render --checkpoint PATH` loads "
                                    "offline without a yaml (tests, docs, the offline demo); its frames are noise.")
    t.add_argument("--family", required=True, choices=("sd1", "sd2", "sdxl"))
    t.add_argument("--out", required=True, type=safetensors_path, metavar="PATH.safetensors",
                   help="the file to write")
    t.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    t.set_defaults(func=cmd_models_tiny)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (unknown keys in a settings file, a missing AdaBins) as one line, without source code."""
    print(f"deforum: warning: {message}", file=sys.stderr)


def _stdout_to_devnull() -> None:
    """After the reader of stdout went away: send what is still buffered nowhere, so that the flush at exit
    does not fail again (Python's advice for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced by an object without a file descriptor
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (the ``deforum`` console script exits with it)."""
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version (0) or a usage error (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_SETTINGS
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")  # other libraries
    deforum_log = logging.getLogger("deforum")
    saved = deforum_log.level, deforum_log.propagate
    # The library's messages ("Loaded ... on cuda (float16)") on stderr: -q hides them, -v adds debug.
    show_progress_messages(level=logging.DEBUG if getattr(ns, "verbose", False) else
                           logging.WARNING if getattr(ns, "quiet", False) else logging.INFO)
    deforum_log.propagate = False  # shown once, by that handler, not again by the root logger's
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return ns.func(ns)
    except BrokenPipeError:  # `deforum plan FILE | head`: the reader has what it wanted
        _stdout_to_devnull()
        return EXIT_OK
    except DeforumError as exc:
        return _failure(None, exc)
    except KeyboardInterrupt:
        print("deforum: interrupted", file=sys.stderr)
        return 130
    finally:  # main() may run again in the same process (tests, python -c): leave logging as it was
        hide_progress_messages()
        deforum_log.setLevel(saved[0])
        deforum_log.propagate = saved[1]
