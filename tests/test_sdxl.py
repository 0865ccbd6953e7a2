"""SDXL: tiny checkpoints in the original layouts, detection (ours and diffusers'), offline renders of a tiny
SDXL single file and diffusers folder, and parity with diffusers' own SDXL pipeline on the same components."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from deforum.conditioning import Conditioning
from deforum.errors import ModelError
from deforum.models import SD1, SD2, SDXL, detect_family, load_model
from deforum.models.sdxl import SDXLModel, size_warning, time_ids
from deforum.models.tiny import TINY_FAMILIES, write_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tiny")
    return {f: write_tiny_checkpoint(f, folder / f"tiny-{f}.safetensors", seed=1) for f in TINY_FAMILIES}


@pytest.fixture(scope="module")
def sdxl(tiny_files) -> SDXLModel:
    return load_model(tiny_files["sdxl"], cache=False)


def clip_tokenizer(folder: Path, pad: str):
    """A transformers CLIPTokenizer with CLIP's vocabulary, built offline from open-clip's bundled BPE merges."""
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTokenizer

    bpe = SimpleTokenizer()
    folder.mkdir(parents=True, exist_ok=True)
    names = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}  # open-clip renamed them
    vocab = {names.get(token, token): i for token, i in bpe.encoder.items()}
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407 and len(vocab) == 49408
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    merges = sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get)
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n",
                                       encoding="utf-8")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token=pad,
                         model_max_length=77)


def sdxl_pipeline(model: SDXLModel, tmp: Path, img2img: bool = True):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       num_train_timesteps=1000)
    parts = dict(vae=model.vae, text_encoder=model.text_encoder, text_encoder_2=model.text_encoder_2,
                 tokenizer=clip_tokenizer(tmp / "tok1", "<|endoftext|>"), tokenizer_2=clip_tokenizer(tmp / "tok2", "!"),
                 unet=model.unet, scheduler=scheduler)
    if img2img:
        return StableDiffusionXLImg2ImgPipeline(**parts, requires_aesthetics_score=False)
    return StableDiffusionXLPipeline(**parts)


# -- tiny checkpoints and detection ---------------------------------------------------------------------------

def test_the_tiny_sdxl_is_xl_base_and_the_tiny_sd1_v1_for_diffusers_and_for_us(tiny_files):
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    sdxl_sd, sd1_sd, sd2_sd = (load_file(str(tiny_files[f])) for f in ("sdxl", "sd1", "sd2"))
    assert infer_diffusers_model_type(sdxl_sd) == "xl_base"
    assert infer_diffusers_model_type(sd1_sd) == "v1"
    assert detect_family(sdxl_sd) is SDXL and detect_family(sd1_sd) is SD1 and detect_family(sd2_sd) is SD2
    assert not SD1.detect(sdxl_sd) and not SD2.detect(sdxl_sd) and not SDXL.detect(sd1_sd)
    # the original single-file layouts
    assert any(k.startswith("conditioner.embedders.0.transformer.text_model.") for k in sdxl_sd)
    assert "conditioner.embedders.1.model.text_projection" in sdxl_sd
    assert "model.diffusion_model.label_emb.0.0.weight" in sdxl_sd
    assert any(k.startswith("cond_stage_model.transformer.text_model.") for k in sd1_sd)
    assert any(k.startswith("cond_stage_model.model.transformer.resblocks.") for k in sd2_sd)


def test_tiny_checkpoints_are_seeded_and_an_unknown_family_lists_the_valid_ones(tmp_path):
    a = load_file(str(write_tiny_checkpoint("sdxl", tmp_path / "a.safetensors", seed=5)))
    b = load_file(str(write_tiny_checkpoint("sdxl", tmp_path / "b.safetensors", seed=5)))
    c = load_file(str(write_tiny_checkpoint("sdxl", tmp_path / "c.safetensors", seed=6)))
    key = "model.diffusion_model.out.2.weight"
    assert torch.equal(a[key], b[key]) and not torch.equal(a[key], c[key])
    with pytest.raises(ModelError, match="family = 'sd3'.*sd1, sd2, sdxl"):
        write_tiny_checkpoint("sd3", tmp_path / "x.safetensors")


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_each_tiny_checkpoint_loads_without_a_yaml_and_predicts(tiny_files, family):
    model = load_model(tiny_files[family], cache=False)
    assert model.family.name == family
    cond = model.family.encode_prompt(model, "a cat")
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SDXL at 64 x 64 warns about the size
        eps = model.apply_model(x, torch.tensor([500.0]), cond)
    assert eps.shape == x.shape and torch.isfinite(eps).all() and eps.std() > 0.05
    fmt = model.family.latent_format
    assert fmt.scale_factor == (0.13025 if family == "sdxl" else 0.18215) == model.scale_factor


# -- the SDXL model -------------------------------------------------------------------------------------------

def test_sdxl_conditioning_has_both_encoders_the_pooled_embedding_and_time_ids(sdxl):
    cond = SDXL.encode_prompt(sdxl, "a cat")
    te1, te2 = sdxl.text_encoder.config, sdxl.text_encoder_2.config
    assert isinstance(cond, Conditioning)
    assert cond.cross_attn.shape == (1, 77, te1.hidden_size + te2.hidden_size)
    assert cond.pooled.shape == (1, te2.projection_dim) and dict(cond.extras) == {}
    sized = SDXL.encode_prompt(sdxl, "a cat", width=96, height=64)
    assert torch.equal(sized.extras["time_ids"], torch.tensor([[64.0, 96.0, 0.0, 0.0, 64.0, 96.0]]))
    # without explicit time ids the model uses the latent's own size: the same prediction
    x = torch.randn(1, 4, 8, 12, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(sdxl.apply_model(x, torch.tensor([300.0]), cond),
                           sdxl.apply_model(x, torch.tensor([300.0]), sized))
        with pytest.raises(ModelError, match="pooled"):
            sdxl.apply_model(x, torch.tensor([300.0]), cond.cross_attn)


def test_a_size_far_from_1024_warns_once_per_size(tiny_files):
    assert size_warning(1024, 1024) is None and size_warning(1152, 896) is None
    assert "1024 x 1024" in size_warning(512, 512) and size_warning(2048, 256) is not None
    model = load_model(tiny_files["sdxl"], cache=False)
    cond = SDXL.encode_prompt(model, "a cat")
    x = torch.randn(1, 4, 8, 8)
    with pytest.warns(UserWarning, match="64 x 64 is far from the 1024 x 1024"):
        model.apply_model(x, torch.tensor([10.0]), cond)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.apply_model(x, torch.tensor([10.0]), cond)  # once per size


# -- parity with diffusers' SDXL pipeline ---------------------------------------------------------------------

def test_text_conditioning_and_one_denoising_step_equal_diffusers_sdxl_img2img(sdxl, tmp_path):
    pipe = sdxl_pipeline(sdxl, tmp_path)
    prompt, W, H = "a red apple on a wooden table", 96, 64
    ids = pipe.tokenizer(prompt, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    ids_2 = pipe.tokenizer_2(prompt, padding="max_length", max_length=77, truncation=True,
                             return_tensors="pt").input_ids
    assert torch.equal(ids, sdxl.tokenizer([prompt])) and torch.equal(ids_2, sdxl.tokenizer_2([prompt]))

    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(prompt, device="cpu", num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
    ours = SDXL.encode_prompt(sdxl, prompt, width=W, height=H)
    torch.testing.assert_close(ours.cross_attn, embeds, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours.pooled, pooled, atol=1e-5, rtol=0)

    add_time_ids, _ = pipe._get_add_time_ids(
        (H, W), (0, 0), (H, W), 6.0, 2.5, (H, W), (0, 0), (H, W), dtype=torch.float32,
        text_encoder_projection_dim=int(pooled.shape[-1]))
    assert torch.equal(ours.extras["time_ids"], add_time_ids)

    latents = torch.randn(1, 4, H // 8, W // 8, generator=torch.Generator().manual_seed(7))
    t = torch.tensor([617.0])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = pipe.unet(latents, t, encoder_hidden_states=embeds,
                           added_cond_kwargs={"text_embeds": pooled, "time_ids": add_time_ids}).sample
        mine = sdxl.apply_model(latents, t, ours)
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)
    assert theirs.abs().max() > 0.1  # a real prediction, not a degenerate zero


# -- renders ----------------------------------------------------------------------------------------------------

def render_3_frames(checkpoint: Path, out: Path, family=SDXL, **settings):
    from deforum.models import loader
    from deforum.runner import render

    root = {"model_checkpoint": "custom", "custom_checkpoint_path": str(checkpoint), "output_path": str(out),
            "map_location": "cpu", "mount_google_drive": False, **settings}
    args = dict(W=64, H=64, seed=3, steps=2, sampler="euler", scale=7.5)
    anim = dict(animation_mode="2D", max_frames=3, diffusion_cadence="1")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = render(args, anim, None, {0: "a red apple"}, root, progress=False)
        model = next(iter(loader._cache.values()))
        assert model.family is family and isinstance(model, SDXLModel) == (family is SDXL)
    finally:
        loader._cache.clear()
    frames = sorted(result.outdir.glob(f"{result.timestring}_0*.png"))
    assert [p.name for p in frames] == [f"{result.timestring}_{j:05}.png" for j in range(3)]
    return frames


def pixels(path: Path):
    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


def test_the_tiny_sdxl_single_file_renders_3_frames_offline(tiny_files, tmp_path):
    """With the default model_config (v1-inference.yaml, as a notebook user leaves it): SDXL reads its keys."""
    frames = render_3_frames(tiny_files["sdxl"], tmp_path / "out")
    first = pixels(frames[0])
    assert first.shape == (64, 64, 3) and first.std() > 1.0


@pytest.mark.parametrize("name, family", [("sd1", SD1), ("sd2", SD2)])
def test_tiny_sd1_and_sd2_render_without_a_yaml(tiny_files, tmp_path, name, family):
    frames = render_3_frames(tiny_files[name], tmp_path / "out", family, model_config="")
    assert pixels(frames[-1]).std() > 1.0


def test_a_tiny_sdxl_diffusers_folder_loads_like_its_single_file_and_renders(sdxl, tmp_path):
    folder = tmp_path / "tiny-sdxl-diffusers"
    sdxl_pipeline(sdxl, tmp_path, img2img=False).save_pretrained(folder)
    assert (folder / "text_encoder_2" / "model.safetensors").is_file()
    model = load_model(folder, cache=False)
    assert isinstance(model, SDXLModel) and model.family is SDXL and model.scale_factor == sdxl.scale_factor
    a, b = SDXL.encode_prompt(model, "a cat"), SDXL.encode_prompt(sdxl, "a cat")
    assert torch.equal(a.cross_attn, b.cross_attn) and torch.equal(a.pooled, b.pooled)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = torch.tensor([400.0])
        assert torch.equal(model.apply_model(x, t, a), sdxl.apply_model(x, t, b))
    render_3_frames(folder, tmp_path / "out", model_config="")


def test_sdxl_time_ids_are_height_width_first():
    assert time_ids(96, 64).tolist() == [[64.0, 96.0, 0.0, 0.0, 64.0, 96.0]]
    assert time_ids(96, 64, crop=(4, 8), original=(200, 100), batch=2).tolist() == [[100.0, 200.0, 4.0, 8.0, 64.0,
                                                                                       96.0]] * 2


def test_a_yaml_beside_the_checkpoint_with_its_stem_is_its_config(tmp_path):
    """The oracle tiny SD 1 has 2 attention heads, which its keys cannot tell (read from the keys it gets SD 1's
    8): with its yaml beside it under the checkpoint's stem, the render settings load the yaml's model."""
    import shutil

    from deforum.models import load_root_model, loader
    from deforum.testing import settings_for_test, tiny_checkpoint

    ckpt, yaml = tiny_checkpoint(tmp_path, fmt="safetensors")
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    t = torch.tensor([250.0])

    def prediction(model):
        return model.apply_model(x, t, model.family.encode_prompt(model, "a cat"))

    expected = prediction(load_model(ckpt, yaml, cache=False))
    settings = settings_for_test(model_checkpoint="custom", custom_checkpoint_path=str(ckpt), map_location="cpu",
                                model_config="").model
    try:
        from_keys = load_root_model(settings)
        assert from_keys.unet.config.attention_head_dim == 8
        assert not torch.equal(prediction(from_keys), expected)
        loader._cache.clear()
        shutil.copyfile(yaml, ckpt.with_suffix(".yaml"))
        beside = load_root_model(settings)
        assert beside.unet.config.attention_head_dim == 2
        assert torch.equal(prediction(beside), expected)
    finally:
        loader._cache.clear()


def test_a_half_precision_sdxl_keeps_its_vae_in_float32(tiny_files):
    model = load_model(tiny_files["sdxl"], dtype=torch.float16, cache=False)
    assert model.dtype == torch.float16 and model.text_encoder_2.dtype == torch.float16
    assert model.vae.dtype == torch.float32  # SDXL's VAE overflows in float16 (diffusers' force_upcast)
    model.to(dtype=torch.float16)
    assert model.vae.dtype == torch.float32
    z = model.get_first_stage_encoding(model.encode_first_stage(torch.zeros(1, 3, 64, 64)))
    assert z.dtype == torch.float32 and torch.isfinite(model.decode_first_stage(z.half())).all()


def test_an_sdxl_file_with_a_v_pred_key_is_v_prediction(tmp_path):
    from safetensors.torch import save_file

    from deforum.models.tiny import tiny_state_dict

    sd = tiny_state_dict("sdxl")
    sd["v_pred"] = torch.tensor([])  # the marker v-prediction SDXL fine-tunes carry
    save_file(dict(sd), str(tmp_path / "v.safetensors"))
    assert load_model(tmp_path / "v.safetensors", cache=False).parameterization == "v"
    assert load_model(write_tiny_checkpoint("sdxl", tmp_path / "e.safetensors"), cache=False).parameterization == "eps"
