"""The notebook: generated from deforum/settings/fields.py, Colab form syntax, v0.6 fields and defaults, and executed
headless with nbclient as a user would run it (tiny model, settings file override)."""

from __future__ import annotations

import ast
import base64
import json
import os
import re
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import nbformat
import numpy as np
import pytest
from PIL import Image

from deforum import SettingsError
from deforum import notebook as N
from deforum import notebook_build as B
from deforum import settings as A
from deforum.plan import make_plan
from deforum.testing import settings_for_test

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"


def committed() -> nbformat.NotebookNode:
    return nbformat.read(B.NOTEBOOK_PATH, as_version=4)


def code_cell(nb: nbformat.NotebookNode, cell_id: str) -> str:
    return next(c.source for c in nb.cells if c.get("id") == cell_id)


def call_function_cell(source: str, name: str) -> dict:
    """Define only ``def name(): ... return locals()`` from a cell (nothing else runs) and call it."""
    tree = ast.parse(source)
    fn = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name)
    ns: dict = {}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), f"<{name}>", "exec"), ns)
    return ns[name]()


def module_form_values(source: str) -> dict:
    """The values of the module-level ``x = value #@param`` lines of a cell."""
    out = {}
    lines = source.splitlines()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and "#@param" in lines[node.lineno - 1]:
            out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


# ------------------------------------------------------------------------------------ generated file


def test_notebook_is_stripped_with_colab_gpu_metadata():
    nb = committed()
    nbformat.validate(nb)
    assert nb.metadata["accelerator"] == "GPU"
    assert nb.metadata["colab"] == {"provenance": []}
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_cells_are_in_v06_order():
    ids = [c.id for c in committed().cells if c.cell_type == "code"]
    assert ids == ["gpu", "setup", "root", "animation", "audio", "prompts", "run", "video", "disconnect"]


def test_no_shell_magics_so_local_jupyter_runs_it():
    for cell in committed().cells:
        if cell.cell_type == "code":
            ast.parse(cell.source)  # plain Python: no `!cmd` or `%magic` lines
            assert not re.search(r"^\s*[!%]", cell.source, re.M)


def test_title_cell_has_the_model_terms():
    text = "\n".join(c.source for c in committed().cells if c.cell_type == "markdown")
    for phrase in ("CreativeML OpenRAIL-M", "illegal or harmful outputs",
                   "https://huggingface.co/spaces/CompVis/stable-diffusion-license"):
        assert phrase in text


