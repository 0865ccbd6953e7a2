"""Record tests/data/warp2d_opencv4.npz: cv2.warpPerspective outputs of OpenCV 4 (v0.6's warp arithmetic).

OpenCV 5 interpolates 2D warps differently (see deforum/motion/warp2d.py), so these outputs, recorded once
under OpenCV 4, are what tests/test_warp2d.py holds ``warp_perspective_v4`` to on every OpenCV version.
Run under OpenCV 4 (scripts/test-opencv4.sh installs it into .cache/opencv4):

    PYTHONPATH=.cache/opencv4 .venv/bin/python tools/record_warp2d_opencv4.py
"""

import json
import sys

import cv2
import numpy as np

from deforum.motion.warp2d import warp2d_matrix

HEIGHT, WIDTH = 20, 80  # wider than OpenCV's 64-column blocks, so a block boundary lies inside


def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(23)
    image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[:, ::7] = 255  # sharp edges, where 1/32-pixel rounding shows
    image[::5] = 0
    return {"input": image, "input_f32": (image.astype(np.float32) / 3).astype(np.float32)}


def matrices() -> dict[str, np.ndarray]:
    horizon = np.linalg.inv(np.array([[1.0, 0.1, 2.0], [0.05, 1.0, -3.0], [0.025, 0.001, -1.0]]))
    return {
        "affine": warp2d_matrix(WIDTH, HEIGHT, angle=10, zoom=1.1, translation_x=3.3, translation_y=-2.7),
        "flip": warp2d_matrix(
            WIDTH,
            HEIGHT,
            angle=-4,
            zoom=0.95,
            translation_x=0,
            translation_y=0,
            flip_2d_perspective=True,
            perspective_flip_theta=20,
            perspective_flip_phi=-15,
            perspective_flip_gamma=10,
            perspective_flip_fv=40,
        ),
        # the source's horizon (w = 0) crosses the frame: positions far outside, saturated to int16
        "horizon": horizon,
    }


CASES = [  # (matrix, input, border)
    ("affine", "input", "replicate"),
    ("affine", "input", "wrap"),
    ("affine", "input_f32", "replicate"),
    ("flip", "input", "replicate"),
    ("flip", "input", "wrap"),
    ("flip", "input_f32", "wrap"),
    ("horizon", "input", "replicate"),
    ("horizon", "input", "wrap"),
]
BORDERS = {"wrap": cv2.BORDER_WRAP, "replicate": cv2.BORDER_REPLICATE}


def main() -> None:
    if not cv2.__version__.startswith("4."):
        sys.exit(f"record under OpenCV 4; this is OpenCV {cv2.__version__}")
    images, xforms = inputs(), matrices()
    arrays = dict(images)
    for name, xform in xforms.items():
        arrays[f"xform_{name}"] = xform
    for index, (xform, image, border) in enumerate(CASES):
        arrays[f"out_{index}"] = cv2.warpPerspective(
            images[image], xforms[xform], (WIDTH, HEIGHT), borderMode=BORDERS[border]
        )
    meta = {
        "opencv": cv2.__version__,
        "numpy": np.__version__,
        "cases": [dict(matrix=m, input=i, border=b) for m, i, b in CASES],
    }
    np.savez_compressed("tests/data/warp2d_opencv4.npz", meta_json=json.dumps(meta), **arrays)
    print(f"recorded {len(CASES)} cases with OpenCV {cv2.__version__}")


if __name__ == "__main__":
    main()
