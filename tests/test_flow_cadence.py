"""Optical-flow cadence: the FlowTweener moves both keys along their flow, so a moving thing is shown once, in
between, where a cross-fade shows it twice, half faded; and the preview shows it without a model."""

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from deforum.errors import ModelError
from deforum.motion.flow import flow_tween, sampling_map, warp_by_flow
from deforum.plan import CadenceRole, make_plan
from deforum.render import cadence
from deforum.render import preview as preview_module
from deforum.render.animation import AnimationLoop
from deforum.render.cadence import FlowTweener, tweener_for
from deforum.render.preview import preview_frames
from deforum.settings import RunIdentity
from deforum.testing import settings_for_test

SIZE, SQUARE, BRIGHT = 64, 12, 230.0
X0, Y0, SPEED = 10, 26, 2  # the square's left edge is at X0 + SPEED * frame
CADENCE, FRAMES = 3, 10


def background(seed: int = 0) -> np.ndarray:
    """A dark, smooth random texture (0..60): the flow of a still background is found as zero."""
    noise = cv2.GaussianBlur(np.random.default_rng(seed).random((SIZE, SIZE, 3)).astype(np.float32), (0, 0), 1.0)
    return (noise - noise.min()) / (noise.max() - noise.min()) * 60.0


BACKGROUND = background()


def scene(x: int) -> np.ndarray:
    """The bright square with its left edge at column ``x`` on the background (float32 0..255)."""
    image = BACKGROUND.copy()
    image[Y0:Y0 + SQUARE, x:x + SQUARE] = BRIGHT
    return image.astype(np.float32)


def bright(image: np.ndarray) -> tuple[int, float]:
    """(pixels at the square's full brightness, the mean column of those pixels)."""
    xs = np.nonzero(np.asarray(image, np.float32).mean(axis=2) > 0.85 * BRIGHT)[1]
    return int(xs.size), float(xs.mean()) if xs.size else float("nan")


def shows_one_square_at(image: np.ndarray, left: float) -> bool:
    """One whole square (its area, within 10 %) centred within 1.5 px of a square whose left edge is ``left``."""
    area, centre = bright(image)
    return abs(area - SQUARE * SQUARE) <= 0.1 * SQUARE * SQUARE and abs(centre - (left + (SQUARE - 1) / 2)) <= 1.5


def moving_square_render(folder, **overrides):
    """A 2D render without camera motion whose fake model draws the square where it is at each key frame."""
    settings = settings_for_test(W=SIZE, H=SIZE, seed=5, animation_mode="2D", max_frames=FRAMES,
                                 diffusion_cadence=str(CADENCE), translation_x="0:(0)", color_coherence="None",
                                 animation_prompts={0: "a"}, **overrides)

    def generate(row, init, strength, mask=None, overlay=None):
        image = torch.from_numpy(scene(X0 + SPEED * row.frame) / 127.5 - 1.0)
        return image.permute(2, 0, 1)[None]

    plan = make_plan(settings, 5)
    loop = AnimationLoop(plan, settings, RunIdentity("T", folder, 5), generate, background_writes=False)
    return plan, loop.tweener, loop.run()


def expected_left(role: CadenceRole) -> float:
    """Where the motion puts the square in a frame: ``tween`` of the way from the older key to the newer."""
    x_prev, x_next = X0 + SPEED * role.prev_key, X0 + SPEED * role.next_key
    return x_prev + role.tween * (x_next - x_prev)


def read(path) -> np.ndarray:
    return np.asarray(Image.open(path), np.float32)


@pytest.mark.parametrize("method", ["DIS Medium", "Farneback"])
def test_flow_cadence_shows_the_square_once_where_the_motion_puts_it(tmp_path, method):
    plan, tweener, flow = moving_square_render(tmp_path / "flow", optical_flow_cadence=method)
    assert isinstance(tweener, FlowTweener) and tweener.method == method
    _, plain_tweener, plain = moving_square_render(tmp_path / "plain")
    assert plain_tweener is cadence.crossfade
    assert len(flow.frames) == len(plain.frames) == FRAMES and all(p.is_file() for p in flow.frames)
    blended = [row for row in plan.rows if row.cadence.blended]
    assert [row.frame for row in blended] == [3, 4, 6, 7, 9]
    for row in blended:
        left = expected_left(row.cadence)
        frame = read(flow.frames[row.frame])
        assert shows_one_square_at(frame, left), (row.frame, bright(frame))
        # the cross-fade shows two half squares: the same check fails, so this test needs the flow
        assert not shows_one_square_at(read(plain.frames[row.frame]), left), row.frame
    for row in plan.rows:  # a frame that shows one key alone is that key, as in the cross-fade
        if not row.cadence.blended:
            assert np.array_equal(read(flow.frames[row.frame]), read(plain.frames[row.frame])), row.frame


