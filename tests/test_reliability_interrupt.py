"""Interrupted renders lose nothing (issue 10, part 1).

A 2D/3D render on the tiny checkpoint is killed with SIGKILL three times in a row at seeded random points:
inside a UNet call (during sampling), inside ``save_png_atomic`` (half a PNG in its temp file), and again
at one of the two; then resumed to the end. The frames must equal an uninterrupted run's bit for bit, with
none missing, none duplicated, every PNG decodable and no temp file left behind. The video encode is
killed the same way while ffmpeg writes its temp file: the final mp4 name never holds a truncated video.
A full disk (ENOSPC) is a MediaError naming the file, keeps the earlier frames, and the run resumes.

The child processes are told where to stop by a small "attack" description; each attack prints ATTACK
and sleeps at the chosen point, so the kill lands exactly there (the test checks that it did).
"""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import root_for
from PIL import Image

from deforum.errors import DeforumError, MediaError
from deforum.runner import render
from deforum.video import count_video_frames

REPO = Path(__file__).resolve().parents[1]
MAX_FRAMES = 10
ARGS = dict(W=64, H=64, seed=21, steps=4, sampler="euler", scale=7.5)
PROMPTS = {0: "a red apple", 5: "a yellow banana"}

# Runs one render in a child process, with an optional attack that stops it at a chosen point:
#   {"kind": "count"}              print how many UNet calls happen before the first frame is written
#   {"kind": "sampling", "at": n}  stop inside the n-th UNet call (apply_model)
#   {"kind": "write", "at": n}     stop inside the n-th PNG write, after half of the file is in its temp file
RUN_SCRIPT = r"""
import io, json, os, sys, time
args, anim, prompts, root, attack = json.loads(sys.argv[1])
import deforum.models
from PIL import Image

counts = {"apply": 0, "png": 0, "apply_before_png": None}

def stop():
    print("ATTACK", flush=True)
    time.sleep(600)

real_load = deforum.models.load_root_model
def load_root_model(root_ns, **kw):
    model = real_load(root_ns, **kw)
    real_apply = model.apply_model
    def apply_model(*a, **k):
        counts["apply"] += 1
        if attack["kind"] == "sampling" and counts["apply"] == attack["at"]:
            stop()
        return real_apply(*a, **k)
    model.apply_model = apply_model
    return model
deforum.models.load_root_model = load_root_model

real_save = Image.Image.save
def save(self, fp, format=None, **params):
    if format == "PNG" and not isinstance(fp, (str, os.PathLike)):
        counts["png"] += 1
        if counts["apply_before_png"] is None:
            counts["apply_before_png"] = counts["apply"]
        if attack["kind"] == "write" and counts["png"] == attack["at"]:
            buffer = io.BytesIO()
            real_save(self, buffer, format="PNG", **params)
            fp.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            fp.flush()
            stop()
    return real_save(self, fp, format, **params)
Image.Image.save = save

from deforum.runner import render
result = render(args, anim, None, {int(k): v for k, v in prompts.items()}, root, progress=False)
print("TIMESTRING", result.timestring, flush=True)
print("COUNTS", json.dumps(counts), flush=True)
"""

# Encodes the frames of a run into an mp4; with a frame number, stops (ATTACK) before piping that frame.
VIDEO_SCRIPT = r"""
import sys, time
from deforum import video
pattern, mp4, stop_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
real_write = video.Mp4Writer.write
def write(self, frame, name=None):
    if stop_at and self.count == stop_at:
        print("ATTACK", flush=True)
        time.sleep(600)
    return real_write(self, frame, name)
video.Mp4Writer.write = write
video.make_video(pattern, mp4, fps=12)
print("DONE", flush=True)
"""


def run_child(argv: list[str], *, kill_on_attack: bool) -> str:
    """Run a child python; with ``kill_on_attack``, SIGKILL its whole process group (ffmpeg included) as
    soon as it prints ATTACK, and fail if it never does. Returns its stdout."""
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-c", *argv], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    if not kill_on_attack:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        return out
    lines = []
    deadline = time.time() + 300
    while time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.strip() == "ATTACK":
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    _, err = process.communicate()
    assert lines and lines[-1].strip() == "ATTACK", f"the attack point was never reached:\n{''.join(lines)}{err}"
    assert process.returncode == -signal.SIGKILL
    return "".join(lines)


def render_child(settings: list, attack: dict | None = None) -> str:
    return run_child([RUN_SCRIPT, json.dumps([*settings, attack or {"kind": "count"}])],
                     kill_on_attack=attack is not None)


