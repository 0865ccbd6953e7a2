"""Settings files from strangers (issue 10, part 3): only DeforumErrors, no code, bounded cost, no writes
outside the output folder. The schedule parser's own fuzzing and payload tables are in test_keyframes.py.
"""

import json
import math
import signal
import tracemalloc
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deforum import settings as A
from deforum.errors import DeforumError, SettingsError
from deforum.keyframes import MAX_SCHEDULE_LENGTH
from deforum.render.inputs import read_inputs
from deforum.render.stills import render_image_batch
from deforum.runner import prepare, render
from deforum.settings import META_KEYS, apply_settings, load_settings

FIELD_NAMES = sorted(set(A.FIELDS["args"]) | set(A.FIELDS["anim_args"]) | set(META_KEYS))


class hang_guard:
    """Fail (instead of hanging the suite) if a block runs for more than ``seconds``: a guard, not a timing."""

    def __init__(self, seconds: int = 20):
        self.seconds = seconds

    def _fire(self, signum, frame):
        raise AssertionError(f"a settings case did not finish within {self.seconds} s")

    def __enter__(self):
        self.previous = signal.signal(signal.SIGALRM, self._fire)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)


def hostile_strings(sentinel: Path) -> list[str]:
    touch = f"open('{sentinel}', 'w').write('x')"
    return [
        f"__import__('os').system('touch {sentinel}')",
        f"0:(__import__('os').system('touch {sentinel}'))",
        f"0:(exec(\"{touch}\"))",
        f"0:(eval(\"{touch}\"))",
        f"0:((lambda: {touch})())",
        "0:(().__class__.__bases__[0].__subclasses__())",
        "0:(t.__class__)",
        "0:(9**9**9**9)",
        "0:(10**10**10)",
        "0:(" + "(" * 5000 + "t" + ")" * 5000 + ")",
        "0:(" + "t+" * 5000 + "t)",
        "0:(0), " * (MAX_SCHEDULE_LENGTH // 7 + 1),  # past the length limit (megabytes)
        "{__import__('os').system('touch " + str(sentinel) + "')}",
        "${HOME}/../../etc/passwd",
        "../../../../tmp/escape",
        "/etc/passwd",
        "x" * 100_000,
    ]


def json_values(sentinel: Path):
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.integers(-(10**30), 10**30),
        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
        st.sampled_from(hostile_strings(sentinel)),
        st.sampled_from(["0:(1)", "0:(1.04), 10:(0.5)", "2D", "3D", "None", "Video Input", "Interpolation",
                         "euler", "ddim", "klms", "Match Frame 0 LAB", "replicate", "custom", "0:(t%5)"]),
    )
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=8)


def settings_objects(sentinel: Path):
    keys = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=20))
    return st.dictionaries(keys, json_values(sentinel), max_size=12)


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                     HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_settings_give_settings_or_a_deforum_error(tmp_path_factory, data):
    sentinel = tmp_path_factory.getbasetemp() / "settings-sentinel"
    obj = data.draw(settings_objects(sentinel))
    try:
        with hang_guard(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = apply_settings(A.defaults("args"), A.defaults("anim_args"), obj, check=True)
    except DeforumError:
        return
    finally:
        assert not sentinel.exists()
    # The only warning is the one line naming the file's unknown keys (or, in an A1111 file, the keys with no
    # meaning here), and only when it has some.
    ignored = loaded.dialect is not None and bool(loaded.dialect.ignored)
    assert [str(w.message).split(":")[0] for w in caught] == (["settings"] if loaded.unknown_keys or ignored else [])
    assert all(w.category is UserWarning and ("unknown key" in str(w.message) or "ignoring" in str(w.message))
               for w in caught)
    # What was accepted is usable: it resolves, and the run's folder stays inside output_path.
    resolved = A.resolve(loaded.args, loaded.anim_args, {"output_path": str(tmp_path_factory.getbasetemp())})
    outdir = A.identify(resolved).outdir
    assert outdir.resolve().is_relative_to(tmp_path_factory.getbasetemp().resolve())


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin1")),
                      st.sampled_from(["", "{", "[]", "null", "1e999999", '{"W": 1e999999}', "NaN",
                                       '{"max_frames": Infinity}', "{" * 100_000, "[" * 100_000,
                                       '{"a": ' * 50_000 + "1" + "}" * 50_000])))
