"""Time to evaluate the 15 default v0.6 schedules for 10,000 frames: ours vs a v0.6-like per-frame loop.

    python bench/keyframes.py [max_frames]

"ours" is deforum.keyframes.parse_schedules (tokenizer, checks, one numexpr call per expression key).
The baseline does what v0.6's get_inbetweens did, without pandas: for every frame it calls
numexpr.evaluate on the current expression key with t = that frame (a Python int), stores plain-number
keys at their frame, then fills the gaps by linear interpolation with numpy.interp. Keys are split with
our parse_keyframes, so the baseline's parsing cost is not counted.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numexpr
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deforum import keyframes  # noqa: E402
from deforum.keyframes import SCHEDULE_FIELDS, is_number, parse_keyframes, parse_schedules  # noqa: E402

# v0.6 DeforumAnimArgs defaults (spec §1.1).
DEFAULTS = {
    "angle": "0:(0)",
    "zoom": "0:(1.04)",
    "translation_x": "0:(10*sin(2*3.14*t/10))",
    "translation_y": "0:(0)",
    "translation_z": "0:(10)",
    "rotation_3d_x": "0:(0)",
    "rotation_3d_y": "0:(0)",
    "rotation_3d_z": "0:(0)",
    "perspective_flip_theta": "0:(0)",
    "perspective_flip_phi": "0:(t%15)",
    "perspective_flip_gamma": "0:(0)",
    "perspective_flip_fv": "0:(53)",
    "noise_schedule": "0: (0.02)",
    "strength_schedule": "0: (0.65)",
    "contrast_schedule": "0: (1.0)",
}


def v06_like(text: str, max_frames: int) -> np.ndarray:
    """Per-frame evaluation as in v0.6 (numexpr once per frame for expression keys)."""
    keys = {key.frame: key.value for key in parse_keyframes(text)}
    values = np.full(max_frames, np.nan)
    expression = None
    for frame in range(max_frames):
        if frame in keys:
            value = keys[frame]
            expression = None if is_number(value) else value
            if expression is None:
                values[frame] = float(value)
        if expression is not None:
            values[frame] = numexpr.evaluate(expression, local_dict={"t": frame}, global_dict={})
    defined = np.flatnonzero(~np.isnan(values))
    return np.interp(np.arange(max_frames), defined, values[defined])


def best_of(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    max_frames = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    ours = parse_schedules(DEFAULTS, max_frames)
    baseline = {name: v06_like(DEFAULTS[name], max_frames) for name in SCHEDULE_FIELDS}
    worst = max(float(np.max(np.abs(ours[n] - baseline[n]))) for n in SCHEDULE_FIELDS)

    ours_s = best_of(lambda: parse_schedules(DEFAULTS, max_frames), 7)

    def cold() -> None:  # without the cache of checked expressions
        keyframes._checked.cache_clear()
        parse_schedules(DEFAULTS, max_frames)

    cold_s = best_of(cold, 7)
    base_s = best_of(lambda: [v06_like(DEFAULTS[n], max_frames) for n in SCHEDULE_FIELDS], 3)

    print(f"machine  : {platform.machine()} {platform.processor() or ''} {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")
    print(f"versions : numpy {np.__version__}, numexpr {numexpr.__version__} "
          f"({numexpr.get_num_threads()} threads)")
    print(f"workload : the 15 default v0.6 schedules, {max_frames} frames; "
          f"max |ours - baseline| = {worst:.3g}")
    print()
    print(f"| {'method':<44} | {'time (ms)':>10} |")
    print(f"|{'-' * 46}|{'-' * 12}|")
    print(f"| {'ours: parse_schedules (vectorised numexpr)':<44} | {ours_s * 1e3:>10.2f} |")
    print(f"| {'ours, expression cache cleared each run':<44} | {cold_s * 1e3:>10.2f} |")
    print(f"| {'v0.6-like: numexpr per frame + np.interp':<44} | {base_s * 1e3:>10.2f} |")
    print(f"| {'speed-up':<44} | {base_s / ours_s:>9.0f}x |")


if __name__ == "__main__":
    main()
