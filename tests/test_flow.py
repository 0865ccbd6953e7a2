"""deforum.motion.flow: optical flow (cv2 methods, RAFT), the warp along it, the forward-backward check."""

import http.server
import threading

import numpy as np
import pytest

from deforum.errors import DeforumError, ModelError, SettingsError
from deforum.motion import flow as flowmod
from deforum.motion.flow import CV2_METHODS, METHODS, consistency_mask, estimate_flow, warp_by_flow
from tests.helpers import shifted, texture

CROP = 16
SHIFTS = [(2.3, -1.6), (0.4, 0.7), (-3.5, 2.25)]






def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def inner(a: np.ndarray) -> np.ndarray:
    return a[CROP:-CROP, CROP:-CROP]


@pytest.mark.parametrize("size", [128, 256])
@pytest.mark.parametrize("method", CV2_METHODS)
def test_cv2_methods_recover_a_sub_pixel_shift_and_warp_back(method, size):
    prev = texture(size, seed=size)
    tolerance = 1.0 if method == "DIS UltraFast" else 0.5
    for dx, dy in SHIFTS:
        nxt = shifted(prev, dx, dy)
        flow = estimate_flow(prev, nxt, method)
        assert flow.shape == (size, size, 2) and flow.dtype == np.float32
        median = np.median(inner(flow).reshape(-1, 2), axis=0)
        assert abs(median[0] - dx) <= tolerance and abs(median[1] - dy) <= tolerance, (method, (dx, dy), median)
        back = warp_by_flow(nxt, flow)
        assert back.shape == prev.shape and back.dtype == np.uint8
        assert psnr(inner(back), inner(prev)) >= 30.0, (method, (dx, dy))


def test_flow_convention_is_cv2s():
    """prev[y, x] ~ next[y + fy, x + fx]: a move right and down is a positive flow, and warping prev the
    other way is worse than the identity."""
    prev = texture(128, seed=3)
    nxt = shifted(prev, 3.0, 2.0)
    flow = estimate_flow(prev, nxt, "DIS Medium")
    assert np.median(flow[..., 0]) > 2.5 and np.median(flow[..., 1]) > 1.5
    assert psnr(inner(warp_by_flow(nxt, flow)), inner(prev)) > psnr(inner(warp_by_flow(nxt, -flow)), inner(prev)) + 10


def test_warp_by_flow_of_a_constant_flow_is_a_translation():
    image = texture(64, seed=4)
    flow = np.zeros((64, 64, 2), np.float32)
    flow[..., 0], flow[..., 1] = 5, -3  # out[y, x] = image[y - 3, x + 5]
    out = warp_by_flow(image, flow)
    np.testing.assert_array_equal(out[3:, :-5], image[:-3, 5:])
    np.testing.assert_array_equal(out[0, :-5], image[0, 5:])  # border replicate above the top row
    assert warp_by_flow(image.astype(np.float32), flow).dtype == np.float32
    with pytest.raises(DeforumError, match="H x W x 2"):
        warp_by_flow(image, flow[:32])


def test_consistency_mask_is_true_for_a_pure_shift():
    prev = texture(128, seed=5)
    nxt = shifted(prev, 1.7, -2.4)
    for method in ("DIS Medium", "Farneback"):
        forward, backward = estimate_flow(prev, nxt, method), estimate_flow(nxt, prev, method)
        assert inner(consistency_mask(forward, backward)).mean() > 0.95, method


def _occlusion_scene(move: int = 10):
    """A textured square on a textured background, moved ``move`` px right between the frames, and where the
    background of prev is covered in next (the occluded strip right of the square)."""
    background, square = texture(128, seed=6), texture(128, seed=7, sigma=1.5)
    y0, y1, x0, x1 = 40, 88, 36, 76
    prev, nxt = background.copy(), background.copy()
    prev[y0:y1, x0:x1] = square[y0:y1, x0:x1]
    nxt[y0:y1, x0 + move:x1 + move] = square[y0:y1, x0:x1]
    occluded = np.zeros((128, 128), bool)
    occluded[y0:y1, x1:x1 + move] = True
    return prev, nxt, occluded, (y0, y1, x0, x1)


