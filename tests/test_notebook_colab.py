"""Run all of the committed notebook in a runtime like a new Colab one: its packages, a kernel marked as
Colab, and no deforum until the Setup cell installs it from ``repo_url``."""

from __future__ import annotations

import re
import site
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError
from test_notebook import REPO, execute, set_form_value, user_notebook

COLAB_ENV = {"COLAB_RELEASE_TAG": "release-colab-test"}


def _is_deforum(entry: Path) -> bool:
    return "deforum" in entry.name.lower().replace("-", "_")


def colab_stub(folder: Path) -> Path:
    """A ``google.colab`` module loaded at start-up, as in Colab (a real file, so it has a module spec:
    accelerate asks importlib for it)."""
    package = folder / "google" / "colab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Test stand-in for Colab\'s module."""\n')
    (folder / "sitecustomize.py").write_text("import google.colab  # noqa: F401\n")
    return folder


def clean_runtime(tmp_path: Path) -> Path:
    """A venv that sees every package of this test environment except deforum, plus the Colab stub.

    The packages come through a folder of links (no copies of torch), pip and setuptools included (so the
    venv has none of its own to disagree with them); a path line in a ``.pth`` file does not run the ``.pth``
    files of the folder it names, so an editable install of deforum stays invisible too.
    """
    venv = tmp_path / "runtime"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    shared = tmp_path / "runtime-packages"
    shared.mkdir()
    for folder in map(Path, site.getsitepackages()):
        for entry in folder.iterdir():
            if not _is_deforum(entry) and entry.suffix != ".pth" and not (shared / entry.name).exists():
                (shared / entry.name).symlink_to(entry)
    python = venv / "bin" / "python"
    own_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   capture_output=True, text=True, check=True).stdout.strip())
    (own_site / "runtime-packages.pth").write_text(f"{shared}\n{colab_stub(tmp_path / 'colab-stub')}\n")
    return python


def colab_notebook(tmp_path: Path, repo_url: str) -> tuple[nbformat.NotebookNode, Path]:
    nb, output = user_notebook(tmp_path, "2D", max_frames=4, animation_prompts={"0": "a red apple"})
    set_form_value(nb, "repo_url", repo_url)
    return nb, output


def cell_text(nb: nbformat.NotebookNode, cell_id: str) -> str:
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    return "".join(o.get("text", "") for o in cell.outputs) + "".join(
        "\n".join(o.get("traceback", [])) for o in cell.outputs if o.output_type == "error")


@pytest.fixture
def runtime(tmp_path) -> Path:
    """A new one for each test: the Setup cell installs into it."""
    return clean_runtime(tmp_path / "colab")


def test_the_clean_runtime_has_torch_and_the_colab_module_but_no_deforum(runtime):
    probe = subprocess.run([str(runtime), "-c", "import sys, importlib.util as u, torch, torchvision; "
                            "print('google.colab' in sys.modules, u.find_spec('google.colab') is not None, "
                            "u.find_spec('deforum'))"], capture_output=True, text=True, cwd="/", check=True)
    assert probe.stdout.split() == ["True", "True", "None"]


@pytest.mark.slow
def test_run_all_installs_deforum_from_repo_url_and_renders(runtime, tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    nb, output = colab_notebook(tmp_path, f"git+file://{clone}")
    execute(nb, tmp_path, env=COLAB_ENV, timeout=600, cwd=tmp_path, python=str(runtime),
            deforum_from_checkout=False)

    setup = cell_text(nb, "setup")
    assert f"installing deforum from git+file://{clone}" in setup
    installed_from = re.search(r"^deforum \S+ from (.*)$", setup, re.M).group(1)
    assert installed_from.startswith(str(runtime.parent.parent)), setup  # the runtime's own site-packages
    frames = sorted(output.rglob("*_[0-9][0-9][0-9][0-9][0-9].png"))
    assert len(frames) == 4
    assert len(list(frames[0].parent.glob("*.mp4"))) == 1
    assert f"Output folder: {frames[0].parent}" in cell_text(nb, "run")


@pytest.mark.slow
def test_run_all_without_repo_url_stops_at_setup_with_the_message(runtime, tmp_path):
    nb, output = colab_notebook(tmp_path, "")
    with pytest.raises(CellExecutionError):
        execute(nb, tmp_path, env=COLAB_ENV, timeout=120, cwd=tmp_path, python=str(runtime),
                deforum_from_checkout=False)
    setup = cell_text(nb, "setup")
    assert "repo_url is empty: set repo_url in this Setup cell's form" in setup
    assert "Traceback" not in setup
    later = [c for c in nb.cells if c.cell_type == "code" and c.get("id") not in ("gpu", "setup")]
    assert all(not c.outputs and not c.execution_count for c in later)
    assert not output.exists()
