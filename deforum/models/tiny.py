"""Tiny random checkpoints in each family's original single-file key layout (tests, docs, the offline demo).

``write_tiny_checkpoint("sdxl", "tiny-sdxl.safetensors")`` writes a few-MB ``.safetensors`` whose keys are
those of a released checkpoint of the family (CompVis LDM names for SD 1.x / 2.x, Stability's SGM names for
SDXL: ``conditioner.embedders.0.transformer.`` CLIP ViT-L, ``conditioner.embedders.1.model.`` OpenCLIP bigG),
only with small sizes. The loader reads such a file without a yaml: the family from its keys, every size from
the tensors' shapes (``deforum.models.config.spec_from_keys``). diffusers' own ``infer_diffusers_model_type``
calls the tiny SD 1 ``v1`` and the tiny SDXL ``xl_base`` (its OpenCLIP bigG tower has the 10 blocks that
diffusers' key names); it says ``v2`` only for a 1024-wide context, so the tiny SD 2 is ours to detect (by its
OpenCLIP keys).

The sizes follow the released models' conventions, which a state dict does not record: attention heads of
64 channels (SD 2, SDXL; at least one head) or 8 heads (SD 1) in the UNet, 64-channel heads in the text
encoders, 32 groups in every GroupNorm.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

from deforum.errors import ModelError

TINY_FAMILIES = ("sd1", "sd2", "sdxl")
VOCAB = 49408
POSITIONS = 77

# UNet / VAE / text sizes of each tiny family.
_UNET = {
    "sd1": dict(mc=32, mult=(1, 2), nrb=1, attn=(0, 1), depth=(1, 1), mid_depth=1, linear=False),
    "sd2": dict(mc=64, mult=(1, 2), nrb=1, attn=(0, 1), depth=(1, 1), mid_depth=1, linear=True),
    "sdxl": dict(mc=64, mult=(1, 2), nrb=1, attn=(1,), depth=(1, 2), mid_depth=2, linear=True),
}
_VAE = dict(ch=32, mult=(1, 1, 1, 2), nrb=1, z=4)
_CLIP_L = dict(hidden=32, layers=2, inter=64)  # SD 1 and SDXL's first encoder
_OPENCLIP = {"sd2": dict(hidden=64, layers=3, inter=128, proj=64),  # SD 2 reads the penultimate block
             "sdxl": dict(hidden=32, layers=10, inter=64, proj=32)}  # bigG: blocks 0..9 (diffusers' xl_base key)
ADD_TIME_DIM = 256  # SDXL's addition_time_embed_dim (6 numbers of time ids, each a 256-wide sinusoid)


def _unet_shapes(mc: int, mult: tuple, nrb: int, attn: tuple, depth: tuple, mid_depth: int, linear: bool,
                 context: int, adm_in: int | None = None, in_ch: int = 4, out_ch: int = 4) -> dict:
    """(key -> shape) of an openaimodel / SGM UNetModel, keys without the 'model.diffusion_model.' prefix."""
    s: dict[str, tuple] = {}
    ted = 4 * mc
    s.update({"time_embed.0.weight": (ted, mc), "time_embed.0.bias": (ted,), "time_embed.2.weight": (ted, ted),
              "time_embed.2.bias": (ted,)})
    if adm_in is not None:
        s.update({"label_emb.0.0.weight": (ted, adm_in), "label_emb.0.0.bias": (ted,),
                  "label_emb.0.2.weight": (ted, ted), "label_emb.0.2.bias": (ted,)})

    def res(p: str, cin: int, cout: int) -> None:
        s.update({f"{p}.in_layers.0.weight": (cin,), f"{p}.in_layers.0.bias": (cin,),
                  f"{p}.in_layers.2.weight": (cout, cin, 3, 3), f"{p}.in_layers.2.bias": (cout,),
                  f"{p}.emb_layers.1.weight": (cout, ted), f"{p}.emb_layers.1.bias": (cout,),
                  f"{p}.out_layers.0.weight": (cout,), f"{p}.out_layers.0.bias": (cout,),
                  f"{p}.out_layers.3.weight": (cout, cout, 3, 3), f"{p}.out_layers.3.bias": (cout,)})
        if cin != cout:
            s.update({f"{p}.skip_connection.weight": (cout, cin, 1, 1), f"{p}.skip_connection.bias": (cout,)})

    def transformer(p: str, ch: int, n: int) -> None:
        proj = (ch, ch) if linear else (ch, ch, 1, 1)
        s.update({f"{p}.norm.weight": (ch,), f"{p}.norm.bias": (ch,), f"{p}.proj_in.weight": proj,
                  f"{p}.proj_in.bias": (ch,), f"{p}.proj_out.weight": proj, f"{p}.proj_out.bias": (ch,)})
        for d in range(n):
            b = f"{p}.transformer_blocks.{d}"
            for a, kv in (("attn1", ch), ("attn2", context)):
                s.update({f"{b}.{a}.to_q.weight": (ch, ch), f"{b}.{a}.to_k.weight": (ch, kv),
                          f"{b}.{a}.to_v.weight": (ch, kv), f"{b}.{a}.to_out.0.weight": (ch, ch),
                          f"{b}.{a}.to_out.0.bias": (ch,)})
            s.update({f"{b}.ff.net.0.proj.weight": (8 * ch, ch), f"{b}.ff.net.0.proj.bias": (8 * ch,),
                      f"{b}.ff.net.2.weight": (ch, 4 * ch), f"{b}.ff.net.2.bias": (ch,)})
            for i in (1, 2, 3):
                s.update({f"{b}.norm{i}.weight": (ch,), f"{b}.norm{i}.bias": (ch,)})

    s.update({"input_blocks.0.0.weight": (mc, in_ch, 3, 3), "input_blocks.0.0.bias": (mc,)})
    ch, chans, idx = mc, [mc], 1
    for level, m in enumerate(mult):
        for _ in range(nrb):
            res(f"input_blocks.{idx}.0", ch, mc * m)
            ch = mc * m
            if level in attn:
                transformer(f"input_blocks.{idx}.1", ch, depth[level])
            chans.append(ch)
            idx += 1
        if level != len(mult) - 1:
            s.update({f"input_blocks.{idx}.0.op.weight": (ch, ch, 3, 3), f"input_blocks.{idx}.0.op.bias": (ch,)})
            chans.append(ch)
            idx += 1
    res("middle_block.0", ch, ch)
    transformer("middle_block.1", ch, mid_depth)
    res("middle_block.2", ch, ch)
    idx = 0
    for level in reversed(range(len(mult))):
        for i in range(nrb + 1):
            skip = chans.pop()
            res(f"output_blocks.{idx}.0", ch + skip, mc * mult[level])
            ch = mc * mult[level]
            layer = 1
            if level in attn:
                transformer(f"output_blocks.{idx}.1", ch, depth[level])
                layer = 2
            if level and i == nrb:
                s.update({f"output_blocks.{idx}.{layer}.conv.weight": (ch, ch, 3, 3),
                          f"output_blocks.{idx}.{layer}.conv.bias": (ch,)})
            idx += 1
    s.update({"out.0.weight": (ch,), "out.0.bias": (ch,), "out.2.weight": (out_ch, mc, 3, 3),
              "out.2.bias": (out_ch,)})
    return s


def _vae_shapes(ch: int, mult: tuple, nrb: int, z: int) -> dict:
    """(key -> shape) of LDM's AutoencoderKL, keys without the 'first_stage_model.' prefix."""
    s: dict[str, tuple] = {}

    def block(p: str, cin: int, cout: int) -> None:
        s.update({f"{p}.norm1.weight": (cin,), f"{p}.norm1.bias": (cin,), f"{p}.conv1.weight": (cout, cin, 3, 3),
                  f"{p}.conv1.bias": (cout,), f"{p}.norm2.weight": (cout,), f"{p}.norm2.bias": (cout,),
                  f"{p}.conv2.weight": (cout, cout, 3, 3), f"{p}.conv2.bias": (cout,)})
        if cin != cout:
            s.update({f"{p}.nin_shortcut.weight": (cout, cin, 1, 1), f"{p}.nin_shortcut.bias": (cout,)})

    def mid(p: str, c: int) -> None:
        block(f"{p}.mid.block_1", c, c)
        s.update({f"{p}.mid.attn_1.norm.weight": (c,), f"{p}.mid.attn_1.norm.bias": (c,)})
        for n in ("q", "k", "v", "proj_out"):
            s.update({f"{p}.mid.attn_1.{n}.weight": (c, c, 1, 1), f"{p}.mid.attn_1.{n}.bias": (c,)})
        block(f"{p}.mid.block_2", c, c)

    s.update({"encoder.conv_in.weight": (ch, 3, 3, 3), "encoder.conv_in.bias": (ch,)})
    cin = ch
    for i, m in enumerate(mult):
        for j in range(nrb):
            block(f"encoder.down.{i}.block.{j}", cin, ch * m)
            cin = ch * m
        if i != len(mult) - 1:
            s.update({f"encoder.down.{i}.downsample.conv.weight": (cin, cin, 3, 3),
                      f"encoder.down.{i}.downsample.conv.bias": (cin,)})
    mid("encoder", cin)
    s.update({"encoder.norm_out.weight": (cin,), "encoder.norm_out.bias": (cin,),
              "encoder.conv_out.weight": (2 * z, cin, 3, 3), "encoder.conv_out.bias": (2 * z,),
              "quant_conv.weight": (2 * z, 2 * z, 1, 1), "quant_conv.bias": (2 * z,),
              "post_quant_conv.weight": (z, z, 1, 1), "post_quant_conv.bias": (z,)})
    cin = ch * mult[-1]
    s.update({"decoder.conv_in.weight": (cin, z, 3, 3), "decoder.conv_in.bias": (cin,)})
    mid("decoder", cin)
    for i in reversed(range(len(mult))):
        for j in range(nrb + 1):
            block(f"decoder.up.{i}.block.{j}", cin, ch * mult[i])
            cin = ch * mult[i]
        if i != 0:
            s.update({f"decoder.up.{i}.upsample.conv.weight": (cin, cin, 3, 3),
                      f"decoder.up.{i}.upsample.conv.bias": (cin,)})
    s.update({"decoder.norm_out.weight": (cin,), "decoder.norm_out.bias": (cin,),
              "decoder.conv_out.weight": (3, cin, 3, 3), "decoder.conv_out.bias": (3,)})
    return s


