"""What a model config file may declare: types and upper bounds, checked before anything is built.

LDM yamls, text-encoder ``config.json`` files and diffusers folder configs are data from strangers. A size
read from them decides how much memory is allocated (a ``timesteps`` of 10**11 asks for an 800 GB noise
schedule), so every number is checked against a bound chosen from what a real GPU could hold: far above any
released Stable Diffusion model (SD 1.x/2.x, and SDXL for headroom), far below what would exhaust a machine.
A value that breaks a rule is a ``ModelError`` naming the file, the key, the value and what is allowed.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deforum.errors import ModelError

# The bounds. Real values in brackets (SD 1.x / SD 2.x / SDXL).
MAX_TIMESTEPS = 100_000  # diffusion steps of the noise schedule [1000]; float64: 0.8 MB at the bound
MAX_LATENT_SIZE = 1024  # latent side the model was trained at [64 / 96 / 128]; 8192 pixels
MAX_IMAGE_RESOLUTION = 16_384  # VAE training resolution in pixels [256]
MAX_CHANNELS = 8192  # width of one UNet/VAE block or of the text encoder [320..1280 / 1024 / 2048]; one 3x3
#                      convolution 8192 -> 8192 is already 2.4 GB of float32 weights
MAX_IO_CHANNELS = 64  # image, latent and z channels [3, 4; inpainting UNets 9]
MAX_LEVELS = 8  # entries of channel_mult / ch_mult / block_out_channels [4]
MAX_BLOCKS = 32  # res blocks per level, transformer depth [2, 1 / SDXL depth 10]
MAX_HEADS = 256  # attention heads [8 / 5..20 / 10..20]
MAX_HEAD_CHANNELS = 1024  # channels per attention head [64]
MAX_LAYERS = 128  # text encoder layers [12 / 24 / 32]
MAX_INTERMEDIATE = 4 * MAX_CHANNELS  # text encoder MLP width [3072 / 4096 / 5120]
MAX_VOCAB = 1_000_000  # text encoder vocabulary [49408]
MAX_POSITIONS = 4096  # text encoder positions [77]; SD's tokenizer needs at least 77
MAX_SCALE_FACTOR = 100.0  # latent scale [0.18215 / 0.13025]
MAX_CONFIG_BYTES = 4 * 2**20  # an LDM yaml is ~2 kB, a config.json ~5 kB
MAX_YAML_ALIASES = 64  # LDM yamls use none; omegaconf 2.3 (Colab's) expands an alias bomb until memory runs out
MAX_YAML_DEPTH = 64  # LDM yamls nest ~6 deep
MAX_JSON_BYTES = 64 * 2**20  # JSON files of a diffusers folder (tokenizer vocab.json is ~1 MB)


def fail(where: str | Path, key: str, value: Any, allowed: str) -> ModelError:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return ModelError(f"{where}: {key} = {shown} is not allowed; allowed: {allowed}")


def integer(value: Any, where: str | Path, key: str, low: int, high: int) -> int:
    """``value`` as an int from ``low`` to ``high`` (an integral float such as 4.0 counts as 4)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise fail(where, key, value, f"a whole number from {low} to {high}")
    return value


def number(value: Any, where: str | Path, key: str, low: float, high: float, *, low_open: bool = False,
           high_open: bool = False) -> float:
    """``value`` as a finite float in [low, high] (``low_open``/``high_open`` exclude the ends)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        value = float(value)
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise fail(where, key, value, f"a number in {left}{low:g}, {high:g}{right}")
    return value


def integers(value: Any, where: str | Path, key: str, low: int, high: int, *, min_len: int = 1,
             max_len: int = MAX_LEVELS) -> list[int]:
    """A list of ints, each from ``low`` to ``high``, with ``min_len`` to ``max_len`` entries."""
    if not isinstance(value, (list, tuple)) or not min_len <= len(value) <= max_len:
        raise fail(where, key, value, f"a list of {min_len} to {max_len} whole numbers from {low} to {high}")
    return [integer(v, where, f"{key}[{i}]", low, high) for i, v in enumerate(value)]


def string(value: Any, where: str | Path, key: str, allowed: tuple[str, ...] | None = None) -> str:
    if not isinstance(value, str) or (allowed is not None and value not in allowed):
        raise fail(where, key, value, ", ".join(map(repr, allowed)) if allowed else "a string")
    return value


def mapping(value: Any, where: str | Path, key: str) -> dict:
    if not isinstance(value, Mapping):
        raise fail(where, key, value, "a mapping of keys to values")
    return dict(value)


def read_json(path: Path, limit: int = MAX_JSON_BYTES) -> dict:
    """A JSON object from a regular file of at most ``limit`` bytes; any failure is a ModelError naming it
    (a missing file raises FileNotFoundError, for the caller to say what the file is for)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ModelError(f"{path}: cannot be read ({e.strerror or e})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ModelError(f"{path}: not a regular file")
    if info.st_size > limit:
        raise ModelError(f"{path}: {info.st_size} bytes; a config file may have at most {limit}")
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise ModelError(f"{path}: not a readable JSON file ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: holds a JSON {type(data).__name__}, not an object of keys and values")
    return data
