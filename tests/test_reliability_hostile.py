"""Nothing a file or a second run does can lose frames, hang, exhaust memory or end in a traceback (issue 25).

1. Two runs started in the same second into one output folder (every mode, in one process and in two at
   once) each keep all their frames: a run claims its timestring atomically, and a Video Input run started
   while another renders from ``inputframes/`` extracts into folders of its own.
3. The resume state is untrusted data: crafted paths, FIFOs, symlinks, wrong types and sizes are a
   ``StateError`` naming ``state.json`` and the key, before the model loads, and never hang.
5. Model configs (LDM yaml, text-encoder ``config.json``, diffusers folders) are untrusted data: python tags,
   alias bombs, non-numbers and absurd sizes are a ``ModelError`` naming the file and the key, before
   anything is allocated.
6. Values that make a frame non-finite are refused at planning (naming the field and the frame, also from
   ``deforum plan`` and ``deforum settings check``), and a frame that is not finite anyway stops the run
   with a ``FrameError`` naming it, the frames before it kept.
"""

import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
import yaml
from helpers import root_for
from PIL import Image

from deforum import cli
from deforum.errors import FrameError, ModelError, SettingsError, StateError
from deforum.generate import Generator
from deforum.models import load_config, load_model
from deforum.plan import make_plan
from deforum.render.resume import MAX_STATE_BYTES
from deforum.runner import prepare, render
from deforum.testing import oracle_checkpoint, oracle_config, tiny_config

REPO = Path(__file__).resolve().parents[1]
NOW = datetime.datetime(2031, 5, 6, 7, 8, 9)  # both runs of a pair start in this very second
ARGS = dict(W=64, H=64, seed=5, steps=2, sampler="euler", scale=7.5)
PROMPTS = {0: "a red apple", 2: "a yellow banana"}


@contextmanager
def hang_guard(seconds: int = 30):
    """Fail (instead of hanging the suite) when the block takes longer than ``seconds``."""
    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: it hangs")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def write_video(path: Path, brightness: int, frames: int = 3) -> Path:
    writer = imageio_ffmpeg.write_frames(str(path), (64, 64), fps=12, codec="libx264", quality=10,
                                         macro_block_size=16, ffmpeg_log_level="error")
    writer.send(None)
    for _ in range(frames):
        writer.send(np.full((64, 64, 3), brightness, np.uint8))
    writer.close()
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return write_video(folder / "dark.mp4", 40), write_video(folder / "bright.mp4", 210)


# ------------------------------------------------------------------------ 1. two runs, one timestring


def run_settings(mode: str, videos) -> tuple[dict, dict, list | None, dict | None, int]:
    """(args, anim_args, prompts, animation_prompts, frames expected) of a small run of ``mode``."""
    if mode == "None":
        return ARGS, {"animation_mode": "None"}, ["a cat", "a dog", "a cow"], None, 3
    if mode == "Interpolation":
        return ARGS, {"animation_mode": "Interpolation", "interpolate_x_frames": 1}, None, PROMPTS, 3
    if mode == "Video Input":
        return (dict(ARGS, strength=0.5), {"animation_mode": "Video Input", "video_init_path": str(videos[0])},
                None, PROMPTS, 3)
    anim = {"animation_mode": mode, "max_frames": 3, "translation_x": "0:(2)", "translation_z": "0:(3)",
            "use_depth_warping": False, "color_coherence": "None"}
    return ARGS, anim, None, PROMPTS, 3


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["None", "2D", "3D", "Interpolation", "Video Input"])
def test_two_runs_started_in_the_same_second_keep_all_their_frames(tmp_path, tiny, videos, mode):
    args, anim, prompts, animation_prompts, count = run_settings(mode, videos)
    root = root_for(tiny, tmp_path / "out")
    first = render(args, anim, prompts, animation_prompts, root, progress=False, now=NOW)
    before = files_of(first.outdir)
    second = render(args, anim, prompts, animation_prompts, root, progress=False, now=NOW)

    assert second.outdir == first.outdir and second.timestring != first.timestring
    assert files_of(first.outdir).items() >= before.items()  # nothing of the first run was replaced
    assert len(first.frames) == len(second.frames) == count
    assert not set(first.frames) & set(second.frames)
    for result in (first, second):
        for path in result.frames:
            assert path.name.startswith(f"{result.timestring}_")
            Image.open(path).load()
    if mode != "None":
        assert first.settings_path != second.settings_path
        assert first.settings_path.is_file() and second.settings_path.is_file()
    for result in (first, second):  # the claim folder is the state of a 2D/3D run; other modes leave none
        assert (result.outdir / f"{result.timestring}_state").is_dir() == (mode in ("2D", "3D"))


