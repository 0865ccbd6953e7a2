"""Real SD 1.5 / SD 2 state-dict layouts map completely onto our modules (meta tensors: no 4 GB of zeros)."""

import json
import logging
from pathlib import Path

import pytest
import torch

from deforum.errors import ModelError
from deforum.models import convert, detect_config_name, load_config
from deforum.models.config import CONFIGS_DIR

DATA = Path(__file__).parent / "data" / "ldm"


def meta_state_dict(name: str) -> dict[str, torch.Tensor]:
    shapes = json.loads((DATA / name).read_text())
    return {k: torch.empty(shape, device="meta", dtype=torch.int64 if k.endswith("position_ids") else torch.float32)
            for k, shape in shapes.items()}


@pytest.fixture(scope="module")
def sd15():
    return meta_state_dict("sd15-keys.json")


@pytest.fixture(scope="module")
def sd2():
    return meta_state_dict("sd2-keys.json")


@pytest.mark.parametrize("keys, config, n_text_layers", [
    ("sd15", "v1-inference.yaml", 12),
    ("sd2", "v2-inference.yaml", 23),
    ("sd2", "v2-inference-v.yaml", 23),
])
def test_real_layout_maps_with_no_missing_and_no_unused_keys(keys, config, n_text_layers, request):
    sd = request.getfixturevalue(keys)
    spec = load_config(CONFIGS_DIR / config)
    modules = convert.build_modules(spec)
    parts, unused = convert.convert_checkpoint(sd, spec)
    convert.check_weights(modules, parts, spec)  # raises on missing, extra or mis-shaped weights
    assert unused == []
    for name, module in modules.items():
        assert set(parts[name]) == set(module.state_dict())
    assert modules["text"].config.num_hidden_layers == n_text_layers
    # every checkpoint key is either used or one of the documented inference-unused keys
    used_or_ignored = {k for k in sd if k.startswith(("model.diffusion_model.", "first_stage_model.",
                                                      "cond_stage_model."))}
    assert len(used_or_ignored) + len(convert.SCHEDULE_BUFFERS & set(sd)) == len(sd)


def test_sd15_parameter_counts_match_the_published_model(sd15):
    spec = load_config(CONFIGS_DIR / "v1-inference.yaml")
    modules = convert.build_modules(spec)
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in modules.items()}
    # oracle README section 5: UNet 859,520,964; VAE 83,653,863; text 123,060,557 (incl. 77 position ids)
    assert counts == {"unet": 859_520_964, "vae": 83_653_863, "text": 123_060_557 - 77}


def test_sd2_text_encoder_splits_the_fused_attention(sd2):
    spec = load_config(CONFIGS_DIR / "v2-inference.yaml")
    parts, _ = convert.convert_checkpoint(sd2, spec)
    q = parts["text"]["encoder.layers.0.self_attn.q_proj.weight"]
    assert tuple(q.shape) == (1024, 1024)
    assert "encoder.layers.23.mlp.fc1.weight" not in parts["text"]  # penultimate layer: block 23 unused


@pytest.mark.parametrize("drop", [
    "model.diffusion_model.output_blocks.5.2.conv.weight",
    "first_stage_model.decoder.mid.attn_1.q.weight",
    "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.bias",
])
def test_a_missing_key_is_an_error_naming_it(sd15, drop):
    sd = {k: v for k, v in sd15.items() if k != drop}
    spec = load_config(CONFIGS_DIR / "v1-inference.yaml")
    modules = convert.build_modules(spec)
    with pytest.raises(ModelError, match="lacks"):
        parts, _ = convert.convert_checkpoint(sd, spec)
        convert.check_weights(modules, parts, spec)


def test_sd1_weights_against_an_sd2_config_are_refused(sd15):
    spec = load_config(CONFIGS_DIR / "v2-inference.yaml")
    modules = convert.build_modules(spec)
    with pytest.raises(ModelError, match="model_config"):
        parts, _ = convert.convert_checkpoint(sd15, spec)
        convert.check_weights(modules, parts, spec)


@pytest.mark.parametrize("keys, filename, expected", [
    ("sd15", "v1-5-pruned-emaonly.ckpt", "v1-inference.yaml"),
    ("sd15", "anything.safetensors", "v1-inference.yaml"),
    ("sd2", "512-base-ema.ckpt", "v2-inference.yaml"),
    ("sd2", "v2-1_512-ema-pruned.safetensors", "v2-inference.yaml"),
    ("sd2", "768-v-ema.ckpt", "v2-inference-v.yaml"),
    ("sd2", "v2-1_768-ema-pruned.safetensors", "v2-inference-v.yaml"),
])
def test_config_detection(keys, filename, expected, request, caplog):
    with caplog.at_level(logging.INFO, logger="deforum"):
        assert detect_config_name(request.getfixturevalue(keys), filename) == expected
    assert expected in caplog.text  # the choice is said out loud (the CLI and the notebook show deforum's log)


def test_detection_refuses_an_unknown_layout():
    with pytest.raises(ModelError, match="model_config"):
        detect_config_name({"foo.weight": torch.empty(3, device="meta")}, "x.ckpt")
