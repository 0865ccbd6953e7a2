"""Text encoders and tokenizers of SD 1.x (CLIP ViT-L/14) and SD 2.x (OpenCLIP ViT-H/14), built offline.

The encoder sizes live here, never fetched from a hub: the LDM yaml names the encoder only by a hub id.
Both encoders are transformers ``CLIPTextModel``s. SD 2's OpenCLIP tower is converted the diffusers way:
its last residual block is dropped, so ``last_hidden_state`` is the penultimate layer followed by
``ln_final``, which is what SD 2's ``FrozenOpenCLIPEmbedder(layer="penultimate")`` returns.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from deforum.errors import ModelError
from deforum.models import limits

CONTEXT_LENGTH = 77
BOS_ID = 49406  # <|startoftext|>
EOS_ID = 49407  # <|endoftext|>

# CLIP ViT-L/14 text tower (openai/clip-vit-large-patch14), the SD 1.x encoder.
SD1_TEXT_CONFIG = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                       num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                       layer_norm_eps=1e-5, projection_dim=768)
# OpenCLIP ViT-H/14 text tower (laion2b_s32b_b79k), the SD 2.x encoder: 24 blocks, of which SD 2 uses 23.
OPENCLIP_VIT_H_TEXT_CONFIG = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                  num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu",
                                  layer_norm_eps=1e-5, projection_dim=1024)

KNOWN_CLIP_VERSIONS = {"openai/clip-vit-large-patch14": SD1_TEXT_CONFIG}
KNOWN_OPENCLIP_ARCHS = {"ViT-H-14": OPENCLIP_VIT_H_TEXT_CONFIG}


@dataclass(frozen=True)
class TextEncoderSpec:
    """What the yaml's cond_stage_config says, resolved to sizes: kind 'clip' (SD1) or 'openclip' (SD2)."""

    kind: str
    config: tuple  # sorted (name, value) pairs of a transformers CLIPTextConfig
    pad_id: int  # SD1 pads with <|endoftext|> (49407), OpenCLIP (SD2) pads with 0
    layers_used: int  # encoder layers kept (SD2 'penultimate' drops the last)

    @property
    def hidden_size(self) -> int:
        return dict(self.config)["hidden_size"]

    def clip_config(self):
        from transformers import CLIPTextConfig

        values = dict(self.config)
        values["num_hidden_layers"] = self.layers_used
        return CLIPTextConfig(bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=self.pad_id, **values)


def clip_spec(sizes: dict) -> TextEncoderSpec:
    return TextEncoderSpec("clip", tuple(sorted(sizes.items())), EOS_ID, sizes["num_hidden_layers"])


def openclip_spec(sizes: dict, layer: str = "penultimate") -> TextEncoderSpec:
    if layer not in ("penultimate", "last"):
        raise ModelError(f"cond_stage_config.params.layer = {layer!r} is not supported; "
                         "allowed: 'penultimate', 'last'")
    n = sizes["num_hidden_layers"] - (1 if layer == "penultimate" else 0)
    return TextEncoderSpec("openclip", tuple(sorted(sizes.items())), 0, n)


TEXT_CONFIG_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                      "num_attention_heads", "max_position_embeddings", "hidden_act", "layer_norm_eps",
                      "projection_dim")
HIDDEN_ACTS = ("quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu")


