"""Diffusers-format folders (local or a hub repo id) load into the same model as the single-file checkpoint."""

import fnmatch
import json
import logging
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from deforum.errors import ModelError
from deforum.models import diffusers_folder, linear_alphas_cumprod, load_model, load_root_model, resolve_checkpoint
from deforum.models import download as download_module
from deforum.models.diffusers_folder import alphas_cumprod_from_scheduler, parameterization_from_scheduler
from deforum.testing import oracle_checkpoint, oracle_config, settings_for_test

DATA = Path(__file__).parent / "data" / "ldm"
ORACLE = np.load(DATA / "tiny-sd1-oracle.npz")
SD_SCHEDULER = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
                "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
                "steps_offset": 1}


def oracle(name: str) -> torch.Tensor:
    return torch.from_numpy(ORACLE[name])


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def save_diffusers_folder(model, folder: Path) -> Path:
    """A diffusers SD folder from a loaded model's modules (save_pretrained) plus scheduler/tokenizer json."""
    model.unet.save_pretrained(folder / "unet")
    model.vae.save_pretrained(folder / "vae")
    model.text_encoder.save_pretrained(folder / "text_encoder")
    write_json(folder / "scheduler" / "scheduler_config.json", SD_SCHEDULER)
    write_json(folder / "tokenizer" / "special_tokens_map.json",
               {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"})
    write_json(folder / "tokenizer" / "tokenizer_config.json", {"model_max_length": 77})
    write_json(folder / "model_index.json", {
        "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "PNDMScheduler"]})
    return folder


@pytest.fixture(scope="module")
def single():
    return load_model(oracle_checkpoint(), oracle_config(), cache=False)


@pytest.fixture(scope="module")
def saved(single, tmp_path_factory) -> Path:
    return save_diffusers_folder(single, tmp_path_factory.mktemp("diffusers") / "tiny-sd1")


@pytest.fixture
def folder(saved, tmp_path) -> Path:
    """A fresh copy of the tiny diffusers folder that a test may change."""
    return Path(shutil.copytree(saved, tmp_path / "tiny-sd1"))


def test_the_saved_folder_holds_only_safetensors_weights(saved):
    weights = sorted(str(p.relative_to(saved)) for p in saved.rglob("*") if p.suffix in (".safetensors", ".bin"))
    assert weights == ["text_encoder/model.safetensors", "unet/diffusion_pytorch_model.safetensors",
                       "vae/diffusion_pytorch_model.safetensors"]


def test_a_diffusers_folder_gives_the_single_file_outputs(single, saved):
    model = load_model(saved, cache=False)
    assert model.config_name == "diffusers" and model.parameterization == "eps"
    assert model.scale_factor == pytest.approx(0.18215)
    assert torch.equal(model.alphas_cumprod, single.alphas_cumprod)
    assert model.alphas_cumprod.dtype == torch.float32
    x, t, ctx = oracle("in_unet_x"), oracle("in_unet_t"), oracle("in_unet_context")
    with torch.no_grad():
        pairs = [(model.apply_model(x, t, ctx), single.apply_model(x, t, ctx)),
                 (model.apply_model(x, t + 0.37, ctx), single.apply_model(x, t + 0.37, ctx)),
                 (model.decode_first_stage(oracle("in_vae_z")), single.decode_first_stage(oracle("in_vae_z"))),
                 (model.encode_first_stage(oracle("in_vae_img")).mean,
                  single.encode_first_stage(oracle("in_vae_img")).mean)]
    for prompt in ("a photo of a cat", ""):
        pairs.append((model.get_learned_conditioning([prompt]), single.get_learned_conditioning([prompt])))
    for got, want in pairs:
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(pairs[0][0], oracle("out_unet_eps"), rtol=1e-4, atol=1e-4)  # and the original's


def test_scaled_linear_is_ldms_linear_schedule():
    """diffusers' 'scaled_linear' (what SD folders use) = LDM 'linear' (sqrt space), in float64 -> float32."""
    from diffusers import DDPMScheduler

    ours = alphas_cumprod_from_scheduler(SD_SCHEDULER)
    assert torch.equal(ours, linear_alphas_cumprod(0.00085, 0.012, 1000))
    torch.testing.assert_close(ours, oracle("out_alphas_cumprod"), rtol=1e-6, atol=0)
    theirs = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").alphas_cumprod
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=0)  # diffusers computes in float32
    linear = {**SD_SCHEDULER, "beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}
    torch.testing.assert_close(alphas_cumprod_from_scheduler(linear),
                               DDPMScheduler(beta_schedule="linear").alphas_cumprod, rtol=1e-5, atol=0)
    with pytest.raises(ModelError, match="beta_schedule"):
        alphas_cumprod_from_scheduler({**SD_SCHEDULER, "beta_schedule": "squaredcos_cap_v2"})


@pytest.mark.parametrize("prediction_type, expected", [("epsilon", "eps"), ("v_prediction", "v"), (None, "eps")])
def test_parameterization_from_prediction_type(prediction_type, expected):
    cfg = {} if prediction_type is None else {"prediction_type": prediction_type}
    assert parameterization_from_scheduler(cfg) == expected


def test_unknown_prediction_type_is_refused():
    with pytest.raises(ModelError, match="prediction_type = 'sample'"):
        parameterization_from_scheduler({"prediction_type": "sample"})


def test_scheduler_and_vae_configs_set_parameterization_and_scale_factor(folder):
    write_json(folder / "scheduler" / "scheduler_config.json", {**SD_SCHEDULER, "prediction_type": "v_prediction"})
    vae_cfg = json.loads((folder / "vae" / "config.json").read_text())
    write_json(folder / "vae" / "config.json", {**vae_cfg, "scaling_factor": 0.13025})
    model = load_model(folder, cache=False)
    assert model.parameterization == "v"
    assert model.scale_factor == pytest.approx(0.13025)


@pytest.mark.parametrize("tokens, pad_id", [
    ({"pad_token": "<|endoftext|>"}, 49407),  # SD 1.x
    ({"pad_token": "!"}, 0),  # SD 2.x
    ({"pad_token": {"content": "!", "lstrip": False}}, 0),
    ({}, 49407),
])
def test_tokenizer_padding_follows_the_folder(folder, tokens, pad_id):
    write_json(folder / "tokenizer" / "special_tokens_map.json", tokens)
    model = load_model(folder, cache=False)
    assert model.tokenizer.pad_id == pad_id
    assert model.tokenizer(["a cat"])[0, -1].item() == pad_id


def _evil_bin(path: Path, sentinel: Path) -> None:
    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {sentinel}",)

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
        zf.writestr("archive/version", b"3\n")


def test_pickle_weights_go_through_the_restricted_unpickler(folder, single, tmp_path):
    sentinel = tmp_path / "side-effect"
    (folder / "text_encoder" / "model.safetensors").unlink()
    _evil_bin(folder / "text_encoder" / "model.bin", sentinel)
    with pytest.raises(ModelError, match="refused"):
        load_model(folder, cache=False)
    assert not sentinel.exists()
    # a plain torch.save'd state dict is read (safely) and gives the same text encoder
    torch.save(single.text_encoder.state_dict(), folder / "text_encoder" / "model.bin")
    model = load_model(folder, cache=False)
    torch.testing.assert_close(model.get_learned_conditioning(["a cat"]), single.get_learned_conditioning(["a cat"]))


def test_a_missing_weight_is_an_error_not_random_init(folder):
    from safetensors.torch import load_file, save_file

    path = folder / "text_encoder" / "model.safetensors"
    sd = load_file(str(path))
    sd.pop(next(k for k in sd if k.endswith("final_layer_norm.weight")))
    save_file(sd, str(path))
    with pytest.raises(ModelError, match="lacks 1 text weights"):
        load_model(folder, cache=False)


@pytest.mark.parametrize("change, message", [
    (lambda f: shutil.rmtree(f / "vae"), "vae/config.json"),
    (lambda f: (f / "unet" / "diffusion_pytorch_model.safetensors").unlink(), "unet/diffusion_pytorch_model"),
    (lambda f: (f / "scheduler" / "scheduler_config.json").unlink(), "scheduler_config.json"),
    (lambda f: write_json(f / "model_index.json", {"_class_name": "StableDiffusionXLPipeline",
                                                   "text_encoder_2": ["transformers", "CLIPTextModel"]}), "SDXL"),
])
def test_incomplete_or_unsupported_folders_say_what_is_wrong(folder, change, message):
    change(folder)
    with pytest.raises(ModelError, match=message):
        load_model(folder, cache=False)


@pytest.mark.parametrize("name, expected", [
    ("stable-diffusion-v1-5/stable-diffusion-v1-5", True),
    ("stabilityai/stable-diffusion-2-1", True),
    ("v1-5-pruned-emaonly.ckpt", False),
    ("sub/dir/model.safetensors", False),
    ("folder/model.safetensors", False),
    ("custom", False),
])
def test_repo_id_recognition(name, expected):
    assert diffusers_folder.looks_like_repo_id(name) is expected


def test_resolve_a_folder_by_name_path_or_custom(saved, tmp_path):
    models = saved.parent
    assert resolve_checkpoint(settings_for_test(models_path=str(models), model_checkpoint="tiny-sd1").model) == saved
    assert resolve_checkpoint(settings_for_test(models_path=str(tmp_path), model_checkpoint=str(saved)).model) == saved
    custom = settings_for_test(model_checkpoint="custom", custom_checkpoint_path=str(saved)).model
    assert resolve_checkpoint(custom) == saved
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(ModelError, match="model_index.json"):
        resolve_checkpoint(settings_for_test(models_path=str(tmp_path), model_checkpoint="not-a-model").model)


def test_a_repo_id_already_in_models_path_needs_no_network(saved, tmp_path):
    shutil.copytree(saved, tmp_path / "stable-diffusion-v1-5")
    root = settings_for_test(models_path=str(tmp_path),
                             model_checkpoint="stable-diffusion-v1-5/stable-diffusion-v1-5").model
    assert resolve_checkpoint(root) == tmp_path / "stable-diffusion-v1-5"


def test_a_repo_id_offline_says_what_to_put_where(tmp_path):
    """tests/conftest.py sets HF_HUB_OFFLINE: snapshot_download cannot reach the hub."""
    root = settings_for_test(models_path=str(tmp_path),
                             model_checkpoint="stable-diffusion-v1-5/stable-diffusion-v1-5").model
    with pytest.raises(ModelError) as err:
        resolve_checkpoint(root)
    message = str(err.value)
    assert str(tmp_path / "stable-diffusion-v1-5") in message
    assert "model_index.json" in message and "https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5" \
        in message


def test_a_repo_id_is_fetched_as_safetensors_diffusers_folders(saved, tmp_path, monkeypatch, caplog):
    """A fake snapshot_download serving a hub repo that also holds .bin, fp16 and single-file weights."""
    import huggingface_hub

    hub = Path(shutil.copytree(saved, tmp_path / "hub"))
    for extra in ("unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.fp16.safetensors",
                  "text_encoder/pytorch_model.bin", "v1-5-pruned.ckpt", "safety_checker/model.safetensors"):
        (hub / extra).parent.mkdir(exist_ok=True)
        (hub / extra).write_bytes(b"not wanted")
    calls = []

    def fake_snapshot_download(repo_id, *, local_dir, allow_patterns, token=None, endpoint=None):
        calls.append(repo_id)
        for path in hub.rglob("*"):
            rel = path.relative_to(hub).as_posix()
            if path.is_file() and any(fnmatch.fnmatch(rel, p) for p in allow_patterns):
                (Path(local_dir) / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, Path(local_dir) / rel)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    monkeypatch.setattr(download_module, "hub_unreachable", lambda endpoint=None: None)  # the fake hub answers
    root = settings_for_test(models_path=str(tmp_path / "models"), model_checkpoint="someone/tiny-sd1",
                             map_location="cpu", model_config="v1-inference.yaml").model
    with caplog.at_level(logging.INFO, logger="deforum"):
        model = load_root_model(root)
    dest = tmp_path / "models" / "tiny-sd1"
    fetched = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert not [f for f in fetched if f.endswith((".bin", ".ckpt")) or "fp16" in f or "safety" in f]
    assert "unet/diffusion_pytorch_model.safetensors" in fetched
    assert model.config_name == "diffusers" and "diffusers" in caplog.text
    load_root_model(root)
    assert calls == ["someone/tiny-sd1"]  # the complete folder is not fetched again
