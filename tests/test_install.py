"""What installing the package brings: nothing that pins numpy below 2, no k-diffusion (DESIGN section 4)."""

import ast
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

import numpy as np
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the test extra installs tomli
    import tomli as tomllib

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
RUNTIME = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]
TEST = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]]


def test_no_dependency_can_hold_numpy_below_2():
    for requirement in RUNTIME + TEST:
        if requirement.name == "numpy":
            assert requirement.specifier.contains(Version("2.4.0")), requirement


def test_k_diffusion_and_lightning_are_not_dependencies_and_not_installed():
    names = {r.name.lower() for r in RUNTIME + TEST}
    assert not names & {"k-diffusion", "k_diffusion", "dctorch", "pytorch-lightning", "lightning"}
    assert importlib.util.find_spec("k_diffusion") is None
    assert importlib.util.find_spec("pytorch_lightning") is None


def test_the_tests_run_on_numpy_2():
    assert Version(np.__version__) >= Version("2")


def test_test_extra_touches_no_runtime_pin():
    """The test extra adds only test tools: it cannot change numpy, opencv or torch versions."""
    assert not {r.name for r in TEST} & {"numpy", "opencv-python-headless", "opencv-python", "torch", "torchvision"}


REPO = Path(__file__).resolve().parents[1]


def _colab_pins() -> dict[str, str]:
    lines = (REPO / "constraints" / "colab.txt").read_text().splitlines()
    return {Requirement(line).name.lower(): line.split("==")[1] for line in lines if "==" in line}


def test_every_requirement_admits_the_version_colab_ships():
    """Installing in Colab adds packages but never replaces one: no floor above, no cap below Colab's."""
    pins = _colab_pins()
    checked = [r for r in RUNTIME + TEST if r.name.lower() in pins]
    assert {r.name for r in checked} >= {"torch", "numpy", "opencv-python-headless", "imageio-ffmpeg", "ipykernel"}
    for requirement in checked:
        assert requirement.specifier.contains(Version(pins[requirement.name.lower()])), requirement


def _imported_top_level_names() -> set[str]:
    names = set()
    for path in (REPO / "deforum").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_every_runtime_dependency_is_imported_by_the_package():
    """No dependency the package does not import (ipywidgets, timm): each one is a module deforum imports."""
    provided_by = importlib.metadata.packages_distributions()
    imported = {canonicalize_name(dist) for name in _imported_top_level_names() for dist in provided_by.get(name, ())}
    unused = [str(r) for r in RUNTIME if canonicalize_name(r.name) not in imported]
    assert unused == []
