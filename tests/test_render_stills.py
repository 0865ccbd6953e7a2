"""The None mode (batch stills, spec animation 11, 10.4, 10.6) on the tiny checkpoint."""

import json

import numpy as np
import pytest
from PIL import Image

from deforum.errors import MediaError, SettingsError
from deforum.generate import Generator
from deforum.models import load_model
from deforum.plan import next_seed
from deforum.render import render_image_batch
from deforum.render.inputs import read_inputs
from deforum.render.stills import grid_filename, image_filename, make_grid
from deforum.settings import RunIdentity, identify
from deforum.testing import oracle_checkpoint, oracle_config, settings_for_test

TIMESTRING = "20240102030405"
PROMPTS = ["a red cat, 10:30 @ night!", "a blue dog"]


@pytest.fixture(scope="module")
def generator():
    return Generator(load_model(oracle_checkpoint(), oracle_config()))


def stills_settings(prompts, **overrides):
    values = dict(W=64, H=64, steps=4, sampler="euler", seed=100, n_batch=3, display_samples=False,
                  make_grid=False, animation_mode="None")
    values.update(overrides)
    return settings_for_test(prompts=prompts, **values)


def render(tmp_path, prompts, generator, *, display=None, seed=None, **overrides):
    """Settings -> identity (the run's seed: ``seed`` given, else the settings' -1 resolved) -> inputs -> run."""
    settings = stills_settings(prompts, **overrides)
    seed = settings.image.seed if seed is None else seed
    identity = RunIdentity(TIMESTRING, tmp_path / "out", seed)
    return render_image_batch(settings, identity, generator, read_inputs(settings), display=display)


def test_two_prompts_three_batches_with_grid_and_settings(generator, tmp_path):
    written = render(tmp_path, PROMPTS, generator, make_grid=True, grid_rows=2,
                     filename_format="{timestring}_{index}_{prompt}.png")
    out = tmp_path / "out"
    stills = [out / f"{TIMESTRING}_{i:05}_{name}.png"
              for i, name in enumerate(["a_red_cat___night"] * 3 + ["a_blue_dog"] * 3)]
    grids = [out / f"{TIMESTRING}_00000_grid_100.png", out / f"{TIMESTRING}_00001_grid_103.png"]
    settings = out / f"{TIMESTRING}_settings.txt"
    assert written == [settings, *stills, *grids]
    assert sorted(out.iterdir()) == sorted(written)

    saved = json.loads(settings.read_text(encoding="utf-8"))
    assert saved["prompts"] == {PROMPTS[0]: "00000", PROMPTS[1]: "00001"}
    assert saved["seed"] == 100 and saved["n_batch"] == 3 and saved["W"] == 64

    images = [np.asarray(Image.open(path)) for path in stills]
    assert all(image.shape == (64, 64, 3) and image.dtype == np.uint8 for image in images)
    assert len({image.tobytes() for image in images}) == 6  # every seed gives its own image
    grid = np.asarray(Image.open(grids[1]))
    # 3 images, grid_rows 2: int(3 / 2) = 1 image per row -> 3 rows of one, 2 px padding
    assert grid.shape == (3 * 66 + 2, 66 + 2, 3)
    assert np.array_equal(grid[2:66, 2:66], images[3])
    assert np.array_equal(grid[68:132, 2:66], images[4])
    assert not grid[:2].any() and not grid[66:68].any()


def test_seed_file_names_and_fixed_seed(generator, tmp_path):
    written = render(tmp_path, ["a cat"], generator, n_batch=2, seed_behavior="fixed", save_settings=False,
                     filename_format="{timestring}_{index}_{seed}.png")
    assert [p.name for p in written] == [f"{TIMESTRING}_00000_100.png", f"{TIMESTRING}_00001_100.png"]
    a, b = (np.asarray(Image.open(p)) for p in written)
    assert np.array_equal(a, b)


def test_random_seed_is_resolved_and_recorded(generator, tmp_path):
    settings = stills_settings(["a cat"], n_batch=1, seed=-1, seed_behavior="random",
                               filename_format="{timestring}_{index}_{seed}.png")
    identity = identify(settings)  # the run's identity: seed -1 resolved to a random seed
    identity = RunIdentity(TIMESTRING, tmp_path / "out", identity.seed)
    assert settings.image.seed == -1 and identity.seed != -1
    settings_file, still = render_image_batch(settings, identity, generator, read_inputs(settings))
    seed = json.loads(settings_file.read_text(encoding="utf-8"))["seed"]
    assert seed == identity.seed and 0 <= seed < 2**32
    assert still.name == f"{TIMESTRING}_00000_{seed}.png"
    assert next_seed(seed, "random") != seed