def test_setup_cell_installs_from_this_projects_url_never_another_projects():
    """The committed notebook's repo_url is pyproject's Homepage, or empty while that is the placeholder."""
    values = module_form_values(code_cell(committed(), "setup"))
    homepage = re.search(r'^Homepage\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert values == {"repo_url": "" if ".invalid/" in homepage else homepage}
    assert "deforum-art" not in values["repo_url"]


def test_setup_cell_carries_the_installer_and_the_package_version():
    source = code_cell(committed(), "setup")
    assert B.installer_source() in source
    assert f"ensure_deforum(repo_url, version={B.package_version()!r})" in source
    assert B.package_version() == __import__("deforum").__version__


def test_setup_cell_in_colab_says_which_repo_url_failed_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", ModuleType("google.colab"))
    monkeypatch.setitem(sys.modules, "deforum", None)  # a new runtime: deforum cannot be imported
    source = code_cell(committed(), "setup")
    missing = str(tmp_path / "no-such-checkout")
    source = re.sub(r"^repo_url = .*$", f"repo_url = {missing!r}", source, count=1, flags=re.M)
    with pytest.raises(RuntimeError, match=r"pip could not install deforum from repo_url = '/.*no-such-checkout'"
                                           r"(.|\n)*pip said:\n.*\S"):
        exec(compile(source, "setup-cell", "exec"), {})


# ------------------------------------------------------------------------------------ form syntax

_PARAM = re.compile(
    r"^\s*(?P<name>[A-Za-z_]\w*) = (?P<value>.+?) #@param"
    r"(?:$"
    r"| \{type:\s*\"(?P<type>string|boolean|number|integer|raw)\"\}$"
    r"| (?P<choices>\[.*\])(?: \{type:\s*'string'\}| (?P<open>\{allow-input: true\}))?$)"
)


def form_lines() -> list[str]:
    return [ln for c in committed().cells if c.cell_type == "code" for ln in c.source.splitlines()
            if "#@param" in ln]


def test_every_param_line_is_colab_form_syntax():
    lines = form_lines()
    assert len(lines) > 100
    for line in lines:
        m = _PARAM.match(line)
        assert m, f"not Colab #@param syntax: {line}"
        value = m["value"]
        if m["name"] == "grad_inject_timing":
            assert value == "list(range(1,10))"
            continue
        literal = ast.literal_eval(value)
        if m["type"] == "boolean":
            assert isinstance(literal, bool), line
        elif m["type"] == "number":
            assert isinstance(literal, (int, float)) and not isinstance(literal, bool), line
        elif m["type"] == "string":
            assert isinstance(literal, str), line
        elif m["choices"]:
            choices = json.loads(m["choices"])
            assert m["open"] or literal in choices, line


def test_markdown_form_headings():
    root = code_cell(committed(), "root")
    assert "    #@markdown **Paths**" in root and "    #@markdown **Model Setup**" in root
    run = code_cell(committed(), "run")
    for heading in ("Image Settings", "Sampling Settings", "Batch Settings", "Init Settings", "Load Settings"):
        assert f"#@markdown **{heading}**" in run


# ------------------------------------------------------------------------------------ fields and defaults

FUNCTION_CELLS = [("root", "Root", "root"), ("animation", "DeforumAnimArgs", "anim_args"),
                  ("run", "DeforumArgs", "args")]


@pytest.mark.parametrize(("cell_id", "function", "group"), FUNCTION_CELLS)
def test_function_cells_return_every_field_with_its_args_py_default(cell_id, function, group):
    values = call_function_cell(code_cell(committed(), cell_id), function)
    expected = A.defaults(group)
    expected.update({f.name: f.fresh_default() for f in B.EXTRA_FIELDS.get(group, ()) if f.name not in expected})
    assert values == expected
    assert list(values) == [f.name for f in B.cell_fields(group)]


def test_the_notebook_cells_resolve_to_typed_settings_holding_every_field_of_the_table():
    """What Run all hands the runner (the three function cells, the video and Load Settings cells, the prompt
    cell) resolves, and the typed settings hold each field of the table exactly once, with the cell's value."""
    import dataclasses

    nb = committed()
    groups = {group: call_function_cell(code_cell(nb, cell_id), function)
              for cell_id, function, group in FUNCTION_CELLS}
    for group, cell_id in (("video", "video"), ("load", "run")):  # module-level form lines (hidden: defaults)
        groups[group] = {k: v for k, v in module_form_values(code_cell(nb, cell_id)).items() if k in A.FIELDS[group]}
        assert set(groups[group]) == {f.name for f in A.GROUPS[group] if not f.hidden}
    settings = A.resolve(groups["args"], groups["anim_args"], groups["root"], video=groups["video"],
                         load=groups["load"])
    held = {(concern.name, f.name): getattr(getattr(settings, concern.name), f.name)
            for concern in dataclasses.fields(settings) for f in dataclasses.fields(getattr(settings, concern.name))}
    table = {(f.concern, f.name): f for fields in A.GROUPS.values() for f in fields if f.concern}
    assert set(held) == set(table) | {("prompts", "prompts"), ("prompts", "animation_prompts")}
    changed_by_rules = {"ddim_eta", "max_frames", "init_image"}  # post_process: mode None, sampler, use_init
    for (concern, name), f in table.items():
        if name not in changed_by_rules:
            value = groups[f.group].get(name, f.fresh_default())
            assert held[concern, name] == (int(value) if f.type == "intstr" else
                                           tuple(value) if isinstance(value, list) else value), name


@pytest.mark.parametrize(("cell_id", "function", "group"), FUNCTION_CELLS)
def test_form_fields_are_exactly_the_visible_fields(cell_id, function, group):
    source = code_cell(committed(), cell_id)
    in_function = [ln for ln in source.splitlines() if ln.startswith("    ")]
    with_param = {m["name"] for ln in in_function if (m := _PARAM.match(ln))}
    assert with_param == {f.name for f in B.cell_fields(group) if not f.hidden}


@pytest.mark.parametrize(("cell_id", "group"), [("run", "load"), ("video", "video"),
                                                ("disconnect", "disconnect")])
def test_module_level_form_cells(cell_id, group):
    source = code_cell(committed(), cell_id)
    visible = {f.name: f.fresh_default() for f in B.cell_fields(group) if not f.hidden}
    values = module_form_values(source)
    assert {k: values[k] for k in visible} == visible


def v06_defaults() -> dict:
    path = DATA / "settings" / "notebook_defaults.json"
    return json.loads(path.read_text())


@pytest.mark.parametrize(("cell_id", "function", "key"), [("run", "DeforumArgs", "args"),
                                                          ("animation", "DeforumAnimArgs", "anim_args")])
def test_every_v06_field_is_present_with_its_v06_default(cell_id, function, key):
    values = call_function_cell(code_cell(committed(), cell_id), function)
    v06 = v06_defaults()[key]
    assert len(v06) == {"args": 72, "anim_args": 38}[key]
    v06.pop("outdir", None)  # v0.6 computed it in the cell from the date; here the run computes it
    values.pop("outdir", None)
    assert {k: values.get(k, "<missing>") for k in v06} == v06


# spec generation 1.1 (Root), animation 1.5 (video cell), 1.2 (prompts), 10.5 (load settings)
V06_ROOT = {"models_path": "models", "configs_path": "configs", "output_path": "output",
            "mount_google_drive": True, "models_path_gdrive": "/content/drive/MyDrive/AI/models",
            "output_path_gdrive": "/content/drive/MyDrive/AI/StableDiffusion", "model_config": "v1-inference.yaml",
            "model_checkpoint": "v1-5-pruned-emaonly.ckpt", "custom_config_path": "", "custom_checkpoint_path": "",
            "half_precision": True, "check_sha256": True, "load_on_run_all": True}
V06_VIDEO = {"skip_video_for_run_all": True, "fps": 12, "use_manual_settings": False, "max_frames": "200",
             "render_steps": False, "path_name_modifier": "x0_pred"}
V06_LOAD = {"override_settings_with_file": False, "settings_file": "custom",
            "custom_settings_file": "/content/drive/MyDrive/Settings.txt"}


def test_root_video_and_load_fields_have_v06_defaults():
    root = call_function_cell(code_cell(committed(), "root"), "Root")
    assert {k: root.get(k, "<missing>") for k in V06_ROOT} == V06_ROOT
    video = module_form_values(code_cell(committed(), "video"))
    assert {k: video.get(k, "<missing>") for k in V06_VIDEO} == V06_VIDEO
    assert "make_gif = False" in code_cell(committed(), "video")
    load = module_form_values(code_cell(committed(), "run"))
    assert load == V06_LOAD


def test_model_checkpoint_dropdown_is_the_catalogue():
    line = next(ln for ln in form_lines() if ln.strip().startswith("model_checkpoint ="))
    choices = json.loads(_PARAM.match(line)["choices"])
    assert choices == list(A.CHECKPOINTS)
    assert "v1-5-pruned-emaonly.ckpt" in choices and choices[0] == "custom"


def test_prompt_cell_has_v06_prompts():
    ns: dict = {}
    exec(code_cell(committed(), "prompts"), ns)
    assert ns["prompts"] == ["a beautiful lake by Asher Brown Durand, trending on Artstation",
                             "a beautiful portrait of a woman by Artgerm, trending on Artstation"]
    assert ns["animation_prompts"] == {k: f"a beautiful {fruit}, trending on Artstation" for k, fruit in
                                       [(0, "apple"), (20, "banana"), (30, "coconut"), (40, "durian")]}


def test_settings_file_dropdown_lists_the_settings_folder():
    line = next(ln for ln in form_lines() if ln.startswith("settings_file ="))
    choices = json.loads(_PARAM.match(line)["choices"])
    files = sorted(p.name for p in (REPO / "settings").iterdir() if p.suffix in (".json", ".txt"))
    assert choices == ["custom", *files]
    assert {"512x512_aesthetic_0.json", "512x512_colormatch_3.json"} <= set(choices)


def test_root_cell_has_the_model_setup_fields_of_the_guide():
    model_setup = [f.name for f in B.cell_fields("root") if f.section == "Model Setup"]
    assert set(model_setup) >= {"model_config", "model_checkpoint", "custom_config_path", "custom_checkpoint_path",
                                "check_sha256", "load_on_run_all", "map_location"}


# ------------------------------------------------------------------------------------ run-time helpers


def test_run_in_notebook_turns_a_deforum_error_into_one_message():
    def bad():
        raise SettingsError("invalid settings (1 problem):\n  - W=13: must be an integer >= 64")

    with pytest.raises(N.NotebookStop) as info:
        N.run_in_notebook(bad)
    lines = info.value._render_traceback_()
    plain = [re.sub(r"\x1b\[[\d;]*m", "", ln) for ln in lines]
    assert plain == ["SettingsError: invalid settings (1 problem):", "  - W=13: must be an integer >= 64"]
    assert isinstance(info.value.error, SettingsError)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_run_in_notebook_passes_results_and_other_errors_through():
    assert N.run_in_notebook(lambda a, b=1: a + b, 2, b=3) == 5
    with pytest.raises(ZeroDivisionError):
        N.run_in_notebook(lambda: 1 / 0)


@pytest.mark.parametrize(("override", "name", "custom", "expected"), [
    (False, "default_3d.txt", "/x/s.txt", None),
    (True, "custom", "/x/s.txt", "/x/s.txt"),
    (True, "default_3d.txt", "/x/s.txt", str(REPO / "settings" / "default_3d.txt")),
])
def test_settings_file_path(override, name, custom, expected):
    assert N.settings_file_path(override, name, custom) == expected


def test_settings_file_path_refuses_a_path_as_preset_name():
    with pytest.raises(N.NotebookStop, match="settings_file"):
        N.settings_file_path(True, "../secrets.txt", "")


def test_prepare_root_outside_colab_keeps_local_paths(tmp_path, capsys):
    root = SimpleNamespace(**call_function_cell(code_cell(committed(), "root"), "Root"))
    root.models_path, root.output_path = str(tmp_path / "m"), str(tmp_path / "o")
    N.prepare_root(root)
    assert (tmp_path / "m").is_dir() and (tmp_path / "o").is_dir()
    assert root.output_path == str(tmp_path / "o")
    assert "not Colab" in capsys.readouterr().out


def schedule_plan(mode: str, **overrides):
    settings = settings_for_test(animation_mode=mode, max_frames=12, animation_prompts={0: "a"}, **overrides)
    return make_plan(settings, 1), settings


@pytest.mark.parametrize(("mode", "overrides", "expected"), [
    ("2D", {}, ["translation_x"]),  # zoom 1.04 is constant; the flip phi sawtooth is off
    ("2D", {"flip_2d_perspective": True}, ["translation_x", "perspective_flip_phi"]),
    ("2D", {"zoom": "0:(1), 6:(1.1)", "translation_x": "0:(0)"}, ["zoom"]),
    ("3D", {"rotation_3d_y": "0:(0), 5:(2)"}, ["translation_x", "rotation_3d_y"]),
    ("3D", {"translation_x": "0:(3)", "angle": "0:(t)"}, []),  # angle does not act in 3D
    ("Video Input", {"strength_schedule": "0:(t/20)"}, []),  # Video Input uses args.strength
])
def test_active_schedules(mode, overrides, expected):
    plan, anim = schedule_plan(mode, **overrides)
    assert list(N.active_schedules(plan, anim)) == expected


def test_plot_schedules_draws_one_panel_per_active_schedule():
    plan, anim = schedule_plan("3D", rotation_3d_y="0:(0), 5:(2)")
    fig = N.plot_schedules(plan, anim)
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == ["translation_x", "rotation_3d_y"]
    ydata = fig.axes[1].lines[0].get_ydata()
    np.testing.assert_allclose(ydata, plan.schedules["rotation_3d_y"])
    assert N._figure_png(fig).startswith(b"\x89PNG")
    assert N.plot_schedules(*schedule_plan("2D", translation_x="0:(0)")) is None


def write_frames(folder: Path, names: list[str], size: int = 64) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        Image.fromarray(np.full((size, size, 3), 40 * i, np.uint8)).save(folder / name)
        paths.append(folder / name)
    return paths


def test_create_video_of_an_animation_run(tmp_path):
    ts = "20240101120000"
    frames = write_frames(tmp_path, [f"{ts}_{i:05}.png" for i in range(3)])
    result = SimpleNamespace(outdir=tmp_path, timestring=ts, frames=frames, fps_hint=None)
    video = N.create_video(result, skip_video_for_run_all=False, fps=10, make_gif=True, show=False)
    assert video.mp4_path == tmp_path / f"{ts}.mp4" and video.mp4_path.stat().st_size > 0
    assert video.frame_count == 3 and video.gif_path.is_file()


def test_create_video_of_a_still_batch(tmp_path):
    ts = "20240101120000"
    frames = write_frames(tmp_path, [f"{ts}_00000_a_lake.png", f"{ts}_00001_a_cat.png"])
    (tmp_path / f"{ts}_settings.txt").write_text("{}")
    result = SimpleNamespace(outdir=tmp_path, timestring=ts, frames=[tmp_path / f"{ts}_settings.txt", *frames])
    video = N.create_video(result, skip_video_for_run_all=False, show=False)
    assert video.frame_count == 2 and (tmp_path / f"{ts}.mp4").is_file()


def test_create_video_skips_by_default_and_needs_a_run(tmp_path, capsys):
    assert N.create_video(None) is None
    assert "skip_video_for_run_all" in capsys.readouterr().out
    with pytest.raises(N.NotebookStop, match="Run cell"):
        N.create_video(None, skip_video_for_run_all=False)
    with pytest.raises(N.NotebookStop, match="not a Video cell field"):
        N.create_video(None, skip_video_for_run_al=False)


def test_create_video_manual_paths(tmp_path):
    write_frames(tmp_path / "in", [f"f_{i:05}.png" for i in range(4)])
    video = N.create_video(None, skip_video_for_run_all=False, use_manual_settings=True,
                           image_path=str(tmp_path / "in" / "f_%05d.png"), mp4_path=str(tmp_path / "m.mp4"),
                           max_frames="2", show=False)
    assert video.frame_count == 2 and (tmp_path / "m.mp4").is_file()


# ------------------------------------------------------------------------------------ executed headless


def kernel_manager(tmp_path: Path, env: dict[str, str] | None = None, python: str = sys.executable,
                   deforum_from_checkout: bool = True):
    """A python3 kernel of ``python`` (not whatever 'python3' the machine has); by default the checkout's
    deforum is importable in it."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = tmp_path / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    kernel_env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
    if deforum_from_checkout:
        kernel_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (deforum tests)", "language": "python", "env": kernel_env}))
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return KernelManager(kernel_name="python3", kernel_spec_manager=ksm)


def execute(nb: nbformat.NotebookNode, tmp_path: Path, env: dict[str, str] | None = None,
            timeout: int = 300, cwd: Path = REPO, **kernel: Any) -> nbformat.NotebookNode:
    """Run every cell top to bottom in a fresh kernel (working directory: the repository root)."""
    from nbclient import NotebookClient

    km = kernel_manager(tmp_path, env, **kernel)
    client = NotebookClient(nb, km=km, timeout=timeout, resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute()
    finally:  # a kernel manager passed in is not shut down by nbclient: each kernel holds ~1 GB
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    return nb


def set_form_value(nb: nbformat.NotebookNode, name: str, value: object) -> None:
    """Change a form field's value in the notebook text, as a user does in the Colab form."""
    pattern = re.compile(rf"^(\s*){name} = .*?( #@param.*)$", re.M)
    count = 0
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.source, n = pattern.subn(lambda m: f"{m[1]}{name} = {value!r}{m[2]}", cell.source)
            count += n
    assert count == 1, f"{name}: {count} form lines"


SMALL = {"W": 64, "H": 64, "steps": 10, "seed": 7, "max_frames": 3}  # steps >= 9: grad_inject_timing 1..9
RUNS = {
    "None": {"animation_mode": "None", "batch_name": "nb_none", "prompts": ["a red apple", "a blue lake"]},
    "2D": {"animation_mode": "2D", "batch_name": "nb_2d", "animation_prompts": {"0": "a red apple",
                                                                                  "2": "a blue lake"}},
    "3D": {"animation_mode": "3D", "batch_name": "nb_3d", "save_depth_maps": True,
           "animation_prompts": {"0": "a red apple"}},
}


def user_notebook(tmp_path: Path, mode: str, **overrides: Any) -> tuple[nbformat.NotebookNode, Path]:
    """The committed notebook with the form filled in for a tiny run driven by a settings file."""
    from deforum.testing import tiny_checkpoint, tiny_depth_model

    ckpt, yaml_path = tiny_checkpoint(tmp_path / "model", fmt="safetensors")
    settings = {**SMALL, **RUNS[mode], **overrides}
    if mode == "3D":
        settings["depth_model"] = str(tiny_depth_model(tmp_path / "dpt"))
    settings_path = tmp_path / "my_settings.txt"
    settings_path.write_text(json.dumps(settings, indent=4))
    output = tmp_path / "output"

    nb = committed()
    for name, value in [("output_path", str(output)), ("mount_google_drive", False), ("map_location", "cpu"),
                        ("model_config", "custom"), ("custom_config_path", str(yaml_path)),
                        ("model_checkpoint", "custom"), ("custom_checkpoint_path", str(ckpt)),
                        ("override_settings_with_file", True), ("settings_file", "custom"),
                        ("custom_settings_file", str(settings_path)), ("skip_video_for_run_all", False)]:
        set_form_value(nb, name, value)
    return nb, output


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["None", "2D", "3D"])
def test_notebook_runs_top_to_bottom(tmp_path, mode):
    nb, output = user_notebook(tmp_path, mode)
    execute(nb, tmp_path)

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert errors == []
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code")
    settings_files = list(output.rglob("*_settings.txt"))
    assert len(settings_files) == 1
    outdir = settings_files[0].parent
    assert outdir.name == RUNS[mode]["batch_name"]
    saved = json.loads(settings_files[0].read_text())
    assert (saved["W"], saved["H"], saved["animation_mode"]) == (64, 64, mode)
    ts = settings_files[0].name.removesuffix("_settings.txt")
    if mode == "None":
        frames = sorted(outdir.glob(f"{ts}_000*.png"))
        assert len(frames) == 2
    else:
        frames = sorted(outdir.glob(f"{ts}_[0-9][0-9][0-9][0-9][0-9].png"))
        assert [f.name for f in frames] == [f"{ts}_{i:05}.png" for i in range(3)]
    assert all(Image.open(f).size == (64, 64) for f in frames)
    if mode == "3D":
        assert len(list(outdir.glob(f"{ts}_depth_*.png"))) == 3
    mp4 = outdir / f"{ts}.mp4"
    assert mp4.is_file() and mp4.stat().st_size > 0
    video_outputs = [o for c in nb.cells if c.get("id") == "video" for o in c.outputs
                     if "text/html" in o.get("data", {})]
    assert any("data:video/mp4;base64," in o.data["text/html"] for o in video_outputs)


