"""LoRA files on the tiny SD 1 model (deforum.models.lora): weights, layouts, diffusers parity, replace, errors.

The LoRA files are made here: random small weights in kohya's layout (``lora_unet_*`` / ``lora_te_*`` with
``alpha``) and in diffusers/peft's (``unet.*.lora_A.weight``, written by diffusers' ``save_lora_weights`` with
its adapter metadata). The reference is diffusers' own ``StableDiffusionPipeline.load_lora_weights`` +
``set_adapters`` on a pipeline built from a copy of the same modules.
"""

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from deforum.errors import ModelError
from deforum.generate import GenerationRequest, Generator
from deforum.models import load_model
from deforum.models.lora import apply_loras, check_lora_files
from deforum.testing import oracle_checkpoint, oracle_config, tiny_state_dict, write_checkpoint

# diffusers' own load_lora_weights (the reference) warns on its second adapter, as it always does
pytestmark = pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute")

REQUEST = dict(W=64, H=64, prompt="a red cat", steps=3, scale=7.5, seed=7, sampler="euler")
UNET_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "attn2.to_q", "attn2.to_k",
                "attn2.to_v", "attn2.to_out.0", "ff.net.2", "proj_in")
TE_TARGETS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1")


@pytest.fixture(scope="module")
def model():
    return load_model(oracle_checkpoint(), oracle_config(), cache=False)  # not the cached model other tests use


@pytest.fixture(autouse=True)
def no_lora_after(model):
    yield
    apply_loras(model, ())


@pytest.fixture(scope="module")
def original(model):
    """The image and the weights of the model as loaded."""
    return image(model), _weights(model)


def image(model) -> torch.Tensor:
    return Generator(model).generate(GenerationRequest(**REQUEST))  # a fresh conditioning cache each time


def _weights(model) -> dict[str, torch.Tensor]:
    return {f"{part}.{k}": v.clone() for part in ("unet", "text_encoder")
            for k, v in getattr(model, part).state_dict().items()}


def _targets(module: torch.nn.Module, suffixes: tuple[str, ...]):
    return [(name, m) for name, m in module.named_modules()
            if name.endswith(suffixes) and isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]


def _pair(m: torch.nn.Module, rank: int, g: torch.Generator, scale: float = 0.5):
    """Random (down, up) of a rank-r LoRA for a Linear or 1x1 Conv2d."""
    if isinstance(m, torch.nn.Linear):
        return (torch.randn(rank, m.in_features, generator=g) * scale,
                torch.randn(m.out_features, rank, generator=g) * scale)
    return (torch.randn(rank, m.in_channels, 1, 1, generator=g) * scale,
            torch.randn(m.out_channels, rank, 1, 1, generator=g) * scale)


def kohya_lora(model, path, seed=0, rank=4, alpha=2.0, text_encoder=True):
    """A kohya/A1111-layout LoRA file: lora_unet_* / lora_te_* keys, lora_down / lora_up / alpha."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    parts = [("lora_unet_", model.unet, UNET_TARGETS)]
    if text_encoder:
        parts.append(("lora_te_text_model_", model.text_encoder, TE_TARGETS))  # kohya keeps 'text_model'
    for prefix, module, suffixes in parts:
        for name, m in _targets(module, suffixes):
            key = prefix + name.replace(".", "_")
            sd[f"{key}.lora_down.weight"], sd[f"{key}.lora_up.weight"] = _pair(m, rank, g)
            sd[f"{key}.alpha"] = torch.tensor(alpha)
    save_file(sd, str(path))
    return path


def peft_lora(model, path, seed=1, rank=2, alpha=4, text_encoder=True):
    """A diffusers/peft-layout LoRA file written by diffusers' save_lora_weights (with adapter metadata)."""
    from diffusers import StableDiffusionPipeline

    g = torch.Generator().manual_seed(seed)
    unet, te = {}, {}
    for name, m in _targets(model.unet, UNET_TARGETS[:8]):
        unet[f"{name}.lora_A.weight"], unet[f"{name}.lora_B.weight"] = _pair(m, rank, g)
    for name, m in _targets(model.text_encoder, TE_TARGETS[:4]):
        te[f"text_model.{name}.lora_A.weight"], te[f"text_model.{name}.lora_B.weight"] = _pair(m, rank, g)
    StableDiffusionPipeline.save_lora_weights(  # the metadata diffusers' training scripts write: the LoraConfig
        path.parent, unet_lora_layers=unet, text_encoder_lora_layers=te if text_encoder else None,
        weight_name=path.name,
        unet_lora_adapter_metadata=_config(rank, alpha, ["to_q", "to_k", "to_v", "to_out.0"]),
        text_encoder_lora_adapter_metadata=_config(rank, alpha, ["q_proj", "k_proj", "v_proj", "out_proj"])
        if text_encoder else None)
    return path