def test_consistency_mask_is_false_where_a_region_is_occluded_exact_flows():
    move = 10
    _prev, _next, occluded, (y0, y1, x0, x1) = _occlusion_scene(move)
    forward = np.zeros((128, 128, 2), np.float32)
    forward[y0:y1, x0:x1, 0] = move  # the square moves right; the background stays
    backward = np.zeros((128, 128, 2), np.float32)
    backward[y0:y1, x0 + move:x1 + move, 0] = -move
    mask = consistency_mask(forward, backward)
    assert not mask[occluded].any()
    assert mask[~occluded].all()


@pytest.mark.parametrize("method", ["DIS Medium", "DIS Fine"])
def test_consistency_mask_flags_the_occluded_strip_with_estimated_flows(method):
    move = 8
    prev, nxt, occluded, (y0, y1, x0, x1) = _occlusion_scene(move)
    forward, backward = estimate_flow(prev, nxt, method), estimate_flow(nxt, prev, method)
    mask = consistency_mask(forward, backward)
    far = np.ones_like(occluded)
    far[y0 - 16:y1 + 16, x0 - 16:x1 + move + 16] = False  # background well away from the square
    far[:CROP], far[-CROP:], far[:, :CROP], far[:, -CROP:] = False, False, False, False
    square = np.zeros_like(occluded)
    square[y0 + 4:y1 - 4, x0 + 4:x1 - 4] = True  # the square itself is tracked: consistent
    assert mask[occluded].mean() < 0.35, mask[occluded].mean()
    assert mask[far].mean() > 0.95, mask[far].mean()
    assert mask[square].mean() > 0.9, mask[square].mean()


def test_consistency_mask_is_false_where_the_flow_leaves_the_frame():
    forward = np.zeros((32, 32, 2), np.float32)
    forward[:, :, 0] = 4
    backward = -forward
    mask = consistency_mask(forward, backward)
    assert mask[:, :28].all() and not mask[:, 28:].any()


def test_unknown_method_is_a_settings_error_naming_the_allowed_ones():
    frame = texture(32)
    with pytest.raises(SettingsError) as info:
        estimate_flow(frame, frame, "Lucas-Kanade")
    for name in METHODS:
        assert name in str(info.value)


def test_frames_must_be_rgb_uint8_of_one_size():
    frame = texture(32)
    with pytest.raises(DeforumError, match="differ in size"):
        estimate_flow(frame, texture(64), "DIS Medium")
    with pytest.raises(DeforumError, match="uint8 RGB"):
        estimate_flow(frame.astype(np.float32), frame, "DIS Medium")


# --- RAFT ---------------------------------------------------------------------------------------------------


def test_raft_offline_names_the_file_and_where_to_put_it(tmp_path, monkeypatch):
    # a local fake of download.pytorch.org that refuses connections (nothing listens on the port)
    with socket_closed_port() as port:
        url = f"http://127.0.0.1:{port}/models/raft_small_C_T_V2-01064c6d.pth"
        monkeypatch.setitem(flowmod.RAFT_WEIGHTS, "raft_small", url)
        frame = texture(64)
        with pytest.raises(ModelError) as info:
            estimate_flow(frame, frame, "RAFT", models_path=tmp_path, raft_model="raft_small", device="cpu")
    message = str(info.value)
    assert "raft_small_C_T_V2-01064c6d.pth" in message
    assert "cannot be reached" in message
    assert f"put it at {tmp_path / 'raft_small_C_T_V2-01064c6d.pth'}" in message
    assert url in message
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_raft_unknown_model_is_a_settings_error(tmp_path):
    with pytest.raises(SettingsError, match="raft_large, raft_small"):
        flowmod.raft_weights_file("raft_tiny", tmp_path)