def test_a_flow_factor_of_zero_is_the_cross_fade(tmp_path):
    _, tweener, still = moving_square_render(tmp_path / "f0", optical_flow_cadence="DIS Medium",
                                             cadence_flow_factor_schedule="0:(0)")
    assert isinstance(tweener, FlowTweener)
    _, _, plain = moving_square_render(tmp_path / "plain")
    assert len(still.frames) == len(plain.frames) == FRAMES
    for ours, theirs in zip(still.frames, plain.frames, strict=True):
        assert np.array_equal(read(ours), read(theirs)), ours.name


def test_the_flow_factor_scales_how_far_the_square_moves(tmp_path):
    plan, _, half = moving_square_render(tmp_path / "half", optical_flow_cadence="DIS Medium",
                                         cadence_flow_factor_schedule="0:(0.5)")
    row = plan.rows[4]  # tween 2/3 from key 0 (x = 10) to key 3 (x = 16)
    frame = read(half.frames[4])
    # prev moved 1/3 of the way (to 12), next moved back 1/6 (to 15): two squares, neither where factor 1 puts it
    assert not shows_one_square_at(frame, expected_left(row.cadence))
    assert bright(frame)[0] < SQUARE * SQUARE


def test_tweener_for_picks_the_flow_only_with_a_cadence():
    assert tweener_for(settings_for_test(animation_mode="2D", diffusion_cadence="3")) is cadence.crossfade
    assert tweener_for(settings_for_test(animation_mode="2D", diffusion_cadence="1",
                                         optical_flow_cadence="DIS Fine")) is cadence.crossfade
    chosen = tweener_for(settings_for_test(animation_mode="2D", diffusion_cadence="2", optical_flow_cadence="RAFT",
                                           models_path="/weights"))
    assert chosen == FlowTweener("RAFT", "/weights")


def test_raft_cadence_reads_its_weights_from_models_path(tmp_path):
    """RAFT (random weights, nothing downloaded): the tweener passes models_path and the device to the flow."""
    optical_flow = pytest.importorskip("torchvision.models.optical_flow")
    from deforum.motion.flow import raft_weights_file

    torch.manual_seed(0)
    torch.save(optical_flow.raft_small(weights=None, progress=False).state_dict(),
               raft_weights_file("raft_large", tmp_path).with_name("small.pth"))
    # the file name RAFT looks for holds raft_small's weights: load_raft would refuse them for raft_large
    tweener = tweener_for(settings_for_test(animation_mode="2D", diffusion_cadence="3", optical_flow_cadence="RAFT",
                                            models_path=str(tmp_path)), device="cpu")
    assert tweener == FlowTweener("RAFT", str(tmp_path), "cpu")
    (tmp_path / "small.pth").rename(raft_weights_file("raft_large", tmp_path))
    with pytest.raises(ModelError, match=str(tmp_path)):
        tweener(scene(X0), scene(X0 + 6), CadenceRole(diffused=False, next_key=3, prev_key=0, tween=1 / 3))


# --- the sign convention, with exact flows ----------------------------------------------------------------


def exact_square_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The true flow between two frames of ``scene``: the square's move on its pixels of ``a``, 0 elsewhere."""
    xa, xb = (int(np.flatnonzero(f[Y0].mean(axis=1) > 0.85 * BRIGHT)[0]) for f in (a, b))
    flow = np.zeros((SIZE, SIZE, 2), np.float32)
    flow[Y0:Y0 + SQUARE, xa:xa + SQUARE, 0] = xb - xa
    return flow


@pytest.mark.parametrize("tween", [1 / 3, 1 / 2, 2 / 3])
def test_flow_tween_moves_prev_forward_and_next_back_by_the_tween(tween):
    """F = flow(prev, next): prev[p] ~ next[p + F(p)]. With exact flows the frame at ``tween`` is the scene with the
    square at x_prev + tween * d, exactly (both moved keys agree), and a cross-fade is not."""
    move = 6
    prev, nxt = scene(X0), scene(X0 + move)
    out = flow_tween(prev, nxt, tween, 1.0, exact_square_flow)
    left = X0 + tween * move
    assert shows_one_square_at(out, left), bright(out)
    if float(left).is_integer():  # exact: the square, and all the background that is seen in both keys
        truth, band = scene(int(left)), slice(Y0, Y0 + SQUARE)
        np.testing.assert_allclose(out[band, int(left):int(left) + SQUARE], truth[band, int(left):int(left) + SQUARE])
        outside = np.ones((SIZE, SIZE), bool)
        outside[band, X0:X0 + move + SQUARE] = False  # where the square covers or uncovers background
        np.testing.assert_allclose(out[outside], truth[outside], atol=1e-3)
    assert not shows_one_square_at(prev * (1 - tween) + nxt * tween, left)
    np.testing.assert_array_equal(flow_tween(prev, nxt, 1.0, 1.0, exact_square_flow), nxt)
    np.testing.assert_array_equal(flow_tween(prev, nxt, tween, 0.0, exact_square_flow),
                                  prev * (1 - tween) + nxt * tween)


