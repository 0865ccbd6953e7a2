"""The builder of Deforum_Stable_Diffusion.ipynb: every form field and its default from deforum/settings/fields.py.

``python -m deforum.notebook build`` (or ``python -m deforum.notebook_build build``) writes the notebook at
the repository root; ``check`` exits 1 when the committed file differs from what ``build`` would write.
Every form field and its default comes from the field tables in ``deforum.settings``, so no field is defined
twice by hand.

The cells follow v0.6's order (title and terms, NVIDIA GPU, setup, Root, animation settings, prompts, run,
create video, disconnect) and keep its ``def DeforumArgs(): ... return locals()`` shape. The Setup cell
carries a copy of deforum/install.py (``installer_source``). The cells call only the run-time helpers of
``deforum.notebook``, which imports neither this module nor nbformat on import; building needs nbformat.
This module does not import ``deforum.notebook`` either (only that module's ``__main__`` block imports this
one, so the two form no import cycle): it finds the repository root itself.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from deforum import install
from deforum import settings as A
from deforum.errors import SettingsError
from deforum.settings import docs as settings_docs

REPO_ROOT = Path(__file__).resolve().parent.parent  # the same as deforum.notebook.REPO_ROOT (a test checks)
SETTINGS_DIR = REPO_ROOT / "settings"
NOTEBOOK_PATH = REPO_ROOT / "Deforum_Stable_Diffusion.ipynb"
PYPROJECT = REPO_ROOT / "pyproject.toml"


# Fields the notebook shows that deforum/settings/fields.py does not declare (yet). They are used only when args.py
# lacks a field of that name, so moving one into args.py needs no change here.
EXTRA_FIELDS: dict[str, tuple[A.Field, ...]] = {
    "disconnect": (
        A.Field("skip_disconnect_for_run_all", "bool", True, "Do not disconnect the Colab runtime on Run all.",
                widget="boolean", group="disconnect", section="Disconnect Runtime"),
    ),
}


# ------------------------------------------------------------------------------------------ form fields


def settings_file_choices(settings_dir: str | os.PathLike[str] = SETTINGS_DIR) -> tuple[str, ...]:
    """The Load Settings dropdown: 'custom' and the settings files in settings/ (listed when building)."""
    folder = Path(settings_dir)
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in (".json", ".txt")) \
        if folder.is_dir() else []
    return ("custom", *files)


def cell_fields(group: str) -> tuple[A.Field, ...]:
    """The fields of one form cell, in order: args.py's group plus any EXTRA_FIELDS it does not declare.

    An extra field goes after the last field of its section (or at the end when the section is new).
    """
    fields = list(A.GROUPS.get(group, ()))
    if group == "load":
        fields = [replace(f, choices=settings_file_choices()) if f.name == "settings_file" else f
                  for f in fields]
    names = {f.name for f in fields}
    for extra in EXTRA_FIELDS.get(group, ()):
        if extra.name in names:
            continue
        same = [i for i, f in enumerate(fields) if f.section == extra.section]
        fields.insert(same[-1] + 1 if same else len(fields), extra)
    return tuple(fields)


def render_form_line(f: A.Field) -> str:
    """``docs.form_line`` plus what the notebook adds: typed-in values for open dropdowns, help of hidden fields.

    Colab's ``{allow-input: true}`` lets a dropdown take a value that is not listed (a checkpoint file in
    models_path, a local depth model folder), which is what ``open_choices`` means.
    """
    line = settings_docs.form_line(f)
    if f.hidden:
        return f"{line}  # {f.help}"
    if f.widget == "dropdown" and f.open_choices:
        line = line.removesuffix(" {type:'string'}") + " {allow-input: true}"
    return line


def _form_block(fields: Iterable[A.Field], indent: str = "") -> list[str]:
    """Form lines under a ``#@markdown`` heading per section (a plain comment for a section with no form)."""
    lines: list[str] = []
    section = None
    fields = list(fields)
    for f in fields:
        if f.section != section:
            section = f.section
            if lines:
                lines.append("")
            shown = any(not g.hidden for g in fields if g.section == section)
            lines.append(f"{indent}#@markdown **{section}**" if shown else f"{indent}# {section} (not in the form)")
        lines.append(indent + render_form_line(f))
    return lines