CHILD = r"""
import datetime, json, sys
from deforum.runner import render
args, anim, prompts, animation_prompts, root = json.loads(sys.argv[1])
animation_prompts = {int(k): v for k, v in animation_prompts.items()} if animation_prompts else None
result = render(args, anim, prompts, animation_prompts, root, progress=False,
                now=datetime.datetime(2031, 5, 6, 7, 8, 9))
print("RESULT " + json.dumps({"timestring": result.timestring, "frames": [str(p) for p in result.frames]}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["None", "2D"])
def test_two_processes_started_at_once_keep_all_their_frames(tmp_path, tiny, videos, mode):
    args, anim, prompts, animation_prompts, count = run_settings(mode, videos)
    settings = json.dumps([args, anim, prompts, animation_prompts, root_for(tiny, tmp_path / "out")])
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    children = [subprocess.Popen([sys.executable, "-c", CHILD, settings], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        results.append(json.loads(out.split("RESULT ")[1]))
    assert results[0]["timestring"] != results[1]["timestring"]
    frames = [Path(p) for result in results for p in result["frames"]]
    assert len(frames) == len(set(frames)) == 2 * count
    for path in frames:
        Image.open(path).load()


@pytest.mark.slow
def test_a_video_input_run_started_meanwhile_leaves_the_first_runs_input_frames_alone(tmp_path, tiny, videos,
                                                                                       monkeypatch):
    """Run A (dark video) renders; after its first frame run B (bright video) starts in the same folder and
    second. Every frame of A must still be made from A's video."""
    dark, bright = videos
    root = root_for(tiny, tmp_path / "out")
    real_generate = Generator.generate
    seen: list[float] = []
    started_b = []

    def generate(self, request):
        if not started_b:  # A's first frame: start B now, while A still has frames to render
            started_b.append(True)
            render(dict(ARGS, strength=0.5), {"animation_mode": "Video Input", "video_init_path": str(bright)},
                   None, PROMPTS, root, progress=False, now=NOW)
        if len(started_b) == 1:
            seen.append(float(np.asarray(request.init_image).mean()))
        return real_generate(self, request)

    monkeypatch.setattr(Generator, "generate", generate)
    result = render(dict(ARGS, strength=0.5), {"animation_mode": "Video Input", "video_init_path": str(dark)},
                    None, PROMPTS, root, progress=False, now=NOW)
    assert len(result.frames) == 3
    # B's inits came from its own video (210), then A's from A's video (40), never B's
    assert len(seen) == 6, seen
    assert all(abs(mean - 210) < 20 for mean in seen[:3]) and all(abs(mean - 40) < 20 for mean in seen[3:]), seen
    assert len(list(result.outdir.glob("*_00002.png"))) == 2


# ------------------------------------------------------------------------ 3. the resume state is untrusted


RESUME_ANIM = {"animation_mode": "2D", "max_frames": 4, "diffusion_cadence": "1", "translation_x": "0:(2)"}


@pytest.fixture(scope="module")
def started_run(tiny, tmp_path_factory):
    """A 2D run of 4 frames killed while it generated frame 2: its state says next_key 2."""
    output = tmp_path_factory.mktemp("started")

    class Killed(Exception):
        pass

    import deforum.render.steps as steps

    real = steps.sample_to_float_image
    calls = []

    def convert(sample):
        calls.append(1)
        if len(calls) == 3:
            raise Killed
        return real(sample)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(steps, "sample_to_float_image", convert)
        with pytest.raises(Killed):
            render(ARGS, RESUME_ANIM, None, PROMPTS, root_for(tiny, output), progress=False)
    (state,) = output.glob("*/StableFun/*_state")
    record = json.loads((state / "state.json").read_text())
    assert record["next_key"] == 2 and "next_img" in record["images"]
    return output, state.name.removesuffix("_state")


def resume(tiny, output: Path, timestring: str):
    anim = dict(RESUME_ANIM, resume_from_timestring=True, resume_timestring=timestring)
    return render(dict(ARGS, seed=-1), anim, None, PROMPTS, root_for(tiny, output), progress=False)


@pytest.fixture
def run_copy(started_run, tmp_path):
    output, timestring = started_run
    copy = Path(shutil.copytree(output, tmp_path / "out", symlinks=True))
    (state,) = copy.glob(f"*/StableFun/{timestring}_state")
    return copy, timestring, state


