"""Model settings -> checkpoint, config, device; the catalogue table; the once-per-process model cache."""

import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
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
from deforum.testing import oracle_checkpoint, oracle_config, settings_for_test, tiny_state_dict


def model_settings(**fields):
    """The typed model settings (``settings.model``) with ``fields`` by their v0.6 names; configs_path '' looks in
    the shipped configs only."""
    return settings_for_test(**{"configs_path": "", **fields}).model

ORACLE = np.load(Path(__file__).parent / "data" / "ldm" / "tiny-sd1-oracle.npz")


def oracle(name: str) -> torch.Tensor:
    return torch.from_numpy(ORACLE[name])


def test_catalogue_is_well_formed():
    assert {"v1-5-pruned-emaonly.ckpt", "sd-v1-4.ckpt", "wd-v1-3-float16.ckpt", "Protogen_V2.2.ckpt",
            "v2-1_768-ema-pruned.ckpt", "512-base-ema.ckpt"} <= set(CATALOGUE)
    for name, e in CATALOGUE.items():
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256), name
        assert "/resolve/main/" in e.url and "/blob/" not in e.url
        assert e.family in ("sd1", "sd2", "sdxl") and e.kind in ("checkpoint", "lora", "vae"), name
        assert e.licence, name
        if e.family == "sdxl" or e.kind != "checkpoint":
            assert e.config == "", name  # no LDM yaml: detected from the keys
        else:
            assert (CONFIGS_DIR / e.config).is_file()
        assert "runwayml" not in e.repo_id
    # every v0.6/v0.7 name keeps its spec sha256; a new entry without one says why in its note
    assert all(e.sha256 or "sha256" in e.note for e in CATALOGUE.values())
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
    root = model_settings(models_path=str(models), check_sha256=True, **fields)
    assert resolve_checkpoint(root) == tmp_path / expected


@pytest.mark.parametrize("fields, message", [
    ({"model_checkpoint": "nope.ckpt"}, "my-merge.safetensors"),  # lists what is there
    ({"model_checkpoint": "custom", "custom_checkpoint_path": "/no/such.ckpt"}, "custom_checkpoint_path"),
    ({"model_checkpoint": ""}, "model_checkpoint"),
])
def test_resolve_checkpoint_errors(models, fields, message):
    with pytest.raises(ModelError, match=message):
        resolve_checkpoint(model_settings(models_path=str(models), **fields))


@pytest.mark.parametrize("fields, expected", [
    ({"model_config": "v1-inference.yaml"}, CONFIGS_DIR / "v1-inference.yaml"),
    ({"model_config": "", "model_checkpoint": "768-v-ema.ckpt"}, CONFIGS_DIR / "v2-inference-v.yaml"),
    ({"model_config": "custom", "custom_config_path": str(oracle_config())}, oracle_config()),
])
def test_resolve_config(fields, expected):
    assert resolve_config(model_settings(**fields), tiny_state_dict()) == expected


def test_resolve_config_detects_from_the_state_dict():
    import json

    shapes = json.loads((Path(__file__).parent / "data" / "ldm" / "sd15-keys.json").read_text())
    sd = {k: torch.empty(v, device="meta") for k, v in shapes.items()}
    assert resolve_config(model_settings(model_config="auto", model_checkpoint="x.safetensors"), sd) == \
        CONFIGS_DIR / "v1-inference.yaml"
    with pytest.raises(ModelError, match="cannot tell"):  # the tiny model fits none of the real configs
        resolve_config(model_settings(model_config="", model_checkpoint=""), tiny_state_dict())


def test_resolve_config_prefers_configs_path(tmp_path):
    (tmp_path / "v1-inference.yaml").write_text((CONFIGS_DIR / "v1-inference.yaml").read_text())
    assert resolve_config(model_settings(model_config="v1-inference.yaml", configs_path=str(tmp_path))) == \
        tmp_path / "v1-inference.yaml"
    with pytest.raises(ModelError, match="model_config"):
        resolve_config(model_settings(model_config="v9.yaml", configs_path=str(tmp_path)))


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
    with pytest.raises(ModelError, match="map_location = 'xla'"):
        choose_device("xla")