def _clip_shapes(hidden: int, layers: int, inter: int) -> dict:
    """(key -> shape) of a transformers CLIPTextModel ('text_model.' keys), as SD 1 / SDXL files hold it."""
    s: dict[str, tuple] = {"text_model.embeddings.token_embedding.weight": (VOCAB, hidden),
                           "text_model.embeddings.position_embedding.weight": (POSITIONS, hidden)}
    for i in range(layers):
        p = f"text_model.encoder.layers.{i}"
        for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
            s.update({f"{p}.self_attn.{n}.weight": (hidden, hidden), f"{p}.self_attn.{n}.bias": (hidden,)})
        s.update({f"{p}.layer_norm1.weight": (hidden,), f"{p}.layer_norm1.bias": (hidden,),
                  f"{p}.layer_norm2.weight": (hidden,), f"{p}.layer_norm2.bias": (hidden,),
                  f"{p}.mlp.fc1.weight": (inter, hidden), f"{p}.mlp.fc1.bias": (inter,),
                  f"{p}.mlp.fc2.weight": (hidden, inter), f"{p}.mlp.fc2.bias": (hidden,)})
    s.update({"text_model.final_layer_norm.weight": (hidden,), "text_model.final_layer_norm.bias": (hidden,)})
    return s


def _openclip_shapes(hidden: int, layers: int, inter: int, proj: int) -> dict:
    """(key -> shape) of an OpenCLIP text tower (open_clip's names), as SD 2 / SDXL files hold it."""
    s: dict[str, tuple] = {"token_embedding.weight": (VOCAB, hidden), "positional_embedding": (POSITIONS, hidden)}
    for i in range(layers):
        p = f"transformer.resblocks.{i}"
        s.update({f"{p}.ln_1.weight": (hidden,), f"{p}.ln_1.bias": (hidden,),
                  f"{p}.attn.in_proj_weight": (3 * hidden, hidden), f"{p}.attn.in_proj_bias": (3 * hidden,),
                  f"{p}.attn.out_proj.weight": (hidden, hidden), f"{p}.attn.out_proj.bias": (hidden,),
                  f"{p}.ln_2.weight": (hidden,), f"{p}.ln_2.bias": (hidden,),
                  f"{p}.mlp.c_fc.weight": (inter, hidden), f"{p}.mlp.c_fc.bias": (inter,),
                  f"{p}.mlp.c_proj.weight": (hidden, inter), f"{p}.mlp.c_proj.bias": (hidden,)})
    s.update({"ln_final.weight": (hidden,), "ln_final.bias": (hidden,), "text_projection": (hidden, proj),
              "logit_scale": ()})
    return s


