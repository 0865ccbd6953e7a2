#!/usr/bin/env bash
# Fetch the ffmpeg binary bundled in each imageio-ffmpeg release listed in
# tests/data/imageio_ffmpeg_versions.txt, for tests/test_video.py's cross-version tests.
#
#   bash scripts/fetch-ffmpeg.sh [DEST]
#
# Each binary lands at DEST/<version>/ffmpeg (executable). DEST is, in order: the argument,
# $DEFORUM_FFMPEG_VERSIONS_DIR, or .cache/ffmpeg in the repository root (the tests look in the same
# places). Versions already fetched are skipped; identical binaries (e.g. 0.6.0 and 0.7.0 both bundle
# ffmpeg 7.0.2) are hard-linked rather than stored twice. The wheels come from the package index with
# `pip download` (Linux x86_64 or aarch64 wheels; the host's architecture).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
versions_file="$root/tests/data/imageio_ffmpeg_versions.txt"
dest="${1:-${DEFORUM_FFMPEG_VERSIONS_DIR:-$root/.cache/ffmpeg}}"

if [ -n "${PYTHON:-}" ]; then
    python="$PYTHON"
elif [ -x "$root/.venv/bin/python" ]; then
    python="$root/.venv/bin/python"
else
    python="python3"
fi

arch="$(uname -m)"
case "$arch" in
    x86_64 | aarch64) ;;
    *) echo "fetch-ffmpeg: no imageio-ffmpeg Linux wheel for architecture $arch" >&2; exit 1 ;;
esac
platforms=()
for tag in manylinux1 manylinux2010 manylinux2014 manylinux_2_17 manylinux_2_28; do
    platforms+=(--platform "${tag}_${arch}")
done

mapfile -t versions < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$versions_file" | grep -v '^$')
if [ "${#versions[@]}" -eq 0 ]; then
    echo "fetch-ffmpeg: no versions in $versions_file" >&2
    exit 1
fi

mkdir -p "$dest"
work="$(mktemp -d "$dest/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

for version in "${versions[@]}"; do
    target="$dest/$version/ffmpeg"
    if [ -x "$target" ]; then
        echo "imageio-ffmpeg $version: have $target"
        continue
    fi
    wheels="$work/$version"
    mkdir -p "$wheels"
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        "${platforms[@]}" "imageio-ffmpeg==$version" -d "$wheels"
    shopt -s nullglob
    found=("$wheels"/imageio_ffmpeg-*.whl)
    shopt -u nullglob
    if [ "${#found[@]}" -ne 1 ]; then
        echo "fetch-ffmpeg: expected one wheel of imageio-ffmpeg $version, got ${#found[@]}" >&2
        exit 1
    fi
    # The wheel is a zip; python's zipfile avoids needing `unzip` on the machine.
    "$python" - "${found[0]}" "$work/ffmpeg" <<'PY'
import shutil
import sys
import zipfile

wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as zf:
    names = [n for n in zf.namelist()
             if n.startswith("imageio_ffmpeg/binaries/ffmpeg-") and not n.endswith("/")]
    if len(names) != 1:
        sys.exit(f"fetch-ffmpeg: expected one imageio_ffmpeg/binaries/ffmpeg-* in {wheel}, got {names}")
    with zf.open(names[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
    chmod +x "$work/ffmpeg"
    "$work/ffmpeg" -hide_banner -version | head -n 1
    mkdir -p "$dest/$version"
    same=""
    for other in "$dest"/*/ffmpeg; do
        if [ -f "$other" ] && cmp -s "$other" "$work/ffmpeg"; then
            same="$other"
            break
        fi
    done
    if [ -n "$same" ]; then
        ln -f "$same" "$target" 2>/dev/null || mv -f "$work/ffmpeg" "$target"
        rm -f "$work/ffmpeg"
    else
        mv -f "$work/ffmpeg" "$target"  # last step, so a half-fetched binary is never taken as fetched
    fi
    rm -rf "$wheels"
    echo "imageio-ffmpeg $version: fetched $target"
done
