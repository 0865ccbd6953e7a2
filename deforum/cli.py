"""The ``deforum`` command (also ``python -m deforum``): render, plan, preview, video, settings.

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
import sys
import textwrap
import traceback
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from deforum import __version__
from deforum import args as A
from deforum.errors import DeforumError, MediaError, SettingsError

EXIT_OK, EXIT_FAILED, EXIT_SETTINGS = 0, 1, 2
SET_GROUPS = ("args", "anim_args", "root", "video")  # where an unprefixed --set key is looked up, in order
FILE_VIDEO_KEYS = ("fps", "make_gif")  # video-cell fields a settings file may carry
NULL_WORDS = ("null", "none")
TRUE_WORDS, FALSE_WORDS = ("true", "yes", "on", "1"), ("false", "no", "off", "0")

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
    """One settings file with the command line's overrides applied (not yet validated)."""

    path: Path
    args: dict[str, Any]
    anim_args: dict[str, Any]
    prompts: list[str]
    animation_prompts: dict[int, str]
    video: dict[str, Any]  # the video-cell fields given by the file or --set (defaults: video_setting)

    def video_setting(self, name: str) -> Any:
        return self.video.get(name, A.FIELDS["video"][name].default)


def load_job(path: str | os.PathLike[str], sets: Mapping[str, Mapping[str, Any]] | None = None,
             check: bool = False) -> Job:
    """A settings file (v0.6 .txt/.json or ours) over the v0.6 defaults, then the ``--set`` values."""
    from deforum.settings import apply_settings, read_settings_file

    data = read_settings_file(path)
    video: dict[str, Any] = {}  # only the video fields the file or --set give
    for key in FILE_VIDEO_KEYS:  # video-cell fields are not args: take them out before the settings apply
        if key in data:
            video[key] = data.pop(key)
    loaded = apply_settings(A.defaults("args"), A.defaults("anim_args"), data, A.DEFAULT_PROMPTS,
                            A.DEFAULT_ANIMATION_PROMPTS, where=str(path), check=check)
    sets = sets or {}
    args, anim = vars(loaded.args), vars(loaded.anim_args)
    args.update(sets.get("args", {}))
    anim.update(sets.get("anim_args", {}))
    video.update(sets.get("video", {}))
    return Job(Path(path), A.normalize("args", args), A.normalize("anim_args", anim), loaded.prompts,
               loaded.animation_prompts, video)