def test_load_root_model_loads_once_per_process(tmp_path, caplog):
    root = model_settings(models_path=str(Path(oracle_checkpoint()).parent), model_checkpoint="tiny-sd1.safetensors",
                          model_config="custom", custom_config_path=str(oracle_config()), map_location="cpu",
                          half_precision=True, check_sha256=True)
    with caplog.at_level(logging.INFO, logger="deforum"):
        model = load_root_model(root)
    out = caplog.text  # said out loud: the CLI and the notebook show the deforum logger's INFO lines
    assert "tiny-sd1.safetensors" in out and "tiny-sd1-inference.yaml" in out and "cpu" in out
    assert model.dtype == torch.float32  # half precision applies on CUDA only
    assert load_root_model(root) is model
    assert load_model(oracle_checkpoint(), oracle_config()) is model


def test_catalogue_matches_the_checkpoint_dropdown():
    """args.CHECKPOINTS (the notebook dropdown) offers exactly the catalogue, plus 'custom'."""
    from deforum import settings as args

    assert args.CHECKPOINTS[0] == "custom"
    assert set(args.CHECKPOINTS) - {"custom"} == {n for n, e in CATALOGUE.items() if e.kind == "checkpoint"}
    assert len(set(args.CHECKPOINTS)) == len(args.CHECKPOINTS)


def test_the_sd15_safetensors_hash_is_the_published_one():
    """Git LFS oid of v1-5-pruned-emaonly.safetensors (4,265,146,304 bytes) on the hub."""
    assert CATALOGUE["v1-5-pruned-emaonly.safetensors"].sha256 == \
        "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa"
    assert CATALOGUE["v1-5-pruned-emaonly.safetensors"].repo_id == "stable-diffusion-v1-5/stable-diffusion-v1-5"


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("asked", ["cuda", "cuda:0", "mps"])
def test_a_missing_device_falls_back_to_cpu_with_one_warning(no_gpu, asked):
    with pytest.warns(UserWarning, match=f"map_location = '{asked}'.*runs on cpu") as record:
        assert choose_device(asked) == torch.device("cpu")
    assert len(record) == 1
    assert choose_device("auto") == torch.device("cpu")


def test_a_missing_cuda_falls_back_to_mps_when_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    with pytest.warns(UserWarning, match="runs on mps"):
        assert choose_device("cuda") == torch.device("mps")


def _tiny_root(**extra):
    return model_settings(models_path=str(Path(oracle_checkpoint()).parent), model_checkpoint="tiny-sd1.safetensors",
                          model_config="custom", custom_config_path=str(oracle_config()), **extra)


def test_v06_default_cuda_on_a_cpu_machine_loads_in_float32(no_gpu):
    with pytest.warns(UserWarning, match="map_location = 'cuda'"):
        model = load_root_model(_tiny_root(map_location="cuda", half_precision=True))
    assert model.device == torch.device("cpu") and model.dtype == torch.float32


@pytest.fixture
def fake_catalogue(monkeypatch, tmp_path):
    """A catalogue entry whose file is in models_path with other bytes than its sha256 says."""
    from deforum.models import catalogue
    from deforum.models.catalogue import CatalogueEntry

    entries = {"good.safetensors": CatalogueEntry("good.safetensors", "o/r", "good.safetensors", "0" * 64,
                                                  "v1-inference.yaml"),
               "nohash.safetensors": CatalogueEntry("nohash.safetensors", "o/r", "nohash.safetensors", None,
                                                    "v1-inference.yaml")}
    monkeypatch.setattr(catalogue, "CATALOGUE", {**catalogue.CATALOGUE, **entries})
    for name in entries:
        (tmp_path / name).write_bytes(b"some other bytes")
    return tmp_path


def test_check_sha256_off_skips_the_hash(fake_catalogue, monkeypatch):
    from deforum.models import download

    monkeypatch.setattr(download, "sha256_file", lambda path: pytest.fail("hashed although check_sha256 is off"))
    root = model_settings(models_path=str(fake_catalogue), model_checkpoint="good.safetensors", check_sha256=False)
    assert resolve_checkpoint(root) == fake_catalogue / "good.safetensors"


def test_check_sha256_on_refuses_a_mismatch(fake_catalogue):
    root = model_settings(models_path=str(fake_catalogue), model_checkpoint="good.safetensors", check_sha256=True)
    with pytest.raises(ModelError, match="sha256 mismatch"):
        resolve_checkpoint(root)
    assert not (fake_catalogue / "good.safetensors").exists()


def test_an_entry_without_a_hash_is_used_with_a_logged_warning(fake_catalogue, caplog):
    root = model_settings(models_path=str(fake_catalogue), model_checkpoint="nohash.safetensors", check_sha256=True)
    with caplog.at_level("WARNING"):
        assert resolve_checkpoint(root) == fake_catalogue / "nohash.safetensors"
    assert "no sha256" in caplog.text


