"""Test helpers other modules use: a tiny SD-1-layout checkpoint and yaml that load through the real loader.

The tiny model's key names, shapes and (by default) weights are those of the oracle checkpoint in
``tests/data/ldm`` (a tiny SD 1.x recorded from the original CompVis code; see that folder's README), so a
test can compare against the oracle outputs or, with ``seed``, get fresh random weights of the same layout.
"""

from __future__ import annotations

import io
import shutil
from collections import OrderedDict
from pathlib import Path

import torch

ORACLE_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "ldm"
TINY_YAML = "tiny-sd1-inference.yaml"
TINY_TEXT_ENCODER_DIR = "tiny-sd1-text-encoder"


def oracle_checkpoint() -> Path:
    """Path of the oracle tiny-sd1.safetensors in tests/data/ldm (FileNotFoundError outside a checkout)."""
    path = ORACLE_DIR / "tiny-sd1.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: deforum.testing needs the repository's tests/data folder")
    return path


def oracle_config() -> Path:
    """Path of tiny-sd1-inference.yaml (its text-encoder config folder sits next to it)."""
    return ORACLE_DIR / TINY_YAML


def tiny_state_dict(seed: int | None = None) -> OrderedDict[str, torch.Tensor]:
    """The tiny LDM state dict: the oracle weights, or (with seed) random ones with the same keys and shapes."""
    from safetensors.torch import load_file

    sd = load_file(str(oracle_checkpoint()))
    if seed is None:
        return OrderedDict(sd)
    g = torch.Generator().manual_seed(seed)
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in sd.items():
        if not value.is_floating_point() or not key.startswith(("model.", "first_stage_model.", "cond_stage_model.")):
            out[key] = value  # schedule buffers and position_ids keep their values
        elif value.dim() >= 2:
            fan_in = max(1, value[0].numel())
            out[key] = torch.randn(value.shape, generator=g) / fan_in ** 0.5
        elif key.endswith(".weight"):
            out[key] = 1 + 0.1 * torch.randn(value.shape, generator=g)
        else:
            out[key] = 0.1 * torch.randn(value.shape, generator=g)
    return out


def ckpt_bytes(obj: object) -> bytes:
    """torch.save through a BytesIO, so zip records are named archive/... as in released SD .ckpt files."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def write_checkpoint(sd: dict, path: Path, fmt: str) -> Path:
    """Write a state dict as '.safetensors' or as a v0.6-style '.ckpt' ({'state_dict': ..., 'global_step': 0})."""
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(dict(sd), str(path), metadata={"format": "pt"})
    elif fmt == "ckpt":
        path.write_bytes(ckpt_bytes({"state_dict": OrderedDict(sd), "global_step": 0}))
    else:
        raise ValueError(f"fmt = {fmt!r}; allowed: 'ckpt', 'safetensors'")
    return path


def tiny_config(folder: str | Path) -> Path:
    """Copy tiny-sd1-inference.yaml and its text-encoder config folder into folder; returns the yaml path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ORACLE_DIR / TINY_YAML, folder / TINY_YAML)
    shutil.copytree(ORACLE_DIR / TINY_TEXT_ENCODER_DIR, folder / TINY_TEXT_ENCODER_DIR, dirs_exist_ok=True)
    return folder / TINY_YAML


def tiny_checkpoint(tmp_path: str | Path, fmt: str = "ckpt", seed: int | None = None) -> tuple[Path, Path]:
    """(checkpoint path, yaml path) of a tiny SD-1-layout model in tmp_path, ready for load_model."""
    tmp_path = Path(tmp_path)
    yaml_path = tiny_config(tmp_path)
    suffix = "ckpt" if fmt == "ckpt" else "safetensors"
    ckpt = write_checkpoint(tiny_state_dict(seed), tmp_path / f"tiny-sd1.{suffix}", fmt)
    return ckpt, yaml_path


def tiny_depth_model(folder: str | Path, kind: str = "dpt") -> Path:
    """Save a tiny random depth network (MiDaS-style DPT, or Depth Anything) with ``save_pretrained``.

    The weights are drawn larger than transformers' init so the map actually varies over the image (the
    default init gives ~0 through the ReLU head). Point ``depth_model`` at the returned folder.
    """
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTConfig,
        DPTForDepthEstimation,
    )

    folder = Path(folder)
    if kind == "dpt":
        model = DPTForDepthEstimation(DPTConfig(
            hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=384,
            patch_size=16, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[16, 16, 16, 16],
            fusion_hidden_size=16))
    elif kind == "depth_anything":
        backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                                image_size=518, patch_size=14, out_features=["stage1", "stage2", "stage3", "stage4"],
                                reshape_hidden_states=False)
        model = DepthAnythingForDepthEstimation(DepthAnythingConfig(
            backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[16] * 4,
            fusion_hidden_size=16, head_hidden_size=8, patch_size=14))
    else:
        raise ValueError(f"kind must be 'dpt' or 'depth_anything', not {kind!r}")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    model.save_pretrained(folder)
    return folder


def settings_for_test(*, prompts=None, animation_prompts=None, video=None, **overrides):
    """Typed ``Settings`` for a test: the defaults of the field table with ``overrides`` given by their v0.6
    names (a field of DeforumArgs, DeforumAnimArgs or the root cell; ``video`` for the video cell's), resolved
    and checked as a run would be. Tests build settings here, never with defaults of their own."""
    from deforum.settings import FIELDS, resolve

    groups: dict[str, dict] = {"args": {}, "anim_args": {}, "root": {}}
    for name, value in overrides.items():
        group = next((g for g in groups if name in FIELDS[g]), None)
        if group is None:
            raise TypeError(f"settings_for_test: {name!r} is not a field of args, anim_args or root")
        groups[group][name] = value
    return resolve(groups["args"], groups["anim_args"], groups["root"], prompts=prompts,
                   animation_prompts=animation_prompts, video=video)
