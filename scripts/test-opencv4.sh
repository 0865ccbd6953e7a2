#!/usr/bin/env bash
# Run the tests that depend on OpenCV's numerics under OpenCV 4, beside the OpenCV 5 of the environment.
#
#   scripts/test-opencv4.sh [PYTHON] [PYTEST ARGS...]     (PYTHON defaults to .venv/bin/python)
#
# opencv-python-headless 4.14.0.94 is installed once, without dependencies, into .cache/opencv4 (git-ignored)
# and put first on PYTHONPATH, so `import cv2` loads 4.x for this run only; the environment is not changed.
# Colab ships OpenCV 5 (opencv-python) and 4 (opencv-contrib-python) side by side: both must give v0.6's
# pictures. Exit status: pytest's (non-zero on any failure; also when cv2 is not 4.x or nothing ran).
set -uo pipefail
cd "$(dirname "$0")/.."

PYTHON="${1:-.venv/bin/python}"
shift || true
VERSION="4.14.0.94"
TARGET="$PWD/.cache/opencv4"
# Tests whose results depend on cv2 arithmetic: the 2D warp (warpPerspective / remap), colour coherence
# (calcHist, LUT, cvtColor), depth-model input resizing (resize), the 3D warp and noise oracles, and the device
# loop's torch warp and colour match, which must equal cv2's on either version.
TESTS=(tests/test_warp2d.py tests/test_colors.py tests/test_depth.py tests/test_warp3d.py tests/test_noise.py
       tests/test_warp2d_torch.py tests/test_colors_torch.py)

if [ ! -d "$TARGET/opencv_python_headless-$VERSION.dist-info" ]; then
    echo "installing opencv-python-headless==$VERSION into $TARGET" >&2
    "$PYTHON" -m pip install -q --no-deps --upgrade --target "$TARGET" "opencv-python-headless==$VERSION" || exit 1
fi

export PYTHONPATH="$TARGET${PYTHONPATH:+:$PYTHONPATH}"
# The version check and the tests share one process, so the tests are known to run on the cv2 checked.
"$PYTHON" -c '
import sys

import cv2

if not cv2.__version__.startswith("4."):
    sys.exit(f"expected OpenCV 4 from .cache/opencv4, got {cv2.__version__} from {cv2.__file__}")
print(f"OpenCV {cv2.__version__} from {cv2.__file__}", flush=True)

import pytest

status = pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]])
sys.exit(1 if status == 5 else status)  # 5: no tests collected
' "${TESTS[@]}" "$@"
