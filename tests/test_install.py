"""What installing the package brings: nothing that pins numpy below 2, no k-diffusion (DESIGN section 4)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
from packaging.requirements import Requirement
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
