"""Gradient conditioning on the tiny checkpoint with a tiny random CLIP and aesthetics head: each loss moves
its own quantity the right way versus scale 0 (same seed), the UNet stays frozen, the v0.6 presets build."""

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from deforum import settings as S
from deforum.errors import DeforumError, SettingsError
from deforum.generate import GenerationRequest, Generator
from deforum.guidance import aesthetics, clip, losses, make_denoiser_wrapper
from deforum.models import load_model
from deforum.render.steps import generation_request
from deforum.settings import load_settings
from deforum.testing import oracle_checkpoint, oracle_config, settings_for_test

W = H = 64
BASE = dict(W=W, H=H, prompt="a red cat: a blue dog", steps=6, scale=7.5, sampler="euler", seed=3)
TINY_ARCH = "deforum-tiny-clip"
TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
HEAD_FILE = "tiny_aesthetics_head.pth"


@pytest.fixture(scope="module")
def model():
    return load_model(oracle_checkpoint(), oracle_config())


@pytest.fixture(scope="module")
def plain(model):
    generator = Generator(model)
    image = generator.generate(GenerationRequest(**BASE))
    return image, generator.last_latent.clone()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny open_clip config (random weights, open_clip's bundled BPE), a random head, two images."""
    import open_clip

    folder = tmp_path_factory.mktemp("guidance")
    (folder / f"{TINY_ARCH}.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(folder / f"{TINY_ARCH}.json")
    models = folder / "models"
    models.mkdir()
    generator = torch.Generator().manual_seed(0)
    torch.save({"linear.weight": torch.randn(1, 16, generator=generator), "linear.bias": torch.zeros(1)},
               models / HEAD_FILE)
    rng = np.random.RandomState(1)
    palette = np.array([[250, 30, 30], [20, 20, 220], [240, 240, 60]], np.uint8)
    Image.fromarray(palette[rng.randint(0, 3, (40, 56))]).save(folder / "palette.png")
    Image.fromarray(rng.randint(0, 256, (H, W, 3), np.uint8)).save(folder / "target.png")
    return folder


@pytest.fixture
def tiny(files, monkeypatch):
    """Every clip_name -> the tiny CLIP; every head entry -> the random head in models_path."""
    for name in clip.CLIP_MODELS:
        monkeypatch.setitem(clip.CLIP_MODELS, name, (TINY_ARCH, None, False))
    sha = hashlib.sha256((files / "models" / HEAD_FILE).read_bytes()).hexdigest()
    for name in aesthetics.AESTHETIC_HEADS:
        monkeypatch.setitem(aesthetics.AESTHETIC_HEADS, name, (HEAD_FILE, sha, 16))
    return files


def guided(model, args, models_path="models"):
    """(image, latent, guide) of BASE generated with the wrapper built from args."""
    settings = {"grad_inject_timing": None, "decode_method": "autoencoder", "ignore_sat_weight": None, **args}
    guide = make_denoiser_wrapper(settings_for_test(**settings, models_path=models_path), model)
    generator = Generator(model, denoiser_wrapper=guide)
    # the request from the same settings plus BASE's image fields (the wrapper keeps the settings' default W x H,
    # as before: init_mse_image is read at that size and resized to the image's)
    image_fields = {name: value for name, value in BASE.items() if name != "prompt"}
    request = generation_request(settings_for_test(**settings, models_path=models_path, **image_fields), BASE["seed"])
    image = generator.generate(replace(request, prompt=BASE["prompt"]))
    return image, generator.last_latent, guide


def loss_fn(guide, name):
    return next(loss.fn for loss in guide.losses if loss.name == name)


# (settings, quantity(image, guide), expected sign of quantity(guided) - quantity(plain))
EFFECTS = {
    "mean lowers |x|": ({"mean_scale": 1e4}, lambda x, g: x.abs().mean(), -1),
    "negative mean raises |x|": ({"mean_scale": -1e4}, lambda x, g: x.abs().mean(), +1),
    "exposure 0.8 brightens": ({"exposure_scale": 1e4, "exposure_target": 0.8}, lambda x, g: x.mean(), +1),
    "exposure -0.8 darkens": ({"exposure_scale": 1e4, "exposure_target": -0.8}, lambda x, g: x.mean(), -1),
    "blue raises blue": ({"blue_scale": 1e4}, lambda x, g: x[:, 2].mean(), +1),
    "var lowers variance": ({"var_scale": 1e4}, lambda x, g: x.var(), -1),
    "var through x": ({"var_scale": 1e4, "gradient_wrt": "x"}, lambda x, g: x.var(), -1),
    "mean unsynced, cond": ({"mean_scale": 1e4, "cond_uncond_sync": False, "gradient_add_to": "cond"},
                            lambda x, g: x.abs().mean(), -1),
    # v0.6's CFG arithmetic, kept: a gradient on uncond moves x0 by (1 - scale) sigma g, i.e. the other way
    "mean unsynced, uncond": ({"mean_scale": 1e4, "cond_uncond_sync": False, "gradient_add_to": "uncond"},
                              lambda x, g: x.abs().mean(), +1),
    "mean unsynced, both, x": ({"mean_scale": 1e4, "cond_uncond_sync": False, "gradient_wrt": "x"},
                               lambda x, g: x.abs().mean(), -1),
}


@pytest.fixture(scope="module")
def half_model():
    return load_model(oracle_checkpoint(), oracle_config(), "cpu", torch.float16, cache=False)


HALF_CASES = {
    "mean, autoencoder decode": {"mean_scale": 1e4},
    "blue, linear decode": {"blue_scale": 1e4, "decode_method": "linear"},
    "colormatch, linear decode": {"colormatch_scale": 1e3, "colormatch_image": "palette.png",
                                  "decode_method": "linear"},
    "init_mse": {"init_mse_scale": 1e3, "init_mse_image": "target.png"},
    "mean unsynced, cond": {"mean_scale": 1e4, "cond_uncond_sync": False, "gradient_add_to": "cond"},
    "var through x": {"var_scale": 1e4, "gradient_wrt": "x"},
}


@pytest.mark.parametrize("case", list(HALF_CASES))
def test_a_float16_model_is_guided_like_float32(model, half_model, plain, files, case):
    """The gradient path in fp16 (CUDA's default): finite, and far closer to fp32 than the guidance's effect."""
    settings = {k: str(files / v) if k.endswith("_image") else v for k, v in HALF_CASES[case].items()}
    full, _, _ = guided(model, settings)
    half, _, _ = guided(half_model, settings)
    assert torch.isfinite(half).all()
    difference = float((half - full).abs().mean())
    effect = float((full - plain[0]).abs().mean())
    assert difference < 0.05 and difference < effect / 5, (case, difference, effect)


@pytest.mark.parametrize("case", list(EFFECTS))
def test_each_loss_moves_its_quantity(model, plain, case):
    settings, quantity, sign = EFFECTS[case]
    image, _, guide = guided(model, settings)
    delta = float(quantity(image, guide) - quantity(plain[0], guide))
    assert delta * sign > 0, (case, delta)


@pytest.mark.parametrize("settings, quantity, sign", [
    ({"mean_scale": 100}, lambda x: x.abs().mean(), -1),
    # the tiny random model's latents decode far outside [-1, 1]: exposure pulls them towards 0.8 from both sides
    ({"exposure_scale": 100, "exposure_target": 0.8}, lambda x: (x - 0.8).abs().mean(), -1),
    ({"blue_scale": 100}, lambda x: x[:, 2].mean(), +1),
    ({"var_scale": 100, "gradient_wrt": "x"}, lambda x: x.var(), -1),
])
def test_linear_decode_moves_the_linear_image(model, plain, settings, quantity, sign):
    """With decode_method 'linear' the loss sees v0.6's matrix decode of the latent; that image moves."""
    _, latent, _ = guided(model, {**settings, "decode_method": "linear"})
    delta = float(quantity(losses.linear_decode(latent)) - quantity(losses.linear_decode(plain[1])))
    assert delta * sign > 0


@pytest.mark.parametrize("decode_method", ["autoencoder", "linear"])
def test_init_mse_moves_towards_the_image(model, plain, files, decode_method):
    image, latent, guide = guided(model, {"init_mse_scale": 1e4 if decode_method == "autoencoder" else 100,
                                          "init_mse_image": str(files / "target.png"),
                                          "decode_method": decode_method})
    mse = loss_fn(guide, "init_mse_scale")
    if decode_method == "autoencoder":
        assert float(mse(image)) < float(mse(plain[0]))
    else:
        assert float(mse(losses.linear_decode(latent))) < float(mse(losses.linear_decode(plain[1])))


@pytest.mark.parametrize("decode_method, ignore_sat_weight", [("autoencoder", None), ("linear", 0.5)])
def test_colormatch_reduces_the_palette_distance(model, plain, files, decode_method, ignore_sat_weight):
    # linear: the tiny model's latents decode to about +-10, far past the [-1, 1] clamp of the desaturation,
    # so a gentle scale (an unsaturated gradient) is used there
    scale = 1e4 if decode_method == "autoencoder" else 10
    image, latent, guide = guided(model, {"colormatch_scale": scale, "colormatch_image": str(files / "palette.png"),
                                          "colormatch_n_colors": 3, "ignore_sat_weight": ignore_sat_weight,
                                          "decode_method": decode_method})
    match = loss_fn(guide, "colormatch_scale")
    assert match.palette.shape == (3, 3)
    if decode_method == "autoencoder":
        # the palette is the three colours of the image, found by k-means
        expected = torch.tensor([[250, 30, 30], [20, 20, 220], [240, 240, 60]]) / 127.5 - 1
        assert torch.cdist(expected, match.palette.cpu()).min(1).values.max() < 0.05
        assert float(match(image)) < float(match(plain[0]))
    else:
        assert float(match(losses.linear_decode(latent))) < float(match(losses.linear_decode(plain[1])))


def test_clip_raises_similarity_to_the_whole_prompt(model, plain, tiny):
    image, _, guide = guided(model, {"clip_scale": 1e4, "clip_name": "ViT-B/32", "cutn": 2})
    clip_loss = loss_fn(guide, "clip_scale")
    assert clip_loss.prompt == BASE["prompt"]  # the whole prompt, ':' included (v0.6 iterated characters)
    assert float(clip_loss.similarity(image)) > float(clip_loss.similarity(plain[0]))
    lowered, _, _ = guided(model, {"clip_scale": -1e4, "clip_name": "ViT-B/32"})  # negative scales work
    assert float(clip_loss.similarity(lowered)) < float(clip_loss.similarity(plain[0]))


def test_aesthetics_raises_the_score(model, plain, tiny):
    image, _, guide = guided(model, {"aesthetics_scale": 1e4, "clip_name": "ViT-L/14"},
                             models_path=str(tiny / "models"))
    head = loss_fn(guide, "aesthetics_scale")
    with torch.no_grad():
        assert float(head.score(image).mean()) > float(head.score(plain[0]).mean())


def test_unet_is_frozen_and_unchanged(model):
    before = {k: v.clone() for k, v in model.unet.state_dict().items()}
    guided(model, {"var_scale": 1e4, "mean_scale": 10, "gradient_wrt": "x"})
    for name, parameter in model.unet.named_parameters():
        assert not parameter.requires_grad and parameter.grad is None, name
        assert torch.equal(parameter, before[name]), name


@pytest.mark.parametrize("wrt, calls_per_step", [("x0_pred", 1), ("x", 2)])
def test_unet_passes_per_step_do_not_grow_with_the_number_of_losses(model, monkeypatch, wrt, calls_per_step):
    calls = []
    original = model.apply_model
    monkeypatch.setattr(model, "apply_model", lambda *a, **k: calls.append(1) or original(*a, **k))
    guided(model, {"mean_scale": 10, "var_scale": 10, "blue_scale": 10, "exposure_scale": 10,
                   "gradient_wrt": wrt})
    assert len(calls) == BASE["steps"] * calls_per_step  # v0.6: one pass per loss (x0_pred)


def test_img2img_with_mask_and_every_sampler(model, files):
    init = Image.open(files / "target.png").convert("RGB")
    mask = Image.fromarray(np.tile((np.arange(W) < W // 2).astype(np.uint8) * 255, (H, 1)))
    guide = make_denoiser_wrapper(settings_for_test(mean_scale=1e4, decode_method="autoencoder", steps=6,
                                                    grad_inject_timing=list(range(1, 10))), model)
    generator = Generator(model, denoiser_wrapper=guide)
    for sampler in S.SAMPLERS:
        image = generator.generate(GenerationRequest(**{**BASE, "sampler": sampler}, init_image=init, strength=0.5,
                                                     mask=mask))
        assert torch.isfinite(image).all(), sampler
        assert guide.last.n_steps == 3 and guide.last.applied, sampler  # the 3 steps that run are counted


def test_all_scales_zero_gives_no_wrapper(model):
    assert make_denoiser_wrapper(settings_for_test(), model) is None


@pytest.mark.parametrize("settings, match", [
    ({"mean_scale": 1, "gradient_wrt": "z"}, "gradient_wrt"),
    ({"mean_scale": 1, "gradient_add_to": "all"}, "gradient_add_to"),
    ({"mean_scale": 1, "decode_method": "fast"}, "decode_method"),
    ({"mean_scale": 1, "grad_threshold_type": "imagen"}, "grad_threshold_type"),
    ({"mean_scale": 1, "grad_inject_timing": [1, 0.5]}, "grad_inject_timing"),
    ({"mean_scale": 1, "grad_inject_timing": 0}, "grad_inject_timing"),
    ({"mean_scale": 1, "clamp_grad_threshold": None}, "clamp_grad_threshold"),
    ({"mean_scale": "1"}, "mean_scale"),
    ({"init_mse_scale": 1, "init_mse_image": ""}, "init_mse_image"),
    ({"init_mse_scale": 1, "init_mse_image": "/no/such/file.png"}, "init_mse_image"),
    ({"colormatch_scale": 1, "colormatch_image": None}, "colormatch_image"),
    ({"clip_scale": 1, "clip_name": "RN50"}, "clip_name"),
    ({"aesthetics_scale": 1, "clip_name": "ViT-L/14@336px"}, "aesthetics_scale"),
])
def test_bad_settings_fail_before_sampling(model, settings, match):
    """Refused when the settings resolve (values) or when the wrapper loads what they name (files, models)."""
    with pytest.raises(DeforumError, match=match):
        make_denoiser_wrapper(settings_for_test(**settings), model)


def test_missing_head_offline_names_the_file_and_the_folder(model, tiny, tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(aesthetics.urllib.request, "urlopen", offline)
    with pytest.raises(DeforumError, match=f"{HEAD_FILE}.*{tmp_path}"):
        make_denoiser_wrapper(settings_for_test(aesthetics_scale=1, models_path=str(tmp_path)), model)
    assert list(tmp_path.iterdir()) == []  # no partial file left


def test_head_with_a_wrong_sha256_is_refused(model, tiny, monkeypatch):
    monkeypatch.setitem(aesthetics.AESTHETIC_HEADS, "ViT-L/14", (HEAD_FILE, "0" * 64, 16))
    models = tiny / "models"
    backup = (models / HEAD_FILE).read_bytes()
    try:
        with pytest.raises(DeforumError, match="sha256"):
            make_denoiser_wrapper(settings_for_test(aesthetics_scale=1, models_path=str(models)), model)
    finally:
        for stray in models.glob(HEAD_FILE + "*"):
            stray.unlink()
        (models / HEAD_FILE).write_bytes(backup)


@pytest.mark.parametrize("preset", S.PRESETS)
def test_v06_presets_load_and_build_a_wrapper(model, tiny, monkeypatch, preset):
    from pathlib import Path

    import deforum.image.io as image_io

    monkeypatch.setattr(image_io, "open_image", lambda source, **kw: Image.open(tiny / "palette.png"))
    settings = load_settings(Path(__file__).resolve().parents[1] / "settings" / preset)
    args = {**vars(settings.args), "W": W, "H": H, "steps": 2}
    guide = make_denoiser_wrapper(S.resolve(args, settings.anim_args, {"models_path": str(tiny / "models")}), model)
    assert guide is not None and guide.losses
    image = Generator(model, denoiser_wrapper=guide).generate(GenerationRequest(**{**BASE, "steps": 2}))
    assert torch.isfinite(image).all()
    assert guide.last.applied


def test_settings_error_is_a_deforum_error():
    assert issubclass(SettingsError, DeforumError)
