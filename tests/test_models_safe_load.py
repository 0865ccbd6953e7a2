"""Checkpoints are data: code in a .ckpt pickle never runs, corrupt files are clear errors."""

import io
import os
import pickle
import sys
import types
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from deforum.errors import ModelError
from deforum.models import load_model, load_state_dict
from deforum.models.safe_load import InertStub, load_ckpt
from deforum.testing import ckpt_bytes, oracle_config, tiny_state_dict, write_checkpoint

DATA = Path(__file__).parent / "data" / "ldm"


def zip_ckpt(path: Path, pickled: bytes, records: dict[str, bytes] | None = None, prefix: str = "archive") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{prefix}/data.pkl", pickled)
        zf.writestr(f"{prefix}/version", b"3\n")
        for key, data in (records or {}).items():
            zf.writestr(f"{prefix}/data/{key}", data)
    return path


class _Reduce:
    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _payloads(sentinel: Path) -> dict[str, bytes]:
    touch = f"open({str(sentinel)!r}, 'w').write('pwned')"
    inner = pickle.dumps(_Reduce(exec, (touch,)), protocol=2)
    return {
        "os.system": pickle.dumps(_Reduce(os.system, (f"touch {sentinel}",)), protocol=2),
        "eval": pickle.dumps(_Reduce(eval, (touch,)), protocol=2),
        "exec": pickle.dumps(_Reduce(exec, (touch,)), protocol=2),
        "getattr smuggling": (b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(V"
                              + f"touch {sentinel}".encode() + b"\ntR."),
        "nested pickle": pickle.dumps(_Reduce(pickle.loads, (inner,)), protocol=2),
        "inside a state_dict": pickle.dumps(
            {"state_dict": OrderedDict(w=_Reduce(os.system, (f"touch {sentinel}",)))}, protocol=2),
        "subprocess": pickle.dumps(_Reduce(__import__("subprocess").call, (["touch", str(sentinel)],)), protocol=2),
    }


@pytest.mark.parametrize("name", list(_payloads(Path("x"))))
def test_code_in_a_pickle_is_refused_and_never_runs(tmp_path, name):
    sentinel = tmp_path / "side-effect"
    path = zip_ckpt(tmp_path / "evil.ckpt", _payloads(sentinel)[name])
    with pytest.raises(ModelError, match="refused") as err:
        load_state_dict(path)
    assert "evil.ckpt" in str(err.value)
    assert not sentinel.exists()


def test_refusal_names_the_global(tmp_path):
    path = zip_ckpt(tmp_path / "evil.ckpt", pickle.dumps(_Reduce(os.system, ("true",)), protocol=2))
    with pytest.raises(ModelError, match=r"'(posix|nt|os)\.system'"):
        load_state_dict(path)


def test_lightning_callbacks_and_numpy_scalars_load_as_inert_data(tmp_path, monkeypatch):
    """Released SD .ckpt files hold a pytorch_lightning ModelCheckpoint; it must load without Lightning."""
    module = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")

    class ModelCheckpoint:
        def __init__(self):
            self.monitor, self.best_model_score = "val/loss", torch.tensor(0.25)

    ModelCheckpoint.__module__, ModelCheckpoint.__qualname__ = module.__name__, "ModelCheckpoint"
    module.ModelCheckpoint = ModelCheckpoint
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks", module.__name__):
        monkeypatch.setitem(sys.modules, name, module)
    sd = {"model.w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    raw = ckpt_bytes({"state_dict": sd, "callbacks": {ModelCheckpoint: ModelCheckpoint()},
                      "epoch": np.int64(3), "score": np.float64(0.5), "pytorch-lightning_version": "1.4.2"})
    for name in ("pytorch_lightning", "pytorch_lightning.callbacks", module.__name__):
        monkeypatch.delitem(sys.modules, name)
    path = tmp_path / "lightning.ckpt"
    path.write_bytes(raw)
    obj = load_ckpt(path)
    assert "pytorch_lightning" not in sys.modules
    (key, stub), = obj["callbacks"].items()
    assert isinstance(stub, InertStub) and issubclass(key, InertStub)
    assert obj["epoch"] == 3 and obj["score"] == 0.5
    assert torch.equal(load_state_dict(path)["model.w"], sd["model.w"])


class _StorageRef:
    """Pickles as a persistent storage id, the way torch.save writes one."""

    def __init__(self, numel: int):
        self.numel = numel


class _TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            return ("storage", torch.FloatStorage, "0", "cpu", obj.numel)
        return None


def _tensor_pickle(numel: int, size: tuple) -> bytes:
    buf = io.BytesIO()
    rebuild = _Reduce(torch._utils._rebuild_tensor_v2, (_StorageRef(numel), 0, size, (1,), False, OrderedDict()))
    _TorchLikePickler(buf, protocol=2).dump({"state_dict": {"w": rebuild}})
    return buf.getvalue()