class socket_closed_port:
    """A localhost port with nothing listening on it (bound, then closed)."""

    def __enter__(self) -> int:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        return port

    def __exit__(self, *exc) -> None:
        return None


@pytest.fixture
def random_raft_small(tmp_path):
    """torchvision's raft_small with random weights (weights=None: nothing downloaded), saved as a state dict."""
    torch = pytest.importorskip("torch")
    optical_flow = pytest.importorskip("torchvision.models.optical_flow")
    torch.manual_seed(0)
    model = optical_flow.raft_small(weights=None, progress=False)
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    return path


def _serve(folder):
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_raft_downloads_from_a_local_fake_checks_the_hash_and_returns_an_hxwx2_flow(tmp_path, monkeypatch,
                                                                                   random_raft_small):
    from deforum.models.download import sha256_file

    served = tmp_path / "served"
    served.mkdir()
    name = f"raft_small_C_T_V2-{sha256_file(random_raft_small)[:8]}.pth"
    (served / name).write_bytes(random_raft_small.read_bytes())
    server = _serve(served)
    try:
        monkeypatch.setitem(flowmod.RAFT_WEIGHTS, "raft_small", f"http://127.0.0.1:{server.server_port}/{name}")
        models = tmp_path / "models"
        prev = texture(100, seed=8)  # not a multiple of 8, under RAFT's 128: padded and cropped back
        nxt = shifted(prev, 1.5, -0.5)
        flow = estimate_flow(prev, nxt, "RAFT", models_path=models, raft_model="raft_small", device="cpu")
    finally:
        server.shutdown()
    assert (models / name).is_file()
    assert flow.shape == (100, 100, 2) and flow.dtype == np.float32 and np.isfinite(flow).all()
    # the same flow the torchvision module gives for the padded pair, x then y in the last axis
    torch = pytest.importorskip("torch")
    model = flowmod.load_raft("raft_small", models, "cpu")

    def t(frame):
        x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 127.5 - 1.0
        return torch.nn.functional.pad(x, (0, 28, 0, 28), mode="replicate")

    with torch.inference_mode():
        direct = model(t(prev), t(nxt), num_flow_updates=12)[-1][0, :, :100, :100]
    np.testing.assert_allclose(flow, direct.permute(1, 2, 0).numpy(), atol=1e-4)
    assert warp_by_flow(nxt, flow).shape == prev.shape


def test_raft_download_with_the_wrong_hash_is_deleted(tmp_path, monkeypatch, random_raft_small):
    served = tmp_path / "served"
    served.mkdir()
    name = "raft_small_C_T_V2-00000000.pth"
    (served / name).write_bytes(random_raft_small.read_bytes())
    server = _serve(served)
    try:
        monkeypatch.setitem(flowmod.RAFT_WEIGHTS, "raft_small", f"http://127.0.0.1:{server.server_port}/{name}")
        with pytest.raises(ModelError, match="sha256"):
            flowmod.download_raft("raft_small", tmp_path / "models")
    finally:
        server.shutdown()
    assert not (tmp_path / "models" / name).exists()


def test_raft_weights_present_in_models_path_are_used_without_a_download(tmp_path, monkeypatch, random_raft_small):
    models = tmp_path / "models"
    models.mkdir()
    dest = flowmod.raft_weights_file("raft_small", models)
    dest.write_bytes(random_raft_small.read_bytes())
    monkeypatch.setattr(flowmod, "_download", lambda *a: pytest.fail("downloaded although the file is there"))
    frame = texture(128, seed=9)
    flow = estimate_flow(frame, frame, "RAFT", models_path=models, raft_model="raft_small", device="cpu")
    assert flow.shape == (128, 128, 2)


def test_raft_without_torchvision_says_how_to_install_it(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torchvision(name, *args, **kwargs):
        if name.startswith("torchvision"):
            raise ImportError("No module named 'torchvision'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchvision)
    frame = texture(32)
    with pytest.raises(DeforumError, match="pip install torchvision"):
        estimate_flow(frame, frame, "RAFT", models_path=tmp_path)