def tiny_shapes(family: str) -> dict[str, tuple]:
    """Every key of the family's tiny checkpoint with its shape, in the original single-file layout."""
    if family not in TINY_FAMILIES:
        raise ModelError(f"family = {family!r} has no tiny checkpoint; allowed: {', '.join(TINY_FAMILIES)}")
    shapes: dict[str, tuple] = {}
    if family == "sd1":
        context, adm_in = _CLIP_L["hidden"], None
        shapes.update({f"cond_stage_model.transformer.{k}": v for k, v in _clip_shapes(**_CLIP_L).items()})
    elif family == "sd2":
        oc = _OPENCLIP["sd2"]
        context, adm_in = oc["hidden"], None
        shapes.update({f"cond_stage_model.model.{k}": v for k, v in _openclip_shapes(**oc).items()})
    else:
        oc = _OPENCLIP["sdxl"]
        context, adm_in = _CLIP_L["hidden"] + oc["hidden"], oc["proj"] + 6 * ADD_TIME_DIM
        shapes.update({f"conditioner.embedders.0.transformer.{k}": v for k, v in _clip_shapes(**_CLIP_L).items()})
        shapes.update({f"conditioner.embedders.1.model.{k}": v for k, v in _openclip_shapes(**oc).items()})
    shapes.update({f"model.diffusion_model.{k}": v
                   for k, v in _unet_shapes(**_UNET[family], context=context, adm_in=adm_in).items()})
    shapes.update({f"first_stage_model.{k}": v for k, v in _vae_shapes(**_VAE).items()})
    return shapes


