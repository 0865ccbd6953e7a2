"""Shared test settings: the suite runs offline on the CPU with tiny random models."""

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# One thread: the tiny test models are far faster single-threaded on a shared 2-core machine (OpenMP
# threads spin against each other), and subprocesses started by tests inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny SD 1.x checkpoint and its yaml (safetensors), made once for the session."""
    from deforum.testing import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("tiny"), fmt="safetensors")


@pytest.fixture
def no_model_load(monkeypatch):
    """Records (and refuses) every model load: a check that must come first leaves it empty."""
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the model was loaded before the problem was found")

    import deforum.models

    monkeypatch.setattr(deforum.models, "load_root_model", refuse)
    return calls