def _config(rank: int, alpha: int, targets: list[str]) -> dict:
    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights="gaussian").to_dict()
    return {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}


def diffusers_loads_flat_text_encoders(model) -> bool:
    """Whether diffusers' own loader finds the layers of transformers 5's flattened CLIPTextModel (no
    ``text_model``) for a file whose keys carry ``text_model.`` (0.42 does; Colab's 0.39 does not)."""
    from diffusers import StableDiffusionPipeline

    text_encoder = copy.deepcopy(model.text_encoder)
    name, layer = _targets(text_encoder, ("self_attn.q_proj",))[0]
    down, up = _pair(layer, 2, torch.Generator().manual_seed(0))
    state = {f"text_encoder.text_model.{name}.lora_A.weight": down, f"text_encoder.text_model.{name}.lora_B.weight": up}
    try:
        StableDiffusionPipeline.load_lora_into_text_encoder(state, None, text_encoder=text_encoder)
    except Exception:
        return False
    return any("lora_A" in n for n, _ in text_encoder.named_modules())


def diffusers_image(model, loras) -> torch.Tensor:
    """The image with diffusers' own load_lora_weights + set_adapters on a pipeline of copied modules."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    twin = copy.copy(model)
    twin.unet, twin.text_encoder = copy.deepcopy(model.unet), copy.deepcopy(model.text_encoder)
    scheduler = DDIMScheduler(steps_offset=1, clip_sample=False)  # unused: our sampler makes the image
    pipe = StableDiffusionPipeline(vae=model.vae, text_encoder=twin.text_encoder, tokenizer=None, unet=twin.unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    names = []
    for i, (path, _) in enumerate(loras):
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=f"ref{i}")
        names.append(f"ref{i}")
    pipe.set_adapters(names, [w for _, w in loras])
    return image(twin)


@pytest.fixture
def kohya(model, tmp_path):
    return kohya_lora(model, tmp_path / "style_kohya.safetensors")


@pytest.fixture
def peft_file(model, tmp_path):
    return peft_lora(model, tmp_path / "style_peft.safetensors")


def test_weight_zero_equals_no_lora(model, original, kohya, peft_file):
    apply_loras(model, ((str(kohya), 0.0), (str(peft_file), 0.0)))
    assert any("lora_A" in name for name, _ in model.unet.named_modules())  # loaded, at weight 0
    assert torch.equal(image(model), original[0])


@pytest.mark.parametrize("text_encoder", [True, False], ids=["unet+text_encoder", "unet"])
@pytest.mark.parametrize("layout", ["kohya", "peft"])
def test_a_weight_changes_the_image_and_equals_diffusers_load_lora_weights(model, original, tmp_path, layout,
                                                                           text_encoder):
    make = kohya_lora if layout == "kohya" else peft_lora
    path = make(model, tmp_path / f"{layout}.safetensors", text_encoder=text_encoder)
    apply_loras(model, ((str(path), 0.8),))
    ours = image(model)
    assert not torch.allclose(ours, original[0], atol=1e-3)
    assert any("lora_A" in name for name, _ in model.text_encoder.named_modules()) == text_encoder
    apply_loras(model, ())
    if text_encoder and not diffusers_loads_flat_text_encoders(model):
        pytest.skip("this diffusers cannot load text-encoder LoRAs into transformers 5's CLIPTextModel itself")
    assert torch.equal(ours, diffusers_image(model, [(path, 0.8)]))


def test_text_encoder_part_alone_changes_the_image(model, original, tmp_path):
    """A LoRA's text-encoder weights take effect: the same file with and without them give other images."""
    with_te = kohya_lora(model, tmp_path / "with_te.safetensors", seed=3)
    without_te = kohya_lora(model, tmp_path / "without_te.safetensors", seed=3, text_encoder=False)
    apply_loras(model, ((str(with_te), 1.0),))
    a = image(model)
    apply_loras(model, ((str(without_te), 1.0),))
    assert not any("lora_A" in name for name, _ in model.text_encoder.named_modules())
    b = image(model)
    assert not torch.allclose(a, b, atol=1e-4) and not torch.allclose(b, original[0], atol=1e-4)


