"""Catalogue downloads against a local fake of the Hugging Face hub (http.server with Range support)."""

import hashlib
import os
import socket

import pytest
from helpers import HUB_PAYLOAD as PAYLOAD
from helpers import HUB_SHA as SHA
from helpers import FakeHub, fake_catalogue_entry, hub_online, serve_hub

from deforum.errors import ModelError
from deforum.models import resolve_checkpoint
from deforum.models.download import sha256_file
from deforum.testing import settings_for_test


@pytest.fixture
def online(monkeypatch):
    hub_online(monkeypatch)


@pytest.fixture
def hub(monkeypatch):
    with serve_hub(monkeypatch) as url:
        yield url


@pytest.fixture
def entry(monkeypatch):
    return fake_catalogue_entry(monkeypatch, "sub/fake-model.ckpt")  # a file in a subfolder of the repo


def root(tmp_path, name: str = "fake-model.ckpt", **kw):
    """Model settings that resolve ``name`` into tmp_path/models with the sha256 check on."""
    return settings_for_test(**{"models_path": str(tmp_path / "models"), "model_checkpoint": name,
                                "check_sha256": True, **kw}).model


def test_download_success_puts_the_file_in_models_path(tmp_path, hub, entry, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    path = resolve_checkpoint(root(tmp_path), endpoint=hub)
    assert path == tmp_path / "models" / "fake-model.ckpt"
    assert path.read_bytes() == PAYLOAD
    gets = [r for r in FakeHub.requests if r[0] == "GET"]
    assert gets and all(r[1] == "/someone/fake-model/resolve/main/sub/fake-model.ckpt" for r in gets)
    assert all(r[3] == "Bearer hf_secret" for r in FakeHub.requests)  # token in a header ...
    assert not any("hf_secret" in r[1] for r in FakeHub.requests)  # ... never in the URL
    # a second resolve finds the file and does not download again
    FakeHub.requests = []
    assert resolve_checkpoint(root(tmp_path), endpoint=hub) == path
    assert FakeHub.requests == []


def test_download_resumes_after_a_cut_connection(tmp_path, hub, entry, monkeypatch):
    from huggingface_hub import constants

    # huggingface_hub writes in DOWNLOAD_CHUNK_SIZE pieces (10 MB); shrink it so this 512 KiB file resumes
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 32 * 1024)
    FakeHub.cut_gets = 1
    path = resolve_checkpoint(root(tmp_path), endpoint=hub)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA
    gets = [r for r in FakeHub.requests if r[0] == "GET"]
    assert len(gets) == 2
    assert gets[1][2] is not None and int(gets[1][2].split("=")[1].split("-")[0]) > 0  # resumed with Range


def test_sha256_mismatch_is_an_error_and_the_file_is_not_used(tmp_path, hub, entry):
    FakeHub.content = PAYLOAD[:-1] + b"!"
    bad = hashlib.sha256(FakeHub.content).hexdigest()
    with pytest.raises(ModelError) as err:
        resolve_checkpoint(root(tmp_path), endpoint=hub)
    message = str(err.value)
    assert "fake-model.ckpt" in message and SHA in message and bad in message
    models = tmp_path / "models"
    assert not (models / "fake-model.ckpt").exists()
    assert (models / "fake-model.ckpt.sha256-mismatch").exists()


def test_offline_error_says_which_file_to_put_where(tmp_path, entry, online, monkeypatch):
    from deforum.models import download as download_module

    def no_network_call(*args, **kwargs):
        raise AssertionError("an unreachable hub must be reported before huggingface_hub retries")

    monkeypatch.setattr(download_module, "_fetch", no_network_call)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(ModelError) as err:
        resolve_checkpoint(root(tmp_path), endpoint=f"http://127.0.0.1:{closed_port}")
    message = str(err.value)
    assert entry.url in message and str(tmp_path / "models" / "fake-model.ckpt") in message


def test_hub_offline_mode_is_the_same_clear_error(tmp_path, entry, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match="put it at"):
        resolve_checkpoint(root(tmp_path), endpoint="http://127.0.0.1:9")


def test_check_sha256_false_skips_the_check(tmp_path, entry):
    models = tmp_path / "models"
    models.mkdir()
    (models / "fake-model.ckpt").write_bytes(b"my own fine-tune under a catalogue name")
    assert resolve_checkpoint(root(tmp_path, check_sha256=False)) == models / "fake-model.ckpt"
    with pytest.raises(ModelError, match="sha256 mismatch"):
        resolve_checkpoint(root(tmp_path))


def test_sha256_is_streamed_and_cached_by_path_size_and_mtime(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(PAYLOAD)
    assert sha256_file(path) == SHA
    st = path.stat()
    path.write_bytes(PAYLOAD[::-1])  # same size; restore the mtime: the cached hash is returned
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert sha256_file(path) == SHA
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert sha256_file(path) == hashlib.sha256(PAYLOAD[::-1]).hexdigest()