def best_device() -> str:
    """cuda, then mps, then cpu: v0.6's 'cuda' default cannot run on a machine without a GPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def make_root(ns: argparse.Namespace, sets: Mapping[str, Mapping[str, Any]]) -> SimpleNamespace:
    """Root (model and paths) from the options; the model is loaded by the first render and kept."""
    root = A.defaults("root")
    root.update(mount_google_drive=False, map_location=best_device())
    if getattr(ns, "output", None):
        root["output_path"] = str(ns.output)
    checkpoint = getattr(ns, "checkpoint", None)
    if checkpoint:
        if os.path.isfile(checkpoint):
            root.update(model_checkpoint="custom", custom_checkpoint_path=os.path.abspath(checkpoint))
        else:
            root["model_checkpoint"] = checkpoint
    config = getattr(ns, "config", None)
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


def _failure(path: Any, exc: BaseException) -> int:
    """Report one failed item on stderr; the exit code it stands for."""
    where = f"{path}: " if path else ""
    if isinstance(exc, DeforumError):
        print(f"deforum: error: {where}{exc}", file=sys.stderr)
        return EXIT_SETTINGS if isinstance(exc, SettingsError) else EXIT_FAILED
    print(f"deforum: internal error: {where}{type(exc).__name__}: {exc}", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)
    return EXIT_FAILED


# --------------------------------------------------------------------------------------------- render


def cmd_render(ns: argparse.Namespace) -> int:
    sets = parse_sets(ns.set)
    root = make_root(ns, sets)
    codes = []
    for path in ns.settings:
        try:
            render_one(path, ns, sets, root)
            codes.append(EXIT_OK)
        except Exception as exc:  # reported; even a bug in one file's run must not stop the next file
            codes.append(_failure(path, exc))
    failed = [c for c in codes if c != EXIT_OK]
    if len(ns.settings) > 1:
        print(f"{len(codes) - len(failed)} of {len(codes)} settings files rendered", file=sys.stderr)
    return failed[0] if failed else EXIT_OK


def render_one(path: str, ns: argparse.Namespace, sets: Mapping[str, Mapping[str, Any]],
               root: SimpleNamespace) -> None:
    """Render one settings file, then make its video (animation modes, unless --no-video)."""
    from deforum.runner import render

    job = load_job(path, sets)
    if ns.resume:
        job.anim_args.update(resume_from_timestring=True, resume_timestring=ns.resume)
    if not ns.quiet:
        print(f"{path}: {job.anim_args['animation_mode']} mode", file=sys.stderr)
    result = render(job.args, job.anim_args, job.prompts, job.animation_prompts, root, progress=not ns.quiet,
                    step_progress=bool(getattr(ns, "verbose", False)) and not ns.quiet)
    lines = [f"{path}: {len(result.frames)} frame(s) in {result.outdir}"]
    if result.settings_path is not None:
        lines.append(f"  settings: {result.settings_path}")
    mode = result.anim_args.animation_mode if result.anim_args is not None else "None"
    if mode != "None" and not ns.no_video and result.frames:
        from deforum.video import video_cell

        fps = ns.fps or job.video.get("fps") or result.fps_hint or job.video_setting("fps")
        made = video_cell(outdir=result.outdir, timestring=result.timestring, fps=float(fps),
                          make_gif=bool(ns.gif or job.video_setting("make_gif")))
        if made is not None:
            lines.append(f"  video: {made.mp4_path} ({made.frame_count} frames at {made.fps:g} fps)")
            if made.gif_path is not None:
                lines.append(f"  gif: {made.gif_path}")
    print("\n".join(lines))


# ----------------------------------------------------------------------------------------------- plan


def _prepared(path: str, sets: Mapping[str, Mapping[str, Any]]):
    """Validated, finalized settings and the render plan of one file (no model)."""
    from deforum.runner import prepare

    job = load_job(path, sets)
    root_values = {"map_location": "cpu", "mount_google_drive": False, **(sets.get("root") or {})}
    try:
        prepared = prepare(job.args, job.anim_args, job.prompts, job.animation_prompts, root_values)
    except SettingsError as exc:
        problems = getattr(exc, "problems", None)
        raise (A.settings_error(problems, path) if problems else exc) from None
    return job, prepared


def cmd_plan(ns: argparse.Namespace) -> int:
    from deforum.plan import make_plan

    sets = parse_sets(ns.set)
    job, (args, anim, prompts, animation_prompts, _root, plan) = _prepared(ns.settings, sets)
    if plan is None:
        plan = make_plan(args, anim, animation_prompts, prompts)
    if ns.csv:
        plan.to_csv(ns.csv)
    print(f"# {ns.settings}: {plan.animation_mode} mode, {len(plan)} row(s), seed {plan.start_seed} "
          f"({args.seed_behavior})" + (", random seed drawn for this plan" if job.args["seed"] == -1 else "")
          + (f", diffusion_cadence {plan.cadence}" if plan.animation_mode in ("2D", "3D") else ""))
    if plan.animation_mode == "Video Input":
        print("# Video Input: the frame count here is max_frames; a render takes it from the video")
    print(format_table(plan))
    if ns.csv:
        print(f"# wrote {ns.csv}", file=sys.stderr)
    if ns.plot:
        from deforum.notebook import plot_schedules

        fig = plot_schedules(plan, anim)
        if fig is None:
            print(f"# no schedule of the {plan.animation_mode} mode changes over the frames; "
                  f"{ns.plot} not written", file=sys.stderr)
        else:
            fig.savefig(ns.plot, dpi=100)
            print(f"# wrote {ns.plot}", file=sys.stderr)
    return EXIT_OK


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def format_table(plan: Any, prompt_width: int = 40) -> str:
    """The plan as an aligned text table, one line per frame (prompts cut to ``prompt_width``)."""
    names = plan.column_names()
    rows = []
    for record in plan.table():
        cells = []
        for name in names:
            text = _cell(record.get(name))
            if name in ("prompt", "init_image") and len(text) > prompt_width:
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
    from deforum.render.preview import choose_depth, render_preview, start_image

    sets = parse_sets(ns.set)
    if ns.frames is not None:
        sets["anim_args"]["max_frames"] = ns.frames
    job, (args, anim, _prompts, _anim_prompts, root, plan) = _prepared(ns.settings, sets)
    if anim.animation_mode not in ("2D", "3D"):
        raise SettingsError(f"{ns.settings}: animation_mode={anim.animation_mode!r}: preview shows camera "
                            "motion, so it needs '2D' or '3D'")
    image = ns.image or (args.init_image if args.use_init and args.init_image else None)
    first = start_image(args.W, args.H, image)
    depth = choose_depth(anim, args.W, args.H, ns.depth, models_path=root.models_path)
    fps = ns.fps or job.video_setting("fps")
    out = Path(ns.output) if ns.output else Path(args.outdir)
    mp4 = out if out.suffix.lower() == ".mp4" else out / f"{args.timestring}_preview.mp4"
    frames_dir = (mp4.parent / f"{args.timestring}_preview") if ns.png else None
    bar = None
    if not ns.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(plan), unit="frame", desc="preview")
    try:
        result = render_preview(plan, anim, first, mp4_path=mp4, fps=float(fps), frames_dir=frames_dir,
                                depth=depth, on_frame=(lambda _i: bar.update(1)) if bar else None)
    finally:
        if bar is not None:
            bar.close()
    print(f"{ns.settings}: preview of {result.frame_count} {anim.animation_mode} frame(s), depth "
          f"{result.depth}, {result.seconds:.1f} s")
    print(f"  video: {result.mp4_path} ({result.fps:g} fps)")
    if result.frames_dir is not None:
        print(f"  frames: {result.frames_dir}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------------- video


def cmd_video(ns: argparse.Namespace) -> int:
    from deforum.video import make_video

    folder = Path(ns.frames_dir)
    if not folder.is_dir():
        raise SettingsError(f"FRAMES_DIR {str(folder)!r} is not a folder")
    pattern = ns.pattern or detect_pattern(folder)
    mp4 = Path(ns.output) if ns.output else folder / f"{pattern.split('%')[0].rstrip('_') or 'video'}.mp4"
    path = make_video(folder, mp4, float(ns.fps), pattern=pattern, make_gif=ns.gif, max_frames=ns.max_frames)
    print(f"video: {path}")
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


# ------------------------------------------------------------------------------------------- settings


def cmd_settings_check(ns: argparse.Namespace) -> int:
    sets = parse_sets(ns.set)
    code = EXIT_OK
    for path in ns.settings:
        try:
            job, (_args, anim, _p, _ap, _root, plan) = _prepared(path, sets)
        except DeforumError as exc:
            code = code or (EXIT_SETTINGS if isinstance(exc, SettingsError) else EXIT_FAILED)
            print(f"{path}: {exc}", file=sys.stderr)
            continue
        frames = f", {len(plan)} frame(s)" if plan is not None else ""
        print(f"{path}: ok ({anim.animation_mode} mode{frames})")
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
    a, b = load_job(ns.a), load_job(ns.b)
    diff = settings_diff(a, b, ns.all)
    for name, left, right in diff:
        print(f"{name}: {json.dumps(left, ensure_ascii=False)} -> {json.dumps(right, ensure_ascii=False)}")
    print(f"# {len(diff)} setting(s) differ between {ns.a} and {ns.b}", file=sys.stderr)
    return EXIT_OK


def fields_text(groups: Sequence[str] | None = None, *, with_help: bool = True) -> str:
    """Every settable field by group, with its help, allowed values and default (from deforum/args.py)."""
    blocks = []
    for group in groups or SET_GROUPS:
        fields = [f for f in A.GROUPS[group] if f.kind not in ("runtime", "computed")]
        if with_help:
            lines = [f"{A.GROUP_TITLES[group]} ({group}):"]
            for f in fields:
                lines.append(f"  {f.name}")
                lines += textwrap.wrap(A.cli_help(f), width=96, initial_indent="      ",
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


# ---------------------------------------------------------------------------------------------- parser


SET_HELP = ("override one setting, applied after the settings file: KEY=VALUE, KEY is a field name or "
            "group.name (e.g. --set max_frames=10 --set video.fps=24); repeat for more")


def _add_common(p: argparse.ArgumentParser, *, quiet: bool = True) -> None:
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[], help=SET_HELP)
    if quiet:
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars (for logs)")
        p.add_argument("-v", "--verbose", action="store_true", help="debug logging and a bar over each image's steps")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deforum", description="Deforum Stable Diffusion: render settings files, plan and preview motion.",
        epilog="Exit codes: 0 ok, 1 a render/model/media failure, 2 bad settings or usage.")
    parser.add_argument("--version", action="version", version=f"deforum {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("render", help="render settings files (frames, settings file, video)",
                       formatter_class=raw,
                       description="Render each settings file (v0.6 .txt/.json or ours) one after another. "
                                   "A failure in one file is reported and the next still runs.",
                       epilog="--set keys (`deforum settings fields` prints each with its help):\n\n"
                              + fields_text(with_help=False))
    p.add_argument("settings", nargs="+", metavar="SETTINGS", help="settings file(s)")
    p.add_argument("--checkpoint", metavar="PATH|NAME",
                   help="checkpoint file, or a catalogue name in models_path (downloaded if missing)")
    p.add_argument("--config", metavar="YAML", help="LDM yaml file, or a config name (default: detected)")
    p.add_argument("--output", metavar="DIR", help="output root (frames go to DIR/YYYY-MM/batch_name)")
    p.add_argument("--resume", metavar="TIMESTRING", help="continue the interrupted 2D/3D run TIMESTRING")
    p.add_argument("--no-video", action="store_true", help="do not make the mp4")
    p.add_argument("--fps", type=float, help="video frames per second (default: the settings' fps, or 12)")
    p.add_argument("--gif", action="store_true", help="also write a gif")
    _add_common(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("plan", help="print the render plan (no model)",
                       description="Print every frame's role, prompt, seed, cadence and schedule values.")
    p.add_argument("settings", metavar="SETTINGS")
    p.add_argument("--csv", metavar="FILE", help="also write the plan as CSV")
    p.add_argument("--plot", metavar="FILE.png", help="plot the schedules that move in this mode")
    _add_common(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("preview", help="camera motion only: warp a test card or image, write an mp4",
                       description="Warp a built-in test card (or --image) through the 2D/3D schedules and "
                                   "write an mp4; no diffusion, no model.")
    p.add_argument("settings", metavar="SETTINGS")
    p.add_argument("--image", metavar="PATH", help="start image (default: init_image if use_init, else the "
                                                   "test card)")
    p.add_argument("--depth", metavar="MODEL|flat|synthetic",
                   help="3D depth: flat, synthetic (a tilted ground plane) or a depth model name/folder "
                        "(default: the configured depth_model if it is on disk, else flat)")
    p.add_argument("--output", metavar="DIR|FILE.mp4", help="where the mp4 goes (default: the run's folder)")
    p.add_argument("--frames", type=int, metavar="N", help="number of frames (default: max_frames)")
    p.add_argument("--fps", type=float, help="video frames per second (default 12)")
    p.add_argument("--png", action="store_true", help="also write the frames as PNGs")
    _add_common(p)
    p.set_defaults(func=cmd_preview)

    p = sub.add_parser("video", help="make an mp4 (and gif) from numbered frames",
                       description="The notebook's video cell: numbered frames in a folder -> mp4.")
    p.add_argument("frames_dir", metavar="FRAMES_DIR")
    p.add_argument("--fps", type=float, default=12, help="frames per second (default 12)")
    p.add_argument("--gif", action="store_true", help="also write a gif")
    p.add_argument("--pattern", help="frame file pattern in the folder, e.g. '20220903000939_%%05d.png' "
                                     "(default: the newest run's frames)")
    p.add_argument("--output", metavar="FILE.mp4", help="video path (default: FRAMES_DIR/<prefix>.mp4)")
    p.add_argument("--max-frames", type=int, metavar="N", help="use only the first N frames")
    p.set_defaults(func=cmd_video)

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
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings (unknown keys in a settings file, a missing AdaBins) as one line, without source code."""
    print(f"deforum: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (the ``deforum`` console script exits with it)."""
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version (0) or a usage error (2)
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_SETTINGS
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("deforum").setLevel(logging.DEBUG if getattr(ns, "verbose", False) else
                                          logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return ns.func(ns)
    except DeforumError as exc:
        return _failure(None, exc)
    except KeyboardInterrupt:
        print("deforum: interrupted", file=sys.stderr)
        return 130