def check_text_sizes(raw: dict, where: str | Path) -> dict:
    """The CLIPTextConfig sizes of a text encoder's config.json, each checked (see ``deforum.models.limits``)."""
    sizes = {k: raw[k] for k in TEXT_CONFIG_FIELDS if k in raw}
    ints = {"vocab_size": (1, limits.MAX_VOCAB), "hidden_size": (1, limits.MAX_CHANNELS),
            "intermediate_size": (1, limits.MAX_INTERMEDIATE), "num_hidden_layers": (1, limits.MAX_LAYERS),
            "num_attention_heads": (1, limits.MAX_HEADS),
            "max_position_embeddings": (CONTEXT_LENGTH, limits.MAX_POSITIONS),
            "projection_dim": (1, limits.MAX_CHANNELS)}
    for key, (low, high) in ints.items():
        if key in sizes:
            sizes[key] = limits.integer(sizes[key], where, key, low, high)
    if "hidden_act" in sizes:
        sizes["hidden_act"] = limits.string(sizes["hidden_act"], where, "hidden_act", HIDDEN_ACTS)
    if "layer_norm_eps" in sizes:
        sizes["layer_norm_eps"] = limits.number(sizes["layer_norm_eps"], where, "layer_norm_eps", 0.0, 1.0,
                                                low_open=True, high_open=True)
    hidden, heads = sizes.get("hidden_size", 512), sizes.get("num_attention_heads", 8)  # CLIPTextConfig's defaults
    if hidden % heads:
        raise limits.fail(where, "num_attention_heads", heads, f"a divisor of hidden_size ({hidden})")
    return sizes


def text_config_sizes(path: Path) -> dict:
    """The checked sizes from a text encoder folder's ``config.json`` (a ModelError names the file and key)."""
    return check_text_sizes(limits.read_json(path, limits.MAX_CONFIG_BYTES), path)


@functools.lru_cache(maxsize=1)
def _bpe():
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


class Tokenizer:
    """CLIP BPE (open-clip-torch's bundled vocabulary) with SD's framing: BOS, up to 75 tokens, EOS, padding."""

    def __init__(self, pad_id: int, context_length: int = CONTEXT_LENGTH):
        self.pad_id = pad_id
        self.context_length = context_length

    def tokens(self, text: str) -> list[int]:
        """BPE ids of one prompt, without BOS/EOS, untruncated."""
        return _bpe().encode(text)

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        """(len(prompts), 77) int64 ids; long prompts keep their first 75 tokens (then EOS), as SD does."""
        rows = []
        for text in prompts:
            ids = [BOS_ID] + self.tokens(text)[: self.context_length - 2] + [EOS_ID]
            rows.append(ids + [self.pad_id] * (self.context_length - len(ids)))
        return torch.tensor(rows, dtype=torch.int64)


def _split_qkv(weight: torch.Tensor, hidden: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return weight[:hidden], weight[hidden: 2 * hidden], weight[2 * hidden:]


def convert_openclip_text(sd: dict, prefix: str, hidden: int, layers_used: int) -> tuple[dict, set]:
    """OpenCLIP text-tower keys -> CLIPTextModel keys (no 'text_model.' prefix); also the keys consumed."""
    out, used = {}, set()
    direct = {"token_embedding.weight": "embeddings.token_embedding.weight",
              "positional_embedding": "embeddings.position_embedding.weight",
              "ln_final.weight": "final_layer_norm.weight", "ln_final.bias": "final_layer_norm.bias"}
    for old, new in direct.items():
        if prefix + old in sd:
            out[new] = sd[prefix + old]
            used.add(prefix + old)
    parts = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "attn.out_proj": "self_attn.out_proj",
             "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
    block_prefix = prefix + "transformer.resblocks."
    for key, value in sd.items():
        if not key.startswith(block_prefix):
            continue
        index, rest = key[len(block_prefix):].split(".", 1)
        if int(index) >= layers_used:
            continue  # SD 2 uses the penultimate layer: the last block is never run
        used.add(key)
        layer = f"encoder.layers.{index}."
        if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
            kind = rest.rsplit("_", 1)[1]
            for name, part in zip(("q_proj", "k_proj", "v_proj"), _split_qkv(value, hidden), strict=True):
                out[f"{layer}self_attn.{name}.{kind}"] = part
            continue
        module, leaf = rest.rsplit(".", 1)
        if module not in parts:
            used.discard(key)
            continue
        out[f"{layer}{parts[module]}.{leaf}"] = value
    return out, used
