"""The model-family seam: SD 1.x / 2.x detection, the unknown-checkpoint error, and a made-up family that the
real loader picks and the real render loop draws with (``render/`` knows nothing of families)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from deforum.conditioning import Conditioning
from deforum.errors import ModelError
from deforum.models import FAMILIES, SD1, SD2, ModelFamily, detect_family, family, load_config, load_model
from deforum.models.config import CONFIGS_DIR
from deforum.models.sd import StableDiffusion1
from deforum.testing import tiny_checkpoint, tiny_config, tiny_state_dict, write_checkpoint

DATA = Path(__file__).parent / "data" / "ldm"


def meta_state_dict(name: str) -> dict:
    shapes = json.loads((DATA / name).read_text())
    return {k: torch.empty(v, device="meta") for k, v in shapes.items()}


def test_the_families_implement_the_interface():
    assert FAMILIES[:2] == [SD1, SD2]
    for fam in FAMILIES:
        assert isinstance(fam, ModelFamily)
        assert fam.latent_format.channels == 4 and fam.latent_format.downscale == 8
        assert fam.latent_format.shape(W=64, H=128) == (1, 4, 16, 8)


def test_sd1_is_detected_from_the_tiny_and_the_sd15_state_dicts():
    assert detect_family(tiny_state_dict()) is SD1
    assert detect_family(meta_state_dict("sd15-keys.json")) is SD1
    assert SD1.detect(tiny_state_dict().keys()) and not SD2.detect(tiny_state_dict().keys())


def test_sd2_is_detected_from_openclip_keys_or_a_1024_context():
    assert detect_family({"cond_stage_model.model.token_embedding.weight": torch.empty(1, device="meta")}) is SD2
    key = "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
    wide = {"cond_stage_model.transformer.x": torch.empty(1, device="meta"),
            key: torch.empty(320, 1024, device="meta")}
    assert detect_family(wide) is SD2


def test_families_are_detected_from_configs(tmp_path):
    tiny_spec = load_config(tiny_config(tmp_path))
    assert SD1.detect(tiny_spec) and not SD2.detect(tiny_spec)
    assert detect_family(load_config(CONFIGS_DIR / "v1-inference.yaml")) is SD1
    assert detect_family(load_config(CONFIGS_DIR / "v2-inference.yaml")) is SD2
    assert detect_family(load_config(CONFIGS_DIR / "v2-inference-v.yaml")) is SD2


def test_a_loaded_model_names_its_family(tiny):
    model = load_model(*tiny)
    assert model.family is SD1
    cond = model.family.encode_prompt(model, "a cat")
    assert isinstance(cond, Conditioning) and cond.pooled is None and dict(cond.extras) == {}
    assert torch.equal(cond.cross_attn, model.get_learned_conditioning(["a cat"]))
    assert detect_family(model) is SD1


def test_an_unknown_checkpoint_names_the_file_and_the_known_families(tmp_path):
    path = write_checkpoint({"foo.weight": torch.zeros(3)}, tmp_path / "mystery.safetensors", "safetensors")
    with pytest.raises(ModelError) as info:
        load_model(path, cache=False)
    text = str(info.value)
    assert str(path) in text and "cannot tell the model family" in text
    assert SD1.label in text and SD2.label in text


def test_detect_family_refuses_what_no_family_claims():
    with pytest.raises(ModelError, match="none of the known families"):
        detect_family({"foo.weight": torch.empty(3, device="meta")}, "x.ckpt")


# -- a made-up family through the real loader and the real render loop -----------------------------------------

MARKER = "fake_family.marker"


class FakeFamily(StableDiffusion1):
    """Builds like SD 1.x, but recognises only checkpoints carrying MARKER and encodes prompts its own way."""

    name = "fake"
    label = "Fake (test family)"

    def __init__(self):
        self.encoded: list[str] = []

    def detect(self, source) -> bool:
        keys = source.keys() if hasattr(source, "keys") else ()
        return MARKER in keys

    def encode_prompt(self, model, text: str) -> Conditioning:
        self.encoded.append(text)
        hidden = model.get_learned_conditioning([text])
        return Conditioning(hidden.flip(1), pooled=hidden[:, 0], extras={"fake_ids": torch.ones(1, 2)})


def test_a_fake_family_is_loaded_and_rendered_through_the_real_loop(tmp_path, monkeypatch):
    from deforum.runner import render

    fake = FakeFamily()
    monkeypatch.setattr(family, "FAMILIES", [fake, *family.FAMILIES])
    ckpt, yaml = tiny_checkpoint(tmp_path / "model", fmt="safetensors")
    sd = tiny_state_dict()
    sd[MARKER] = torch.zeros(1)
    write_checkpoint(sd, ckpt, "safetensors")

    root = {"model_checkpoint": "custom", "custom_checkpoint_path": str(ckpt), "model_config": "custom",
            "custom_config_path": str(yaml), "output_path": str(tmp_path / "out"), "map_location": "cpu",
            "mount_google_drive": False}
    args = dict(W=64, H=64, seed=3, steps=3, sampler="euler", scale=7.5)
    anim = dict(animation_mode="2D", max_frames=3, diffusion_cadence="1")
    result = render(args, anim, None, {0: "a red apple"}, root, progress=False)

    frames = sorted(result.outdir.glob(f"{result.timestring}_0*.png"))
    assert [p.name for p in frames] == [f"{result.timestring}_{j:05}.png" for j in range(3)]
    assert "a red apple" in fake.encoded and "" in fake.encoded  # c and uc came from the fake family

    from deforum.models import loader

    models = list(loader._cache.values())
    assert models and models[-1].family is fake
    loader._cache.clear()  # the fake-family model must not serve later tests