@pytest.mark.slow
def test_deforum_error_stops_run_all_with_one_message_and_frames_update_in_place(tmp_path):
    from nbclient.exceptions import CellExecutionError

    first, second = write_frames(tmp_path / "frames", ["a.png", "b.png"])
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from deforum.notebook import NotebookDisplay\n"
            f"d = NotebookDisplay()\nd.frame({str(first)!r})\nd.frame({str(second)!r})"),
        nbformat.v4.new_code_cell(f"d({str(first)!r})\nd({str(second)!r})"),
        nbformat.v4.new_code_cell(
            "from deforum import SettingsError\nfrom deforum.notebook import run_in_notebook\n"
            "def render():\n    raise SettingsError('invalid settings (1 problem):\\n  - W=13: must be >= 64')\n"
            "run_in_notebook(render)"),
        nbformat.v4.new_code_cell("print('not reached')"),
    ]
    with pytest.raises(CellExecutionError):
        execute(nb, tmp_path, timeout=120)

    images = [o for o in nb.cells[0].outputs if "image/png" in o.get("data", {})]
    assert len(images) == 1  # updated in place, not a growing list
    assert base64.b64decode(images[0].data["image/png"]) == second.read_bytes()
    labels = [o.data["text/plain"] for o in nb.cells[0].outputs if "image/png" not in o.get("data", {})]
    assert labels == ["b.png"]

    stills = [base64.b64decode(o.data["image/png"]) for o in nb.cells[1].outputs]
    assert stills == [first.read_bytes(), second.read_bytes()]  # None-mode stills: one below the other

    (error,) = nb.cells[2].outputs
    assert error.output_type == "error" and error.ename == "NotebookStop"
    plain = [re.sub(r"\x1b\[[\d;]*m", "", ln) for ln in error.traceback]
    assert plain == ["SettingsError: invalid settings (1 problem):", "  - W=13: must be >= 64"]
    assert nb.cells[3].outputs == [] and nb.cells[3].execution_count is None
