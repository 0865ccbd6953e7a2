"""Install deforum into a running Python without changing any package it already has.

The notebook's Setup cell runs this before ``deforum`` can be imported, so this module uses the standard
library only: the notebook builder copies its source into the cell, and ``scripts/test-colab.sh`` runs it as
``python deforum/install.py SPEC``. Colab's runtime is a stack of pinned packages that other code relies on;
pip may add packages to it, never replace one. So every installed distribution becomes a constraint
(``name==version``), and when pip cannot install within them the install stops with one message naming the
package and both versions.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

DISTRIBUTION = "deforum-stable-diffusion"
# A public PEP 440 version with an optional local label: what a constraint line can pin.
_VERSION = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?(\+[A-Za-z0-9.]+)?$")


class InstallError(RuntimeError):
    """pip could not install deforum, or could only by replacing an installed package."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this message alone, not a traceback
        return [f"{type(self).__name__}: {self}"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_spec(repo_url: str) -> str:
    """What pip installs for a ``repo_url``: a git URL, a local checkout, a wheel or sdist, or an https URL."""
    if repo_url.startswith(("git+", "/", ".", "~")) or repo_url.endswith((".whl", ".tar.gz", ".zip")):
        return str(Path(repo_url).expanduser()) if repo_url.startswith("~") else repo_url
    if repo_url.startswith(("https://", "http://", "ssh://", "git@")):
        return "git+" + repo_url
    return repo_url


def installed_versions(python: str = sys.executable) -> dict[str, str]:
    """Every distribution pip sees in ``python``'s environment: canonical name -> version."""
    listing = subprocess.run([python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                             capture_output=True, text=True, check=True).stdout
    return {canonical(d["name"]): d["version"] for d in json.loads(listing)}


def constraints_text(installed: dict[str, str]) -> str:
    """One ``name==version`` line per installed distribution (deforum itself may be replaced)."""
    return "".join(f"{name}=={version}\n" for name, version in sorted(installed.items())
                   if name != DISTRIBUTION and _VERSION.match(version))


def _pip(python: str, args: list[str], echo: bool) -> subprocess.CompletedProcess:
    """Run pip; with ``echo`` its output is printed line by line as it comes (progress in a notebook cell)."""
    command = [python, "-m", "pip", *args, "--disable-pip-version-check"]
    if not echo:
        return subprocess.run(command, capture_output=True, text=True)
    lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            lines.append(line)
            print(line, end="", flush=True)
    return subprocess.CompletedProcess(command, proc.returncode, "".join(lines), "")


def replaced_packages(spec: str, installed: dict[str, str], python: str = sys.executable) -> list[str]:
    """'name installed -> wanted' for each installed package that pip, unconstrained, would replace."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        dry = _pip(python, ["install", "--dry-run", "--quiet", "--report", str(report), spec], echo=False)
        if dry.returncode != 0 or not report.is_file():
            return []
        plan = json.loads(report.read_text(encoding="utf-8")).get("install", [])
    found = []
    for item in plan:
        name, wanted = canonical(item["metadata"]["name"]), item["metadata"]["version"]
        if name != DISTRIBUTION and name in installed and installed[name] != wanted:
            found.append(f"{name} {installed[name]} -> {wanted}")
    return found


def install(repo_url: str, python: str = sys.executable, echo: bool = True) -> None:
    """pip install ``repo_url`` into ``python``'s environment; every installed package stays as it is."""
    spec = pip_spec(repo_url)
    installed = installed_versions(python)
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "installed.txt"
        constraints.write_text(constraints_text(installed), encoding="utf-8")
        pip = _pip(python, ["install", "--progress-bar", "off", "-c", str(constraints), spec], echo)
    if pip.returncode == 0:
        return
    replaced = replaced_packages(spec, installed, python)
    if replaced:
        raise InstallError(f"installing deforum from repo_url = {repo_url!r} would replace installed packages, "
                           f"which this runtime relies on: {'; '.join(replaced)}. Nothing was changed. Use a "
                           "deforum version whose requirements accept these versions.")
    said = (pip.stderr or pip.stdout).strip()[-3000:]
    raise InstallError(f"pip could not install deforum from repo_url = {repo_url!r}; set repo_url to the git URL "
                       f"of this project (or a path to its checkout or wheel). pip said:\n{said}")


def in_colab() -> bool:
    """Colab's own test: its module is loaded in the kernel, or its release tag is in the environment."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def _importable_version() -> str | None:
    importlib.invalidate_caches()
    try:
        return importlib.import_module("deforum").__version__
    except ImportError:
        return None


def ensure_deforum(repo_url: str, version: str) -> str:
    """The Setup cell: deforum ``version`` importable (say so), else installed from ``repo_url``, else stop.

    Returns how deforum was found: "importable" or "installed".
    """
    found = _importable_version()
    if found == version:
        print(f"deforum {version} is importable: nothing to install")
        return "importable"
    repo_url = repo_url.strip()
    if not repo_url:
        where = ("in this Setup cell's form" if in_colab() else
                 "in this Setup cell, or start Jupyter in a checkout of this project (`pip install -e .` there)")
        raise InstallError(f"deforum {version} is not installed{f' (found {found})' if found else ''} and "
                           f"repo_url is empty: set repo_url {where} to where this project's package comes from: "
                           "its git URL (https://github.com/OWNER/REPOSITORY or git+https://...), a checkout or "
                           "wheel on Google Drive (/content/drive/MyDrive/...), or a local path.")
    print(f"installing deforum from {repo_url} (pip may add packages; it changes none that are installed)")
    install(repo_url)
    if "deforum" in sys.modules:
        raise InstallError(f"deforum was installed from {repo_url}, but deforum {found} is already loaded in this "
                           "runtime: restart it (Runtime > Restart session) and run all cells again.")
    installed = _importable_version()
    if installed is None:
        raise InstallError(f"pip installed {repo_url}, but deforum cannot be imported from it: is repo_url this "
                           "project's repository?")
    if installed != version:
        print(f"note: this notebook is for deforum {version}; {repo_url} installed deforum {installed}")
    return "installed"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python deforum/install.py REPO_URL  (a git URL, a checkout, a wheel)")
    try:
        install(sys.argv[1])
    except InstallError as error:
        sys.exit(str(error))
