#!/usr/bin/env bash
# Install the package with its test extra into .venv and run the test suite (the README's test command).
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test]' || exit 1
# The ffmpeg of each allowed imageio-ffmpeg version, for the video tests (skipped when already fetched).
bash scripts/fetch-ffmpeg.sh || exit 1
.venv/bin/python -m pytest -q "$@"
status=$?
if [ "$status" -eq 5 ]; then
    echo "no tests were collected: failing" >&2
    exit 1
fi
exit "$status"
