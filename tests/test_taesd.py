"""vae = 'taesd': a tiny random AutoencoderTiny (a diffusers folder in models_path) in place of the model's VAE."""

import json
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import hub_online, serve_hub
from PIL import Image

from deforum.errors import ModelError, SettingsError
from deforum.generate import GenerationRequest, Generator
from deforum.models import load_model, taesd
from deforum.models.taesd import TinyVAE, use_vae
from deforum.testing import oracle_checkpoint, oracle_config

W = H = 64
TINY_CONFIG = dict(encoder_block_out_channels=(8, 8, 8, 8), decoder_block_out_channels=(8, 8, 8, 8),
                   num_encoder_blocks=(1, 1, 1, 1), num_decoder_blocks=(1, 1, 1, 1))


def write_tiny_taesd(folder: Path, seed: int = 0) -> Path:
    """A random AutoencoderTiny with TAESD's layout (4 levels: 8x down, 4 latent channels), saved as diffusers
    saves madebyollin/taesd: config.json + diffusion_pytorch_model.safetensors."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    AutoencoderTiny(**TINY_CONFIG).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture
def models(tmp_path):
    """models_path with a tiny TAESD in models_path/taesd."""
    write_tiny_taesd(tmp_path / "models" / "taesd")
    return tmp_path / "models"


@pytest.fixture
def model():
    """A private copy of the oracle model: the cached one is shared with other tests and must keep its VAE."""
    return load_model(oracle_checkpoint(), oracle_config(), cache=False)


def latents(seed: int = 0) -> torch.Tensor:
    return torch.randn((1, 4, H // 8, W // 8), generator=torch.Generator().manual_seed(seed))


def image(seed: int = 0) -> torch.Tensor:
    return torch.rand((1, 3, H, W), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def encode(model, x: torch.Tensor) -> torch.Tensor:
    return model.get_first_stage_encoding(model.encode_first_stage(x), torch.Generator().manual_seed(1))


def test_taesd_decodes_and_encodes_and_default_restores_the_checkpoint_vae(model, models):
    own = model.vae
    z, x = latents(), image()
    with torch.no_grad():
        default_decoded, default_encoded = model.decode_first_stage(z), encode(model, x)

        use_vae(model, "taesd", models_path=str(models))
        assert isinstance(model.vae, TinyVAE) and model.vae.repo_id == "madebyollin/taesd"
        tiny = model.vae.taesd
        decoded, encoded = model.decode_first_stage(z), encode(model, x)
        assert decoded.shape == (1, 3, H, W) and encoded.shape == (1, 4, H // 8, W // 8)
        assert not torch.allclose(decoded, default_decoded) and not torch.allclose(encoded, default_encoded)
        # TAESD's latents are the UNet's latents (its scaling_factor is 1.0): no other scaling on either side
        assert torch.allclose(decoded, tiny.decode(z).sample, atol=1e-6)
        assert torch.allclose(encoded, tiny.encode(x).latents, atol=1e-5)
        round_trip = model.decode_first_stage(encoded)
        assert round_trip.shape == x.shape and torch.isfinite(round_trip).all()

        use_vae(model, "taesd", models_path=str(models))  # again: nothing changes
        assert model.vae.taesd is tiny

        use_vae(model, "default")
        assert model.vae is own
        assert torch.equal(model.decode_first_stage(z), default_decoded)
        assert torch.equal(encode(model, x), default_encoded)
        use_vae(model, "default")  # already the default: nothing to do
        assert model.vae is own


def test_the_adapter_scales_for_the_model_latent_scale():
    """With SDXL's scale factor the model's encoding is still TAESD's latent and decode gets it back unscaled."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    tiny = AutoencoderTiny(**TINY_CONFIG).eval()
    adapter = TinyVAE(tiny, 0.13025, "madebyollin/taesdxl")
    from deforum.models.ldm import DiagonalGaussian

    with torch.no_grad():
        x, z = image(), latents()
        posterior = DiagonalGaussian(adapter.encode(x).latent_dist.parameters)
        sample = 0.13025 * posterior.sample(torch.Generator().manual_seed(3))
        assert torch.allclose(sample, tiny.encode(x).latents, atol=1e-5)
        assert torch.allclose(adapter.decode(z / 0.13025).sample, tiny.decode(z).sample, atol=1e-6)