def test_two_loras_at_once_each_with_its_weight(model, original, kohya, peft_file):
    both = ((str(kohya), 0.6), (str(peft_file), -1.5))
    apply_loras(model, both)
    ours = image(model)
    apply_loras(model, both[:1])
    first_only = image(model)
    apply_loras(model, ())
    assert not torch.allclose(ours, first_only, atol=1e-4)
    if not diffusers_loads_flat_text_encoders(model):
        pytest.skip("this diffusers cannot load text-encoder LoRAs into transformers 5's CLIPTextModel itself")
    assert torch.equal(ours, diffusers_image(model, [(kohya, 0.6), (peft_file, -1.5)]))


def test_a_second_call_replaces_the_set_and_empty_restores_the_model_exactly(model, original, kohya, peft_file):
    apply_loras(model, ((str(kohya), 1.0),))
    apply_loras(model, ((str(peft_file), 0.5),))  # the next run: kohya's must not stay active
    replaced = image(model)
    apply_loras(model, ())
    apply_loras(model, ((str(peft_file), 0.5),))
    assert torch.equal(replaced, image(model))
    apply_loras(model, ((str(peft_file), 0.25),))  # same file, other weight: only the weight changes
    assert not torch.allclose(image(model), replaced, atol=1e-4)
    apply_loras(model, ())
    assert torch.equal(image(model), original[0])
    weights = _weights(model)  # no peft layer left: the very keys and values loaded
    assert weights.keys() == original[1].keys()
    assert all(torch.equal(weights[k], original[1][k]) for k in weights)
    assert not hasattr(model.unet, "peft_config") or not model.unet.peft_config


def test_relative_path_is_looked_up_in_models_path_then_as_given(model, tmp_path, kohya, monkeypatch):
    assert check_lora_files((("style_kohya.safetensors", 1.0),), str(tmp_path)) == [kohya.resolve()]
    monkeypatch.chdir(tmp_path)
    assert check_lora_files((("style_kohya.safetensors", 1.0),), "elsewhere") == [kohya.resolve()]
    apply_loras(model, (("style_kohya.safetensors", 1.0),), models_path=str(tmp_path / "nothing"))


def _not_a_lora(model, tmp_path):
    return write_checkpoint(tiny_state_dict(), tmp_path / "checkpoint.safetensors", "safetensors")


def _garbage(model, tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"\x00\x01not a safetensors header" * 10)
    return path


def _pickle(model, tmp_path):
    path = tmp_path / "style.ckpt"
    torch.save({"lora_unet_x.lora_down.weight": torch.zeros(1)}, path)
    return path


def _sd2_lora(model, tmp_path):
    """kohya keys of this UNet's layers, but shaped for a 1024-wide cross-attention context (SD 2.x)."""
    path = kohya_lora(model, tmp_path / "sd2.safetensors", text_encoder=False)
    from safetensors.torch import load_file
    sd = load_file(str(path))
    for key in [k for k in sd if "attn2_to_k" in k and k.endswith("lora_down.weight")]:
        sd[key] = torch.randn(sd[key].shape[0], 1024)
    save_file(sd, str(path))
    return path