@pytest.mark.parametrize("numel, size, message", [
    (10**12, (10**12,), "declares"),  # a huge declared storage is refused before anything is allocated
    (4, (100,), "past the end"),  # a view reaching beyond its storage
])
def test_storage_sizes_are_checked(tmp_path, numel, size, message):
    path = zip_ckpt(tmp_path / "crafted.ckpt", _tensor_pickle(numel, size), {"0": bytes(16)})
    with pytest.raises(ModelError, match=message):
        load_state_dict(path)


def test_a_well_formed_crafted_storage_loads(tmp_path):
    data = np.arange(4, dtype="<f4").tobytes()
    path = zip_ckpt(tmp_path / "ok.ckpt", _tensor_pickle(4, (4,)), {"0": data}, prefix="some-stem")
    assert torch.equal(load_state_dict(path)["w"], torch.arange(4, dtype=torch.float32))


@pytest.fixture(scope="module")
def small_sd():
    return {"a.weight": torch.randn(3, 4), "a.bias": torch.randn(3).half(), "n": torch.arange(5)}


@pytest.mark.parametrize("wrap", [True, False], ids=["state_dict", "bare dict"])
def test_state_dict_or_bare_dict(tmp_path, small_sd, wrap):
    path = tmp_path / "m.ckpt"
    path.write_bytes(ckpt_bytes({"state_dict": small_sd, "global_step": 1} if wrap else small_sd))
    loaded = load_state_dict(path)
    assert loaded.keys() == small_sd.keys()
    for k, v in small_sd.items():
        assert loaded[k].dtype == v.dtype and torch.equal(loaded[k], v)


@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
@pytest.mark.parametrize("keep", [0.5, 0.999, 0.0])
def test_truncated_files_are_model_errors(tmp_path, small_sd, fmt, keep):
    path = write_checkpoint(small_sd, tmp_path / f"m.{fmt}", fmt)
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(ModelError):
        load_state_dict(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("<html>this is the /blob/ page, not the file</html>")
    with pytest.raises(ModelError, match="neither"):
        load_state_dict(path)
    with pytest.raises(ModelError, match="not found"):
        load_state_dict(tmp_path / "missing.ckpt")


@pytest.fixture(scope="module")
def oracle_eps():
    o = np.load(DATA / "tiny-sd1-oracle.npz")
    return {k: torch.from_numpy(o[k]) for k in ("in_unet_x", "in_unet_t", "in_unet_context", "out_unet_eps")}


def test_model_ema_and_training_extras_are_ignored_like_v06(tmp_path, oracle_eps):
    """Spec 1.6: model_ema.* is ignored, the model.* weights are used; position_ids may be float or absent."""
    sd = tiny_state_dict()
    for k, v in list(sd.items()):
        if k.startswith("model.diffusion_model."):
            sd["model_ema." + k[len("model."):].replace(".", "")] = v * 3
    sd["model_ema.decay"], sd["model_ema.num_updates"] = torch.tensor(0.9999), torch.tensor(10)
    sd["first_stage_model.loss.logvar"] = torch.zeros(())
    sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77.0)[None]
    path = write_checkpoint(sd, tmp_path / "full-ema.ckpt", "ckpt")
    model = load_model(path, oracle_config(), cache=False)
    with torch.no_grad():
        eps = model.apply_model(oracle_eps["in_unet_x"], oracle_eps["in_unet_t"], oracle_eps["in_unet_context"])
    torch.testing.assert_close(eps, oracle_eps["out_unet_eps"], rtol=1e-4, atol=1e-4)


def test_fp16_checkpoint_loads_into_the_requested_dtype(tmp_path, oracle_eps):
    sd = {k: (v.half() if v.is_floating_point() else v) for k, v in tiny_state_dict().items()}
    del sd["cond_stage_model.transformer.text_model.embeddings.position_ids"]  # as re-saved by new transformers
    path = write_checkpoint(sd, tmp_path / "half.safetensors", "safetensors")
    model = load_model(path, oracle_config(), cache=False)
    assert model.dtype == torch.float32 and model.alphas_cumprod.dtype == torch.float32
    with torch.no_grad():
        eps = model.apply_model(oracle_eps["in_unet_x"], oracle_eps["in_unet_t"], oracle_eps["in_unet_context"])
    torch.testing.assert_close(eps, oracle_eps["out_unet_eps"], rtol=0.05, atol=0.05)  # fp16-rounded weights


def test_missing_weights_fail_loudly(tmp_path):
    sd = tiny_state_dict()
    del sd["model.diffusion_model.out.2.weight"]
    path = write_checkpoint(sd, tmp_path / "broken.safetensors", "safetensors")
    with pytest.raises(ModelError, match="conv_out.weight"):
        load_model(path, oracle_config(), cache=False)