def test_fuzzed_settings_files_give_settings_or_a_settings_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("file") / "settings.txt"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            loaded = load_settings(path)
        except DeforumError:
            loaded = None
    # The only warning is the one line naming the file's unknown keys, and only when it has some.
    assert len(caught) == (1 if loaded is not None and loaded.unknown_keys else 0)
    assert all(w.category is UserWarning and "unknown key" in str(w.message) for w in caught)


@pytest.mark.parametrize("field, value", [
    ("max_frames", 10**9), ("max_frames", 10**18), ("max_frames", 2**64), ("max_frames", -1),
    ("max_frames", 1e300), ("max_frames", "1000000000"),
])
@pytest.mark.parametrize("mode", ["2D", "3D", "Interpolation"])  # Video Input takes the video's count: test_dialects
def test_absurd_frame_counts_are_refused_up_front(tmp_path, field, value, mode):
    path = tmp_path / "s.txt"
    path.write_text(json.dumps({"animation_mode": mode, field: value}))
    tracemalloc.start()
    try:
        with pytest.raises(SettingsError, match=field):
            load_settings(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20  # nothing sized by the frame count was allocated


def test_a_huge_frame_count_is_refused_before_the_model_loads(tmp_path):
    root = {"output_path": str(tmp_path / "out"), "model_checkpoint": "custom",
            "custom_checkpoint_path": str(tmp_path / "would-fail-if-loaded.ckpt")}
    with pytest.raises(SettingsError, match="max_frames"):
        render({}, {"animation_mode": "3D", "max_frames": 10**9}, None, {0: "a"}, root, progress=False)
    assert not (tmp_path / "out").exists()


ABSURD_SIZES = [
    ({"W": 131072, "H": 131072}, "W"), ({"W": 10**12}, "W"), ({"n_batch": 10**9}, "n_batch"),
    ({"steps": 10**9}, "steps"), ({"grid_rows": 10**18}, "grid_rows"), ({"cutn": 10**9}, "cutn"),
    ({"colormatch_n_colors": 10**9}, "colormatch_n_colors"), ({"mask_overlay_blur": 1e300}, "mask_overlay_blur"),
    ({"animation_mode": "Interpolation", "interpolate_x_frames": 10**9}, "interpolate_x_frames"),
    ({"animation_mode": "Video Input", "extract_nth_frame": 10**9}, "extract_nth_frame"),
    ({"make_grid": True, "n_batch": 5000, "W": 2048, "H": 2048}, "n_batch"),
    ({"batch_name": "x" * 10_000}, "batch_name"), ({"grad_inject_timing": list(range(1, 10**5))}, "grad_inject_timing"),
]


@pytest.mark.parametrize("values, field", ABSURD_SIZES)
def test_absurd_sizes_and_counts_are_refused_up_front(tmp_path, values, field):
    """Issue 25 class 4: every size and count has an upper bound, checked before anything is allocated."""
    path = tmp_path / "s.txt"
    path.write_text(json.dumps(values))
    tracemalloc.start()
    try:
        with pytest.raises(SettingsError) as info:
            load_settings(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [p for p in info.value.problems if p.startswith(f"{field}=")]
    assert peak < 20 * 2**20


@pytest.mark.parametrize("values, field", [ABSURD_SIZES[0], ABSURD_SIZES[2], ABSURD_SIZES[8], ABSURD_SIZES[10]])
def test_absurd_sizes_are_refused_before_the_model_loads(tmp_path, values, field):
    root = {"output_path": str(tmp_path / "out"), "model_checkpoint": "custom",
            "custom_checkpoint_path": str(tmp_path / "would-fail-if-loaded.ckpt")}
    args = {k: v for k, v in values.items() if k in A.FIELDS["args"]}
    anim = {k: v for k, v in values.items() if k in A.FIELDS["anim_args"]}
    with pytest.raises(SettingsError, match=field):
        render(args, anim, ["a"], {0: "a", 5: "b"}, root, progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("index", range(len(hostile_strings(Path("x")))))
@pytest.mark.parametrize("field", ["translation_z", "strength_schedule", "noise_schedule"])
def test_hostile_schedules_in_a_file_are_refused_in_bounded_time(tmp_path, index, field):
    sentinel = tmp_path / "sentinel"
    text = hostile_strings(sentinel)[index]
    path = tmp_path / "s.txt"
    path.write_text(json.dumps({"animation_mode": "3D", "max_frames": 100, field: text}))
    with hang_guard(), pytest.raises(SettingsError, match=field):
        load_settings(path)
    assert not sentinel.exists()


@pytest.mark.parametrize("field, value", [
    ("batch_name", "../escape"), ("batch_name", "../../../../tmp/escape"), ("batch_name", "/tmp/escape"),
    ("batch_name", "a/b"), ("batch_name", ".."), ("batch_name", "a\\..\\b"), ("batch_name", "C:\\temp"),
    ("batch_name", "ok\x00.png"), ("filename_format", "../{timestring}_{index}.png"),
    ("filename_format", "/tmp/{timestring}.png"), ("filename_format", "{timestring}/{index}.png"),
    ("filename_format", ".."), ("filename_format", "a\\b.png"),
])
def test_output_names_from_a_file_cannot_be_paths(tmp_path, field, value):
    path = tmp_path / "s.txt"
    path.write_text(json.dumps({field: value}))
    with pytest.raises(SettingsError, match=field):
        load_settings(path)


@pytest.mark.parametrize("value", ["../../../../etc", "2024/01/01", "20240101000000; rm -rf /", "0" * 13])
def test_resume_timestring_from_a_file_must_be_a_timestring(tmp_path, value):
    path = tmp_path / "s.txt"
    path.write_text(json.dumps({"animation_mode": "2D", "resume_from_timestring": True,
                                "resume_timestring": value}))
    with pytest.raises(SettingsError, match="resume_timestring"):
        load_settings(path)


class fake_generator:
    """A generator stand-in: a grey image of the requested size (no diffusion needed for file names)."""

    @staticmethod
    def generate(request):
        return torch.zeros(1, 3, request.H, request.W)


def test_a_hostile_file_writes_only_inside_the_output_folder(tmp_path):
    """End to end (settings file -> validation -> finalize -> None-mode writer): prompts with path
    characters, an outdir and a root output_path from the file, and a foreign timestring all stay out."""
    elsewhere = tmp_path / "elsewhere"
    prompts = ["../../../../elsewhere/evil", "/etc/passwd", "a\\..\\..\\b", "..", "x" * 400 + "/../y"]
    data = {"W": 64, "H": 64, "steps": 1, "n_batch": 1, "batch_name": "mine", "animation_mode": "None",
            "outdir": str(elsewhere), "root": {"output_path": str(elsewhere)}, "timestring": "19990101000000",
            "filename_format": "{timestring}_{index}_{prompt}.png", "make_grid": True, "batch_prompts": prompts}
    path = tmp_path / "settings.txt"
    path.write_text(json.dumps(data))
    output = tmp_path / "output"
    prepared = prepare({}, {}, None, None, {"output_path": str(output)}, settings_file=path)
    assert list(prepared.settings.prompts.prompts) == prompts
    written = render_image_batch(prepared.settings, prepared.identity, fake_generator,
                                 read_inputs(prepared.settings))
    assert len([p for p in written if p.suffix == ".png"]) == 2 * len(prompts)  # an image and a grid each
    outdir = Path(prepared.identity.outdir).resolve()
    assert outdir.is_relative_to(output.resolve()) and outdir.name == "mine"
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != path]
    assert files and all(p.resolve().parent == outdir for p in files), files
    assert not elsewhere.exists()


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("field", ["scale", "strength", "ddim_eta", "fov", "near_plane"])
def test_non_finite_numbers_are_refused(tmp_path, field, value):
    path = tmp_path / "s.txt"
    path.write_text(json.dumps({field: value}))  # json writes Infinity / NaN, and json.loads reads them
    with pytest.raises(SettingsError, match=field):
        load_settings(path)