def test_the_family_picks_taesd_or_taesdxl():
    def fake(name):
        return SimpleNamespace(family=SimpleNamespace(name=name, label=name))

    assert taesd.repo_for(fake("sd1")) == "madebyollin/taesd"
    assert taesd.repo_for(fake("sd2")) == "madebyollin/taesd"
    assert taesd.repo_for(fake("sdxl")) == "madebyollin/taesdxl"
    with pytest.raises(ModelError, match="no TAESD for the flux family"):
        taesd.repo_for(fake("flux"))


def test_an_sdxl_model_looks_for_taesdxl(model, tmp_path, monkeypatch):
    """The folder is chosen by family: an SDXL model with only models_path/taesd present asks for taesdxl."""
    write_tiny_taesd(tmp_path / "models" / "taesd")
    write_tiny_taesd(tmp_path / "models" / "taesdxl", seed=1)
    monkeypatch.setattr(model, "family", SimpleNamespace(name="sdxl", label="SDXL"))
    use_vae(model, "taesd", models_path=str(tmp_path / "models"))
    assert model.vae.repo_id == "madebyollin/taesdxl"
    reference = taesd.load_taesd(tmp_path / "models" / "taesdxl")
    assert all(torch.equal(a, b) for a, b in zip(model.vae.taesd.state_dict().values(),
                                                 reference.state_dict().values(), strict=True))


def test_a_render_through_the_generator(model, models):
    generator = Generator(model)
    init = Image.fromarray(np.random.RandomState(0).randint(0, 256, (H, W, 3), np.uint8))
    base = dict(W=W, H=H, prompt="a red cat", steps=3, scale=7.5, seed=5, sampler="euler")
    default_txt = generator.generate(GenerationRequest(**base))
    default_img = generator.generate(GenerationRequest(**base, init_image=init, strength=0.5))

    use_vae(model, "taesd", models_path=str(models))
    txt = generator.generate(GenerationRequest(**base))
    img = generator.generate(GenerationRequest(**base, init_image=init, strength=0.5))
    for out in (txt, img):
        assert out.shape == (1, 3, H, W) and torch.isfinite(out).all()
    assert not torch.allclose(txt, default_txt) and not torch.allclose(img, default_img)

    use_vae(model, "default")
    assert torch.equal(generator.generate(GenerationRequest(**base)), default_txt)
    assert torch.equal(generator.generate(GenerationRequest(**base, init_image=init, strength=0.5)), default_img)


def test_vae_tiling_carries_over(model, models):
    model.set_vae_tiling(True, 256)
    use_vae(model, "taesd", models_path=str(models))
    assert model.vae_tiling and model.vae.tile_sample_min_size == 256
    with torch.no_grad():
        assert torch.isfinite(model.decode_first_stage(latents())).all()
    use_vae(model, "default")
    assert model.vae_tiling
    model.set_vae_tiling(False)  # as load_model does on a cached model, before the runner calls use_vae
    use_vae(model, "taesd", models_path=str(models))
    assert not model.vae_tiling
    use_vae(model, "default")
    assert not model.vae_tiling


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_network_call(*args, **kwargs):
    raise AssertionError("an unreachable hub must be reported before huggingface_hub retries")


