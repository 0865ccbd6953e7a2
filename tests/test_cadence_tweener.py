"""The cadence seam: the Tweener a run's loop asks for makes every frame between two diffused keys."""

import numpy as np
import pytest
import torch
from PIL import Image

from deforum.plan import cadence_role, make_plan
from deforum.render import animation, cadence, steps
from deforum.render.animation import AnimationLoop
from deforum.settings import RunIdentity
from deforum.testing import settings_for_test

SIZE = 16


@pytest.mark.parametrize("frame, n", [(0, 1), (0, 3), (1, 3), (2, 3), (3, 3), (4, 3), (5, 3), (9, 4), (10, 4),
                                      (11, 4), (7, 8)])
def test_the_v06_tweener_is_the_cross_fade(frame, n):
    rng = np.random.default_rng(frame * 31 + n)
    prev = rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
    next_ = rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)
    role = cadence_role(frame, n)
    tweener = cadence.tweener_for(settings_for_test(diffusion_cadence=str(n), animation_mode="2D"))
    expected = steps.blend(prev if role.blended else None, next_, role.tween)
    assert np.array_equal(tweener(prev, next_, role), expected)
    assert np.array_equal(tweener(None, next_, role), steps.blend(None, next_, role.tween))
    if role.blended:  # a real cross-fade: both keys show
        assert np.allclose(tweener(prev, next_, role), prev * (1 - role.tween) + next_ * role.tween)


def tiny_render(folder, tweener=None):
    settings = settings_for_test(W=64, H=64, seed=5, animation_mode="2D", max_frames=7, diffusion_cadence="3",
                                 translation_x="0:(2)", color_coherence="None", animation_prompts={0: "a"})

    def generate(row, init, strength, mask=None, overlay=None):
        return torch.rand((1, 3, SIZE, SIZE), generator=torch.Generator().manual_seed(row.seed)) * 2 - 1

    loop = AnimationLoop(make_plan(settings, 5), settings, RunIdentity("T", folder, 5), generate, tweener=tweener,
                         background_writes=False)
    return loop.run()


class Recording:
    """A Tweener that paints each frame a flat grey named by its frame and records what it was given."""

    def __init__(self):
        self.calls = []

    def __call__(self, prev, next_, role, values=None):
        assert values is not None  # the loop hands every frame its schedule values
        self.calls.append((role.next_key, role.tween, prev is not None))
        return np.full_like(next_, 10.0 * len(self.calls))


def test_a_custom_tweener_makes_every_written_frame(tmp_path):
    custom = Recording()
    result = tiny_render(tmp_path / "custom", custom)
    # Every one of the 7 frames (keys 0, 3, 6 and the tweens between and after) comes from the Tweener.
    expected_roles = [cadence_role(j, 3) for j in range(7)]
    assert custom.calls == [(r.next_key, r.tween, r.blended) for r in expected_roles]
    for j, path in enumerate(result.frames):
        assert np.all(np.asarray(Image.open(path)) == 10 * (j + 1)), path.name


def test_the_loop_asks_tweener_for_for_its_strategy(tmp_path, monkeypatch):
    custom = Recording()
    asked = []
    monkeypatch.setattr(animation, "tweener_for", lambda settings, device=None: asked.append(settings) or custom)
    tiny_render(tmp_path / "asked")
    assert len(asked) == 1 and asked[0].coherence.diffusion_cadence == 3
    assert len(custom.calls) == 7


def test_the_default_strategy_gives_the_frames_of_the_cross_fade(tmp_path):
    default = tiny_render(tmp_path / "default")
    explicit = tiny_render(tmp_path / "explicit", cadence.crossfade)
    for ours, theirs in zip(default.frames, explicit.frames, strict=True):
        assert np.array_equal(np.asarray(Image.open(ours)), np.asarray(Image.open(theirs)))