def _function_cell(name: str, group: str, head: Iterable[str] = ()) -> list[str]:
    """``def Name(): <form lines> return locals()``: v0.6's shape, which artists copy between notebooks."""
    return [*head, f"def {name}():", *_form_block(cell_fields(group), "    "), "    return locals()"]


# ------------------------------------------------------------------------------------------ cells


def repository_url(pyproject: str | os.PathLike[str] = PYPROJECT) -> str:
    """``[project.urls] Homepage`` of pyproject.toml: the one place the repository's address is written.

    "" while it is the placeholder (a host under the reserved ``.invalid`` domain): the project is not
    published yet, so the Setup cell has no address to install from until the user sets one.
    """
    text = Path(pyproject).read_text(encoding="utf-8")
    match = re.search(r'^Homepage\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if match is None:
        raise SettingsError(f"no [project.urls] Homepage in {pyproject}")
    url = match.group(1)
    return "" if (urlparse(url).hostname or "").endswith(".invalid") else url


def package_version(pyproject: str | os.PathLike[str] = PYPROJECT) -> str:
    """``[project] version`` of pyproject.toml: the deforum version this notebook is built for."""
    match = re.search(r'^version\s*=\s*"([^"]+)"', Path(pyproject).read_text(encoding="utf-8"), re.MULTILINE)
    if match is None:
        raise SettingsError(f"no [project] version in {pyproject}")
    return match.group(1)


def installer_source() -> str:
    """deforum/install.py without its docstring, ``__future__`` import and command-line entry: the Setup
    cell's copy (deforum cannot be imported before it is installed)."""
    text = Path(install.__file__).read_text(encoding="utf-8")
    body = text[re.search(r"^import ", text, re.MULTILINE).start():text.index('\n\nif __name__ == "__main__":')]
    return "# deforum/install.py, copied here by the notebook builder\n" + body.strip()


TITLE = """\
# **Deforum Stable Diffusion v0.6**

Prompts and keyframed camera moves turned into animations: the Deforum Stable Diffusion v0.6 notebook,
rebuilt as thin form cells over the tested `deforum` package. Fill the forms and press *Run all*.

[Stable Diffusion](https://github.com/CompVis/stable-diffusion) by Robin Rombach, Andreas Blattmann,
Dominik Lorenz, Patrick Esser, Björn Ommer and the [Stability.ai](https://stability.ai/) team.
Samplers after [K Diffusion](https://github.com/crowsonkb/k-diffusion) by Katherine Crowson.
Notebook by deforum (EnzymeZoo, foxxie, huemin and contributors); guide: *Quick Guide to Deforum v06*.

This notebook is generated from `deforum/settings/fields.py` by `python -m deforum.notebook build`; edit that file,
not this one."""

TERMS = """\
## Stability.AI Model Terms of Use

By using this Notebook, you agree to the following Terms of Use, and license:

This model is open access and available to all, with a CreativeML OpenRAIL-M license further specifying
rights and usage.

The CreativeML OpenRAIL License specifies:

1. You can't use the model to deliberately produce nor share illegal or harmful outputs or content
2. CompVis claims no rights on the outputs you generate, you are free to use them and are accountable for
   their use which must not go against the provisions set in the license
3. You may re-distribute the weights and use the model commercially and/or as a service. If you do, please
   be aware you have to include the same use restrictions as the ones in the license and share a copy of the
   CreativeML OpenRAIL-M to all your users (please read the license entirely and carefully)

Please read the full license here: https://huggingface.co/spaces/CompVis/stable-diffusion-license"""

GPU_CELL = """\
#@markdown **NVIDIA GPU**: the GPU of this session (Colab: A100 > V100 > P100 > T4 > K80).
import subprocess

try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,memory.free",
                          "--format=csv,noheader"], capture_output=True, text=True, check=True).stdout
    print(gpu.strip())
except (OSError, subprocess.CalledProcessError):
    print("No NVIDIA GPU found (nvidia-smi is not available): rendering will be slow.")"""

SETUP_CELL = """\
#@markdown **Setup**: makes the `deforum` package importable. If it is not installed (a new Colab runtime),
#@markdown it is installed from `repo_url`: this project's git URL, or a checkout or wheel on Google Drive.
#@markdown pip may add packages to the runtime but never changes one it has.
repo_url = {repo_url!r} #@param {{type:"string"}}

{installer}

ensure_deforum(repo_url, version={version!r})
import deforum

print(f"deforum {{deforum.__version__}} from {{deforum.__file__}}")"""

ROOT_TAIL = """\

from types import SimpleNamespace
from deforum.notebook import load_model, prepare_root

root = SimpleNamespace(**Root())
prepare_root(root)  # in Colab with mount_google_drive: mount Drive and use the gdrive paths
root.model = load_model(root) if root.load_on_run_all else None"""

RUN_TAIL = """\

import deforum.runner
from deforum.notebook import NotebookDisplay, run_in_notebook, settings_file_path

result = run_in_notebook(
    deforum.runner.render, args=DeforumArgs(), anim_args=DeforumAnimArgs(), prompts=prompts,
    animation_prompts=animation_prompts, root=root,
    settings_file=settings_file_path(override_settings_with_file, settings_file, custom_settings_file),
    display=NotebookDisplay())
print(f"Output folder: {result.outdir}")"""

DISCONNECT_TAIL = """\

import sys

if skip_disconnect_for_run_all:
    print("Skipping disconnect, uncheck skip_disconnect_for_run_all if you want to run it")
elif "google.colab" in sys.modules:
    from google.colab import runtime
    runtime.unassign()
else:
    print("Not in Colab: nothing to disconnect")"""


def _prompts_cell() -> list[str]:
    lines = ["prompts = ["]
    lines += [f"    {json.dumps(p, ensure_ascii=False)},  # None mode: one image (n_batch) per prompt"
              if i == 0 else f"    {json.dumps(p, ensure_ascii=False)},"
              for i, p in enumerate(A.DEFAULT_PROMPTS)]
    lines += ["]", "", "animation_prompts = {"]
    lines += [f"    {k}: {json.dumps(v, ensure_ascii=False)}," for k, v in A.DEFAULT_ANIMATION_PROMPTS.items()]
    lines += ["}"]
    return lines


def _video_cell() -> list[str]:
    fields = cell_fields("video")
    call = ", ".join(["globals().get(\"result\")", *(f"{f.name}={f.name}" for f in fields)])
    return [*_form_block(fields), "", "from deforum.notebook import create_video", "",
            "video = create_video(", *_wrap(call, 100, "    "), ")"]


AUDIO_SECTION = "Audio Keyframes"
AUDIO_FIELDS: tuple[A.Field, ...] = tuple(
    A.Field(name, type_, default, help_, widget=widget, choices=choices, group="audio", section=AUDIO_SECTION)
    for name, type_, default, widget, choices, help_ in (
        ("skip_audio_keyframes", "bool", True, "boolean", (), "Leave the schedules as the animation cell has them."),
        ("audio_path", "str", "", "string", (), "The sound file (wav, flac, ogg, mp3) the schedule follows."),
        ("audio_field", "str", "zoom", "dropdown", A.schedule_fields(), "The schedule this cell sets."),
        ("audio_expr", "str", "1 + 0.05*x", "string", (),
         "numexpr of x (the feature in the frame's window, 0..1) and t (the frame), as in schedules."),
        ("audio_feature", "str", "rms", "dropdown", ("rms", "onset", "beat"),
         "rms: loudness; onset: attacks; beat: 1 on each tracked beat, decaying."),
        ("audio_band", "str", "", "string", (), "Band-pass first, LOW-HIGH in Hz (e.g. 20-150 for the kick)."),
        ("audio_smooth", "int", 1, "number", (), "Moving average over this many frames."),
        ("audio_fps", "float", A.FIELDS["video"]["fps"].default, "number", (),
         "Frames per second: the same as the video cell's fps."),
        ("audio_sets_max_frames", "bool", True, "boolean", (), "max_frames becomes the audio's frame count."),
    ))

AUDIO_HEAD = """\
#@markdown An optional schedule from a sound file (docs/audio.md): each frame's value is `audio_expr` of `x`,
#@markdown the audio feature in that frame's window scaled to 0..1, e.g. `1 + 0.05*x` for zoom or
#@markdown `0.65 - 0.3*x` for strength_schedule. Needs librosa (Colab has it; elsewhere
#@markdown `pip install 'deforum-stable-diffusion[audio]'`)."""


def _audio_cell() -> list[str]:
    call = ", ".join(["DeforumAnimArgs", *(f"{f.name}={f.name}" for f in AUDIO_FIELDS)])
    heading, *form = _form_block(AUDIO_FIELDS)
    return [heading, AUDIO_HEAD, *form, "", "from deforum.notebook import audio_keyframes", "",
            "DeforumAnimArgs = audio_keyframes(", *_wrap(call, 100, "    "), ")"]


def _wrap(arguments: str, width: int, indent: str) -> list[str]:
    """Lines of at most ``width`` characters holding a ', '-separated argument list."""
    lines: list[str] = []
    line = ""
    for part in arguments.split(", "):
        if line and len(indent) + len(line) + len(part) + 2 > width:
            lines.append(indent + line + ",")
            line = part
        else:
            line = f"{line}, {part}" if line else part
    return [*lines, indent + line]


def notebook_cells() -> list[tuple[str, str, str]]:
    """(cell id, kind 'markdown'|'code', source) of every cell, in v0.6's order."""
    run = [*_function_cell("DeforumArgs", "args"), "", *_form_block(cell_fields("load")), RUN_TAIL]
    return [
        ("title", "markdown", TITLE),
        ("terms", "markdown", TERMS),
        ("gpu", "code", GPU_CELL),
        ("setup-heading", "markdown", "# Setup"),
        ("setup", "code", SETUP_CELL.format(repo_url=repository_url(), installer=installer_source(),
                                            version=package_version())),
        ("root", "code", "\n".join([*_function_cell("Root", "root"), ROOT_TAIL])),
        ("settings-heading", "markdown", "# Settings"),
        ("animation", "code", "\n".join(_function_cell(
            "DeforumAnimArgs", "anim_args", ["#@markdown ####**Animation Settings:**"]))),
        ("audio", "code", "\n".join(_audio_cell())),
        ("prompts-heading", "markdown", "### Prompts\n`prompts` are used by the None mode (still images); "
         "`animation_prompts` map a frame number to the prompt from that frame on (2D, 3D, Video Input, "
         "Interpolation)."),
        ("prompts", "code", "\n".join(_prompts_cell())),
        ("run-heading", "markdown", "# Run"),
        ("run", "code", "\n".join(run)),
        ("video-heading", "markdown", "# Create Video From Frames"),
        ("video", "code", "\n".join(_video_cell())),
        ("disconnect-heading", "markdown", "# Disconnect Runtime"),
        ("disconnect", "code", "\n".join(_form_block(cell_fields("disconnect"))) + "\n" + DISCONNECT_TAIL),
    ]


NOTEBOOK_METADATA = {
    "accelerator": "GPU",
    "colab": {"provenance": []},
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def build_notebook() -> Any:
    """The notebook as an nbformat v4 node: outputs empty, Colab GPU runtime metadata, stable cell ids."""
    import nbformat

    nb = nbformat.v4.new_notebook(metadata=json.loads(json.dumps(NOTEBOOK_METADATA)))
    for cell_id, kind, source in notebook_cells():
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(source, id=cell_id)
        else:
            meta = {"cellView": "form"} if "#@markdown" in source else {}
            cell = nbformat.v4.new_code_cell(source, id=cell_id, metadata=meta)
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def notebook_text() -> str:
    """The text ``build`` writes (nbformat's JSON, newline-terminated)."""
    import nbformat

    text = nbformat.writes(build_notebook())
    return text if text.endswith("\n") else text + "\n"


def write_notebook(path: str | os.PathLike[str] = NOTEBOOK_PATH) -> Path:
    path = Path(path)
    path.write_text(notebook_text(), encoding="utf-8")
    return path


def notebook_diff(path: str | os.PathLike[str] = NOTEBOOK_PATH, limit: int = 40) -> list[str]:
    """Unified-diff lines between the file at ``path`` and what ``build`` would write (empty: up to date)."""
    path = Path(path)
    current = path.read_text(encoding="utf-8") if path.is_file() else ""
    expected = notebook_text()
    if current == expected:
        return []
    diff = list(difflib.unified_diff(current.splitlines(), expected.splitlines(), str(path), "generated",
                                     lineterm="", n=1))
    return (diff or [f"{path} is missing"])[:limit]


def main(argv: Iterable[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    path = Path(argv[1]) if len(argv) > 1 else NOTEBOOK_PATH
    if command == "build":
        print(f"wrote {write_notebook(path)}")
        return 0
    if command == "check":
        diff = notebook_diff(path)
        if diff:
            print(f"{path} is out of date; run `python -m deforum.notebook build`:", *diff, sep="\n")
            return 1
        print(f"{path} is up to date")
        return 0
    print("usage: python -m deforum.notebook build|check [PATH]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
