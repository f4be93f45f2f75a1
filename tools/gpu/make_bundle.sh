#!/usr/bin/env bash
# Pack a self-contained bundle of a Caffe build for tools/gpu/run_on_device.sh: the `caffe`
# tool, libcaffe and every non-system shared library they load (found with ldd), stripped.
#
#   tools/gpu/make_bundle.sh                 # the device bundle -> .gpu/caffe-gpu-bundle.tar.xz
#   tools/gpu/make_bundle.sh --cpu OUT_DIR   # the venv's (CPU) Caffe, unpacked, for the rehearsal
#   tools/gpu/make_bundle.sh --caffe-dir DIR OUT   # any build; OUT ending .tar.xz is packed
#
# The device bundle is a lean CUDA 13.0 build for sm_90 only (the lent H200), without OpenCV and
# Python layers (tools/caffe/build.sh with MRFNET_GPU=1 MRFNET_CUDA_ARCH=90
# MRFNET_CAFFE_LEAN=1, cached like every build): OpenCV's and Python's libraries would not fit
# in what travels, and `caffe train` of the stock-loss net needs neither. The CUDA libraries
# (cudart 13, cuBLAS 13, cuRAND 10) are not packed: cuBLAS alone is 0.6 GB; run_on_device.sh
# takes the lent machine's own from its Python's nvidia-* packages. Also packed: caffe_pb2.py
# (for the project's LMDB writer), net_spec.py (for its net generators) and, for the device's
# Python 3.12, the pinned lmdb wheel of tools/gpu/device-wheels.txt. docs/gpu.md says how.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV=${VENV:-$ROOT/.venv}
say() { printf '[bundle] %s\n' "$*" >&2; }
die() { printf '[bundle] ERROR: %s\n' "$*" >&2; exit 1; }

MODE=gpu; CAFFE_DIR=""; OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) MODE=cpu; OUT=${2:?--cpu needs an output folder}; shift 2 ;;
    --caffe-dir) MODE=dir; CAFFE_DIR=${2:?}; OUT=${3:?--caffe-dir DIR needs an output}; shift 3 ;;
    -h|--help) sed -n 2,16p "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done
case "$MODE" in
  gpu)
    OUT=${OUT:-$ROOT/.gpu/caffe-gpu-bundle.tar.xz}
    CAFFE_DIR=$(MRFNET_GPU=1 MRFNET_CUDA_ARCH=90 MRFNET_CAFFE_LEAN=1 "$ROOT/tools/caffe/build.sh" "$VENV/bin/python") ;;
  cpu)
    [ -f "$VENV/caffe-dir" ] || die "no Caffe linked into $VENV: run make caffe first"
    CAFFE_DIR=$(cat "$VENV/caffe-dir") ;;
esac
BIN="$CAFFE_DIR/.temp_release/tools/caffe.bin"
[ -x "$BIN" ] || die "$BIN missing: not a finished Caffe build"

# Reuse a bundle of the same build (its MANIFEST names the build folder and this script's hash).
STAMP="build: $CAFFE_DIR ($(sha256sum "$0" | cut -c1-12))"
manifest_of() { if [ -d "$1" ]; then cat "$1/MANIFEST.txt"; else tar -xOJf "$1" caffe-bundle/MANIFEST.txt; fi 2>/dev/null || true; }
if [ -e "$OUT" ] && manifest_of "$OUT" | grep -qxF "$STAMP"; then
  say "up to date: $OUT"; echo "$OUT"; exit 0
fi

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/caffe-bundle.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
B="$STAGE/caffe-bundle"
mkdir -p "$B/bin" "$B/lib/fallback" "$B/python/caffe/proto"
# System libraries (glibc, the C++ runtime) and the driver's are the lent machine's own; the
# CUDA libraries come from its Python packages (see above).
SYSTEM='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libresolv|libutil|libstdc\+\+|libgcc_s)\.so'
CUDA='^(libcuda|libcudart|libcublas|libcublasLt|libcurand|libnccl|libnvidia-[a-z-]*)\.so'
CUDA_NEEDED=()
while read -r name _ path _; do
  [ -n "$path" ] && [ "$path" != "not" ] || { [[ $name =~ $SYSTEM|$CUDA ]] && continue; die "ldd: $name not found for $BIN"; }
  if [[ $name =~ $SYSTEM ]]; then continue; fi
  if [[ $name =~ $CUDA ]]; then CUDA_NEEDED+=("$name"); continue; fi
  cp -L "$path" "$B/lib/$name"
