"""Root fields -> checkpoint, config, device; the catalogue table; the once-per-process model cache."""

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from deforum.errors import ModelError
from deforum.models import (
    CATALOGUE,
    choose_device,
    choose_dtype,
    load_model,
    load_root_model,
    resolve_checkpoint,
    resolve_config,
)
from deforum.models.config import CONFIGS_DIR
from deforum.testing import oracle_checkpoint, oracle_config, tiny_state_dict


def test_catalogue_is_well_formed():
    assert {"v1-5-pruned-emaonly.ckpt", "sd-v1-4.ckpt", "wd-v1-3-float16.ckpt", "Protogen_V2.2.ckpt",
            "v2-1_768-ema-pruned.ckpt", "512-base-ema.ckpt"} <= set(CATALOGUE)
    for name, e in CATALOGUE.items():
        assert re.fullmatch(r"[0-9a-f]{64}", e.sha256), name
        assert "/resolve/main/" in e.url and "/blob/" not in e.url
        assert (CONFIGS_DIR / e.config).is_file()
        assert "runwayml" not in e.repo_id
    assert CATALOGUE["sd-v1-4-full-ema.ckpt"].repo_id == "CompVis/stable-diffusion-v-1-4-original"


def test_catalogue_configs_match_the_model_family():
    assert CATALOGUE["v2-1_768-ema-pruned.ckpt"].config == "v2-inference-v.yaml"
    assert CATALOGUE["512-base-ema.ckpt"].config == "v2-inference.yaml"
    assert CATALOGUE["robo-diffusion-v1.ckpt"].config == "v1-inference.yaml"


@pytest.fixture
def models(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "my-merge.safetensors").write_bytes(b"x")
    return folder


@pytest.mark.parametrize("fields, expected", [
    ({"model_checkpoint": "my-merge.safetensors"}, "models/my-merge.safetensors"),
    ({"model_checkpoint": "custom", "custom_checkpoint_path": "{tmp}/models/my-merge.safetensors"},
     "models/my-merge.safetensors"),
])
def test_resolve_checkpoint(tmp_path, models, fields, expected):
    fields = {k: v.replace("{tmp}", str(tmp_path)) for k, v in fields.items()}
    root = SimpleNamespace(models_path=str(models), check_sha256=True, **fields)
    assert resolve_checkpoint(root) == tmp_path / expected


@pytest.mark.parametrize("fields, message", [
    ({"model_checkpoint": "nope.ckpt"}, "my-merge.safetensors"),  # lists what is there
    ({"model_checkpoint": "custom", "custom_checkpoint_path": "/no/such.ckpt"}, "custom_checkpoint_path"),
    ({"model_checkpoint": ""}, "model_checkpoint"),
])
def test_resolve_checkpoint_errors(models, fields, message):
    with pytest.raises(ModelError, match=message):
        resolve_checkpoint({"models_path": str(models), **fields})


@pytest.mark.parametrize("fields, expected", [
    ({"model_config": "v1-inference.yaml"}, CONFIGS_DIR / "v1-inference.yaml"),
    ({"model_config": "", "model_checkpoint": "768-v-ema.ckpt"}, CONFIGS_DIR / "v2-inference-v.yaml"),
    ({"model_config": "custom", "custom_config_path": str(oracle_config())}, oracle_config()),
])
def test_resolve_config(fields, expected):
    assert resolve_config(fields, tiny_state_dict()) == expected


def test_resolve_config_detects_from_the_state_dict():
    import json

    shapes = json.loads((Path(__file__).parent / "data" / "ldm" / "sd15-keys.json").read_text())
    sd = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    assert resolve_config({"model_config": "auto", "model_checkpoint": "x.safetensors"}, sd) == \
        CONFIGS_DIR / "v1-inference.yaml"
    with pytest.raises(ModelError, match="cannot tell"):  # the tiny model fits none of the real configs
        resolve_config({"model_config": ""}, tiny_state_dict())


def test_resolve_config_prefers_configs_path(tmp_path):
    (tmp_path / "v1-inference.yaml").write_text((CONFIGS_DIR / "v1-inference.yaml").read_text())
    assert resolve_config({"model_config": "v1-inference.yaml", "configs_path": str(tmp_path)}) == \
        tmp_path / "v1-inference.yaml"
    with pytest.raises(ModelError, match="model_config"):
        resolve_config({"model_config": "v9.yaml", "configs_path": str(tmp_path)})


@pytest.mark.parametrize("name", ["v1-inference.yaml", "v2-inference.yaml", "v2-inference-v.yaml"])
def test_shipped_configs_read(name):
    from deforum.models import load_config

    spec = load_config(CONFIGS_DIR / name)
    assert spec.parameterization == ("v" if name.endswith("-v.yaml") else "eps")
    assert spec.text.kind == ("clip" if name.startswith("v1") else "openclip")
    assert spec.text.pad_id == (49407 if name.startswith("v1") else 0)
    assert spec.unet["cross_attention_dim"] == (768 if name.startswith("v1") else 1024)


def test_an_sd1_file_with_an_sd2_config_says_so(tmp_path):
    with pytest.raises(ModelError, match="v1-inference.yaml"):
        load_model(oracle_checkpoint(), CONFIGS_DIR / "v2-inference.yaml", cache=False)


def test_device_and_precision_choice():
    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device(None).type in ("cuda", "mps", "cpu")
    assert choose_dtype(torch.device("cpu"), True) == torch.float32
    assert choose_dtype(torch.device("cuda"), True) == torch.float16
    assert choose_dtype(torch.device("cuda"), False) == torch.float32
    with pytest.raises(ModelError, match="map_location"):
        choose_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="map_location"):
            choose_device("cuda")


def test_load_root_model_loads_once_per_process(tmp_path, capsys):
    root = {"models_path": str(Path(oracle_checkpoint()).parent), "model_checkpoint": "tiny-sd1.safetensors",
            "model_config": "custom", "custom_config_path": str(oracle_config()), "map_location": "cpu",
            "half_precision": True, "check_sha256": True}
    model = load_root_model(root)
    out = capsys.readouterr().out
    assert "tiny-sd1.safetensors" in out and "tiny-sd1-inference.yaml" in out and "cpu" in out
    assert model.dtype == torch.float32  # half precision applies on CUDA only
    assert load_root_model(root) is model
    assert load_model(oracle_checkpoint(), oracle_config()) is model