def edit_record(state: Path, change) -> None:
    path = state / "state.json"
    record = json.loads(path.read_text())
    record = change(record)
    path.write_text(record if isinstance(record, str) else json.dumps(record))


class Payload:
    """A pickle that would create ``sentinel`` if anything unpickled it."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (os.system, (f"touch {self.sentinel}",))


def _valid_image() -> np.ndarray:
    return np.full((64, 64, 3), 128, np.float32)


def attack(case: str, state: Path, tmp_path: Path) -> str:
    """Damage the state folder as ``case`` says; returns what the error must name (a regex)."""
    next_file = state / json.loads((state / "state.json").read_text())["images"]["next_img"]
    outside = tmp_path / "outside.npy"
    np.save(outside, _valid_image())
    if case == "image path outside the run folder":
        edit_record(state, lambda r: {**r, "images": {**r["images"], "next_img": "../../../../outside.npy"}})
        return "images.next_img"
    if case == "absolute image path":
        edit_record(state, lambda r: {**r, "images": {**r["images"], "next_img": str(outside)}})
        return "images.next_img"
    if case == "image is a FIFO":
        next_file.unlink()
        os.mkfifo(next_file)
        return "images.next_img.*FIFO"
    if case == "image is a symlink out of the folder":
        next_file.unlink()
        next_file.symlink_to(outside)
        return "images.next_img.*symbolic link"
    if case == "image is a folder":
        next_file.unlink()
        next_file.mkdir()
        return "images.next_img.*folder"
    if case == "image file missing":
        next_file.unlink()
        return "images.next_img"
    if case == "state.json is a symlink":
        real = tmp_path / "elsewhere.json"
        shutil.copyfile(state / "state.json", real)
        (state / "state.json").unlink()
        (state / "state.json").symlink_to(real)
        return "state.json.*symbolic link"
    if case == "state folder is a symlink":
        moved = tmp_path / "moved_state"
        shutil.move(str(state), moved)
        state.symlink_to(moved, target_is_directory=True)
        return "state folder.*symbolic link"
    if case == "state.json too big":
        with open(state / "state.json", "r+b") as f:
            f.truncate(MAX_STATE_BYTES + 1)  # sparse: no disk used
        return "state.json.*at most"
    if case == "state.json not JSON":
        (state / "state.json").write_bytes(b"\xff\xfe{not json")
        return "state.json.*not valid JSON"
    if case == "state.json deeply nested":
        (state / "state.json").write_text("[" * 100_000 + "]" * 100_000)
        return "state.json"
    if case == "a JSON list":
        edit_record(state, lambda r: [r])
        return "state.json.*list"
    if case == "settings missing":
        edit_record(state, lambda r: {k: v for k, v in r.items() if k != "settings"})
        return "state.json.*settings"
    if case == "settings not an object":
        edit_record(state, lambda r: {**r, "settings": "abc"})
        return "settings"
    if case == "seed of the saved settings not a number":
        edit_record(state, lambda r: {**r, "settings": {**r["settings"], "seed": "abc"}})
        return "settings.seed"
    if case == "next_key a string":
        edit_record(state, lambda r: {**r, "next_key": "abc"})
        return "next_key"
    if case == "next_key far beyond max_frames":
        edit_record(state, lambda r: {**r, "next_key": 10**6})
        return "next_key"
    if case == "next_key just past the plan":
        edit_record(state, lambda r: {**r, "next_key": 5})
        return "next_key.*from 0 to 4"
    if case == "next_key negative":
        edit_record(state, lambda r: {**r, "next_key": -3})
        return "next_key"
    if case == "next_key a float":
        edit_record(state, lambda r: {**r, "next_key": 2.5})
        return "next_key"
    if case == "prev_idx a list":
        edit_record(state, lambda r: {**r, "prev_idx": [1]})
        return "prev_idx"
    if case == "next_idx past the frames":
        edit_record(state, lambda r: {**r, "next_idx": 4})
        return "next_idx"
    if case == "complete a string":
        edit_record(state, lambda r: {**r, "complete": "yes"})
        return "complete"
    if case == "version a string":
        edit_record(state, lambda r: {**r, "version": "1"})
        return "version"
    if case == "depth_range a list":
        edit_record(state, lambda r: {**r, "depth_range": [0, 1]})
        return "depth_range"
    if case == "depth_range not finite":
        edit_record(state, lambda r: {**r, "depth_range": {"dmin": 0, "dmax": float("inf")}})
        return "depth_range"
    if case == "images a list":
        edit_record(state, lambda r: {**r, "images": ["next_img_00002.npy"]})
        return "images"
    if case == "image name a number":
        edit_record(state, lambda r: {**r, "images": {**r["images"], "next_img": 5}})
        return "images.next_img"
    if case == "unknown image name":
        edit_record(state, lambda r: {**r, "images": {**r["images"], "evil": "next_img_00002.npy"}})
        return "images.*evil"
    if case == "next_img missing":
        edit_record(state, lambda r: {**r, "images": {k: v for k, v in r["images"].items() if k != "next_img"}})
        return "images.*next_img"
    if case == "image of the wrong size":
        np.save(next_file, np.zeros((32, 48, 3), np.float32))
        return r"images.next_img.*W=64, H=64"
    if case == "image of the wrong type":
        np.save(next_file, np.zeros((64, 64, 3), np.float16))
        return "images.next_img.*float16"
    if case == "image with NaN":
        image = _valid_image()
        image[3, 3, 1] = np.nan
        np.save(next_file, image)
        return "images.next_img.*finite"
    if case == "image truncated":
        next_file.write_bytes(next_file.read_bytes()[:100])
        return "images.next_img"
    if case == "image not a .npy":
        next_file.write_bytes(b"PK\x03\x04 this is no array")
        return "images.next_img"
    if case == "image is a pickle":
        np.save(next_file, np.array([Payload(tmp_path / "sentinel")], dtype=object), allow_pickle=True)
        return "images.next_img"
    raise AssertionError(case)


ATTACKS = [
    "image path outside the run folder", "absolute image path", "image is a FIFO",
    "image is a symlink out of the folder", "image is a folder", "image file missing", "state.json is a symlink",
    "state folder is a symlink", "state.json too big", "state.json not JSON", "state.json deeply nested",
    "a JSON list", "settings missing", "settings not an object", "seed of the saved settings not a number",
    "next_key a string", "next_key far beyond max_frames", "next_key just past the plan", "next_key negative",
    "next_key a float", "prev_idx a list", "next_idx past the frames", "complete a string", "version a string",
    "depth_range a list", "depth_range not finite", "images a list", "image name a number", "unknown image name",
    "next_img missing", "image of the wrong size", "image of the wrong type", "image with NaN", "image truncated",
    "image not a .npy", "image is a pickle",
]


@pytest.mark.parametrize("case", ATTACKS)
def test_a_crafted_resume_state_is_a_state_error_before_the_model_loads(tmp_path, tiny, run_copy, no_model_load,
                                                                        case):
    output, timestring, state = run_copy
    frames_before = files_of(state.parent)
    expected = attack(case, state, tmp_path)
    with hang_guard(), pytest.raises(StateError, match=expected) as caught:
        resume(tiny, output, timestring)
    message = str(caught.value)
    assert "state.json" in message or "state folder" in message
    assert "init image" not in message and "init_image" not in message
    assert no_model_load == []  # reported before the model loads
    assert files_of(state.parent) == frames_before  # nothing written, nothing removed
    assert not (tmp_path / "sentinel").exists()


def test_the_state_is_checked_by_settings_check_too(tmp_path, run_copy):
    """``prepare`` (what ``deforum plan`` and ``settings check`` run) reports a crafted state as well."""
    output, timestring, state = run_copy
    edit_record(state, lambda r: {**r, "next_key": "abc"})
    anim = dict(RESUME_ANIM, resume_from_timestring=True, resume_timestring=timestring)
    with pytest.raises(StateError, match="next_key"):
        prepare(dict(ARGS, seed=-1), anim, None, PROMPTS, {"output_path": str(output)})


@pytest.mark.slow
def test_an_untouched_state_still_resumes_to_the_end(tiny, run_copy):
    output, timestring, state = run_copy
    result = resume(tiny, output, timestring)
    assert [p.name for p in result.frames] == [f"{timestring}_{j:05}.png" for j in range(4)]
    for path in result.frames:
        Image.open(path).load()


# ------------------------------------------------------------------------ 5. config files


def tiny_yaml(tmp_path: Path) -> Path:
    return tiny_config(tmp_path / "config")


def set_key(config: Path, dotted: str, value) -> None:
    data = yaml.safe_load(config.read_text())
    node = data
    *parents, leaf = dotted.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    config.write_text(yaml.safe_dump(data))


HOSTILE_YAML = {
    "python object apply tag": 'model: !!python/object/apply:os.system ["touch {sentinel}"]\n',
    "python name tag": "model: !!python/name:os.system\n",
    "alias bomb": "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
                          for p, c in zip([None, *"abcdefgh"], "abcdefghi", strict=True)),
    "deep nesting": "model: " + "[" * 50_000 + "]" * 50_000 + "\n",
    "not a mapping": "- just\n- a list\n",
    "binary garbage": "\x00\x01\x02\xff",
    "bad interpolation": "model: ${nothing.here}\n",
    "too big": "{tiny}# " + "x" * (5 * 2**20) + "\n",  # a valid config padded past the 4 MiB limit
}


@pytest.mark.parametrize("case", list(HOSTILE_YAML))
def test_a_hostile_yaml_is_a_model_error_naming_the_file(tmp_path, case):
    path = tiny_yaml(tmp_path).parent / "evil.yaml"
    text = HOSTILE_YAML[case].replace("{sentinel}", str(tmp_path / "sentinel"))
    text = text.replace("{tiny}", (path.parent / "tiny-sd1-inference.yaml").read_text())
    path.write_bytes(text.encode("utf-8", "surrogateescape") if case != "binary garbage" else b"\x00\x01\x02\xff")
    with hang_guard(), pytest.raises(ModelError, match="evil.yaml"):
        load_config(path)
    assert not (tmp_path / "sentinel").exists()


U = "model.params.unet_config.params."
V = "model.params.first_stage_config.params.ddconfig."
BAD_VALUES = [
    ("model.params", "abc", "model.params"),
    ("model.params.scale_factor", "abc", "scale_factor"),
    ("model.params.scale_factor", -1.0, "scale_factor"),
    ("model.params.image_size", "abc", "image_size"),
    ("model.params.image_size", 10**9, "image_size"),
    ("model.params.timesteps", "abc", "timesteps"),
    ("model.params.timesteps", 100_000_000_000, "timesteps"),
    ("model.params.timesteps", 0, "timesteps"),
    ("model.params.linear_start", "abc", "linear_start"),
    ("model.params.linear_start", -0.5, "linear_start"),
    ("model.params.linear_end", 5.0, "linear_end"),
    (U + "model_channels", "abc", "model_channels"),
    (U + "model_channels", 10**9, "model_channels"),
    (U + "channel_mult", "abc", "channel_mult"),
    (U + "channel_mult", [1, "x"], r"channel_mult\[1\]"),
    (U + "channel_mult", [], "channel_mult"),
    (U + "channel_mult", [1, 10**6], "channel_mult"),
    (U + "in_channels", -1, "in_channels"),
    (U + "out_channels", "four", "out_channels"),
    (U + "num_res_blocks", 10**6, "num_res_blocks"),
    (U + "attention_resolutions", "x", "attention_resolutions"),
    (U + "context_dim", "x", "context_dim"),
    (U + "num_heads", 0, "num_heads"),
    (U + "num_heads", 3, "num_heads"),
    (U + "transformer_depth", "x", "transformer_depth"),
    (U + "use_linear_in_transformer", "yes", "use_linear_in_transformer"),
    (V + "ch", "abc", "ch"),
    (V + "ch_mult", [10**6], "ch_mult"),
    (V + "z_channels", "x", "z_channels"),
    (V + "resolution", 10**9, "resolution"),
    (V + "num_res_blocks", None, "num_res_blocks"),
    ("model.params.cond_stage_config.params.version", 5, "version"),
    ("model.params.cond_stage_config.params", "abc", "params"),
    ("model.params.unet_config.params", [1, 2], "unet_config.params"),
]


@pytest.mark.parametrize("key, value, named", BAD_VALUES, ids=[f"{k.split('.')[-1]}={v!r}"[:40] for k, v, _ in
                                                                 BAD_VALUES])
def test_a_bad_value_in_the_yaml_is_a_model_error_naming_file_and_key(tmp_path, key, value, named):
    config = tiny_yaml(tmp_path)
    set_key(config, key, value)
    with hang_guard(), pytest.raises(ModelError, match=rf"{config.name}.*{named}"):
        load_config(config)


def test_an_absurd_timestep_count_allocates_nothing(tmp_path):
    """timesteps 10**11 would be an 800 GB noise schedule: refused by load_model before it is computed."""
    config = tiny_yaml(tmp_path)
    set_key(config, "model.params.timesteps", 100_000_000_000)
    with hang_guard(), pytest.raises(ModelError, match=r"timesteps.*100000000000.*100000"):
        load_model(oracle_checkpoint(), config, cache=False)


def test_a_checkpoint_that_does_not_fit_the_yaml_names_both_files(tmp_path):
    config = tiny_yaml(tmp_path)
    set_key(config, U + "model_channels", 64)  # the checkpoint's UNet is 32 wide
    with pytest.raises(ModelError, match=rf"tiny-sd1.safetensors: .*wrong shape.*{config.name}"):
        load_model(oracle_checkpoint(), config, cache=False)


TEXT_ENCODER_CASES = [
    ("not JSON", "{not json", "config.json.*JSON"),
    ("a list", "[1, 2]", "config.json.*list"),
    ("deep nesting", "[" * 100_000 + "]" * 100_000, "config.json"),
    ("hidden_size a string", {"hidden_size": "abc"}, "config.json.*hidden_size"),
    ("hidden_size huge", {"hidden_size": 10**9}, "config.json.*hidden_size"),
    ("heads do not divide", {"num_attention_heads": 3}, "config.json.*num_attention_heads"),
    ("too few positions", {"max_position_embeddings": 10}, "config.json.*max_position_embeddings"),
    ("layers a float", {"num_hidden_layers": 2.5}, "config.json.*num_hidden_layers"),
    ("unknown activation", {"hidden_act": "os.system"}, "config.json.*hidden_act"),
    ("eps not a number", {"layer_norm_eps": "x"}, "config.json.*layer_norm_eps"),
]


@pytest.mark.parametrize("case, content, named", TEXT_ENCODER_CASES, ids=[c[0] for c in TEXT_ENCODER_CASES])
def test_a_bad_text_encoder_config_is_a_model_error_naming_file_and_key(tmp_path, case, content, named):
    config = tiny_yaml(tmp_path)
    text_config = config.parent / "tiny-sd1-text-encoder" / "config.json"
    if isinstance(content, dict):
        content = json.dumps(json.loads(text_config.read_text()) | content)
    text_config.write_text(content)
    with hang_guard(), pytest.raises(ModelError, match=named):
        load_config(config)


@pytest.fixture(scope="module")
def saved_folder(tmp_path_factory):
    from test_models_diffusers import save_diffusers_folder

    model = load_model(oracle_checkpoint(), oracle_config(), cache=False)
    return save_diffusers_folder(model, tmp_path_factory.mktemp("diffusers") / "tiny-sd1")


DIFFUSERS_CASES = [
    ("unet/config.json", "not json", None, "unet/config.json: not a readable JSON"),
    ("unet/config.json", "block_out_channels", "abc", "unet/config.json: block_out_channels"),
    ("unet/config.json", "block_out_channels", [32, 10**7, 64], r"unet/config.json: block_out_channels\[1\]"),
    ("unet/config.json", "sample_size", 10**12, "unet/config.json: sample_size"),
    ("unet/config.json", "layers_per_block", "x", "unet/config.json: layers_per_block"),
    ("unet/config.json", "cross_attention_dim", -5, "unet/config.json: cross_attention_dim"),
    ("unet/config.json", "down_block_types", ["CrossAttnDownBlock2D"], "unet/config.json: down_block_types"),
    ("unet/config.json", "down_block_types", ["NoSuchBlock"] * 3, "unet/config.json: no unet can be built"),
    ("vae/config.json", "scaling_factor", "x", "vae/config.json: scaling_factor"),
    ("vae/config.json", "latent_channels", 10**6, "vae/config.json: latent_channels"),
    ("text_encoder/config.json", "hidden_size", "x", "text_encoder/config.json: hidden_size"),
    ("text_encoder/config.json", "not json", None, "text_encoder/config.json: not a readable JSON"),
    ("scheduler/scheduler_config.json", "num_train_timesteps", 100_000_000_000,
     "scheduler_config.json: num_train_timesteps"),
    ("scheduler/scheduler_config.json", "beta_start", "x", "scheduler_config.json: beta_start"),
    ("scheduler/scheduler_config.json", "trained_betas", ["a", "b"], r"scheduler_config.json: trained_betas\[0\]"),
    ("tokenizer/special_tokens_map.json", "pad_token", ["a", "list"], "tokenizer.*pad_token"),
    ("model_index.json", "not json", None, "model_index.json: not a readable JSON"),
]


@pytest.mark.parametrize("file, key, value, named", DIFFUSERS_CASES,
                         ids=[f"{f.split('/')[0]}-{k}={v!r}"[:50] for f, k, v, _ in DIFFUSERS_CASES])
def test_a_bad_diffusers_folder_config_is_a_model_error_naming_the_file(saved_folder, tmp_path, file, key, value,
                                                                        named):
    folder = Path(shutil.copytree(saved_folder, tmp_path / "tiny-sd1"))
    path = folder / file
    if key == "not json":
        path.write_text("{ this is not json")
    else:
        path.write_text(json.dumps(json.loads(path.read_text()) | {key: value}))
    with hang_guard(), pytest.raises(ModelError, match=named):
        load_model(folder, cache=False)


# ------------------------------------------------------------------------ 6. non-finite values


def plan_settings(mode: str, **values):
    from deforum.testing import settings_for_test

    return settings_for_test(**{"seed": 1, "animation_mode": mode, "max_frames": 5, **values},
                             prompts=["a prompt"], animation_prompts=PROMPTS)


REFUSED = [
    ("2D", {"zoom": "0:(0)"}, r"zoom: 0.0 at frame 0 \(5 frames"),
    ("2D", {"zoom": "0:(1), 2:(1), 3:(-1e-9)"}, r"zoom: -1e-09 at frame 3"),
    ("2D", {"zoom": "0:(1), 2:(1e-300)"}, r"zoom: 1e-300 at frame 2"),
    ("2D", {"translation_x": "0:(1e300)"}, r"translation_x: 1e\+300 at frame 0"),
    ("2D", {"angle": "0:(0), 3:(0), 4:(1e39)"}, r"angle: 1e\+39 at frame 4"),
    ("2D", {"contrast_schedule": "0:(1e300)"}, "contrast_schedule: 1e\\+300 at frame 0"),
    ("2D", {"noise_schedule": "0:(0), 1:(1e300)"}, "noise_schedule: 1e\\+300 at frame 1"),
    ("2D", {"flip_2d_perspective": True, "perspective_flip_fv": "0:(53), 2:(0)"},
     "perspective_flip_fv: 0.0 at frame 2"),
    ("2D", {"flip_2d_perspective": True, "perspective_flip_fv": "0:(180)"}, "perspective_flip_fv: 180.0 at frame 0"),
    ("2D", {"scale": 1e308}, "scale=1e\\+308"),
    ("3D", {"fov": 1e-300}, "fov=1e-300"),
    ("3D", {"fov": 180}, "fov=180"),
    ("3D", {"translation_z": "0:(1e300)"}, "translation_z: 1e\\+300 at frame 0"),
    ("3D", {"rotation_3d_y": "0:(1e39)"}, "rotation_3d_y: 1e\\+39 at frame 0"),
    ("3D", {"sampler": "ddim", "ddim_eta": -50.0}, "ddim_eta=-50"),
    ("None", {"scale": -1e308}, "scale=-1e\\+308"),
    ("Interpolation", {"scale": 1e200}, "scale=1e\\+200"),
    ("Video Input", {"scale": 1e200}, "scale=1e\\+200"),
]


@pytest.mark.parametrize("mode, values, named", REFUSED, ids=[f"{m}-{next(iter(v))}" for m, v, _ in REFUSED])
def test_values_that_make_frames_non_finite_are_refused_at_planning(mode, values, named):
    settings = plan_settings(mode, **values)
    with pytest.raises(SettingsError, match=named) as caught:
        make_plan(settings, 1, init_images=["x.jpg"] if mode == "Video Input" else None)
    assert caught.value.problems  # one line per problem, so the command line can prefix the file


@pytest.mark.parametrize("mode, values", [
    ("3D", {"zoom": "0:(0)"}),  # zoom is a 2D motion: a 3D run does not use it
    ("2D", {"fov": 1e-300}),  # fov is the 3D camera's
    ("2D", {"perspective_flip_fv": "0:(0)"}),  # only with flip_2d_perspective
    ("2D", {"zoom": "0:(0.5)", "scale": -30, "noise_schedule": "0:(-0.1)"}),
    ("2D", {"zoom": "0:(1), 3:(-1)"}),  # v0.6 turned the frame half round: kept
    ("3D", {"fov": -40}),  # a mirrored camera, allowed by the field table
])
def test_values_a_mode_does_not_use_or_that_stay_finite_are_planned(mode, values):
    assert len(make_plan(plan_settings(mode, **values), 1)) == 5


@pytest.mark.parametrize("command", ["plan", "check"])
def test_plan_and_settings_check_report_the_field_and_frame(tmp_path, capsys, command):
    path = tmp_path / "zoom.txt"
    path.write_text(json.dumps({"animation_mode": "2D", "max_frames": 6, "zoom": "0:(1.02), 4:(0)"}))
    argv = ["plan", str(path)] if command == "plan" else ["settings", "check", str(path)]
    assert cli.main(argv) == cli.EXIT_SETTINGS
    err = capsys.readouterr().err
    assert "zoom.txt" in err and "zoom: 0.0 at frame 4" in err
    assert "Traceback" not in err


def test_a_huge_scale_is_refused_before_the_model_loads(tmp_path, tiny, no_model_load):
    with pytest.raises(SettingsError, match="scale=1e\\+308"):
        render(dict(ARGS, scale=1e308), {"animation_mode": "None"}, ["a cat"], None,
               root_for(tiny, tmp_path / "out"), progress=False)
    assert no_model_load == [] and not (tmp_path / "out").exists()


def nan_on_call(monkeypatch, n: int) -> None:
    """The n-th image the Generator makes (1-based) is NaN, as an overflowing guidance would make it."""
    real_generate = Generator.generate
    calls = []

    def generate(self, request):
        sample = real_generate(self, request)
        calls.append(1)
        return torch.full_like(sample, float("nan")) if len(calls) == n else sample

    monkeypatch.setattr(Generator, "generate", generate)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["None", "2D", "Interpolation", "Video Input"])
def test_a_non_finite_frame_stops_the_run_and_keeps_the_frames_before_it(tmp_path, tiny, videos, monkeypatch,
                                                                          mode):
    args, anim, prompts, animation_prompts, _count = run_settings(mode, videos)
    nan_on_call(monkeypatch, 3)
    noun = "image" if mode == "None" else "frame"
    with pytest.raises(FrameError, match=f"{noun} 2: the generated image is not finite"):
        render(args, anim, prompts, animation_prompts, root_for(tiny, tmp_path / "out"), progress=False)
    (folder,) = (tmp_path / "out").glob("*/StableFun")
    written = sorted(p.name for p in folder.glob("*.png"))
    assert len(written) == 2 and all(f"_{i:05}" in name for i, name in enumerate(written)), written
    for name in written:
        Image.open(folder / name).load()
    assert not list(folder.rglob("*.tmp"))


@pytest.mark.slow
def test_the_3d_camera_dividing_by_zero_is_a_frame_error_not_a_black_frame(tmp_path, tiny):
    """translation_z 200 on a flat depth of 1 puts the plane on the camera (z = 0): the warp is NaN."""
    anim = {"animation_mode": "3D", "max_frames": 3, "use_depth_warping": False, "translation_z": "0:(200)",
            "color_coherence": "None"}
    with pytest.raises(FrameError, match="frame 1: the 3D warp is not finite.*translation_z=200"):
        render(ARGS, anim, None, PROMPTS, root_for(tiny, tmp_path / "out"), progress=False)
    (folder,) = (tmp_path / "out").glob("*/StableFun")
    assert sorted(p.name for p in folder.glob("*.png"))[0].endswith("_00000.png")
    (state,) = folder.glob("*_state")
    assert json.loads((state / "state.json").read_text())["next_key"] == 1  # resumable after the fix


def test_timestamps_move_forward_past_every_name_a_run_owns(tmp_path):
    """The claim skips timestrings that a file of any kind (frames, settings, videos, temp files) is named
    after, and its folder; the next free second is taken."""
    from deforum.render.resume import claim_timestring

    (tmp_path / "20310506070809_settings.txt").write_text("{}")
    (tmp_path / "20310506070810.mp4").write_bytes(b"")
    (tmp_path / ".20310506070811_00001.png.tmp").write_bytes(b"")
    (tmp_path / "20310506070812_state").mkdir()
    assert claim_timestring(tmp_path, "20310506070809") == "20310506070813"
    assert (tmp_path / "20310506070813_state").is_dir()
    assert claim_timestring(tmp_path, "20310506070809") == "20310506070814"
    assert claim_timestring(tmp_path, "20311231235959") == "20311231235959"
    assert claim_timestring(tmp_path, "20311231235959") == "20320101000000"


def test_an_unused_name_keeps_its_timestring(tmp_path):
    from deforum.render.resume import claim_timestring

    started = time.monotonic()
    assert claim_timestring(tmp_path, "20310506070809") == "20310506070809"
    assert time.monotonic() - started < 5