def test_init_folder_mask_display_and_per_step_images(generator, tmp_path):
    folder = tmp_path / "inits"
    folder.mkdir()
    rng = np.random.RandomState(3)
    for name in ["b.png", "a.jpg"]:
        Image.fromarray(rng.randint(0, 256, (80, 96, 3), np.uint8)).save(folder / name)
    mask = np.zeros((64, 64), np.uint8)
    mask[:, :32] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    shown = []
    written = render(tmp_path, ["a cat"], generator, display=shown.append, n_batch=1, use_init=True,
                     init_image=str(folder), strength=0.5, use_mask=True, mask_file=str(tmp_path / "mask.png"),
                     mask_overlay_blur=0, display_samples=True, save_sample_per_step=True, save_settings=False,
                     filename_format="{timestring}_{index}_{seed}.png")
    assert [p.name for p in written] == [f"{TIMESTRING}_00000_100.png", f"{TIMESTRING}_00001_101.png"]
    assert len(shown) == 2 and all(isinstance(image, Image.Image) for image in shown)
    # sorted folder: a.jpg is the first init; its white (left) half is kept
    first = Image.open(folder / "a.jpg").convert("RGB").resize((64, 64), Image.Resampling.LANCZOS)
    first_init = np.asarray(first)
    out = np.asarray(Image.open(written[0]))
    assert np.abs(out[:, :32].astype(int) - first_init[:, :32]).max() <= 1
    steps = sorted(p.name for p in (tmp_path / "out" / f"{TIMESTRING}_00_100").iterdir())
    assert steps == ["x0_pred_00000.png", "x0_pred_00001.png", "x_00000.png", "x_00001.png"]


def test_bad_inputs_fail_before_anything_is_generated(tmp_path):
    class Refuses:
        def generate(self, request):
            raise AssertionError("no diffusion before the inputs are checked")

    with pytest.raises(MediaError, match="init_image"):
        render(tmp_path, ["a cat"], Refuses(), use_init=True, init_image=str(tmp_path / "missing.png"))
    with pytest.raises(SettingsError, match="use_mask"):
        render(tmp_path, ["a cat"], Refuses(), use_mask=True)
    opaque = tmp_path / "opaque.png"
    Image.new("RGBA", (64, 64), (1, 2, 3, 255)).save(opaque)
    with pytest.raises(MediaError, match="use_alpha_as_mask"):
        render(tmp_path, ["a cat"], Refuses(), use_init=True, init_image=str(opaque), use_mask=True,
               use_alpha_as_mask=True)
    with pytest.raises(SettingsError, match="prompts"):
        render(tmp_path, [], Refuses())
    assert not (tmp_path / "out").exists()


def test_alpha_channel_as_mask(generator, tmp_path):
    rgba = np.random.RandomState(5).randint(0, 256, (64, 64, 4), np.uint8)
    rgba[..., 3] = 0
    rgba[:, :32, 3] = 255  # opaque left half: kept
    Image.fromarray(rgba).save(tmp_path / "init.png")
    (path,) = render(tmp_path, ["a cat"], generator, n_batch=1, use_init=True, init_image=str(tmp_path / "init.png"),
                     strength=0.5, use_mask=True, use_alpha_as_mask=True, mask_overlay_blur=0, save_settings=False)
    out = np.asarray(Image.open(path)).astype(int)
    assert np.abs(out[:, :32] - rgba[:, :32, :3]).max() <= 1
    assert np.abs(out[:, 32:] - rgba[:, 32:, :3]).mean() > 10


# (filename_format, expected name) for prompt "A cat, 10:30 @ night! (hi)", index 7, seed 42
FILENAME_CASES = [
    ("{timestring}_{index}_{prompt}.png", "T_00007_A_cat___night_hi.png"),
    ("{timestring}_{index}_{seed}.png", "T_00007_42.png"),
    ("../../etc/{prompt}", "T_00007_42.png"),  # any other value: the seed form, never a path
]


@pytest.mark.parametrize("fmt, expected", FILENAME_CASES)
def test_image_filename(fmt, expected):
    assert image_filename(fmt, "T", 7, "A cat, 10:30 @ night! (hi)", 42) == expected


def test_long_prompts_are_cut_to_160_characters():
    name = image_filename("{timestring}_{index}_{prompt}.png", "T", 0, "a" * 300, 1)
    assert name == "T_00000_" + "a" * 160 + ".png"


def test_grid_filename():
    assert grid_filename("T", 3, 77) == "T_00003_grid_77.png"


# (image count, grid_rows, expected (rows, columns))
GRID_CASES = [(6, 2, (2, 3)), (3, 2, (3, 1)), (1, 2, (1, 1)), (4, 1, (1, 4)), (5, 2, (3, 2)), (2, 5, (2, 1))]


@pytest.mark.parametrize("count, grid_rows, shape", GRID_CASES)
def test_make_grid_layout(count, grid_rows, shape):
    images = [np.full((4, 6, 3), 10 * (k + 1), np.uint8) for k in range(count)]
    grid = make_grid(images, grid_rows)
    rows, columns = shape
    assert grid.shape == (rows * 6 + 2, columns * 8 + 2, 3)
    for k in range(count):
        y, x = divmod(k, columns)
        assert (grid[2 + 6 * y:6 + 6 * y, 2 + 8 * x:8 + 8 * x] == 10 * (k + 1)).all()
