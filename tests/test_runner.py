"""deforum.runner: what it checks before the model loads, and the hooks it gives a display."""

from __future__ import annotations

import pytest
from helpers import root_for
from test_reliability_hostile import ARGS, PROMPTS

from deforum.errors import SettingsError
from deforum.runner import render


def test_prompt_weights_from_the_notebook_cells_are_checked_before_the_model_loads(tmp_path, tiny,
                                                                                  no_model_load):
    """Prompts passed in (the notebook's cells), not from a settings file, get the same check."""
    prompts = {0: "a red apple", 2: "a cat:`__import__('os').getcwd()`"}
    with pytest.raises(SettingsError, match=r"animation_prompts\[2\]"):
        render(ARGS, {"animation_mode": "2D", "max_frames": 3}, None, prompts, root_for(tiny, tmp_path / "out"),
               progress=False)
    assert no_model_load == []


class Recorder:
    """A display that records the runner's hooks in order."""

    def __init__(self):
        self.calls = []

    def plan(self, plan, anim_args=None):
        self.calls.append("plan")

    def generation_started(self):
        self.calls.append("generation_started")

    def frame(self, path, label=None):
        self.calls.append("frame")


def test_the_display_is_told_when_the_model_is_loaded_before_the_first_frame(tmp_path, tiny):
    display = Recorder()
    render(ARGS, {"animation_mode": "2D", "max_frames": 2}, None, PROMPTS, root_for(tiny, tmp_path / "out"),
           progress=False, display=display)
    assert display.calls == ["plan", "generation_started", "frame", "frame"]


def test_the_notes_of_a_settings_file_are_said_once(tmp_path, caplog, no_model_load):
    """The notebook's settings-file override says what was read with v0.6's meaning (here: width as W)."""
    import json

    from deforum.runner import prepare

    path = tmp_path / "runner.txt"
    path.write_text(json.dumps({"width": 640, "height": 448, "animation_mode": "2D", "max_frames": 2}))
    with caplog.at_level("WARNING", logger="deforum.runner"):
        settings = prepare({}, {}, None, {0: "a"}, {"output_path": str(tmp_path)}, settings_file=path).settings
    assert (settings.image.W, settings.image.H) == (640, 448)
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) >= 1 and all(n.startswith(f"{path}: note: ") for n in notes)
    assert any("width" in n for n in notes)


def test_a_missing_lora_file_is_reported_before_the_model_loads(tmp_path, no_model_load):
    from deforum.errors import ModelError
    from deforum.runner import render

    root = {"output_path": str(tmp_path / "out"), "models_path": str(tmp_path / "models"),
            "lora": [{"path": "style.safetensors", "weight": 0.8}]}
    with pytest.raises(ModelError, match="style.safetensors"):
        render({"W": 64, "H": 64}, {"animation_mode": "2D", "max_frames": 2}, None, {0: "a"}, root, progress=False)
    assert no_model_load == []