def test_offline_without_the_folder_says_what_to_put_where(model, tmp_path, monkeypatch):
    hub_online(monkeypatch)
    monkeypatch.setattr(taesd, "_snapshot", no_network_call)
    own = model.vae
    with pytest.raises(ModelError) as err:
        use_vae(model, "taesd", models_path=str(tmp_path / "models"), endpoint=f"http://127.0.0.1:{closed_port()}")
    message = str(err.value)
    assert "the Hugging Face hub cannot be reached" in message
    assert "https://huggingface.co/madebyollin/taesd" in message and str(tmp_path / "models" / "taesd") in message
    assert "config.json" in message and "diffusion_pytorch_model.safetensors" in message
    assert model.vae is own  # nothing swapped


def test_hub_offline_mode_is_the_same_clear_error(model, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(taesd, "_snapshot", no_network_call)
    with pytest.raises(ModelError, match=r"HF_HUB_OFFLINE is set\); put config.json"):
        use_vae(model, "taesd", models_path=str(tmp_path / "models"), endpoint="http://127.0.0.1:9")


def test_a_missing_folder_is_downloaded_once(model, tmp_path, monkeypatch):
    calls = []

    def fake_snapshot(repo_id, dest, token, endpoint):  # a local fake of the hub download
        calls.append((repo_id, dest, endpoint))
        return write_tiny_taesd(dest)

    monkeypatch.setattr(taesd, "_snapshot", fake_snapshot)
    with serve_hub(monkeypatch) as hub:
        use_vae(model, "taesd", models_path=str(tmp_path / "models"), endpoint=hub)
        assert calls == [("madebyollin/taesd", tmp_path / "models" / "taesd", hub)]
        use_vae(model, "default")
        use_vae(model, "taesd", models_path=str(tmp_path / "models"), endpoint=hub)
        assert len(calls) == 1
    assert isinstance(model.vae, TinyVAE)


def test_a_download_without_weights_is_an_error(model, tmp_path, monkeypatch):
    def config_only(repo_id, dest, token, endpoint):
        write_tiny_taesd(dest)
        (dest / "diffusion_pytorch_model.safetensors").unlink()
        return dest

    monkeypatch.setattr(taesd, "_snapshot", config_only)
    with serve_hub(monkeypatch) as hub, pytest.raises(ModelError, match="lacks diffusion_pytorch_model.safetensors"):
        use_vae(model, "taesd", models_path=str(tmp_path / "models"), endpoint=hub)


def test_bad_value_and_bad_folders(model, models):
    with pytest.raises(SettingsError, match=r"vae = 'tiny' is not allowed; allowed: 'default', 'taesd'"):
        use_vae(model, "tiny", models_path=str(models))
    config = models / "taesd" / "config.json"
    cfg = json.loads(config.read_text())
    config.write_text(json.dumps({**cfg, "latent_channels": 10_000}))
    with pytest.raises(ModelError, match="latent_channels = 10000 is not allowed"):
        use_vae(model, "taesd", models_path=str(models))
    config.write_text(json.dumps({**cfg, "decoder_block_out_channels": [8, 8, 8, 16]}))
    with pytest.raises(ModelError, match="wrong shape"):
        use_vae(model, "taesd", models_path=str(models))
    config.write_text(json.dumps({**cfg, "_class_name": "AutoencoderKL"}))
    with pytest.raises(ModelError, match="_class_name"):
        use_vae(model, "taesd", models_path=str(models))
    assert not isinstance(model.vae, TinyVAE)


def test_a_compiled_unet_compiles_taesd_with_static_shapes(model, models, monkeypatch):
    from deforum.models import taesd

    compiled = []
    monkeypatch.setattr(taesd, "compile_tiny_vae", lambda vae, mode=None: compiled.append((vae, mode)))
    monkeypatch.setattr(model, "unet_compiled", True, raising=False)
    try:
        use_vae(model, "taesd", models_path=str(models))
        assert len(compiled) == 1 and compiled[0][0] is model.vae and compiled[0][1] is None  # CPU: no CUDA graphs
    finally:
        use_vae(model, "default")
    assert model.compile_options() == {"dynamic": False}