def _sdxl_lora(model, tmp_path):
    """kohya SDXL layout: SGM block names and the second text encoder (lora_te2_)."""
    g = torch.Generator().manual_seed(0)
    sd = {}
    for key in ("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q",
                "lora_unet_middle_block_1_transformer_blocks_5_attn2_to_k",
                "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
                "lora_te2_text_model_encoder_layers_30_self_attn_q_proj"):
        sd[f"{key}.lora_down.weight"] = torch.randn(4, 640, generator=g)
        sd[f"{key}.lora_up.weight"] = torch.randn(640, 4, generator=g)
        sd[f"{key}.alpha"] = torch.tensor(4.0)
    path = tmp_path / "sdxl.safetensors"
    save_file(sd, str(path))
    return path


def _deeper_model_lora(model, tmp_path):
    """Fits every layer of this model, and also text-encoder layers it does not have (a 12-layer CLIP's LoRA
    on a 2-layer one: loaded partly, diffusers only warns)."""
    path = kohya_lora(model, tmp_path / "deeper.safetensors")
    from safetensors.torch import load_file
    sd = load_file(str(path))
    key = "lora_te_text_model_encoder_layers_7_self_attn_q_proj"
    sd[f"{key}.lora_down.weight"], sd[f"{key}.lora_up.weight"] = torch.randn(4, 32), torch.randn(32, 4)
    sd[f"{key}.alpha"] = torch.tensor(2.0)
    save_file(sd, str(path))
    return path


@pytest.mark.parametrize("make, words", [
    (_deeper_model_lora, "2 of its .* text_encoder weights fit no layer"),
    (None, "not found"),
    (_not_a_lora, "is not a LoRA"),
    (_garbage, "not a readable .safetensors"),
    (_pickle, "is not a .safetensors file"),
    (_sd2_lora, "does not fit this model"),
    (_sdxl_lora, "does not fit this model"),
])
def test_bad_files_are_a_model_error_naming_the_file_and_change_nothing(model, original, tmp_path, kohya,
                                                                        make, words):
    path = tmp_path / "missing.safetensors" if make is None else make(model, tmp_path)
    apply_loras(model, ((str(kohya), 1.0),))
    with pytest.raises(ModelError, match=words) as raised:
        apply_loras(model, ((str(kohya), 1.0), (str(path), 1.0)))
    assert path.name in str(raised.value) and "lora" in str(raised.value)
    assert not any("lora_A" in n for part in (model.unet, model.text_encoder) for n, _ in part.named_modules())
    assert torch.equal(image(model), original[0])  # nothing of the failed set stays loaded
    apply_loras(model, ((str(kohya), 1.0),))  # and the model takes LoRAs again


def test_a_catalogue_lora_missing_from_models_path_is_fetched_by_its_catalogue_entry(tmp_path, monkeypatch):
    """lcm-lora-sdv1-5.safetensors names the catalogue's LCM-LoRA: a run downloads it (as checkpoints are)."""
    from deforum.models import download, lora

    fetched = []

    def fake_download(entry, models_path, **kwargs):
        fetched.append(entry.repo_id)
        path = Path(models_path) / entry.name
        path.write_bytes(b"stub")
        return path

    monkeypatch.setattr(download, "download", fake_download)
    path = lora.resolve_lora_path("lcm-lora-sdv1-5.safetensors", str(tmp_path))
    assert fetched == ["latent-consistency/lcm-lora-sdv1-5"] and path == (tmp_path / "lcm-lora-sdv1-5.safetensors")
    assert lora.resolve_lora_path("lcm-lora-sdv1-5.safetensors", str(tmp_path)) == path and len(fetched) == 1
    with pytest.raises(ModelError, match="not found"):  # any other missing name is not fetched
        lora.resolve_lora_path("mine.safetensors", str(tmp_path))
