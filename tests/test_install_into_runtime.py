"""deforum/install.py, the Setup cell's installer: pip may add packages to a runtime, never replace one."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from deforum import install as I


def write_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A pure-Python wheel holding one module ``{name}`` with ``__version__``: a package pip can install offline."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f"__version__ = {version!r}\n",
        f"{dist_info}/METADATA": "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                                          *(f"Requires-Dist: {r}\n" for r in requires)]),
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: deforum-tests\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist_info}/RECORD"] = "\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n"
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> tuple[str, Path]:
    """A venv holding ``shared-dep`` 1.0 (a package the 'runtime' ships) and a folder of offline wheels."""
    root = tmp_path_factory.mktemp("runtime")
    wheels = root / "wheels"
    wheels.mkdir()
    for version in ("1.0", "2.0"):
        write_wheel(wheels, "shared-dep", version)
    write_wheel(wheels, "new-dep", "1.0")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    python = str(root / "venv" / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels),
                    "shared-dep==1.0"], check=True)
    return python, wheels


@pytest.fixture
def offline_pip(monkeypatch, runtime):
    python, wheels = runtime
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.delenv("PIP_CONSTRAINT", raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")  # the machine's own pip config must not add constraints
    return python, wheels


@pytest.mark.parametrize("repo_url, spec", [
    ("https://github.com/someone/deforum-stable-diffusion", "git+https://github.com/someone/deforum-stable-diffusion"),
    ("git+https://github.com/someone/repo@v1", "git+https://github.com/someone/repo@v1"),
    ("git+file:///content/repo", "git+file:///content/repo"),
    ("/content/drive/MyDrive/deforum", "/content/drive/MyDrive/deforum"),
    ("./deforum", "./deforum"),
    ("/content/drive/MyDrive/deforum_stable_diffusion-0.1.0-py3-none-any.whl",
     "/content/drive/MyDrive/deforum_stable_diffusion-0.1.0-py3-none-any.whl"),
    ("deforum-stable-diffusion==0.1.0", "deforum-stable-diffusion==0.1.0"),
])
def test_pip_spec(repo_url, spec):
    assert I.pip_spec(repo_url) == spec


def test_constraints_pin_every_installed_package_but_deforum_and_unpinnable_versions():
    text = I.constraints_text({"torch": "2.11.0+cu126", "numpy": "2.1.3", "deforum-stable-diffusion": "0.0.9",
                               "odd-system-package": "1.0-ubuntu3", "pkg": "1.0.post1"})
    assert text.splitlines() == ["numpy==2.1.3", "pkg==1.0.post1", "torch==2.11.0+cu126"]


def test_a_package_that_needs_nothing_new_is_added_and_nothing_changes(offline_pip, tmp_path):
    python, _ = offline_pip
    wheel = write_wheel(tmp_path, "fake-deforum", "0.1.0", requires=("shared-dep>=1", "new-dep"))
    before = I.installed_versions(python)
    I.install(str(wheel), python=python, echo=False)
    after = I.installed_versions(python)
    assert {k: v for k, v in after.items() if k in before} == before
    assert after["fake-deforum"] == "0.1.0" and after["new-dep"] == "1.0"


def test_a_package_that_would_replace_an_installed_one_stops_naming_it_and_both_versions(offline_pip, tmp_path):
    python, _ = offline_pip
    wheel = write_wheel(tmp_path, "greedy", "0.1.0", requires=("shared-dep>=2",))
    before = I.installed_versions(python)
    with pytest.raises(I.InstallError, match=r"would replace installed packages.*shared-dep 1\.0 -> 2\.0"):
        I.install(str(wheel), python=python, echo=False)
    assert I.installed_versions(python) == before


def test_an_uninstallable_repo_url_is_named_with_pips_reason(offline_pip, tmp_path):
    python, _ = offline_pip
    missing = str(tmp_path / "no-such-checkout")
    with pytest.raises(I.InstallError, match=r"pip could not install deforum from repo_url = '/.*no-such-checkout'"
                                             r"(.|\n)*pip said:\n.*\S"):
        I.install(missing, python=python, echo=False)


def test_ensure_deforum_goes_on_when_the_notebooks_version_is_importable(monkeypatch, capsys):
    monkeypatch.setattr(I, "install", lambda *a, **k: pytest.fail("nothing should be installed"))
    assert I.ensure_deforum("", version=__import__("deforum").__version__) == "importable"
    assert "nothing to install" in capsys.readouterr().out


@pytest.mark.parametrize("colab", [True, False])
def test_ensure_deforum_without_repo_url_stops_with_one_message_naming_repo_url(monkeypatch, colab):
    monkeypatch.setattr(I, "_importable_version", lambda: None)
    monkeypatch.setattr(I, "in_colab", lambda: colab)
    monkeypatch.setattr(I, "install", lambda *a, **k: pytest.fail("nothing should be installed"))
    with pytest.raises(I.InstallError, match=r"deforum 0\.1\.0 is not installed and repo_url is empty: set "
                                             r"repo_url .*git URL.*Google Drive") as error:
        I.ensure_deforum("  ", version="0.1.0")
    assert ("pip install -e ." in str(error.value)) is not colab
    assert error.value._render_traceback_() == [f"InstallError: {error.value}"]


def test_in_colab_as_colab_detects_it(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    assert not I.in_colab()
    monkeypatch.setenv("COLAB_RELEASE_TAG", "release-colab_20260819-060048_RC00")
    assert I.in_colab()
