"""The notebook builder (deforum.notebook_build): the committed notebook is what it writes, its build|check
command (also reached as ``python -m deforum.notebook``), form lines, extra fields, the repository address;
and the run-time module the cells import stays apart from it."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

import deforum.notebook as N
from deforum import notebook_build as B
from deforum import settings as A


def test_committed_notebook_is_what_the_generator_writes():
    assert B.notebook_diff() == [], "run `python -m deforum.notebook build`"


def test_check_command_fails_on_a_stale_notebook_and_build_fixes_it(tmp_path, capsys):
    path = tmp_path / "nb.ipynb"
    path.write_text(B.NOTEBOOK_PATH.read_text().replace("StableFun", "Stale"))
    assert B.main(["check", str(path)]) == 1
    assert "out of date" in capsys.readouterr().out
    assert B.main(["build", str(path)]) == 0
    assert B.main(["check", str(path)]) == 0
    assert B.main(["frobnicate"]) == 2


def test_repository_url_is_empty_for_the_placeholder_and_stamped_once_published(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nversion = "9.9"\n[project.urls]\nHomepage = "https://example.invalid/x"\n')
    assert B.repository_url(pyproject) == ""
    pyproject.write_text('[project.urls]\nHomepage = "https://github.com/someone/deforum"\n')
    assert B.repository_url(pyproject) == "https://github.com/someone/deforum"


@pytest.mark.parametrize(("field", "expected"), [
    (A.Field("x", "str", "a", "h", widget="dropdown", choices=("a", "b"), group="args"),
     "x = 'a' #@param [\"a\", \"b\"]"),
    (A.Field("x", "str", "a", "h", widget="dropdown", choices=("a", "b"), open_choices=True, group="anim_args"),
     "x = 'a' #@param [\"a\", \"b\"] {allow-input: true}"),
    (A.Field("x", "bool", True, "Why.", group="args"), "x = True  # Why."),
    (A.Field("x", "int", 3, "h", widget="raw", group="args"), "x = 3 #@param"),
])
def test_render_form_line(field, expected):
    assert B.render_form_line(field) == expected


def test_extra_fields_go_after_their_section_unless_args_py_has_them(monkeypatch):
    def extra(name, section):
        return A.Field(name, "bool", False, "h", widget="boolean", group="root", section=section)

    monkeypatch.setattr(B, "EXTRA_FIELDS", {"root": (extra("zz_path", "Paths"), extra("models_path", "Paths"),
                                                     extra("zz_new", "Brand New"))})
    names = [f.name for f in B.cell_fields("root")]
    paths = [f.name for f in A.ROOT_FIELDS if f.section == "Paths"]
    assert names[names.index(paths[-1]) + 1] == "zz_path"
    assert names.count("models_path") == 1 and names[-1] == "zz_new"


def test_python_m_deforum_notebook_is_the_builders_command():
    done = subprocess.run([sys.executable, "-m", "deforum.notebook", "check"], capture_output=True, text=True,
                          cwd=B.REPO_ROOT)
    assert done.returncode == 0 and "is up to date" in done.stdout, done.stdout + done.stderr


def test_builder_and_run_time_helpers_agree_on_the_repository_paths():
    # the builder finds the root itself so that it need not import deforum.notebook (no import cycle)
    assert B.REPO_ROOT == N.REPO_ROOT and B.SETTINGS_DIR == N.SETTINGS_DIR
    assert (B.REPO_ROOT / "pyproject.toml").is_file()


def test_the_run_time_helpers_import_neither_nbformat_nor_the_builder():
    code = ("import sys, deforum.notebook; "
            "print(sorted(m for m in ('nbformat', 'deforum.notebook_build', 'deforum.install') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_cells_import_only_run_time_helpers_of_deforum_notebook():
    imported = set()
    for _, kind, source in B.notebook_cells():
        if kind != "code":
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("deforum.notebook"):
                assert node.module == "deforum.notebook", source
                imported |= {alias.name for alias in node.names}
    assert imported and all(callable(getattr(N, name)) for name in imported)
    assert not imported & set(vars(B))  # none of them is the builder's