def test_the_moving_square_covers_the_background_it_moves_over():
    """Each pixel moves by the flow where it starts: sampling the flow where it lands would leave the square's
    leading strip behind (a shrunken square); the background it uncovers comes from beside it."""
    move, amount = 6, 0.5
    prev = scene(X0)
    flow = exact_square_flow(prev, scene(X0 + move))
    landed = warp_by_flow(prev, sampling_map(flow, amount))
    assert shows_one_square_at(landed, X0 + amount * move)
    np.testing.assert_allclose(landed[Y0:Y0 + SQUARE, X0:X0 + 3], BACKGROUND[Y0:Y0 + SQUARE, X0 - 3:X0], atol=1e-3)
    naive = warp_by_flow(prev, -amount * flow)
    assert bright(naive)[0] == SQUARE * (SQUARE - 3)  # the read-where-it-lands map loses the 3 px leading strip


def test_the_flow_tweener_leaves_unblended_frames_to_the_cross_fade_and_its_arguments_alone():
    tweener = FlowTweener("DIS Medium")
    prev, nxt = scene(X0), scene(X0 + 6)
    before = prev.copy(), nxt.copy()
    alone = CadenceRole(diffused=False, next_key=3, prev_key=None, tween=2 / 3)
    np.testing.assert_array_equal(tweener(None, nxt, alone), nxt)
    tweener(prev, nxt, CadenceRole(diffused=False, next_key=3, prev_key=0, tween=2 / 3))
    np.testing.assert_array_equal(prev, before[0])
    np.testing.assert_array_equal(nxt, before[1])


# --- the preview ---------------------------------------------------------------------------------------------


def preview(**overrides):
    settings = settings_for_test(W=SIZE, H=SIZE, animation_mode="2D", max_frames=FRAMES,
                                 diffusion_cadence=str(CADENCE), translation_x="0:(2)", **overrides)
    plan = make_plan(settings, 5)
    return plan, [frame.copy() for frame in preview_frames(preview_module.test_card(SIZE, SIZE), plan, settings)]


def psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def test_the_preview_makes_the_in_between_frames_along_the_flow_between_keys():
    plan, plain = preview()
    _, flow = preview(optical_flow_cadence="DIS Medium")
    assert len(flow) == len(plain) == FRAMES
    keys = range(0, FRAMES, CADENCE)
    last_key = max(keys)
    inner = (slice(8, -8), slice(8, -8))  # what moved in from the border is not between the keys
    for j in range(FRAMES):
        if j % CADENCE == 0 or j > last_key:  # the keys, and the tail after the last key: the warped card
            np.testing.assert_array_equal(flow[j], plain[j], err_msg=f"frame {j}")
            continue
        before, after = (j // CADENCE) * CADENCE, (j // CADENCE + 1) * CADENCE
        tween = (j - before) / CADENCE
        faded = plain[before] * (1 - tween) + plain[after] * tween
        assert not np.array_equal(flow[j], plain[j]), j  # made from the keys, not warped
        # the flow puts the card where the camera has it at j; the cross-fade of the keys shows it twice
        assert psnr(flow[j][inner], plain[j][inner]) > psnr(faded[inner], plain[j][inner]) + 10, j
        assert psnr(flow[j][inner], plain[j][inner]) > 30, j


def test_sampling_map_follows_its_definition_pixel_by_pixel():
    """Each pixel lands at round(p + amount * flow(p)); where several land on one pixel the smallest error wins
    (ties: the first pixel); where none lands the pixel's own flow is used. Checked against a plain loop."""
    rng = np.random.default_rng(4)
    h, w, amount = 7, 9, 0.7
    flow = rng.uniform(-3, 3, (h, w, 2)).astype(np.float32)
    error = rng.choice([0.0, 0.5, 1.0, np.inf], (h, w)).astype(np.float32)  # many ties and collisions
    expected = -(amount * flow).astype(np.float32)
    best = {}
    for y in range(h):
        for x in range(w):
            mx, my = (amount * flow[y, x]).astype(np.float32)
            tx, ty = np.rint(np.float32(x) + mx), np.rint(np.float32(y) + my)
            if 0 <= tx < w and 0 <= ty < h:
                key = (int(ty), int(tx))
                if key not in best or error[y, x] < best[key][0]:
                    best[key] = (error[y, x], (y, x))
    for (ty, tx), (_, (y, x)) in best.items():
        expected[ty, tx] = -(amount * flow[y, x]).astype(np.float32)
    np.testing.assert_array_equal(sampling_map(flow, amount, error), expected)