done < <(ldd "$BIN" | awk '/=>/ { print $1, $2, $3 } /^\s*\/.*ld-linux/ { next }')
cp -L "$BIN" "$B/bin/caffe.bin"
# The C++ runtime it was built against, used there only when the system's is older.
for name in libstdc++.so.6 libgcc_s.so.1; do
  path=$(ldd "$BIN" | awk -v n="$name" '$1 == n { print $3 }')
  [ -n "$path" ] && cp -L "$path" "$B/lib/fallback/$name"
done
chmod u+w "$B"/bin/* "$B"/lib/*.so* "$B"/lib/fallback/*
strip --strip-unneeded "$B"/bin/* "$B"/lib/*.so* "$B"/lib/fallback/* 2>/dev/null || true
# pycaffe's pure-Python parts only (no _caffe.so): caffe_pb2 for the LMDB writer, net_spec for
# the net generators (prototxt_gen, `mrfnet caffe-stages`).
touch "$B/python/caffe/proto/__init__.py"
echo "from .net_spec import layers, params, NetSpec, to_proto" > "$B/python/caffe/__init__.py"
cp "$CAFFE_DIR/python/caffe/proto/caffe_pb2.py" "$B/python/caffe/proto/"
cp "$CAFFE_DIR/python/caffe/net_spec.py" "$B/python/caffe/"
if [ "$MODE" = gpu ]; then
  mkdir -p "$B/wheels"
  "$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -r "$ROOT/tools/gpu/device-wheels.txt" -d "$B/wheels" >&2 \
    || die "pip could not download the wheels of tools/gpu/device-wheels.txt"
fi
GLIBCXX=$(objdump -T "$B"/bin/* "$B"/lib/*.so* 2>/dev/null | grep -o 'GLIBCXX_3\.4\.[0-9]*' | sort -t. -k3 -n -u | tail -1)
GLIBC=$(objdump -T "$B"/bin/* "$B"/lib/*.so* 2>/dev/null | grep -o 'GLIBC_2\.[0-9]*' | sort -t. -k2 -n -u | tail -1)
{
  echo "$STAMP"
  echo "config: $(grep -E '^(CPU_ONLY|CUDA_ARCH|USE_OPENCV|WITH_PYTHON_LAYER) ' "$CAFFE_DIR/Makefile.config" | tr '\n' ';')"
  echo "cuda_libs: ${CUDA_NEEDED[*]:-}"
  echo "needs: $GLIBC $GLIBCXX"
  echo "made: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -m)"
} > "$B/MANIFEST.txt"
# ldd resolved this build's libraries; check the bundle alone resolves them as well.
missing=$(LD_LIBRARY_PATH="$B/lib" ldd "$B/bin/caffe.bin" | grep 'not found' | grep -Ev "$CUDA" || true)
[ -z "$missing" ] || die "the bundle does not resolve: $missing"

NLIBS=$(ls "$B/lib" | wc -l)
mkdir -p "$(dirname "$OUT")"
rm -rf "$OUT" "$OUT.tmp"
case "$OUT" in
  *.tar.xz) tar -C "$STAGE" -cf - caffe-bundle | xz -T0 -6 > "$OUT.tmp" && mv "$OUT.tmp" "$OUT" ;;
  *) mv "$B" "$OUT" ;;
esac
say "$OUT: $(du -sh "$OUT" | cut -f1) ($NLIBS files in lib/, CUDA from the device: ${CUDA_NEEDED[*]:-none})"
echo "$OUT"