def test_vae_tiling_is_switched_on_the_cached_model():
    model = load_root_model(_tiny_root(map_location="cpu", vae_tiling=False))
    assert not model.vae_tiling
    tiled = load_root_model(_tiny_root(map_location="cpu", vae_tiling=True))
    assert tiled is model and model.vae.use_tiling and model.vae.use_slicing
    assert load_root_model(_tiny_root(map_location="cpu")) is model and not model.vae_tiling


def test_vae_tiling_tiles_large_latents_only(monkeypatch):
    model = load_model(oracle_checkpoint(), oracle_config(), cache=False)
    z_small, z_large = oracle("in_vae_z")[:1], torch.randn(1, 4, 24, 24, generator=torch.Generator().manual_seed(0))
    img_large = torch.rand(1, 3, 192, 192, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        plain_small = model.decode_first_stage(z_small)
        model.set_vae_tiling(True, tile_size=64)  # 64 px = 8 latent: the oracle latent fits one tile
        calls = []
        for name in ("tiled_decode", "_tiled_encode"):
            original = getattr(model.vae, name)
            monkeypatch.setattr(model.vae, name, lambda *a, _f=original, _n=name, **k: calls.append(_n) or _f(*a, **k))
        torch.testing.assert_close(model.decode_first_stage(z_small), plain_small, rtol=0, atol=0)
        assert calls == []
        assert model.decode_first_stage(z_large).shape == (1, 3, 192, 192)
        assert model.encode_first_stage(img_large).mean.shape == (1, 4, 24, 24)
    assert calls == ["tiled_decode", "_tiled_encode"]


def test_compile_unet_is_part_of_the_cache_key(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, *a, **k: compiled.append(fn) or fn)
    plain = load_root_model(_tiny_root(map_location="cpu", compile_unet=False))
    assert compiled == [] and not plain.unet_compiled
    fast = load_root_model(_tiny_root(map_location="cpu", compile_unet=True))
    assert fast is not plain and fast.unet_compiled and len(compiled) == 1
    assert load_root_model(_tiny_root(map_location="cpu", compile_unet=True)) is fast


def test_cache_key_includes_device_dtype_and_the_file_bytes(tmp_path):
    a = load_model(oracle_checkpoint(), oracle_config())
    assert load_model(oracle_checkpoint(), oracle_config(), dtype=torch.float64) is not a
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(oracle_checkpoint().read_bytes())
    b = load_model(ckpt, oracle_config())
    os.utime(ckpt, ns=(1, 1))  # the file was replaced: reload
    assert load_model(ckpt, oracle_config()) is not b


def test_configs_are_found_in_the_installed_data_when_not_in_a_checkout(tmp_path, monkeypatch):
    from deforum.models import config

    installed = tmp_path / "share" / "deforum-stable-diffusion" / "configs"
    shutil.copytree(CONFIGS_DIR, installed)
    monkeypatch.setattr(config, "CONFIGS_DIR", tmp_path / "site-packages" / "configs")  # no checkout
    monkeypatch.setattr(config, "installed_configs_dir", lambda: installed)
    assert config.config_path("v2-inference.yaml") == installed / "v2-inference.yaml"
    assert config.config_path("v2-inference.yaml", CONFIGS_DIR) == CONFIGS_DIR / "v2-inference.yaml"
    monkeypatch.setattr(config, "installed_configs_dir", lambda: None)
    with pytest.raises(ModelError, match="v2-inference.yaml"):
        config.config_path("v2-inference.yaml")


def test_installed_configs_dir_reads_the_distribution_record(tmp_path, monkeypatch):
    """pip records data files relative to site-packages; a --target install falls back to <dir>/share."""
    from importlib import metadata

    from deforum.models import config

    site = tmp_path / "lib" / "site-packages"
    site.mkdir(parents=True)
    data = tmp_path / "share" / "deforum-stable-diffusion" / "configs"
    shutil.copytree(CONFIGS_DIR, data)

    class File(type(Path())):
        def locate(self):
            return site / self

    class Dist:
        files = [File("../../share/deforum-stable-diffusion/configs") / n for n in config.CONFIG_NAMES]

    monkeypatch.setattr(metadata, "distribution", lambda name: Dist() if name == config.DISTRIBUTION else None)
    assert config.installed_configs_dir() == data.resolve()