def tiny_state_dict(family: str, seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """The tiny checkpoint's tensors: seeded random weights (fan-in scaled; norms near 1), float32."""
    g = torch.Generator().manual_seed(int(seed))
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, shape in sorted(tiny_shapes(family).items()):
        if key.endswith("logit_scale"):
            out[key] = torch.tensor(4.6052)
        elif len(shape) >= 2:
            fan_in = 1
            for n in shape[1:]:
                fan_in *= n
            scale = 0.02 if "embedding" in key else 1.0 / max(1, fan_in) ** 0.5
            out[key] = torch.randn(shape, generator=g) * scale
        elif key.endswith(".weight") and ("norm" in key or "ln_" in key or key.endswith(("in_layers.0.weight",
                                                                                          "out_layers.0.weight",
                                                                                          "out.0.weight"))):
            out[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            out[key] = 0.1 * torch.randn(shape, generator=g)
    return out


def write_tiny_checkpoint(family: str, path: str | Path, seed: int = 0) -> Path:
    """Write a tiny random ``family`` checkpoint ('sd1', 'sd2' or 'sdxl') as .safetensors at path; returns it.

    The file loads offline without a yaml (``deforum.models.load_model(path)``).
    """
    from safetensors.torch import save_file

    if family not in TINY_FAMILIES:
        raise ModelError(f"family = {family!r} has no tiny checkpoint; allowed: {', '.join(TINY_FAMILIES)}")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ModelError(f"out = {str(path)!r}: a tiny checkpoint is written as .safetensors; give a path ending "
                         "in .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(dict(tiny_state_dict(family, seed)), str(path),
              metadata={"format": "pt", "deforum.tiny": family, "deforum.seed": str(int(seed))})
    return path


__all__ = ["TINY_FAMILIES", "tiny_shapes", "tiny_state_dict", "write_tiny_checkpoint"]