def anim_for(mode: str, cadence: int, **extra) -> dict:
    # 3D without depth warping: the camera still moves in 3D, and no depth model is needed.
    return dict(animation_mode=mode, max_frames=MAX_FRAMES, diffusion_cadence=str(cadence), translation_z="0:(5)",
                translation_x="0:(2)", use_depth_warping=False, **extra)


def run_folder(output: Path) -> Path:
    (folder,) = output.glob("*/StableFun")
    return folder


def frame_names(timestring: str) -> list[str]:
    return [f"{timestring}_{j:05}.png" for j in range(MAX_FRAMES)]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        image.load()  # a truncated PNG fails here
        return np.asarray(image)


def assert_same_frames(folder: Path, timestring: str, reference: dict[str, np.ndarray]) -> None:
    """Exactly the expected frames (none missing, none extra), each decodable and equal bit for bit."""
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert pngs == frame_names(timestring)
    for j, name in enumerate(pngs):
        assert np.array_equal(pixels(folder / name), reference[f"{j:05}"]), name
    assert not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def reference_frames(folder: Path, timestring: str) -> dict[str, np.ndarray]:
    return {name.split("_")[1][:5]: pixels(folder / name) for name in frame_names(timestring)}


@pytest.mark.slow
@pytest.mark.parametrize("mode, cadence, seed", [("2D", 1, 101), ("3D", 3, 202)])
def test_three_kills_in_a_row_then_resume_is_bit_for_bit(tmp_path, tiny, mode, cadence, seed):
    rng = random.Random(seed)
    anim = anim_for(mode, cadence)
    out = render_child([ARGS, anim, PROMPTS, root_for(tiny, tmp_path / "reference")])
    reference_ts = out.split("TIMESTRING")[1].split()[0]
    counts = json.loads(out.split("COUNTS")[1].strip())
    reference = reference_frames(run_folder(tmp_path / "reference"), reference_ts)

    settings = [ARGS, anim, PROMPTS, root_for(tiny, tmp_path / "killed")]
    # 1: inside a UNet call of a later key (frame 0's key is saved, so there is a state to resume), early
    # enough that the two kills after it still find work to stop in
    first_key = counts["apply_before_png"]
    render_child(settings, {"kind": "sampling",
                            "at": rng.randint(first_key + 1, first_key + max(1, (counts["apply"] - first_key) // 3))})
    folder = run_folder(tmp_path / "killed")
    (state,) = folder.glob("*_state")
    timestring = state.name.split("_")[0]
    resumed = [ARGS, dict(anim, resume_from_timestring=True, resume_timestring=timestring), *settings[2:]]
    # 2: inside save_png_atomic, with half a PNG in the temp file
    render_child(resumed, {"kind": "write", "at": rng.randint(1, 2)})
    assert list(folder.glob(f".{timestring}_*.png.tmp")), "the kill did not land inside a frame write"
    # 3: once more, at either point
    third = rng.choice([{"kind": "sampling", "at": rng.randint(1, 2)}, {"kind": "write", "at": 1}])
    render_child(resumed, third)
    for path in folder.glob(f"{timestring}_*.png"):
        pixels(path)  # whatever is under a frame's name is a complete PNG, even right after a kill
    render_child(resumed)
    assert_same_frames(folder, timestring, reference)

    # The video: killed while ffmpeg writes its temp file, the final name never holds a truncated mp4.
    pattern, mp4 = str(folder / f"{timestring}_%05d.png"), folder / f"{timestring}.mp4"
    run_child([VIDEO_SCRIPT, pattern, str(mp4), str(rng.randint(1, MAX_FRAMES - 1))], kill_on_attack=True)
    assert not mp4.exists()
    assert list(folder.glob(f".{timestring}.*.mp4")), "the kill did not land inside the encode"
    run_child([VIDEO_SCRIPT, pattern, str(mp4), "0"], kill_on_attack=False)
    assert count_video_frames(mp4) == MAX_FRAMES
    assert not list(folder.glob(f".{timestring}.*.mp4"))  # the killed encode's temp file is gone


# ------------------------------------------------------------------------------------------ full disk


class DiskFull:
    """Makes the n-th PNG write (``save_png_atomic``) or state write (``np.save``) fail with ENOSPC after
    writing a few bytes, as a full disk does; ``free()`` frees the space again."""

    def __init__(self, monkeypatch, where: str, after: int):
        self.monkeypatch, self.where, self.after, self.calls = monkeypatch, where, after, 0
        if where == "frame":
            real = Image.Image.save

            def save(image, fp, format=None, **params):
                if format == "PNG" and not isinstance(fp, (str, os.PathLike)):
                    self._maybe_fail(fp)
                return real(image, fp, format, **params)

            monkeypatch.setattr(Image.Image, "save", save)
        else:
            real_np_save = np.save

            def np_save(file, array, *args, **kwargs):
                self._maybe_fail(file)
                return real_np_save(file, array, *args, **kwargs)

            monkeypatch.setattr(np, "save", np_save)

    def _maybe_fail(self, stream) -> None:
        self.calls += 1
        if self.calls > self.after:
            stream.write(b"\x89PNG\r\n\x1a\n partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def free(self) -> None:
        self.monkeypatch.undo()


@pytest.mark.slow
@pytest.mark.parametrize("where, after", [("frame", 4), ("state", 5)])
def test_full_disk_is_a_clear_error_and_the_run_resumes(tmp_path, tiny, monkeypatch, where, after):
    anim = anim_for("2D", 1)
    reference = render(ARGS, anim, None, PROMPTS, root_for(tiny, tmp_path / "reference"), progress=False)
    expected = reference_frames(reference.outdir, reference.timestring)

    root = root_for(tiny, tmp_path / "full")
    disk = DiskFull(monkeypatch, where, after)
    with pytest.raises(MediaError, match="no space left on device") as caught:
        render(ARGS, anim, None, PROMPTS, root, progress=False)
    folder = run_folder(tmp_path / "full")
    (state,) = folder.glob("*_state")
    timestring = state.name.split("_")[0]
    message = str(caught.value)
    if where == "frame":
        assert f"{timestring}_{after:05}.png" in message  # the frame that did not fit
    else:
        assert f"{timestring}_state" in message
    written = sorted(p.name for p in folder.glob("*.png"))
    assert written and written == frame_names(timestring)[: len(written)]  # earlier frames, no gap
    for name in written:
        assert np.array_equal(pixels(folder / name), expected[name.split("_")[1][:5]]), name
    assert not list(folder.glob("*.png.tmp"))

    disk.free()
    render(ARGS, dict(anim, resume_from_timestring=True, resume_timestring=timestring), None, PROMPTS, root,
           progress=False)
    assert_same_frames(folder, timestring, expected)


def test_an_unwritable_frame_is_a_media_error_naming_the_file(tmp_path, monkeypatch):
    from deforum.image.io import save_png_atomic

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(Image.Image, "save", refuse)
    target = tmp_path / "20990101000000_00000.png"
    with pytest.raises(MediaError, match="(?i)20990101000000_00000.png.*read-only") as caught:
        save_png_atomic(np.zeros((4, 4, 3), np.uint8), target)
    assert isinstance(caught.value, DeforumError)
    assert list(tmp_path.iterdir()) == []  # no temp file, no partial frame


def test_resume_removes_only_the_runs_own_temp_files(tmp_path):
    from deforum.render.resume import AnimationState, remove_stale_temps, save_state, state_dir

    folder = state_dir(tmp_path, "20990101000000")
    save_state(folder, AnimationState(next_key=1, next_img=np.zeros((2, 2, 3), np.float32)), {})
    ours = [tmp_path / ".20990101000000_00003.ab12cd.png.tmp", tmp_path / ".20990101000000_depth_00003.x.png.tmp",
            folder / "state.json.tmp"]
    others = [tmp_path / ".20990101000001_00003.ab12cd.png.tmp", tmp_path / "notes.tmp"]
    for path in ours + others:
        path.write_bytes(b"partial")
    assert sorted(remove_stale_temps(folder)) == sorted(ours)
    assert all(p.exists() for p in others) and not any(p.exists() for p in ours)


def test_killed_frame_write_never_leaves_a_partial_file_under_the_final_name(tmp_path):
    """The kill inside save_png_atomic, in one process: only the temp file holds the half PNG."""
    code = (
        "import io, os, sys, time\n"
        "import numpy as np\n"
        "from PIL import Image\n"
        "from deforum.image.io import save_png_atomic\n"
        "real = Image.Image.save\n"
        "def save(self, fp, format=None, **kw):\n"
        "    buffer = io.BytesIO(); real(self, buffer, format='PNG')\n"
        "    fp.write(buffer.getvalue()[:50]); fp.flush(); print('ATTACK', flush=True); time.sleep(600)\n"
        "Image.Image.save = save\n"
        "save_png_atomic(np.full((32, 32, 3), 7, np.uint8), sys.argv[1])\n"
    )
    target = tmp_path / "20990101000000_00000.png"
    Image.fromarray(np.full((32, 32, 3), 1, np.uint8)).save(target)  # an older complete frame
    run_child([code, str(target)], kill_on_attack=True)
    assert pixels(target)[0, 0, 0] == 1  # still the old, complete frame
    (temp,) = tmp_path.glob(".20990101000000_00000.*.png.tmp")
    with pytest.raises(OSError):
        pixels(temp)
