#!/usr/bin/env bash
# The Colab-stack job: the test suite on Google Colab's runtime (constraints/colab.txt, Python 3.13), with
# deforum installed the way the notebook's Setup cell installs it, and a check that the install changed no
# package of the runtime. Run by .ci/run after the README's test command; extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-colab

find_python313() {
    local candidate
    for candidate in "${PYTHON313:-}" python3.13 "$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3.13; do
        if [ -n "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' \
            2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

PY=$(find_python313) || {
    echo "test-colab: Python 3.13 (Colab's) was not found: put python3.13 on PATH, install it with" \
        "'pyenv install 3.13', or set PYTHON313=/path/to/python3.13" >&2
    exit 1
}
echo "test-colab: $("$PY" --version) at $PY"
rm -rf "$VENV"
"$PY" -m venv "$VENV" || exit 1
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)

# 1. Colab's runtime. All three OpenCV distributions share the cv2/ files; the headless 5.x goes in last so
#    cv2 is OpenCV 5, as the Colab runtime loads it.
"${pip[@]}" install -q -r constraints/colab.txt || exit 1
headless=$(grep -E '^opencv-python-headless==' constraints/colab.txt)
"${pip[@]}" install -q --force-reinstall --no-deps "$headless" || exit 1
# The test tools of the test extra, held to the runtime's versions.
mapfile -t test_tools < <("$VENV/bin/python" -c 'import tomllib
for r in tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["test"]: print(r)')
"${pip[@]}" install -q -c constraints/colab.txt "${test_tools[@]}" || exit 1

# 2. deforum, installed as the Setup cell does (deforum/install.py is the cell's installer).
"${pip[@]}" list --format=freeze | sort > "$VENV/before.txt"
"$VENV/bin/python" deforum/install.py "$PWD" || exit 1
"${pip[@]}" list --format=freeze | sort > "$VENV/after.txt"
changed=$(comm -23 "$VENV/before.txt" "$VENV/after.txt")
if [ -n "$changed" ]; then
    echo "test-colab: installing deforum changed packages of the Colab runtime (before -> after):" >&2
    for line in $changed; do
        name=${line%%==*}
        echo "  $line -> $(grep -i "^$name==" "$VENV/after.txt" || echo removed)" >&2
    done
    exit 1
fi
echo "test-colab: the install added $(comm -13 "$VENV/before.txt" "$VENV/after.txt" | wc -l) package(s)" \
    "and changed none: $(comm -13 "$VENV/before.txt" "$VENV/after.txt" | tr '\n' ' ')"
"$VENV/bin/python" -c 'import cv2, numpy, torch, imageio_ffmpeg as f, sys
print(f"test-colab: Python {sys.version.split()[0]}, numpy {numpy.__version__}, torch {torch.__version__}, "
      f"OpenCV {cv2.__version__}, ffmpeg {f.get_ffmpeg_version()}")'

# 3. The whole suite, the notebook's Run all included.
PYTHON="$VENV/bin/python" bash scripts/fetch-ffmpeg.sh || exit 1
"$VENV/bin/python" -m pytest -q "$@"
status=$?
if [ "$status" -eq 5 ]; then
    echo "no tests were collected: failing" >&2
    exit 1
fi
exit "$status"
