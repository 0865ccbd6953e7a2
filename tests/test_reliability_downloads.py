"""Downloads that go wrong (issue 10, part 5): never a half file used as a model, a clear error, and a
retry that resumes where it can. Adds to tests/test_models_download.py (one cut + resume, wrong sha256,
no network, hub offline mode), against a local fake of the Hugging Face hub.
"""

import errno
import hashlib
import os
from pathlib import Path

import pytest
from helpers import HUB_PAYLOAD as PAYLOAD
from helpers import HUB_SHA as SHA
from helpers import FakeHub, fake_catalogue_entry, serve_hub

from deforum.errors import ModelError
from deforum.models import load_state_dict, resolve_checkpoint
from deforum.testing import settings_for_test


def gets() -> list:
    """The Range header of every GET the hub answered."""
    return [r[2] for r in FakeHub.requests if r[0] == "GET"]


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)
    with serve_hub(monkeypatch) as url:
        yield url


@pytest.fixture
def entry(monkeypatch):
    return fake_catalogue_entry(monkeypatch)


@pytest.fixture
def no_backoff(monkeypatch):
    """huggingface_hub sleeps 1 s between its retries; the test does not need to wait."""
    from huggingface_hub import file_download

    monkeypatch.setattr(file_download.time, "sleep", lambda seconds: None)


def root(tmp_path, name: str = "fake-model.ckpt", **kw):
    """Model settings that resolve ``name`` into tmp_path/models with the sha256 check on."""
    return settings_for_test(**{"models_path": str(tmp_path / "models"), "model_checkpoint": name,
                                "check_sha256": True, **kw}).model


def model_files(tmp_path) -> list[Path]:
    """Every file under models_path outside huggingface_hub's own .cache bookkeeping folder."""
    models = tmp_path / "models"
    return sorted(p for p in models.rglob("*") if p.is_file() and ".cache" not in p.relative_to(models).parts
                  and p.name != ".deforum-sha256.json")


def test_a_connection_that_keeps_dropping_is_resumed_within_the_run(tmp_path, hub, entry, no_backoff):
    FakeHub.cut_gets = 4  # four cuts in a row, each after 100 kB
    path = resolve_checkpoint(root(tmp_path), endpoint=hub)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA
    assert len(gets()) == 5 and gets()[0] is None
    offsets = [int(r.split("=")[1].split("-")[0]) for r in gets()[1:]]
    assert offsets == sorted(offsets) and offsets[0] > 0  # each retry continued from where the last stopped


def test_a_connection_that_never_delivers_is_a_clear_error_and_leaves_no_half_file(tmp_path, hub, entry,
                                                                                   no_backoff):
    FakeHub.cut_gets, FakeHub.cut_after = 1000, 1000  # every GET gives 1 kB and hangs up
    with pytest.raises(ModelError, match="fake-model.ckpt") as caught:
        resolve_checkpoint(root(tmp_path), endpoint=hub)
    assert str(tmp_path / "models" / "fake-model.ckpt") in str(caught.value)  # says where to put it by hand
    assert len(gets()) > 1  # huggingface_hub retried before giving up
    assert model_files(tmp_path) == []
    assert not [p for p in (tmp_path / "models").rglob("*.incomplete")]
    # The network is back: the next run downloads the whole file and verifies it.
    FakeHub.cut_gets = 0
    path = resolve_checkpoint(root(tmp_path), endpoint=hub)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA


def test_a_full_disk_during_download_is_a_clear_error_and_nothing_half_written_is_kept(tmp_path, hub, entry,
                                                                                       monkeypatch):
    from huggingface_hub import file_download

    real_http_get = file_download.http_get

    class FullDisk:
        """The download's file: accepts 200 kB, then the disk is full."""

        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def write(self, data):
            if self.written + len(data) > 200_000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.written += len(data)
            return self.handle.write(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

    monkeypatch.setattr(file_download, "http_get", lambda url, temp_file, **kw: real_http_get(
        url, FullDisk(temp_file), **kw))
    with pytest.raises(ModelError, match="no space left on device") as caught:
        resolve_checkpoint(root(tmp_path), endpoint=hub)
    assert "fake-model.ckpt" in str(caught.value) and str(tmp_path / "models") in str(caught.value)
    assert model_files(tmp_path) == []
    assert not [p for p in (tmp_path / "models").rglob("*.incomplete")]

    monkeypatch.setattr(file_download, "http_get", real_http_get)  # space freed
    path = resolve_checkpoint(root(tmp_path), endpoint=hub)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_a_half_file_under_the_models_name_is_never_used(tmp_path, entry, keep):
    """A download interrupted outside deforum (a browser, wget) left a partial file under the right name."""
    models = tmp_path / "models"
    models.mkdir()
    half = models / "fake-model.ckpt"
    half.write_bytes(PAYLOAD[: int(len(PAYLOAD) * keep)])
    with pytest.raises(ModelError, match="sha256 mismatch"):
        resolve_checkpoint(root(tmp_path))
    assert not half.exists() and (models / "fake-model.ckpt.sha256-mismatch").exists()


def test_a_truncated_checkpoint_without_sha_check_fails_to_load_clearly(tmp_path):
    from deforum.testing import tiny_checkpoint

    ckpt, _ = tiny_checkpoint(tmp_path / "m", fmt="ckpt")
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    path = resolve_checkpoint(settings_for_test(models_path=str(tmp_path / "m"), model_checkpoint=ckpt.name,
                                                 check_sha256=False).model)
    with pytest.raises(ModelError, match="tiny-sd1.ckpt"):
        load_state_dict(path)
